"""C4 models (ResNet res2-res4 backbone, RPN on res4, res5 as the RoI head's shared head) and
the Res5 RoI head on FPN features: the ``ResLayer`` shared head (shapes, styles, module
names), res5 weights loaded from the backbone's pretrained file (every weight checked), the
C4 configs' settings, a training step and an inference of tiny versions of every C4 config,
and a tiny C4 Mask R-CNN that learns a synthetic dataset."""

import warnings

import numpy as np
import pytest
import torch

from mmdet_like.engine import load_config
from mmdet_like.models import build_detector
from mmdet_like.models.backbones import ResNet
from mmdet_like.models.roi_heads import ResLayer
from mmdet_like.models.task_modules import AnchorGenerator
from mmdet_like.models.utils import PretrainedWeightsError
from mmdet_like.registry import SHARED_HEADS, BuildError, build_from_cfg
from mmdet_like.structures import DetDataSample, samples_from_lists
from tests.models.test_configs import ROOT
from tests.models.test_detectors import meta, synthetic_dataset, train_on_synthetic_dataset

BASE = 8  # base_channels of the tiny models: res4 has 8 * 4 * 4 = 128 channels, res5 256
RES4, RES5 = BASE * 16, BASE * 32
NUM_CLASSES = 3
MODELS = ROOT / "configs" / "_base_" / "models"


# ------------------------------------------------------------------------------ ResLayer
@pytest.mark.parametrize("style", ["pytorch", "caffe"])
@pytest.mark.parametrize(("stride", "dilation"), [(2, 1), (1, 2)])
def test_res_layer_shapes_strides_and_dilations(style, stride, dilation):
    head = build_from_cfg(
        dict(type="ResLayer", depth=50, stride=stride, dilation=dilation, style=style),
        SHARED_HEADS,
    )
    assert (head.in_channels, head.out_channels) == (1024, 2048)
    assert len(head.layer4) == 3
    first = head.layer4[0]
    # caffe: the stride on the first 1x1 conv; pytorch: on the 3x3 conv
    assert first.conv1.stride == ((stride,) * 2 if style == "caffe" else (1, 1))
    assert first.conv2.stride == ((1, 1) if style == "caffe" else (stride,) * 2)
    assert first.downsample[0].stride == (stride,) * 2
    assert all(block.conv2.dilation == (dilation,) * 2 for block in head.layer4)
    out = head(torch.randn(2, 1024, 14, 14))
    side = 14 // stride
    assert out.shape == (2, 2048, side, side)


def test_res_layer_holds_the_backbones_layer4_names_and_shapes():
    for depth, kwargs in [(50, {}), (101, {}), (50, dict(base_channels=BASE, style="caffe")),
                          (18, {})]:  # fmt: skip
        backbone = ResNet(depth, **kwargs).state_dict()
        res5 = {k: v.shape for k, v in backbone.items() if k.startswith("layer4.")}
        head = ResLayer(depth, **kwargs).state_dict()
        assert {k: v.shape for k, v in head.items()} == res5
    assert len(ResLayer(101).layer4) == 3  # res5 of ResNet-101 is 3 bottlenecks too


def test_res_layer_on_fpn_features_and_norm_eval():
    head = ResLayer(50, in_channels=256, base_channels=BASE)
    assert head.layer4[0].conv1.in_channels == 256
    assert head.layer4[0].downsample[0].in_channels == 256
    assert head(torch.randn(3, 256, 14, 14)).shape == (3, RES5, 7, 7)
    head.train()
    assert not any(m.training for m in head.modules() if isinstance(m, torch.nn.BatchNorm2d))
    head = ResLayer(50, base_channels=BASE, norm_eval=False).train()
    assert all(m.training for m in head.modules() if isinstance(m, torch.nn.BatchNorm2d))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(depth=42), "ResLayer: depth must be one of"),
        (dict(depth=50, stage=4), "ResLayer: stage must be in 0..3"),
        (dict(depth=50, style="tf"), "ResLayer: style must be one of"),
        (dict(depth=50, stride=0), "ResLayer: stride and dilation must be positive"),
        (dict(depth=50, in_channels=0), "ResLayer: in_channels must be positive"),
    ],
)
def test_bad_res_layer_configs_are_refused(kwargs, message):
    with pytest.raises(BuildError, match=message):
        build_from_cfg(dict(type="ResLayer", **kwargs), SHARED_HEADS)


