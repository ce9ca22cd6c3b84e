"""Every config in configs/ and its small_data/, torchvision/, gn/, seed004/, atss/ and gfl/
folders builds, trains one step and runs inference (with tiny widths).

The config's real backbone is built on the ``meta`` device (no memory, no weights) to check
its arguments and that its output channels match the neck (or, without one, the RPN); the
step itself runs with a quarter-width ResNet-18 of the same style, norm, stages and plugins,
FPN width 16, 3 classes, and that ResNet-18's last stage as the shared head where there is
one.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from mmdet_like.engine import load_config
from mmdet_like.models import build_backbone, build_detector
from mmdet_like.structures import BitmapMasks, DetDataSample, samples_from_lists

ROOT = Path(__file__).resolve().parents[2]
# the seed-table configs at the top level, the small-data and torchvision ones, and the
# families under mmdetection's names (configs/atss/, configs/gfl/)
SCHEDULED = ("configs", "atss", "gfl")  # folders whose names end in the schedule
CONFIGS = sorted(
    p
    for folder in ("", "small_data", "torchvision", "gn", "seed004", "atss", "gfl")
    for p in (ROOT / "configs" / folder).glob("*.py")
)
WIDTH, NUM_CLASSES, NUM_KEYPOINTS = 16, 3, 4
BASE_CHANNELS = 16  # the small ResNet-18's stem and first stage (64 in the real one)


def test_every_family_and_backbone_has_configs():
    names = {p.name for p in CONFIGS}
    for family in ("rpn", "fast_rcnn", "fast_mask_rcnn", "faster_rcnn", "mask_rcnn"):
        for backbone in ("r50", "r50_caffe", "r101", "x101_32x4d", "x101_32x8d"):
            for schedule in ("1x", "2x"):
                assert f"{family}_{backbone}_fpn_{schedule}.py" in names
    retinanet = ("r50_fpn_1x", "r50_fpn_2x", "r50_caffe_fpn_1x", "r101_fpn_1x", "r101_fpn_2x",
                 "x101_32x4d_fpn_1x", "x101_64x4d_fpn_1x")  # fmt: skip
    assert {f"retinanet_{name}.py" for name in retinanet} <= names
    fcos = ("r50_caffe_fpn_gn-head_1x", "center-normbbox-centeronreg-giou_r50_caffe_fpn_gn-head_1x")
    assert {f"fcos_{name}.py" for name in fcos} <= names
    keypoint = ("r50_fpn_1x", "r50_caffe_fpn_1x", "r101_fpn_1x", "x101_32x8d_fpn_1x")
    assert {f"keypoint_rcnn_{name}.py" for name in keypoint} <= names
    assert "keypoint_rcnn_r50_fpn_torchvision.py" in names
    cascade = {f"{family}_{backbone}_fpn_1x.py" for family in ("cascade_rcnn", "cascade_mask_rcnn")
               for backbone in ("r50", "r101", "x101_32x4d")}  # fmt: skip
    assert cascade <= names
    atss_gfl = {"atss_r50_fpn_1x_coco.py", "atss_r101_fpn_1x_coco.py", "gfl_r50_fpn_1x_coco.py",
                "gfl_r50_fpn_mstrain_2x_coco.py", "gfl_r101_fpn_mstrain_2x_coco.py"}  # fmt: skip
    assert atss_gfl <= names


def pipelines(cfg):
    """The train pipeline and the test pipeline's per-augmentation transforms."""
    test = cfg.data.test.pipeline
    aug = [s for s in test if s["type"] == "MultiScaleFlipAug"]
    return cfg.data.train.pipeline, (aug[0]["transforms"] if aug else test)


def small_norm(norm_cfg):
    """GroupNorm configs with 4 groups (the narrow widths here); others as they are."""
    if norm_cfg and norm_cfg.get("type") == "GN":
        return dict(norm_cfg, num_groups=4)
    return norm_cfg


