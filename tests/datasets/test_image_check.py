"""Image files that cannot be used, found before training reads them: missing, empty,
truncated (a copy or download cut short), not an image, undecodable, or of another size than
the annotation says. ``read_image_file`` decides for training (``LoadImageFromFile``),
``tools/check_dataset.py``, ``check_images=True`` at training start-up,
``inference_detector`` and the demos (tests/apis/test_demos.py).

Tiny images (32-64 px) made with cv2/PIL; the tools run in this process (``call_tool``).
"""

import json

import cv2
import numpy as np
import pytest
from PIL import Image

from mmdet_like.apis import inference_detector, init_detector
from mmdet_like.datasets import CocoDataset, DatasetError
from mmdet_like.datasets.errors import ImageReadError
from mmdet_like.datasets.image_check import check_image_files, data_problem, read_image_file
from mmdet_like.registry import PIPELINES, build_from_cfg
from tests.engine.cli_utils import ROOT, call_tool, load_tool

DEMO_CONFIG = ROOT / "configs" / "demo" / "mask_rcnn_r18_fpn_demo.py"


def picture(height, width, seed=0):
    """A smooth random BGR picture (compresses like a photograph, not like noise)."""
    noise = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return cv2.GaussianBlur(noise, (5, 5), 0)


def encoded(ext, height=32, width=48, params=()):
    return cv2.imencode(ext, picture(height, width), list(params))[1].tobytes()


def with_app_segment(jpeg, payload):
    """``jpeg`` with an APP1 segment holding ``payload`` right after its start marker."""
    return jpeg[:2] + b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload + jpeg[2:]


HEADLESS_JPEG = b"\xff\xd8\xff\xe0\x00\x10" + bytes(14) + b"\xff\xd9"

FORMATS = {
    "baseline JPEG": encoded(".jpg"),
    "progressive JPEG": encoded(".jpg", params=(cv2.IMWRITE_JPEG_PROGRESSIVE, 1)),
    "JPEG with restart markers": encoded(".jpg", params=(cv2.IMWRITE_JPEG_RST_INTERVAL, 1)),
    # an embedded thumbnail's end marker (here: bare bytes) is not the image's end
    "JPEG with an end marker inside a segment": with_app_segment(encoded(".jpg"), b"\xff\xd9" * 8),
    "PNG": encoded(".png"),
}


@pytest.mark.parametrize("name", FORMATS)
def test_every_cut_of_an_image_is_found_truncated(name):
    data = FORMATS[name]
    assert data_problem(data) is None
    assert data_problem(data + b"trailer written after the end") is None  # as phones do
    for cut in range(8, len(data)):
        problem = data_problem(data[:cut])
        assert problem is not None and problem[0] == "truncated", (cut, len(data))