# ------------------------------------------------------------------------ tiny C4 models
def resnet_checkpoint(path, depth=50, base_channels=BASE, seed=0):
    """A ResNet state dict with every weight and norm statistic random (no init value can
    pass for a loaded one), saved at ``path``; returns it."""
    torch.manual_seed(seed)
    state = ResNet(depth, base_channels=base_channels).state_dict()
    for key, value in state.items():
        if value.is_floating_point():
            state[key] = torch.rand_like(value) + 0.5
        else:  # num_batches_tracked
            state[key] = torch.randint_like(value, 1, 1000)
    torch.save(state, path)
    return state


def tiny_cfg(name, num_classes=NUM_CLASSES, base=BASE):
    """(model, train_cfg, test_cfg) of ``configs/_base_/models/<name>.py`` with
    ``base_channels=base`` (res4: ``16 * base`` channels, res5: ``32 * base``), an FPN of
    width 16 (Res5 on FPN), ``num_classes`` classes and the small-data RPN settings."""
    cfg = load_config(str(MODELS / f"{name}.py"))
    model, train_cfg = cfg.model.to_dict(), cfg.train_cfg.to_dict()
    test_cfg = cfg.test_cfg.to_dict()
    model["pretrained"] = None
    model["backbone"]["base_channels"] = base
    feat = base * 16
    if model.get("neck"):
        feat = 16
        model["neck"].update(in_channels=[base * 4 * 2**i for i in range(4)], out_channels=feat)
    model["rpn_head"].update(in_channels=feat, feat_channels=32)
    train_cfg["rpn"].update(allowed_border=-1)
    train_cfg["rpn"]["assigner"].update(min_pos_iou=0.0)
    roi = model.get("roi_head")
    if roi:
        roi["bbox_roi_extractor"]["out_channels"] = feat
        roi["shared_head"]["base_channels"] = base
        if model.get("neck"):
            roi["shared_head"]["in_channels"] = feat
        res5 = base * 32
        roi["bbox_head"].update(in_channels=res5, num_classes=num_classes)
        if roi.get("mask_head"):
            roi["mask_head"].update(in_channels=res5, conv_out_channels=16, num_classes=num_classes)
        train_cfg["rcnn"]["sampler"]["num"] = 64
    return model, train_cfg, test_cfg


def tiny(name, seed=0, **model_updates):
    model, train_cfg, test_cfg = tiny_cfg(name)
    model.update(model_updates)
    torch.manual_seed(seed)
    return build_detector(model, train_cfg, test_cfg)


def batch(num_images=2):
    images, boxes, labels, masks = synthetic_dataset(num_images)
    metas = [meta(64, 64) for _ in range(num_images)]
    return images, samples_from_lists(metas, gt_bboxes=boxes, gt_labels=labels, gt_masks=masks)


def test_c4_configs_settings():
    faster = load_config(str(MODELS / "faster_rcnn_r50_caffe_c4.py"))
    backbone = faster.model.backbone
    assert (backbone.num_stages, tuple(backbone.strides), tuple(backbone.out_indices)) == (
        3, (1, 2, 2), (2,))  # fmt: skip
    assert faster.model.neck is None and backbone.style == "caffe"
    shared = faster.model.roi_head.shared_head
    assert (shared.type, shared.depth, shared.stage, shared.style) == ("ResLayer", 50, 3, "caffe")
    # 32..512 px anchors at three ratios on the one stride-16 level
    generator = AnchorGenerator(**{k: v for k, v in faster.model.rpn_head.anchor_generator.items()
                                   if k != "type"})  # fmt: skip
    sides = generator.base_anchors[0][:, 2:] - generator.base_anchors[0][:, :2]
    areas = sides.prod(1).sqrt().round().unique().tolist()
    assert generator.strides == [(16, 16)]
    assert areas == [32.0, 64.0, 128.0, 256.0, 512.0] and len(sides) == 15
    assert (faster.train_cfg.rpn_proposal.nms_pre, faster.train_cfg.rpn_proposal.max_num) == (
        12000, 2000)  # fmt: skip
    assert (faster.test_cfg.rpn.nms_pre, faster.test_cfg.rpn.max_num) == (6000, 1000)
    mask = load_config(str(MODELS / "mask_rcnn_r50_caffe_c4.py"))
    roi = mask.model.roi_head
    assert roi.share_roi_extractor and roi.mask_roi_extractor is None
    assert (roi.mask_head.num_convs, roi.mask_head.roi_feat_size) == (0, 7)
    assert mask.train_cfg.rcnn.mask_size == 14
    for name in ("rpn", "faster_rcnn", "mask_rcnn"):  # the 1x configs: caffe normalisation
        cfg = load_config(str(ROOT / "configs" / f"{name}_r50_caffe_c4_1x.py"))
        assert cfg.model.pretrained == "checkpoints/resnet50_caffe.pth"
        normalize = [s for s in cfg.data.train.pipeline if s["type"] == "Normalize"][0]
        assert normalize["to_rgb"] is False and list(normalize["std"]) == [1.0, 1.0, 1.0]


