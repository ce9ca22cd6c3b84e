"""configs/swin/ and configs/convnext/: mmdetection's Swin and ConvNeXt Mask R-CNN settings on
TimmBackbone (Swin-T/S, ConvNeXt-T: mmdetection's configs; Swin-B, ConvNeXt-S/B: ours, under
its naming, with the backbone settings of the authors' detection configs). Each real config
builds (no weights: timm's are loaded by ``init_weights`` only; Swin-B and ConvNeXt-B about
1.3 s each) and passes the start-up check; the optimizer groups follow mmdetection's rules
(Swin: no weight decay on norms and relative position bias tables; ConvNeXt: mmdetection's
layer-wise LR decay, written out here from its layer-id rule); a Mask R-CNN on a tiny Swin
and on a tiny ConvNeXt (the configs with narrow widths) trains a step and detects on a
64x96 image, whose feature maps are not multiples of Swin's 7x7 window."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from mmdet_like.apis.config_check import check_config
from mmdet_like.engine import build_optimizer, load_config, param_group_settings
from mmdet_like.models import build_backbone, build_detector
from mmdet_like.structures import BitmapMasks, DetDataSample, samples_from_lists
from tests.models.test_configs import fewer_proposals, meta

pytest.importorskip("timm")

ROOT = Path(__file__).resolve().parents[2]
SWIN_T = ROOT / "configs/swin/mask_rcnn_swin-t-p4-w7_fpn_1x_coco.py"
CONVNEXT_T = ROOT / "configs/convnext/mask_rcnn_convnext-t_p4_w7_fpn_fp16_ms-crop_3x_coco.py"
CONVNEXT_S = ROOT / "configs/convnext/mask_rcnn_convnext-s_p4_w7_fpn_fp16_ms-crop_3x_coco.py"
# config: (timm model, out_norm eps, epochs, LR steps, fp16, multi-scale training)
CONFIGS = {
    "swin/mask_rcnn_swin-t-p4-w7_fpn_1x_coco.py":
        ("swin_tiny_patch4_window7_224.ms_in1k", 1e-5, 12, [8, 11], False, False),
    "swin/mask_rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py":
        ("swin_tiny_patch4_window7_224.ms_in1k", 1e-5, 36, [27, 33], False, True),
    "swin/mask_rcnn_swin-t-p4-w7_fpn_fp16_ms-crop-3x_coco.py":
        ("swin_tiny_patch4_window7_224.ms_in1k", 1e-5, 36, [27, 33], True, True),
    "swin/mask_rcnn_swin-s-p4-w7_fpn_fp16_ms-crop-3x_coco.py":
        ("swin_small_patch4_window7_224.ms_in1k", 1e-5, 36, [27, 33], True, True),
    "swin/mask_rcnn_swin-b-p4-w7_fpn_fp16_ms-crop-3x_coco.py":
        ("swin_base_patch4_window7_224.ms_in1k", 1e-5, 36, [27, 33], True, True),
    "convnext/mask_rcnn_convnext-t_p4_w7_fpn_fp16_ms-crop_3x_coco.py":
        ("convnext_tiny.fb_in1k", 1e-6, 36, [27, 33], True, True),
    "convnext/mask_rcnn_convnext-s_p4_w7_fpn_fp16_ms-crop_3x_coco.py":
        ("convnext_small.fb_in1k", 1e-6, 36, [27, 33], True, True),
    "convnext/mask_rcnn_convnext-b_p4_w7_fpn_fp16_ms-crop_3x_coco.py":
        ("convnext_base.fb_in1k", 1e-6, 36, [27, 33], True, True),
}  # fmt: skip
# backbone: (depths, level channels, drop path rate, layer-wise decay's num_layers). Swin-T/S
# and ConvNeXt-T: mmdetection's; Swin-B: the Swin authors' detection setting; ConvNeXt-S:
# mmdetection's Cascade ConvNeXt-S backbone; ConvNeXt-B: the ConvNeXt authors' Cascade one.
NARROW, WIDE = [96, 192, 384, 768], [128, 256, 512, 1024]
BACKBONES = {
    "swin-t": ([2, 2, 6, 2], NARROW, 0.2, None),
    "swin-s": ([2, 2, 18, 2], NARROW, 0.2, None),
    "swin-b": ([2, 2, 18, 2], WIDE, 0.3, None),
    "convnext-t": ([3, 3, 9, 3], NARROW, 0.4, 6),
    "convnext-s": ([3, 3, 27, 3], NARROW, 0.6, 12),
    "convnext-b": ([3, 3, 27, 3], WIDE, 0.7, 12),
}
SHORT_SIDES = list(range(480, 801, 32))  # mmdetection's multi-scale policy (a)
TINY = {  # narrow copies of the backbones (the configs' timm kwargs kept)
    "swin": dict(embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 1, 2, 2), drop_path_rate=0.0),
    "convnext": dict(dims=(16, 32, 64, 128), depths=(2, 2, 2, 2), drop_path_rate=0.0),
}
WIDTH, NUM_CLASSES = 16, 3


def test_every_config_is_listed():
    found = {str(p.relative_to(ROOT / "configs")) for d in ("swin", "convnext")
             for p in (ROOT / "configs" / d).glob("*.py")}  # fmt: skip
    assert found == set(CONFIGS)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_config_builds_with_mmdetections_settings(name):
    model_name, eps, epochs, steps, fp16, multi_scale = CONFIGS[name]
    path = ROOT / "configs" / name
    cfg = load_config(str(path))
    assert check_config(cfg, str(path)) == []
    backbone = cfg.model.backbone
    assert backbone.type == "TimmBackbone" and backbone.model_name == model_name
    assert backbone.pretrained is True and cfg.model.pretrained is None
    assert backbone.out_norm == dict(type="LN", eps=eps)
    assert "in_channels" not in cfg.model.neck  # taken from the backbone
    assert (cfg.total_epochs, cfg.lr_config.step) == (epochs, steps)
    assert (cfg.lr_config.warmup_iters, cfg.lr_config.warmup_ratio) == (1000, 0.001)
    assert "grad_clip" not in cfg.optimizer_config
    optimizer = cfg.optimizer
    assert (optimizer.type, optimizer.lr, optimizer.weight_decay) == ("AdamW", 1e-4, 0.05)
    assert ("fp16" in cfg) == fp16
    if fp16:
        assert cfg.fp16 == dict(dtype="float16", loss_scale="dynamic")
    resize = next(s for s in cfg.data.train.pipeline if s["type"] == "Resize")
    if multi_scale:
        assert resize["multiscale_mode"] == "value"
        assert [tuple(s) for s in resize["img_scale"]] == [(1333, s) for s in SHORT_SIDES]
    else:
        assert tuple(resize["img_scale"]) == (1333, 800)

    kind = re.search(r"(swin|convnext)-[tsb]", name)[0]
    depths, channels, drop_path, num_layers = BACKBONES[kind]
    assert backbone.model_kwargs.drop_path_rate == drop_path
    assert optimizer.get("paramwise_cfg", {}).get("num_layers") == num_layers

    model = build_detector(cfg.model, cfg.train_cfg, cfg.test_cfg)
    assert model.backbone.out_strides == [4, 8, 16, 32]
    assert model.neck.in_channels == model.backbone.out_channels == channels
    net = model.backbone.model.model
    assert [len(stage.blocks) for stage in (net.layers if "swin" in name else net.stages)] == depths
    if "swin" in name:  # heads of 32 channels; every second block shifts, in every stage
        assert [stage.blocks[0].attn.num_heads for stage in net.layers] == [
            c // 32 for c in channels
        ]
        for stage in net.layers:
            shifts = [block.shift_size for block in stage.blocks]
            assert shifts == [(0, 0), (3, 3)] * (len(shifts) // 2)


def _settings(path):
    cfg = load_config(str(path))
    model = build_detector(cfg.model, cfg.train_cfg, cfg.test_cfg)
    optimizer = build_optimizer(model, cfg.optimizer)
    return model, param_group_settings(model, optimizer)


def test_swin_optimizer_groups_no_decay_on_norms_and_bias_tables():
    model, settings = _settings(SWIN_T)
    assert set(settings) == {n for n, p in model.named_parameters() if p.requires_grad}
    no_decay = {n for n in settings if "norm" in n or "relative_position_bias_table" in n}
    assert len([n for n in no_decay if n.endswith("relative_position_bias_table")]) == 12
    for name, group in settings.items():
        assert group["lr"] == 1e-4, name
        assert group["weight_decay"] == (0.0 if name in no_decay else 0.05), name
    prefix = "backbone.model.model."
    for name in (prefix + "patch_embed.norm.weight", prefix + "layers.1.downsample.norm.bias",
                 prefix + "layers.2.blocks.5.norm2.weight", "backbone.out_norms.3.weight",
                 prefix + "layers.3.blocks.1.attn.relative_position_bias_table"):  # fmt: skip
        assert settings[name]["weight_decay"] == 0.0, name
    for name in (prefix + "layers.0.blocks.0.attn.qkv.bias", prefix + "patch_embed.proj.weight",
                 "neck.lateral_convs.0.weight", "roi_head.bbox_head.fc_cls.bias"):  # fmt: skip
        assert settings[name]["weight_decay"] == 0.05, name


def mmdet_convnext_layer_id(name, num_layers=6):
    """mmdetection's layer id (``get_layer_id_for_convnext``) of a parameter, in timm's
    names: stem 0; stage 1 1, stage 2 2 (their downsample layers too), stage 3's
    downsample 3 and its block b 3 + b // 3, stage 4 ``num_layers``; the rest (the output
    norms, neck and heads) ``num_layers + 1``."""
    m = re.match(
        r"^backbone\.model\.model\.(stem|stages\.(\d)\.(downsample|blocks\.(\d+)))\.", name
    )
    if not m:
        return num_layers + 1
    if m[1] == "stem":
        return 0
    stage = int(m[2])
    if stage == 2:
        return 3 if m[3] == "downsample" else 3 + int(m[4]) // 3
    return {0: 1, 1: 2, 3: num_layers}[stage]


@pytest.mark.parametrize(
    "path, num_layers, last_block", [(CONVNEXT_T, 6, 8), (CONVNEXT_S, 12, 26)], ids=["t", "s"]
)
def test_convnext_optimizer_groups_decay_the_lr_by_depth(path, num_layers, last_block):
    """ConvNeXt-T (18 blocks, 6 layers, mmdetection's) and -S (36 blocks, 12 layers; -B is
    -S's optimizer on a wider model)."""
    model, settings = _settings(path)
    assert set(settings) == {n for n, p in model.named_parameters() if p.requires_grad}
    params = dict(model.named_parameters())
    for name, group in settings.items():
        layer_id = mmdet_convnext_layer_id(name, num_layers)
        # mmdetection: lr * decay_rate ** (num_layers + 2 - layer_id - 1)
        expected = 1e-4 * 0.95 ** (num_layers + 1 - layer_id)
        assert group["lr"] == pytest.approx(expected, rel=1e-12), name
        no_decay = params[name].ndim == 1 or name.endswith(".bias")
        assert group["weight_decay"] == (0.0 if no_decay else 0.05), name
    lr = {n: settings[n]["lr"] / 1e-4 for n in settings}
    prefix = "backbone.model.model."
    assert lr[prefix + "stem.0.weight"] == pytest.approx(0.95 ** (num_layers + 1))
    # stage 3's last block: id num_layers - 1
    assert lr[prefix + f"stages.2.blocks.{last_block}.conv_dw.weight"] == pytest.approx(0.95**2)
    assert lr[prefix + "stages.3.downsample.1.weight"] == pytest.approx(0.95)
    assert lr["backbone.out_norms.0.weight"] == lr["roi_head.mask_head.conv_logits.weight"] == 1


def tiny_config(path):
    """The config with a narrow backbone of the same kind and narrow heads."""
    cfg = load_config(str(path))
    model = cfg.model.to_dict()
    kind = "swin" if "swin" in model["backbone"]["model_name"] else "convnext"
    model["backbone"].update(pretrained=False)
    model["backbone"]["model_kwargs"].update(TINY[kind])
    model["neck"]["out_channels"] = WIDTH
    model["rpn_head"].update(in_channels=WIDTH, feat_channels=WIDTH)
    roi = model["roi_head"]
    roi["bbox_roi_extractor"]["out_channels"] = roi["mask_roi_extractor"]["out_channels"] = WIDTH
    roi["bbox_head"].update(in_channels=WIDTH, fc_out_channels=32, num_classes=NUM_CLASSES)
    roi["mask_head"].update(in_channels=WIDTH, conv_out_channels=WIDTH, num_classes=NUM_CLASSES)
    train_cfg, test_cfg = cfg.train_cfg.to_dict(), cfg.test_cfg.to_dict()
    fewer_proposals(train_cfg, test_cfg)
    return cfg, model, train_cfg, test_cfg


@pytest.mark.parametrize("path", [SWIN_T, CONVNEXT_T], ids=["swin", "convnext"])
def test_tiny_model_trains_a_step_and_detects_on_64x96(path):
    cfg, model_cfg, train_cfg, test_cfg = tiny_config(path)
    torch.manual_seed(0)
    model = build_detector(model_cfg, train_cfg, test_cfg)
    model.init_weights()
    optimizer = build_optimizer(model, cfg.optimizer)
    h, w = 64, 96
    boxes = torch.tensor([[10.0, 10, 50, 40], [60, 5, 90, 60]])
    masks = np.zeros((2, h, w), np.uint8)
    for i, (x0, y0, x1, y1) in enumerate(boxes.int().tolist()):
        masks[i, y0:y1, x0:x1] = 1
    samples = samples_from_lists([meta(h, w)], gt_bboxes=[boxes], gt_labels=[torch.tensor([0, 2])],
                                 gt_masks=[BitmapMasks(masks, h, w)])  # fmt: skip
    img = torch.randn(1, 3, h, w)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.train()
    losses = model(img=img, data_samples=samples)
    assert {"loss_rpn_cls", "loss_rpn_bbox", "loss_cls", "loss_bbox", "loss_mask"} <= set(losses)
    total = sum(v for k, v in losses.items() if "loss" in k)
    assert torch.isfinite(total)
    optimizer.zero_grad()
    total.backward()
    optimizer.step()
    backbone = [n for n in before if n.startswith("backbone.")]
    moved = [n for n in backbone if not torch.equal(before[n], dict(model.named_parameters())[n])]
    assert len(moved) == len(backbone)  # the step reached every backbone weight

    model.eval()
    with torch.no_grad():
        (out,) = model(img=[[img[0]]], data_samples=[[DetDataSample(meta(h, w))]],
                       return_loss=False, rescale=True)  # fmt: skip
    pred = out.pred_instances
    assert pred.keys() == ["bboxes", "scores", "labels", "masks"]
    assert pred.masks.shape[1:] == (h, w) and pred.bboxes.shape[1] == 4
    assert ((pred.labels >= 0) & (pred.labels < NUM_CLASSES)).all()


def test_swin_takes_sizes_that_are_not_multiples_of_the_window():
    """The configs' Swin (strict_img_size=False, always_partition=True) on 64x96 and 96x64:
    levels of 16x24 ... 2x3, none a multiple of 7; timm's default (a fixed 224 input) fails."""
    kwargs = dict(load_config(str(SWIN_T)).model.backbone.model_kwargs, **TINY["swin"])
    swin = build_backbone(dict(type="TimmBackbone", model_name="swin_tiny_patch4_window7_224",
                               out_indices=(0, 1, 2, 3), model_kwargs=kwargs)).eval()  # fmt: skip
    for h, w in ((64, 96), (96, 64)):
        with torch.no_grad():
            outs = swin(torch.randn(2, 3, h, w))
        assert [tuple(o.shape) for o in outs] == [
            (2, c, h // s, w // s) for c, s in zip((16, 32, 64, 128), (4, 8, 16, 32))
        ]
        assert all(torch.isfinite(o).all() for o in outs)
    strict = build_backbone(dict(type="TimmBackbone", model_name="swin_tiny_patch4_window7_224",
                                 out_indices=(0, 1, 2, 3),
                                 model_kwargs=TINY["swin"])).eval()  # fmt: skip
    with pytest.raises(AssertionError, match="doesn't match model"):
        strict(torch.randn(1, 3, 64, 96))
