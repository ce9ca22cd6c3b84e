"""An image that cannot be decoded, and a data-loader worker that dies, in a real
``CocoDataset`` (a tiny one written by the test) trained by ``tools/train.py`` with two
loader workers.

- default: a clear error naming the file;
- ``data.train.skip_bad_images=True``: the sample is replaced by another image, a warning
  names the file, and the count (carried from the workers through collate into the batch)
  is in the training log as ``skipped_images``;
- a worker killed without a Python traceback (``os._exit``): an error that says a worker
  died and how to debug it (``data.workers_per_gpu=0``).
"""

import json

import pytest

from mmdet_like.datasets import CocoDataset, DatasetError
from mmdet_like.datasets.errors import ImageReadError
from tests.datasets.tiny_data import write_image
from tests.engine.cli_utils import free_port
from tests.reliability.forkserver import run_train

NUM_IMAGES = 6  # all 64x48 (one aspect group), 2 a batch: 3 iterations an epoch, 2 epochs
BAD = "img3.png"

CONFIG = """
custom_imports = dict(imports=["tests.reliability.faults"])
model = dict(type="TinyImageModel")
train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations"),{transform}
    dict(type="DefaultFormatBundle"),
    dict(type="Collect", keys=["img", "gt_bboxes", "gt_labels"]),
]
data = dict(
    imgs_per_gpu=2,
    workers_per_gpu=2,
    train=dict(type="CocoDataset", ann_file="{root}/ann.json", img_prefix="{root}/images",
               pipeline=train_pipeline),
)
optimizer = dict(type="SGD", lr=0.001, momentum=0.9)
optimizer_config = dict()
lr_config = dict(policy="fixed")
checkpoint_config = dict(interval=1)
log_config = dict(interval=1, hooks=[dict(type="TextLoggerHook")])
custom_hooks = [dict(type="RecordFilenamesHook")]
total_epochs = 2
"""


REASONS = {  # how the warning names what is wrong with the file
    "not an image": "not an image OpenCV can decode (it starts with b'this is not an i')",
    "truncated": "truncated: the PNG data ends",
}


def corrupt(path, kind):
    if kind == "not an image":
        path.write_bytes(b"this is not an image\n" * 10)
    else:  # a download cut short
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])


def make_dataset(root, bad_kind=None):
    images, anns = [], []
    for i in range(NUM_IMAGES):
        name = f"img{i}.png"
        write_image(root / "images" / name, 64, 48, seed=i)
        images.append(dict(id=i + 1, file_name=name, width=64, height=48))
        box = [4 + i, 6, 20, 10 + i]
        anns.append(dict(id=i + 1, image_id=i + 1, category_id=1, bbox=box, iscrowd=0))
    data = dict(images=images, annotations=anns, categories=[dict(id=1, name="thing")])
    (root / "ann.json").write_text(json.dumps(data))
    if bad_kind is not None:
        corrupt(root / "images" / BAD, bad_kind)
    return root / "images" / BAD


def train(tmp_path, *options, transform=""):
    config = tmp_path / "coco_toy.py"
    config.write_text(CONFIG.format(root=tmp_path, transform=transform))
    argv = [config, "--work-dir", tmp_path / "work", "--seed", "0"]
    if options:
        argv += ["--cfg-options", *options]
    ((rc, out),) = run_train((argv, tmp_path / "train.out"), timeout=60)
    return rc, out


def train_records(work_dir):
    (log_json,) = work_dir.glob("*.log.json")
    records = [json.loads(line) for line in log_json.read_text().splitlines()]
    return [r for r in records if r["mode"] == "train"]


def test_an_unreadable_image_stops_training_naming_the_file(tmp_path):
    bad = make_dataset(tmp_path, "not an image")
    rc, out = train(tmp_path)
    assert rc == 1, out
    assert "ImageReadError" in out and "DataLoader worker process" in out, out
    assert f"{bad}, image id 4, field 'filename': cannot read the image" in out, out
    assert "skip_bad_images=True" in out  # says how to train on anyway