def test_pretrained_file_fills_backbone_and_every_res5_weight_of_the_shared_head(tmp_path):
    path = tmp_path / "resnet50_tiny.pth"
    state = resnet_checkpoint(path)
    model = tiny("mask_rcnn_r50_caffe_c4", pretrained=str(path))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing missing, nothing unexpected
        model.init_weights()
    shared = model.roi_head.shared_head.state_dict()
    res5 = {k: v for k, v in state.items() if k.startswith("layer4.")}
    assert set(shared) == set(res5)
    for key, value in res5.items():
        assert torch.equal(shared[key], value), key
    backbone = model.backbone.state_dict()
    assert not any(k.startswith("layer4.") for k in backbone)
    for key, value in backbone.items():
        assert torch.equal(value, state[key]), key
    # the shared head's own pretrained (a torchvision:// name or a file) wins
    other = tmp_path / "other.pth"
    other_state = resnet_checkpoint(other, seed=1)
    model = tiny("faster_rcnn_r50_caffe_c4", pretrained=str(path))
    model.roi_head.shared_head.pretrained = str(other)
    model.init_weights()
    shared = model.roi_head.shared_head.state_dict()
    assert all(torch.equal(shared[k], other_state[k]) for k in shared)


def test_torchvision_name_fills_the_shared_head(tmp_path, monkeypatch):
    """``torchvision://resnet18`` (from the hub cache, no download) fills a depth-18 C4's
    backbone and res5."""
    import torchvision

    from mmdet_like.models.utils import torchvision_cache_path

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    reference = torchvision.models.resnet18(weights=None)
    for m in reference.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.weight.data.uniform_(0.5, 1.5)
    path = torchvision_cache_path("resnet18")
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(reference.state_dict(), path)
    model_cfg, train_cfg, test_cfg = tiny_cfg("faster_rcnn_r50_caffe_c4")
    model_cfg["pretrained"] = "torchvision://resnet18"
    model_cfg["backbone"].update(depth=18, base_channels=64)
    model_cfg["roi_head"]["shared_head"].update(depth=18, base_channels=64)
    model_cfg["rpn_head"]["in_channels"] = 256
    model_cfg["roi_head"]["bbox_roi_extractor"]["out_channels"] = 256
    model_cfg["roi_head"]["bbox_head"]["in_channels"] = 512
    model = build_detector(model_cfg, train_cfg, test_cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.init_weights()
    theirs = reference.state_dict()
    shared = model.roi_head.shared_head.state_dict()
    assert set(shared) == {k for k in theirs if k.startswith("layer4.")}
    assert all(torch.equal(v, theirs[k]) for k, v in shared.items())


def test_res5_on_fpn_loads_all_but_the_first_blocks_input_convs(tmp_path):
    path = tmp_path / "resnet50_tiny.pth"
    state = resnet_checkpoint(path)
    model = tiny("mask_rcnn_r50_fpn_res5roi", pretrained=str(path))
    with pytest.warns(UserWarning, match="layer4.0.conv1.weight") as record:
        model.init_weights()
    assert [str(w.message).split(":")[0] for w in record] == ["ResLayer"]
    head = model.roi_head.shared_head
    new = {"layer4.0.conv1.weight", "layer4.0.downsample.0.weight"}
    for key, value in head.state_dict().items():
        if key in new:  # (out, 16, 1, 1): the FPN width, not res4's 128
            assert value.shape[1] == 16 and state[key].shape[1] == RES4
        else:
            assert torch.equal(value, state[key]), key
    with pytest.warns(UserWarning):
        missing, unexpected = head.load_pretrained(str(path))
    assert set(missing) == new and unexpected == []


def test_a_file_without_res5_weights_is_refused(tmp_path):
    path = tmp_path / "trunk.pth"
    state = resnet_checkpoint(path)
    torch.save({k: v for k, v in state.items() if not k.startswith("layer4.")}, path)
    model = tiny("faster_rcnn_r50_caffe_c4", pretrained=str(path))
    with pytest.raises(PretrainedWeightsError, match=r"no layer4\.\* weights"):
        model.init_weights()


C4_AND_RES5_MODELS = ("rpn_r50_caffe_c4", "faster_rcnn_r50_caffe_c4", "mask_rcnn_r50_caffe_c4",
                      "mask_rcnn_r50_fpn_res5roi")  # fmt: skip


@pytest.mark.parametrize("name", C4_AND_RES5_MODELS)
def test_tiny_model_trains_a_step_and_infers(name, tmp_path):
    path = tmp_path / "resnet50_tiny.pth"
    resnet_checkpoint(path)
    model = tiny(name, pretrained=str(path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Res5 on FPN: the first block's input convs are new
        model.init_weights()
    images, samples = batch()
    losses = model(img=images, data_samples=samples)
    total = sum(v for k, v in losses.items() if "loss" in k)
    assert torch.isfinite(total)
    total.backward()
    with_mask = "mask" in name
    assert ("loss_mask" in losses) == with_mask
    if name != "rpn_r50_caffe_c4":
        assert {"loss_rpn_cls", "loss_rpn_bbox", "loss_cls", "loss_bbox"} <= set(losses)
        head = model.roi_head.shared_head
        # every res5 conv learns (its norms are frozen in the caffe configs)
        for param_name, param in head.named_parameters():
            if param.requires_grad:
                assert param.grad is not None and param.grad.abs().sum() > 0, param_name
        assert any(p.requires_grad for p in head.parameters())

    model.eval()
    calls = []
    if name != "rpn_r50_caffe_c4":  # boxes, then masks on the detections, run res5
        model.roi_head.shared_head.register_forward_hook(lambda *args: calls.append(args[1][0]))
    test_samples = [DetDataSample(s.metainfo) for s in samples]
    outputs = model(img=images, data_samples=test_samples, return_loss=False, rescale=True)
    for output in outputs:
        pred = output.pred_instances
        assert pred.bboxes.shape[1] == 4
        if with_mask:
            assert pred.masks.dtype == torch.bool and pred.masks.shape[1:] == (64, 64)
    if with_mask:
        assert len(calls) == 2 and calls[1].size(0) == sum(len(o.pred_instances) for o in outputs)
        mask_pred = model.roi_head.mask_head(torch.randn(2, RES5, 7, 7))
        assert mask_pred.shape == (2, NUM_CLASSES, 14, 14)


def test_tiny_c4_mask_rcnn_learns_a_synthetic_dataset():
    """A tiny C4 Mask R-CNN trained from scratch (trainable norms, as the demo's) drives its
    total loss down within 100 iterations."""
    model_cfg, train_cfg, test_cfg = tiny_cfg("mask_rcnn_r50_caffe_c4", base=4)
    train_cfg["rcnn"]["sampler"]["num"] = 32  # res5 on the RoIs: most of an iteration's time
    trainable = dict(type="BN", requires_grad=True)
    model_cfg["backbone"].update(norm_cfg=trainable, norm_eval=False, frozen_stages=-1)
    model_cfg["roi_head"]["shared_head"].update(norm_cfg=trainable, norm_eval=False)
    torch.manual_seed(0)
    model = build_detector(model_cfg, train_cfg, test_cfg)
    model.init_weights()
    # measured: the total falls to 0.22 of its start in 100 iterations (0.13 in 200)
    history = train_on_synthetic_dataset(model, 100)
    totals = [sum(v for k, v in h.items() if "loss" in k) for h in history]
    print(f"total loss {np.mean(totals[:10]):.3f} -> {np.mean(totals[-10:]):.3f}")
    assert np.mean(totals[-10:]) < 0.5 * np.mean(totals[:10])
    for key in ("loss_rpn_cls", "loss_cls", "loss_mask"):
        assert np.mean([h[key] for h in history[-10:]]) < np.mean([h[key] for h in history[:10]])