def shrink(model):
    """Tiny copy of a model config: a ResNet-18 of quarter width (base channels 16; the
    config's style, norm, stages and plugins), narrow neck and heads; a shared head (C4, Res5
    RoI heads) becomes that ResNet-18's stage."""
    backbone = model["backbone"]
    model["pretrained"] = None
    small = dict(
        type="ResNet",
        depth=18,
        style=backbone.get("style", "pytorch"),
        base_channels=BASE_CHANNELS,
        norm_cfg=small_norm(backbone.get("norm_cfg")),
        norm_eval=backbone.get("norm_eval", True),
        frozen_stages=backbone.get("frozen_stages", -1),
    )
    for key in ("num_stages", "strides", "dilations", "out_indices", "plugins"):
        if key in backbone:
            small[key] = backbone[key]
    model["backbone"] = small
    stage_channels = [BASE_CHANNELS * 2**i for i in small.get("out_indices", (0, 1, 2, 3))]
    neck = model.get("neck")
    if neck:
        neck.update(in_channels=stage_channels, out_channels=WIDTH)
        neck["norm_cfg"] = small_norm(neck.get("norm_cfg"))
    features = WIDTH if neck else stage_channels[-1]
    if "rpn_head" in model:
        model["rpn_head"].update(in_channels=features, feat_channels=WIDTH)
        if model["rpn_head"].get("norm_cfg"):
            model["rpn_head"]["norm_cfg"] = small_norm(model["rpn_head"]["norm_cfg"])
    if "bbox_head" in model:  # single-stage
        model["bbox_head"].update(in_channels=WIDTH, feat_channels=WIDTH, num_classes=NUM_CLASSES)
        model["bbox_head"]["norm_cfg"] = small_norm(model["bbox_head"].get("norm_cfg"))
    roi_head = model.get("roi_head")
    if roi_head:
        roi_head["bbox_roi_extractor"]["out_channels"] = features
        head_channels = features
        if roi_head.get("shared_head"):  # the small ResNet-18's stage 4
            shared_head = roi_head["shared_head"]
            shared_head.update(depth=18, in_channels=features, base_channels=BASE_CHANNELS)
            shared_head["norm_cfg"] = small_norm(shared_head.get("norm_cfg"))
            head_channels = BASE_CHANNELS * 2 ** shared_head.get("stage", 3)
        bbox_head = roi_head["bbox_head"]
        bbox_head.update(in_channels=head_channels, num_classes=NUM_CLASSES)
        if "fc_out_channels" in bbox_head or bbox_head["type"].startswith("Shared"):
            bbox_head["fc_out_channels"] = 32
        if "conv_out_channels" in bbox_head:
            bbox_head["conv_out_channels"] = WIDTH
        bbox_head["norm_cfg"] = small_norm(bbox_head.get("norm_cfg"))
        if roi_head.get("mask_head"):
            mask_head = roi_head["mask_head"]
            shared = roi_head.get("share_roi_extractor", False)
            mask_head.update(
                in_channels=head_channels if shared else features, conv_out_channels=WIDTH,
                num_classes=NUM_CLASSES,
            )  # fmt: skip
            mask_head["norm_cfg"] = small_norm(mask_head.get("norm_cfg"))
            if roi_head.get("mask_roi_extractor"):
                roi_head["mask_roi_extractor"]["out_channels"] = features
        if roi_head.get("keypoint_head"):
            roi_head["keypoint_roi_extractor"]["out_channels"] = WIDTH
            roi_head["keypoint_head"].update(
                in_channels=WIDTH, conv_out_channels=WIDTH, num_convs=2,
                num_keypoints=NUM_KEYPOINTS,
            )  # fmt: skip
    return model


# Proposals per image and RoIs sampled per image in the step: the configs' 1000-2000 and 512
# prove nothing here that these do not, and a shared res5 head (C4, Res5 RoI configs) runs a
# whole ResNet stage on each of them (25-30 s a config at the configs' counts).
PROPOSALS, SAMPLED_ROIS = 100, 64


