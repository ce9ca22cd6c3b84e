"""The config switches that reproduce torchvision's detection models, part by part, and the
weight converter (both ways)."""

import numpy as np
import pytest
import torch

from mmdet_like.datasets.pipelines import Normalize, Resize
from mmdet_like.engine import load_config
from mmdet_like.models import build_detector
from mmdet_like.models.roi_heads import Shared2FCBBoxHead, paste_masks_torchvision
from mmdet_like.models.task_modules import AnchorGenerator, DeltaXYWHBBoxCoder
from mmdet_like.models.utils import (
    TorchvisionConversionError,
    convert_to_torchvision_detection,
    convert_torchvision_detection,
)
from tests.engine.cli_utils import ROOT, load_tool

detection = pytest.importorskip("torchvision.models.detection")
from torchvision.models.detection.anchor_utils import AnchorGenerator as TVAnchorGenerator  # noqa: E402
from torchvision.models.detection.image_list import ImageList  # noqa: E402
from torchvision.models.detection.roi_heads import paste_masks_in_image  # noqa: E402
from torchvision.models.detection.transform import GeneralizedRCNNTransform  # noqa: E402

SIZES = [32, 64, 128, 256, 512]


def test_rounded_anchors_match_torchvision():
    ours = AnchorGenerator(
        strides=[4, 8, 16, 32, 64], base_sizes=SIZES, scales=[1.0], ratios=[0.5, 1.0, 2.0],
        round_base_anchors=True,
    )  # fmt: skip
    theirs = TVAnchorGenerator(tuple((s,) for s in SIZES), ((0.5, 1.0, 2.0),) * 5)
    feats = [torch.zeros(1, 1, 128 // s, 192 // s) for s in (4, 8, 16, 32, 64)]
    expected = theirs(ImageList(torch.zeros(1, 3, 128, 192), [(128, 192)]), feats)[0]
    got = torch.cat(ours.grid_priors([f.shape[-2:] for f in feats]))
    assert torch.equal(got, expected)
    unrounded = AnchorGenerator(strides=[4], base_sizes=[32], scales=[1.0], ratios=[0.5])
    assert not torch.equal(unrounded.base_anchors[0], ours.base_anchors[0][:1])


def test_one_sided_clip_lets_boxes_shrink():
    anchors = torch.tensor([[0.0, 0.0, 100.0, 100.0]])
    deltas = torch.tensor([[0.0, 0.0, -8.0, 9.0]])
    symmetric = DeltaXYWHBBoxCoder().decode(anchors, deltas)
    one_sided = DeltaXYWHBBoxCoder(symmetric_clip=False).decode(anchors, deltas)
    limit = 100 * 1000 / 16
    torch.testing.assert_close(symmetric[0, 2] - symmetric[0, 0], torch.tensor(100 * 16 / 1000))
    torch.testing.assert_close(
        one_sided[0, 2] - one_sided[0, 0], 100 * torch.exp(torch.tensor(-8.0))
    )
    torch.testing.assert_close(one_sided[0, 3] - one_sided[0, 1], torch.tensor(limit))


def test_paste_masks_torchvision_matches_torchvision():
    torch.manual_seed(0)
    n, h, w = 40, 90, 130
    probs = torch.rand(n, 28, 28)
    xy = torch.rand(n, 2) * torch.tensor([w - 1.0, h - 1.0])
    size = torch.rand(n, 2) * (torch.tensor([float(w), float(h)]) - xy)
    boxes = torch.cat([xy, xy + size], 1)
    expected = paste_masks_in_image(probs[:, None], boxes, (h, w))[:, 0]
    torch.testing.assert_close(
        paste_masks_torchvision(probs, boxes, h, w), expected, rtol=0, atol=0
    )


def test_min_bbox_size_drops_thin_boxes_before_nms():
    head = Shared2FCBBoxHead(in_channels=1, roi_feat_size=1, fc_out_channels=4, num_classes=1)
    rois = torch.tensor([[0, 10.0, 10.0, 50.0, 50.0], [0, 20.0, 20.0, 20.005, 60.0]])
    cls_score = torch.tensor([[2.0, 0.0], [3.0, 0.0]])
    bbox_pred = torch.zeros(2, 4)
    cfg = dict(score_thr=0.0, nms=dict(iou_thr=0.5), max_per_img=100)
    args = (rois, cls_score, bbox_pred, (100, 100, 3), np.full(4, 0.5, np.float32), True)
    dets, _ = head.get_bboxes(*args, cfg)
    assert len(dets) == 2
    # the thin box is 0.005 wide in the input image (0.01 after rescaling): still dropped
    dets, _ = head.get_bboxes(*args, dict(cfg, min_bbox_size=1e-2))
    assert len(dets) == 1
    torch.testing.assert_close(dets[0, :4], torch.tensor([20.0, 20.0, 100.0, 100.0]))


@pytest.mark.parametrize("shape", [(300, 451), (512, 512), (97, 203)])
def test_normalize_then_torch_resize_match_torchvision_transform(shape):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    transform = GeneralizedRCNNTransform(320, 512, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    expected = transform([torch.from_numpy(rgb).permute(2, 0, 1).float() / 255])[0]
    results = dict(img=np.ascontiguousarray(rgb[..., ::-1]), img_fields=["img"], scale=(512, 320))
    mean, std = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]
    results = Normalize(mean, std, to_rgb=True, value_scale=255)(results)
    results = Resize(keep_ratio=True, backend="torch")(results)
    h, w = expected.image_sizes[0]
    assert results["img_shape"][:2] == (h, w)
    got = torch.from_numpy(results["img"]).permute(2, 0, 1)
    assert torch.equal(got, expected.tensors[0, :, :h, :w])
    default = Normalize(mean, std)(dict(img=np.ascontiguousarray(rgb[..., ::-1])))["img"]
    scaled = Normalize(mean, std, value_scale=255)(dict(img=np.ascontiguousarray(rgb[..., ::-1])))
    np.testing.assert_allclose(scaled["img"], default, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ["faster_rcnn", "mask_rcnn"])
def test_converted_weights_load_strictly_into_the_torchvision_configs(name):
    build = getattr(detection, f"{name.replace('_', '')}_resnet50_fpn")
    torch.manual_seed(0)
    tv_state = build(weights=None, weights_backbone=None).state_dict()
    state, meta = convert_torchvision_detection(tv_state)
    assert meta["arch"] == name and meta["num_classes"] == 80 and len(meta["CLASSES"]) == 80
    assert meta["CLASSES"][:3] == ["person", "bicycle", "car"] and "N/A" not in meta["CLASSES"]
    cfg = load_config(f"configs/torchvision/{name}_r50_fpn_torchvision.py")
    model = build_detector(cfg.model, test_cfg=cfg.test_cfg)
    model.load_state_dict(state, strict=True)

    # our class k is torchvision's k-th used COCO id: rows picked, background moved last
    cls_w = tv_state["roi_heads.box_predictor.cls_score.weight"]
    categories = detection.FasterRCNN_ResNet50_FPN_Weights.COCO_V1.meta["categories"]
    used = [i for i, c in enumerate(categories) if i > 0 and c != "N/A"]
    assert torch.equal(model.roi_head.bbox_head.fc_cls.weight[:80], cls_w[used])
    assert torch.equal(model.roi_head.bbox_head.fc_cls.weight[80], cls_w[0])
    reg_w = tv_state["roi_heads.box_predictor.bbox_pred.weight"]
    k = used[5]  # our class 5
    assert torch.equal(model.roi_head.bbox_head.fc_reg.weight[20:24], reg_w[4 * k : 4 * k + 4])
    if name == "mask_rcnn":
        logits = tv_state["roi_heads.mask_predictor.mask_fcn_logits.weight"]
        assert torch.equal(model.roi_head.mask_head.conv_logits.weight, logits[used])

    kept, meta = convert_torchvision_detection(tv_state, keep_unused=True)
    assert meta["num_classes"] == 90 and kept["roi_head.bbox_head.fc_cls.weight"].shape[0] == 91

    # and back: the 80 classes' rows from ours, the background's and the unused ids' from
    # the template (here the original, so the round trip is exact)
    _assert_same_state(convert_to_torchvision_detection(state, tv_state), tv_state)


def test_converter_refuses_other_state_dicts():
    with pytest.raises(TorchvisionConversionError, match="not a torchvision"):
        convert_torchvision_detection({"conv1.weight": torch.zeros(1)})
    with pytest.raises(TorchvisionConversionError, match="unexpected torchvision key"):
        convert_torchvision_detection(
            {"roi_heads.box_predictor.cls_score.weight": torch.zeros(3, 4), "x.y": torch.zeros(1)}
        )


def _assert_same_state(got, want):
    """The same keys in the same order, each tensor a bit-exact copy (the conversions only
    copy values)."""
    assert list(got) == list(want)
    for key, value in want.items():
        assert got[key].dtype == value.dtype and torch.equal(got[key], value), key


def _without_counters(state):
    return {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}


@pytest.mark.parametrize("name", ["mask_rcnn", "faster_rcnn"])
def test_conversion_round_trips_exactly_on_a_small_model(name):
    """ours -> torchvision -> ours and torchvision -> ours -> torchvision give back every
    value, on the small config's models (torchvision's built to its sizes by the accuracy
    benchmark) with trained batch norms (``num_batches_tracked`` on both sides)."""
    cfg = load_config(str(ROOT / f"configs/small_data/{name}_r18_fpn_small.py"))
    cfg.model.roi_head.bbox_head.num_classes = 3
    if name == "mask_rcnn":
        cfg.model.roi_head.mask_head.num_classes = 3
    torch.manual_seed(0)
    tv_state = load_tool("benchmark_accuracy").build_torchvision_model(cfg, 3).state_dict()
    model = build_detector(cfg.model, cfg.train_cfg, cfg.test_cfg)
    model.init_weights()
    ours = model.state_dict()

    converted, meta = convert_torchvision_detection(tv_state, keep_unused=True)
    assert meta == dict(arch=name, num_classes=3)
    _assert_same_state(convert_to_torchvision_detection(converted, tv_state, True), tv_state)

    as_torchvision = convert_to_torchvision_detection(ours, tv_state, keep_unused=True)
    back, _ = convert_torchvision_detection(as_torchvision, keep_unused=True)
    _assert_same_state(back, _without_counters(ours))
    # what ours has no counterpart of is the template's: the background's regression rows
    # (torchvision's first 4) and, with masks, its mask channel (0)
    reg = "roi_heads.box_predictor.bbox_pred.weight"
    assert torch.equal(as_torchvision[reg][:4], tv_state[reg][:4])
    assert not torch.equal(as_torchvision[reg][4:], tv_state[reg][4:])
    cls = as_torchvision["roi_heads.box_predictor.cls_score.weight"]
    assert torch.equal(cls[0], ours["roi_head.bbox_head.fc_cls.weight"][3])  # background
    if name == "mask_rcnn":
        logits = "roi_heads.mask_predictor.mask_fcn_logits.weight"
        assert torch.equal(as_torchvision[logits][0], tv_state[logits][0])
        ours_logits = ours["roi_head.mask_head.conv_logits.weight"]
        assert torch.equal(as_torchvision[logits][1:], ours_logits)


@pytest.mark.parametrize("name", ["retinanet", "fcos", "keypointrcnn"])
def test_conversion_round_trips_exactly_on_the_other_layouts(name):
    """The other torchvision layouts both ways: torchvision -> ours -> torchvision, and
    "ours" (other values in our layout) -> torchvision -> ours."""
    torch.manual_seed(0)
    build = getattr(detection, f"{name}_resnet50_fpn")
    tv_state = build(weights=None, weights_backbone=None, num_classes=3).state_dict()
    converted, _ = convert_torchvision_detection(tv_state)
    _assert_same_state(convert_to_torchvision_detection(converted, tv_state), tv_state)
    ours = {k: torch.randn(v.shape, dtype=v.dtype) for k, v in converted.items()}
    back, _ = convert_torchvision_detection(convert_to_torchvision_detection(ours, tv_state))
    _assert_same_state(back, ours)


def test_conversion_to_torchvision_names_the_keys_that_do_not_match():
    torch.manual_seed(0)
    tv_state = detection.fasterrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=3
    ).state_dict()
    ours, _ = convert_torchvision_detection(tv_state)
    extra = dict(ours, **{"backbone.layer4_after_stage_plugins.0.conv.weight": torch.zeros(1)})
    with pytest.raises(TorchvisionConversionError, match=r"ours backbone\.layer4_after_stage"):
        convert_to_torchvision_detection(extra, tv_state)
    missing = {k: v for k, v in ours.items() if not k.startswith("rpn_head.rpn_conv.")}
    with pytest.raises(
        TorchvisionConversionError,
        match=r"torchvision's keys need ours rpn_head\.rpn_conv\.weight, rpn_head\.rpn_conv\.bias",
    ):
        convert_to_torchvision_detection(missing, tv_state)
    narrow = dict(ours, **{"rpn_head.rpn_conv.bias": torch.zeros(128)})
    with pytest.raises(TorchvisionConversionError, match=r"rpn_head\.rpn_conv\.bias \(128,\) vs"):
        convert_to_torchvision_detection(narrow, tv_state)
    with pytest.raises(TorchvisionConversionError, match="not a torchvision"):
        convert_to_torchvision_detection(ours, {"conv1.weight": torch.zeros(1)})
