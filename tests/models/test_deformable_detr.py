"""configs/deformable_detr: each config builds (a narrow ResNet-18, width 32, 2 + 2 layers,
8 queries, 3 classes), trains one step on a padded batch of two images (one without gts)
and infers on a tiny image."""

from pathlib import Path

import pytest
import torch

from mmdet_like.engine import load_config
from mmdet_like.engine.optimizer import build_optimizer
from mmdet_like.models import build_detector
from mmdet_like.structures import DetDataSample, InstanceData

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs" / "deformable_detr").glob("*.py"))
D = 32


def _shrunk(model_cfg):
    model_cfg["pretrained"] = None
    model_cfg["backbone"].update(depth=18, base_channels=8)
    model_cfg["neck"].update(in_channels=[16, 32, 64], out_channels=D)
    for part in ("encoder", "decoder"):
        model_cfg[part]["num_layers"] = 2
        for key, sub in model_cfg[part]["layer_cfg"].items():
            sub.update(embed_dims=D)
            sub.update(feedforward_channels=32) if key == "ffn_cfg" else sub.update(num_heads=2)
    model_cfg["positional_encoding"]["num_feats"] = D // 2
    model_cfg["num_queries"] = 8
    model_cfg["bbox_head"].update(num_classes=3, embed_dims=D)
    return model_cfg


def _sample(h, w, n):
    sample = DetDataSample(metainfo=dict(img_shape=(h, w, 3), ori_shape=(h, w, 3),
                                         scale_factor=1.0, pad_shape=(h, w, 3)))  # fmt: skip
    boxes = torch.tensor([[4.0, 5, 40, 50], [10, 20, 30, 60]])[:n]
    sample.gt_instances = InstanceData(bboxes=boxes, labels=torch.tensor([0, 2])[:n])
    return sample


def test_three_configs_are_there():
    assert [p.name for p in CONFIGS] == [
        "deformable_detr_r50_16x2_50e_coco.py",
        "deformable_detr_refine_r50_16x2_50e_coco.py",
        "deformable_detr_twostage_refine_r50_16x2_50e_coco.py",
    ]


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_deformable_detr_config_builds_trains_and_infers(path):
    cfg = load_config(str(path))
    model_cfg = cfg.model.to_dict()
    assert cfg.total_epochs == 50 and cfg.lr_config["step"] == [40]
    refine, two_stage = "refine" in path.name, "twostage" in path.name
    assert model_cfg["with_box_refine"] == refine and model_cfg["as_two_stage"] == two_stage
    model = build_detector(_shrunk(model_cfg), cfg.train_cfg.to_dict(), cfg.test_cfg.to_dict())
    model.init_weights()
    head = model.bbox_head
    assert (head.cls_branches[0] is head.cls_branches[1]) == (not refine)
    assert len(head.reg_branches) == 2 + two_stage
    optimizer = build_optimizer(model, cfg.optimizer)
    names = {id(p): n for n, p in model.named_parameters()}
    slow_keys = ("backbone.", "sampling_offsets", "reference_points")
    trained = [(names[id(p)], g["lr"]) for g in optimizer.param_groups for p in g["params"]]
    assert any(n.startswith("backbone.layer2") for n, _ in trained)
    assert sum("sampling_offsets" in n for n, _ in trained) == 8  # 2 + 2 layers, w and b
    for name, lr in trained:
        slow = any(key in name for key in slow_keys)
        assert lr == pytest.approx(2e-5 if slow else 2e-4), name

    torch.manual_seed(0)
    samples = [_sample(64, 96, 2), _sample(80, 64, 0)]
    losses = model(img=[torch.randn(3, 64, 96), torch.randn(3, 80, 64)], data_samples=samples)
    names = {"loss_cls", "loss_bbox", "loss_iou", "d0.loss_cls", "d0.loss_bbox", "d0.loss_iou"}
    if two_stage:
        names |= {"enc_loss_cls", "enc_loss_bbox", "enc_loss_iou"}
    assert set(losses) == names and all(torch.isfinite(v) for v in losses.values())
    optimizer.zero_grad()
    sum(losses.values()).backward()
    before = model.bbox_head.cls_branches[0].bias.detach().clone()
    optimizer.step()  # (at Deformable DETR's initialisation the level embeddings get no
    # gradient: the zero offset and weight projections ignore the queries' positions)
    assert (before - model.bbox_head.cls_branches[0].bias).abs().max() > 1e-5

    model.eval()
    result = model.predict_instances(torch.randn(1, 3, 96, 128), [_sample(96, 128, 0)])[0]
    assert result.bboxes.shape == (24, 4) and result.labels.max() < 3
    assert (result.scores[:-1] >= result.scores[1:]).all()