@pytest.mark.parametrize("kind", ["not an image", "truncated"])
def test_skip_bad_images_replaces_the_sample_warns_and_counts(tmp_path, kind):
    bad = make_dataset(tmp_path, kind)
    rc, out = train(tmp_path, "data.train.skip_bad_images=True")
    assert rc == 0, out
    # sampled once an epoch, so skipped twice; each time a warning names the file
    warning = f"skipping image {bad} ({REASONS[kind]}"
    assert out.count(warning) == 2, out
    assert "skip_bad_images=True): replaced by another image" in out
    seen = json.loads((tmp_path / "work" / "filenames.json").read_text())
    assert len(seen) == 6 and all(len(batch) == 2 for batch in seen)
    assert BAD not in {name for batch in seen for name in batch}  # never reached the model
    records = train_records(tmp_path / "work")
    counts = [r["skipped_images"] for r in records]
    assert len(counts) == 6 and counts == sorted(counts) and counts[-1] == 2
    assert "skipped_images: 2" in out  # in the console / text log line too
    assert (tmp_path / "work" / "epoch_2.pth").exists()


def test_skipped_images_are_summed_over_ranks(tmp_path):
    bad = make_dataset(tmp_path, "truncated")
    config = tmp_path / "coco_toy.py"
    config.write_text(CONFIG.format(root=tmp_path, transform=""))
    port, runs = free_port(), []
    for rank in (0, 1):
        environ = dict(
            RANK=str(rank),
            WORLD_SIZE="2",
            LOCAL_RANK=str(rank),
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
        )
        argv = [config, "--work-dir", tmp_path / "work", "--launcher", "pytorch", "--seed", "0"]
        argv += ["--cfg-options", "data.train.skip_bad_images=True"]
        runs.append((argv, tmp_path / f"rank{rank}.out", environ))
    (rc0, out0), (rc1, out1) = run_train(*runs, timeout=60)
    assert rc0 == rc1 == 0, out0 + out1
    # the rank that meets the bad image names it (ranks > 0 as a DatasetWarning on stderr);
    # rank 0 logs the total over both ranks (seed 0: once an epoch)
    warning = f"skipping image {bad} ({REASONS['truncated']}"
    assert warning in out0 + out1
    assert train_records(tmp_path / "work")[-1]["skipped_images"] == 2


def test_a_worker_that_dies_says_so_and_how_to_debug(tmp_path):
    make_dataset(tmp_path)
    transform = f'\n    dict(type="ExitInWorker", filename="{BAD}"),'
    rc, out = train(tmp_path, transform=transform)
    assert rc == 1, out
    assert "DataLoaderWorkerError: a data-loader worker process died while loading data " in out
    assert "(epoch 1, after " in out and "exited unexpectedly" in out, out
    assert "run the pipeline in the main process: --cfg-options data.workers_per_gpu=0" in out


def dataset(root, **kwargs):
    pipeline = [dict(type="LoadImageFromFile"), dict(type="LoadAnnotations")]
    return CocoDataset(str(root / "ann.json"), pipeline, img_prefix=str(root / "images"), **kwargs)


def test_skip_bad_images_in_the_dataset(tmp_path):
    bad = make_dataset(tmp_path, "truncated")
    index = [dataset(tmp_path).get_img_info(i)["filename"] for i in range(NUM_IMAGES)].index(BAD)
    with pytest.raises(ImageReadError, match="cannot read the image") as info:
        dataset(tmp_path)[index]
    assert info.value.filename == str(bad)
    skipping = dataset(tmp_path, skip_bad_images=True)
    sample = skipping[index]
    assert sample["skipped_images"] == 1 and sample["ori_filename"] != BAD
    assert skipping[0]["skipped_images"] == 0
    with pytest.raises(ImageReadError):  # evaluation needs every image: never replaced
        dataset(tmp_path, skip_bad_images=True, test_mode=True)[index]
    for i in range(NUM_IMAGES):
        corrupt(tmp_path / "images" / f"img{i}.png", "not an image")
    with pytest.raises(DatasetError, match="no image can be read"):
        dataset(tmp_path, skip_bad_images=True)[0]
