"""BatchSyncRandomResize (multi-scale batches) and the loader that runs batch augmentations:
the batch and every field of its samples are resized together, a new size is drawn every
``interval`` batches as documented, ranks agree on it (two gloo processes), and the config
key ``data.batch_augments`` is checked."""

import json
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmdet_like.apis.config_check import ConfigCheckError, check_config
from mmdet_like.engine.batch_augments import (
    BatchAugmentedLoader,
    BatchSyncRandomResize,
    build_batch_augments,
)
from mmdet_like.engine.config import Config
from mmdet_like.structures import BitmapMasks, DetDataSample, InstanceData, PolygonMasks


def sample(h, w, boxes, polygons=False):
    boxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    if polygons:
        rects = [[[x1, y1, x2, y1, x2, y2, x1, y2]] for x1, y1, x2, y2 in boxes.tolist()]
        masks = PolygonMasks(rects, h, w)
    else:
        bitmaps = np.zeros((len(boxes), h, w), np.uint8)
        for m, (x1, y1, x2, y2) in zip(bitmaps, boxes.int().tolist()):
            m[y1:y2, x1:x2] = 1
        masks = BitmapMasks(bitmaps, h, w)
    centres = torch.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], 1)
    keypoints = torch.cat([centres, torch.full((len(boxes), 1), 2.0)], 1)[:, None]
    keypoints = torch.cat([keypoints, torch.zeros_like(keypoints)], 1)  # + an unlabelled point
    gt = InstanceData(bboxes=boxes, labels=torch.zeros(len(boxes), dtype=torch.long),
                      masks=masks, keypoints=keypoints)  # fmt: skip
    ignored = InstanceData(bboxes=torch.tensor([[0.0, 0.0, 4.0, 4.0]]))
    meta = dict(img_shape=(h, w, 3), pad_shape=(h, w, 3), ori_shape=(h, w, 3))
    return DetDataSample(metainfo=meta, gt_instances=gt, ignored_instances=ignored)


def batch(polygons=False):
    images = [torch.rand(3, 40, 60), torch.rand(3, 50, 30)]
    samples = [sample(40, 60, [(4, 6, 20, 30), (30, 10, 58, 38)], polygons),
               sample(50, 30, [(2, 2, 28, 48)], polygons)]  # fmt: skip
    return dict(img=images, data_samples=samples)


def test_resizes_every_batch_field_and_draws_every_interval():
    """Batches of 40x60 and 50x30 images pad to 64 x 64 (size_divisor 32); the first size is
    that; after the 2nd batch rank 0 draws k from 2..4 (64..128 px / 32) and the size becomes
    (32 k, 32 int(k * 64 / 64))."""
    for polygons in (False, True):
        aug = BatchSyncRandomResize(random_size_range=(64, 128), interval=2, size_divisor=32,
                                    seed=5)  # fmt: skip
        first = aug(batch(polygons))
        assert first["img"].shape == (2, 3, 64, 64) and aug.input_size == (64, 64)
        second = aug(batch(polygons))
        assert second["img"].shape == (2, 3, 64, 64)
        k = random.Random(5).randint(2, 4)
        assert aug.input_size == (32 * k, 32 * k)
        assert k != 2  # seed 5 draws a new size: the resize below is not the identity
        data = batch(polygons)
        padded = torch.zeros(2, 3, 64, 64)
        padded[0, :, :40, :60], padded[1, :, :50, :30] = data["img"]
        third = aug(data)
        s = 32 * k / 64
        expected = F.interpolate(padded, size=(32 * k, 32 * k), mode="bilinear",
                                 align_corners=False)  # fmt: skip
        torch.testing.assert_close(third["img"], expected)
        a, b = third["data_samples"]
        assert a.metainfo["img_shape"] == (int(40 * s), int(60 * s), 3)
        assert b.metainfo["pad_shape"] == (int(50 * s), int(30 * s), 3)
        assert a.metainfo["batch_input_shape"] == (32 * k, 32 * k)
        boxes = torch.tensor([[4, 6, 20, 30], [30, 10, 58, 38.0]])
        torch.testing.assert_close(a.gt_instances.bboxes, boxes * s)
        torch.testing.assert_close(a.ignored_instances.bboxes, torch.tensor([[0, 0, 4, 4.0]]) * s)
        masks = a.gt_instances.masks
        assert masks.shape == (round(40 * s), round(60 * s))
        tight = torch.from_numpy(masks.get_bboxes())
        torch.testing.assert_close(tight, a.gt_instances.bboxes, atol=1.0, rtol=0)
        kps = a.gt_instances.keypoints
        torch.testing.assert_close(kps[:, 0, :2], torch.tensor([[12, 18], [44, 24.0]]) * s)
        assert (kps[:, 1] == 0).all()  # unlabelled stays (0, 0, 0)