def write_bad_files(folder):
    """Files that cannot be used, written to ``folder``: ``{name: (kind, reason)}``."""
    folder.mkdir(parents=True, exist_ok=True)
    jpeg, png = encoded(".jpg", 48, 64), encoded(".png", 48, 64)
    files = {
        "cut.jpg": (jpeg[: len(jpeg) // 2], "truncated", "before its end-of-image marker"),
        "no_end.jpg": (jpeg[:-2], "truncated", "before its end-of-image marker"),
        "cut.png": (png[: len(png) * 2 // 3], "truncated", "before its IEND chunk"),
        "empty.jpg": (b"", "empty", "the file is empty (0 bytes)"),
        "text.jpg": (b"<html>404 Not Found</html>\n", "not an image", "b'<html>404 Not Fo'"),
        "scrambled.png": (png[:33] + bytes(200) + png[233:], "corrupt", "no valid chunk at"),
        # a start marker, an empty APP0 segment, the end marker: no frame to decode
        "headless.jpg": (HEADLESS_JPEG, "corrupt", "OpenCV cannot decode this JPEG file"),
    }
    for name, (data, _, _) in files.items():
        (folder / name).write_bytes(data)
    return {name: (kind, reason) for name, (_, kind, reason) in files.items()}


def test_read_image_file_names_the_file_the_problem_and_the_fix(tmp_path):
    expected = write_bad_files(tmp_path)
    expected["missing.jpg"] = ("missing", "no such file")
    for name, (kind, reason) in expected.items():
        with pytest.raises(ImageReadError) as info:
            read_image_file(str(tmp_path / name))
        assert info.value.kind == kind and info.value.filename == str(tmp_path / name)
        message = str(info.value)
        assert message.startswith(f"{tmp_path / name}: ") and reason in message, message
        assert "Fix: " in message and "\n" not in message
    # training's loader refuses the same files, for the same reason
    load = build_from_cfg(dict(type="LoadImageFromFile"), PIPELINES)
    with pytest.raises(ImageReadError) as info:
        load(dict(img_prefix=str(tmp_path), img_info=dict(id=3, filename="cut.jpg")))
    assert f"{tmp_path / 'cut.jpg'}, image id 3, field 'filename': cannot read the image " in (
        str(info.value)
    )
    assert "(truncated: the JPEG data ends" in str(info.value) and "skip_bad_images" in str(
        info.value
    )
    good = tmp_path / "good.jpg"
    good.write_bytes(encoded(".jpg", 48, 64) + b"trailer")
    assert read_image_file(str(good)).shape == (48, 64, 3)


def test_sizes_are_compared_as_the_pipeline_reads_the_image(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), picture(48, 64))
    # stored 64x48 (width x height) with EXIF orientation 6: displayed 48x64
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(picture(48, 64)).save(tmp_path / "rotated.jpg", exif=exif.tobytes())
    images = [
        (str(tmp_path / "a.png"), dict(id=1, width=64, height=48)),
        (str(tmp_path / "a.png"), dict(id=2, width=40, height=40)),
        (str(tmp_path / "rotated.jpg"), dict(id=3, width=48, height=64)),  # as displayed
        (str(tmp_path / "rotated.jpg"), dict(id=4, width=64, height=48)),  # as stored
        (str(tmp_path / "a.png"), None),  # no size to compare
    ]
    problems = check_image_files(images, workers=2)
    assert [(p.kind, p.path) for p in problems] == [
        ("size", str(tmp_path / "a.png")),
        ("size", str(tmp_path / "rotated.jpg")),
    ]
    assert "image id 2, field 'width/height': the image is 64x48" in problems[0].message
    assert "annotation says 40x40" in problems[0].message and "Fix:" in problems[0].message
    assert "Width and height are swapped" in problems[1].message
    # a pipeline that ignores the orientation reads the stored pixels
    problems = check_image_files(images, color_type="color_ignore_orientation")
    assert [(p.kind, p.message.split(",")[1]) for p in problems] == [
        ("size", " image id 2"),
        ("size", " image id 3"),
    ]


def write_coco_set(root, bad=True):
    """A COCO dataset of good 64x48 images (and, with ``bad``, every kind of bad file and
    an image annotated with another size) with one box each; its annotation file."""
    images = root / "images"
    images.mkdir(parents=True)
    names = ["good0.png", "good1.jpg"]
    for i, name in enumerate(names):
        cv2.imwrite(str(images / name), picture(48, 64, seed=i))
    sizes = {name: (64, 48) for name in names}
    if bad:
        names += list(write_bad_files(images))
        cv2.imwrite(str(images / "small.png"), picture(32, 32))
        names.append("small.png")
        sizes.update({name: (64, 48) for name in names if name not in sizes})
    data = dict(
        images=[
            dict(id=i + 1, file_name=n, width=sizes[n][0], height=sizes[n][1])
            for i, n in enumerate(names)
        ],
        annotations=[
            dict(id=i + 1, image_id=i + 1, category_id=1, bbox=[4, 4, 20, 20], iscrowd=0)
            for i in range(len(names))
        ],
        categories=[dict(id=1, name="thing")],
    )
    (root / "ann.json").write_text(json.dumps(data))
    config = root / "check.py"
    config.write_text(
        f"data = dict(train=dict(type='CocoDataset', ann_file='{root}/ann.json', "
        f"img_prefix='{images}', pipeline=[dict(type='LoadImageFromFile')], min_size=None))\n"
    )
    return config, images


def test_check_dataset_decodes_every_image_and_names_each_bad_one(tmp_path):
    config, images = write_coco_set(tmp_path / "bad")
    run = call_tool("check_dataset.py", config, cwd=tmp_path)
    assert run.status == 1, run.output
    out = run.output
    assert "images: 10" in out  # the summary first
    counts = "(truncated: 3, empty: 1, not an image: 1, corrupt: 2, size: 1)"
    assert f"8 of 10 image files checked cannot be used {counts}:" in out, out
    for name, (_, reason) in write_bad_files(tmp_path / "again").items():
        line = next(line for line in out.splitlines() if line.startswith(f"  {images / name}"))
        assert reason in line and "Fix: " in line, line
    assert f"  {images / 'small.png'}, image id 10, field 'width/height': the image is 32x32" in out
    assert "good0.png" not in out and "good1.jpg" not in out
    # check_images=True in the config: the tool still prints the summary, then the report
    options = ["--cfg-options", "data.train.check_images=True"]
    run = call_tool("check_dataset.py", config, "--quick", *options, cwd=tmp_path)
    assert run.status == 1 and "images: 10" in run.output and "8 of 10 image files" in run.output

    config, _ = write_coco_set(tmp_path / "good", bad=False)
    run = call_tool("check_dataset.py", config, cwd=tmp_path)
    assert run.status == 0, run.output
    assert "image files: all 2 checked decode whole, at their annotated sizes" in run.output


def test_check_images_in_the_dataset(tmp_path):
    _, images = write_coco_set(tmp_path)
    kwargs = dict(img_prefix=str(images), pipeline=[dict(type="LoadImageFromFile")], min_size=None)
    assert len(CocoDataset(str(tmp_path / "ann.json"), **kwargs)) == 10  # off by default
    with pytest.raises(DatasetError) as info:
        CocoDataset(str(tmp_path / "ann.json"), check_images=True, **kwargs)
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'ann.json'}: check_images=True: 8 of 10 image files")
    assert f"\n  {images / 'cut.jpg'}: truncated: " in message
    assert "Fix each file as its line says" in message and "tools/check_dataset.py" in message


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory):
    """The demo dataset (4 train, 3 val images) in ``cwd/data/demo``, a train image cut."""
    cwd = tmp_path_factory.mktemp("demo")
    load_tool("make_demo_dataset").make_dataset(str(cwd / "data" / "demo"), 4, 3, seed=1)
    cut = cwd / "data" / "demo" / "train" / "000002.png"
    data = cut.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    return cwd, cut


def test_training_with_check_images_stops_before_the_first_iteration(demo_data):
    cwd, cut = demo_data
    options = ["--cfg-options", "data.workers_per_gpu=0"]
    run = call_tool(
        "train.py", DEMO_CONFIG, "--work-dir", "work", *options, "data.train.check_images=True",
        cwd=cwd,
    )  # fmt: skip
    assert run.status == 1, run.output
    assert "check_images=True: 1 of 4 image files cannot be used (truncated: 1):" in run.output
    assert f"{cut.relative_to(cwd)}: truncated: the PNG data ends" in run.output
    assert "Epoch [1]" not in run.output and "Traceback" not in run.output
    # the key is one the config check knows
    run = call_tool(
        "train.py", DEMO_CONFIG, *options, "data.train.check_image=True", cwd=cwd
    )  # fmt: skip
    assert run.status == 1
    assert "did you mean data.train.check_images?" in run.output, run.output


def test_inference_detector_refuses_a_truncated_image(demo_data, tmp_path):
    cwd, _ = demo_data
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(encoded(".jpg", 64, 64)[:-100])
    model = init_detector(str(DEMO_CONFIG))
    with pytest.raises(ImageReadError, match="truncated: the JPEG data ends") as info:
        inference_detector(model, str(cut))
    assert str(info.value).startswith(f"{cut}, field 'filename': cannot read the image")
