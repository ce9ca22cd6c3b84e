"""The recipe configs of configs/strong_baselines/ build and train a step on real pipeline
output: their training pipelines (LSJ at 1024, Mosaic + MixUp at 640 through
MultiImageMixDataset, the batch resizing of data.batch_augments) run on demo images, and a
model of the config, shrunk as tests/models/test_configs.py shrinks them (quarter-width
ResNet-18, narrow heads; the config's norms), takes one training step on the batch."""

import pytest
import torch

from mmdet_like.apis.config_check import check_config
from mmdet_like.datasets import build_dataset, collate
from mmdet_like.datasets.samplers import seeded_random
from mmdet_like.engine import load_config
from mmdet_like.engine.batch_augments import build_batch_augments
from mmdet_like.models import build_detector
from mmdet_like.registry import HOOKS
from tests.engine.cli_utils import ROOT, run_tool_here
from tests.models.test_configs import fewer_proposals, shrink

LSJ = ROOT / "configs" / "strong_baselines" / "mask_rcnn_r50_fpn_lsj_100e_coco.py"
MOSAIC = ROOT / "configs" / "strong_baselines" / "atss_r50_fpn_mosaic_mixup_ema_coco.py"
NUM_CLASSES = 4  # the demo shapes


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("strong_baselines")
    run_tool_here([ROOT / "tools" / "make_demo_dataset.py", "data/demo", "--num-train", 6,
                   "--num-val", 1, "--seed", 1], cwd)  # fmt: skip
    return cwd / "data" / "demo"


def point_at(dataset_cfg, demo):
    dataset_cfg.ann_file = str(demo / "annotations" / "instances_train.json")
    dataset_cfg.img_prefix = str(demo / "train") + "/"


def small_model(cfg):
    model_cfg = shrink(cfg.model.to_dict())
    for head in (model_cfg.get("bbox_head"), *(model_cfg.get("roi_head") or {}).values()):
        if isinstance(head, dict) and "num_classes" in head:
            head["num_classes"] = NUM_CLASSES
    train_cfg, test_cfg = cfg.train_cfg.to_dict(), cfg.test_cfg.to_dict()
    fewer_proposals(train_cfg, test_cfg)
    torch.manual_seed(0)
    model = build_detector(model_cfg, train_cfg, test_cfg)
    model.init_weights()
    return model.train()


def step(model, batch):
    losses = model(img=batch["img"], data_samples=batch["data_samples"])
    total = sum(v for k, v in losses.items() if "loss" in k)
    assert torch.isfinite(total)
    total.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    return losses


def test_lsj_mask_rcnn_config_trains_a_step(demo):
    cfg = load_config(str(LSJ))
    assert check_config(cfg, str(LSJ)) == []
    assert cfg.model.backbone.norm_cfg.type == "SyncBN" and cfg.model.pretrained is None
    assert cfg.data.train.type == "RepeatDataset" and cfg.data.train.times == 4
    assert cfg.total_epochs * cfg.data.train.times == 100
    point_at(cfg.data.train.dataset, demo)
    dataset = build_dataset(cfg.data.train)
    samples = []
    for i in range(2):
        with seeded_random(i):
            samples.append(dataset[i])
    batch = collate(samples)
    assert batch["img"].shape == (2, 3, 1024, 1024)  # LSJ pads every image to 1024 x 1024
    for sample in batch["data_samples"]:
        gt = sample.gt_instances
        assert gt.masks.shape == (1024, 1024)
        if len(gt):  # recompute_bbox: the boxes are the masks' tight boxes
            torch.testing.assert_close(torch.from_numpy(gt.masks.get_bboxes()), gt.bboxes)
    losses = step(small_model(cfg), batch)
    assert {"loss_rpn_cls", "loss_cls", "loss_mask"} <= set(losses)


def test_mosaic_mixup_atss_config_trains_a_step(demo):
    cfg = load_config(str(MOSAIC))
    assert cfg.data.train.type == "MultiImageMixDataset"
    assert [h.type for h in cfg.custom_hooks] == ["PipelineSwitchHook", "EMAHook"]
    point_at(cfg.data.train.dataset, demo)
    dataset = build_dataset(cfg.data.train)
    samples = []
    for i in range(2):
        with seeded_random(i):
            samples.append(dataset[i])
    batch = collate(samples)
    assert batch["img"].shape == (2, 3, 640, 640)  # Mosaic, RandomAffine(border), Pad square
    (resize,) = build_batch_augments(cfg.data.batch_augments, seed=0)
    for _ in range(resize.interval):  # a new size is drawn after `interval` batches
        resize(dict(img=batch["img"].clone()))
    batch = resize(batch)
    size = batch["img"].shape[-1]
    assert batch["img"].shape == (2, 3, size, size) and 480 <= size <= 800 and size % 32 == 0
    losses = step(small_model(cfg), batch)
    assert {"loss_cls", "loss_bbox", "loss_centerness"} <= set(losses)


def test_mosaic_config_hooks_build_when_registered():
    """EMAHook and PipelineSwitchHook come from the hooks work (merged separately): once
    registered, the whole config passes the start-up check and its hooks build."""
    if not {"EMAHook", "PipelineSwitchHook"} <= set(HOOKS.names):
        pytest.skip("EMAHook / PipelineSwitchHook are not registered in this tree")
    cfg = load_config(str(MOSAIC))
    assert check_config(cfg, str(MOSAIC)) == []
    for hook in cfg.custom_hooks:
        hook = dict(hook)
        hook.pop("priority", None)
        HOOKS.build(hook)