def fewer_proposals(train_cfg, test_cfg):
    """Cap the RPN's proposals (training and test) and the R-CNN samplers' sizes in place."""
    for proposal_cfg in (train_cfg.get("rpn_proposal"), test_cfg.get("rpn")):
        if proposal_cfg:
            for key in ("max_num", "nms_post"):
                if proposal_cfg.get(key) is not None:
                    proposal_cfg[key] = min(proposal_cfg[key], PROPOSALS)
    rcnn = train_cfg.get("rcnn")
    for stage in rcnn if isinstance(rcnn, list) else [rcnn] if rcnn else []:
        if stage.get("sampler"):
            stage["sampler"]["num"] = min(stage["sampler"]["num"], SAMPLED_ROIS)


def meta(h, w):
    return dict(
        ori_shape=(h, w, 3),
        img_shape=(h, w, 3),
        pad_shape=(h, w, 3),
        scale_factor=np.ones(4, dtype=np.float32),
        flip=False,
        filename="synthetic.jpg",
    )


def box_keypoints(boxes):
    """(G, NUM_KEYPOINTS, 3): per box its corners (the last one unlabelled)."""
    x0, y0, x1, y1 = boxes.unbind(1)
    points = torch.stack([torch.stack([x0, y0], 1), torch.stack([x1, y0], 1),
                          torch.stack([x1, y1], 1), torch.stack([x0, y1], 1)], 1)  # fmt: skip
    visibility = torch.tensor([2.0, 2.0, 1.0, 0.0]).expand(len(boxes), -1)
    return torch.cat([points * (visibility[..., None] > 0), visibility[..., None]], 2)