def test_interval_seed_and_collect_style_lists():
    def sizes(seed, n=12):
        aug = BatchSyncRandomResize(random_size_range=(320, 640), interval=3, seed=seed)
        out = []
        for _ in range(n):
            aug(dict(img=torch.zeros(1, 3, 64, 96)))
            out.append(aug.input_size)
        return out

    a, b = sizes(0), sizes(0)
    assert a == b
    # a new size only after batches 3, 6, 9, 12; each (32 k, 32 int(1.5 k)), k in 10..20
    for i in range(12):
        if (i + 1) % 3:
            assert a[i] == (a[i - 1] if i else (64, 96))
    for h, w in a[2::3]:
        assert h % 32 == 0 and 320 <= h <= 640 and w == 32 * int(1.5 * h / 32)
    assert len(set(sizes(1))) > 1
    aug = BatchSyncRandomResize(random_size_range=(32, 32), interval=1, size_divisor=32)
    aug(dict(img=torch.zeros(1, 3, 64, 64)))  # the next size: (32, 32)
    metas = [dict(img_shape=(64, 64, 3), pad_shape=(64, 64, 3))]
    out = aug(dict(img=[torch.zeros(3, 64, 64)], img_metas=metas,
                   gt_bboxes=[torch.tensor([[8.0, 8, 40, 40]])],
                   gt_masks=[BitmapMasks(np.ones((1, 64, 64), np.uint8), 64, 64)]))  # fmt: skip
    assert out["img"].shape == (1, 3, 32, 32)
    assert out["img_metas"][0]["img_shape"] == (32, 32, 3)
    torch.testing.assert_close(out["gt_bboxes"][0], torch.tensor([[4.0, 4, 20, 20]]))
    assert out["gt_masks"][0].shape == (32, 32)


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"random_size_range must be two integers \(lo, hi\)"):
        BatchSyncRandomResize(random_size_range=(800, 480))
    with pytest.raises(ValueError, match="interval must be an integer >= 1"):
        BatchSyncRandomResize(random_size_range=(480, 800), interval=0)
    with pytest.raises(ValueError, match="below one size_divisor"):
        BatchSyncRandomResize(random_size_range=(8, 12))
    with pytest.raises(TypeError, match="data.batch_augments must be a list"):
        build_batch_augments(dict(type="BatchSyncRandomResize"))


def test_config_check_reads_data_batch_augments():
    def cfg(augments):
        return Config(dict(data=dict(batch_augments=augments)))

    check_config(cfg([dict(type="BatchSyncRandomResize", random_size_range=(480, 800))]), "x.py")
    with pytest.raises(ConfigCheckError, match=r"data.batch_augments\[0\].type: 'BatchSync"):
        check_config(cfg([dict(type="BatchSyncRandomResise", random_size_range=(1, 2))]), "x.py")
    unknown = r"data.batch_augments\[0\].random_size: not a key .*random_size_range\?"
    with pytest.raises(ConfigCheckError, match=unknown):
        check_config(cfg([dict(type="BatchSyncRandomResize", random_size=(1, 2))]), "x.py")


class _Loader:
    """A stand-in data loader with the attributes the runner reads."""

    def __init__(self, batches):
        self.batches = batches
        self.sampler = "the sampler"
        self.batch_size = 2

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        return _Iterator(self.batches)


class _Iterator:
    def __init__(self, batches):
        self.it = iter(batches)
        self.stopped = False

    def __next__(self):
        return next(self.it)

    def _shutdown_workers(self):
        self.stopped = True


def test_loader_runs_the_augments_and_passes_the_rest_on():
    seen = []

    def record(batch):
        seen.append(batch["img"].device)
        return dict(batch, augmented=True)

    loader = BatchAugmentedLoader(_Loader([dict(img=torch.zeros(1, 3, 8, 8))] * 3), [record],
                                  device=torch.device("cpu"))  # fmt: skip
    assert len(loader) == 3 and loader.sampler == "the sampler" and loader.batch_size == 2
    iterator = iter(loader)
    assert next(iterator)["augmented"] and seen == [torch.device("cpu")]
    iterator._shutdown_workers()  # the runner stops the workers through the iterator
    assert iterator._iterator.stopped
    loader._iterator = None  # PipelineSwitchHook resets a persistent loader's iterator
    assert loader.loader._iterator is None and "_iterator" not in vars(loader)


def _rank_sizes(rank, world_size, init_file, out_dir):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world_size)  # fmt: skip
    # each rank its own seed: only rank 0's draws count
    aug = BatchSyncRandomResize(random_size_range=(320, 960), interval=2, seed=100 + rank)
    sizes = []
    for _ in range(10):
        aug(dict(img=torch.zeros(1, 3, 32, 32)))
        sizes.append(list(aug.input_size))
    (out_dir / f"sizes{rank}.json").write_text(json.dumps(sizes))
    dist.destroy_process_group()


def test_ranks_resize_to_rank_zeros_draws(tmp_path):
    torch.multiprocessing.spawn(_rank_sizes, args=(2, str(tmp_path / "init"), tmp_path), nprocs=2)
    rank0 = json.loads((tmp_path / "sizes0.json").read_text())
    rank1 = json.loads((tmp_path / "sizes1.json").read_text())
    assert rank0 == rank1
    draws = random.Random(100)
    expected, size = [], [32, 32]
    for i in range(10):
        if (i + 1) % 2 == 0:
            k = draws.randint(10, 30)
            size = [32 * k, 32 * k]
        expected.append(size)
    assert rank0 == expected and len({tuple(s) for s in rank0}) > 2