def batch():
    """Images 64x96, 80x64 (2 and 3 boxes) and 64x64 without boxes, each with masks."""
    shapes = [(64, 96), (80, 64), (64, 64)]
    boxes = [
        [[10, 10, 50, 40], [60, 5, 90, 60]],
        [[5, 5, 30, 30], [20, 30, 60, 75], [0, 0, 64, 80]],
        [],
    ]
    gt_bboxes, gt_masks, proposals = [], [], []
    for (h, w), img_boxes in zip(shapes, boxes):
        b = torch.tensor(img_boxes, dtype=torch.float32).reshape(-1, 4)
        masks = np.zeros((len(b), h, w), np.uint8)
        for i, (x0, y0, x1, y1) in enumerate(b.int().tolist()):
            masks[i, y0:y1, x0:x1] = 1
        gt_bboxes.append(b)
        gt_masks.append(BitmapMasks(masks, h, w))
        jitter = torch.cat([b + 3, torch.tensor([[0.0, 0, w / 2, h / 2], [5, 5, w - 1, h - 1]])])
        proposals.append(jitter)
    return dict(
        img=[torch.randn(3, h, w) for h, w in shapes],
        img_metas=[meta(h, w) for h, w in shapes],
        gt_bboxes=gt_bboxes,
        gt_labels=[torch.arange(len(b)) % NUM_CLASSES for b in gt_bboxes],
        gt_masks=gt_masks,
        proposals=proposals,
    )


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_config_builds_trains_and_infers(path):
    cfg = load_config(str(path))
    model_cfg = cfg.model.to_dict()
    train_cfg, test_cfg = cfg.train_cfg.to_dict(), cfg.test_cfg.to_dict()
    if path.parent.name in SCHEDULED:  # the schedule in the name
        assert cfg.total_epochs == (12 if path.stem.removesuffix("_coco").endswith("1x") else 24)

    with torch.device("meta"):  # the real backbone: arguments and channels, no memory
        real = build_backbone(model_cfg["backbone"])
    if model_cfg.get("neck"):
        assert real.out_channels == list(model_cfg["neck"]["in_channels"])
    else:  # C4: the RPN and the RoI extractor read the backbone's last output
        assert real.out_channels[-1:] == [model_cfg["rpn_head"]["in_channels"]]
    assert not any(p.device.type != "meta" for p in real.parameters())

    fewer_proposals(train_cfg, test_cfg)
    torch.manual_seed(0)
    model = build_detector(shrink(model_cfg), train_cfg, test_cfg)
    model.init_weights()
    data = batch()
    kind = model_cfg["type"]
    if kind != "FastRCNN":
        data.pop("proposals")
    train_pipeline, test_transforms = pipelines(cfg)
    # the shipped configs give the model data samples (PackDetInputs ends every pipeline)
    assert train_pipeline[-1]["type"] == "PackDetInputs"
    assert test_transforms[-1]["type"] == "PackDetInputs"
    with_mask = any(s.get("with_mask") for s in train_pipeline if s["type"] == "LoadAnnotations")
    if not with_mask:
        data.pop("gt_masks")
    with_keypoints = any(
        s.get("with_keypoints") for s in train_pipeline if s["type"] == "LoadAnnotations"
    )
    img = data.pop("img")
    samples = samples_from_lists(**data)
    if with_keypoints:
        for sample in samples:
            sample.gt_instances.keypoints = box_keypoints(sample.gt_instances.bboxes)
    losses = model(img=img, data_samples=samples)
    total = sum(v for k, v in losses.items() if "loss" in k)
    assert torch.isfinite(total)
    total.backward()
    expected = {
        "RPN": {"loss_rpn_cls", "loss_rpn_bbox"},
        "FastRCNN": {"loss_cls", "loss_bbox"},
        "RetinaNet": {"loss_cls", "loss_bbox"},
        "FCOS": {"loss_cls", "loss_bbox", "loss_centerness"},
        "ATSS": {"loss_cls", "loss_bbox", "loss_centerness"},
        "GFL": {"loss_cls", "loss_bbox", "loss_dfl"},
        "CascadeRCNN": {
            "loss_rpn_cls",
            "loss_rpn_bbox",
            "s0.loss_cls",
            "s0.loss_bbox",
            "s2.loss_cls",
            "s2.loss_bbox",
        },
    }
    expected.setdefault(kind, {"loss_rpn_cls", "loss_rpn_bbox", "loss_cls", "loss_bbox"})
    assert expected[kind] <= set(losses)
    assert ("loss_mask" in losses) == with_mask
    assert ("loss_keypoint" in losses) == with_keypoints

    model.eval()
    # the test pipeline's layout: per image, a list of one augmentation
    test_samples = samples_from_lists(data["img_metas"], proposals=data.get("proposals"))
    test_samples = [[DetDataSample(s.metainfo, proposals=s.proposals)] for s in test_samples]
    outputs = model(img=[[i] for i in img], data_samples=test_samples, return_loss=False,
                    rescale=True)  # fmt: skip
    assert isinstance(outputs, list) and len(outputs) == 3
    for output, m in zip(outputs, data["img_metas"]):
        pred = output.pred_instances
        expected_fields = ["bboxes", "scores"] if kind == "RPN" else ["bboxes", "scores", "labels"]
        expected_fields += ["masks"] if with_mask else []
        expected_fields += ["keypoints", "keypoint_scores"] if with_keypoints else []
        assert pred.keys() == expected_fields
        assert pred.bboxes.dtype == torch.float32 and pred.bboxes.shape[1] == 4
        if kind != "RPN":
            assert ((pred.labels >= 0) & (pred.labels < NUM_CLASSES)).all()
        if with_mask:
            assert pred.masks.dtype == torch.bool and pred.masks.shape[1:] == m["ori_shape"][:2]
        if with_keypoints:
            assert pred.keypoints.shape == (len(pred), NUM_KEYPOINTS, 2)
            assert pred.keypoint_scores.shape == (len(pred), NUM_KEYPOINTS)
