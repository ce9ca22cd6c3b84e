"""Proof that our RetinaNet and FCOS equal torchvision's ``retinanet_resnet50_fpn`` and
``fcos_resnet50_fpn``, at inference and in training.

torchvision's model (random weights, fixed seed, frozen batch norms with random statistics,
stem and first stage frozen as its pretrained models train) is converted by
tools/convert_torchvision_detection.py into ours, built from
configs/torchvision/retinanet_r50_fpn_torchvision.py (fcos_r50_fpn_torchvision.py). Each
config carries torchvision's by-design differences from mmdetection (its comment lists them);
the settings the tests rely on are checked by name in
``test_torchvision_configs_have_torchvision_settings``. RetinaNet:

- ``neck.add_extra_convs="on_output"``, ``relu_before_extra_convs=True``: P6 from P5;
- the anchor sizes per level (``int(x * 2 ** (i / 3))``, so each level has its own scales),
  rounded base anchors;
- ``bbox_coder.symmetric_clip=False``;
- ``train_cfg.assigner.low_quality_gt="best"`` (torchvision's ``Matcher``);
- ``train_cfg.loss_avg="image"`` (each image's losses over its own positives);
- ``test_cfg.max_per_img=300``.

FCOS (on top of mmdetection's centre-sampling / norm-on-bbox / centre-ness-on-regression /
GIoU variant, which torchvision's FCOS is):

- ``point_offset=0`` (points at the cell corners), ``scale_regression=False``;
- ``strict_regress_ranges=True`` and the first range starting at 0;
- ``centerness_weighted_bbox_loss=False`` (the box loss averaged over the positives);
- ``sqrt_score=True`` with ``score_thr=0.2`` and NMS at 0.6 (torchvision's scoring).

One difference is switched off on torchvision's side instead: its classifier has a channel
for the background class 0, which is never a target but adds its focal loss terms and could
score above the threshold. Ours has no such channel (the converter drops it), so the test
sets that channel's bias to -100 (its loss, gradient and scores are then 0).

Image sides are multiples of 128: torchvision derives each level's anchor stride from the
padded image size divided by the feature size, which is P7's 128 only then.

Random weights score everything alike, so the classifier's weights are scaled up (scores
then vary between anchors) and three classes' biases raised to -1.5 (several hundred
candidates above the 0.05 threshold).
"""

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmdet_like.apis import build_detector, inference_detector, init_detector
from mmdet_like.engine import build_optimizer, load_config
from mmdet_like.models.utils.torchvision_detection import convert_torchvision_detection
from mmdet_like.structures import DetDataSample, InstanceData
from tests.engine.cli_utils import load_tool
from tests.models.torchvision_helpers import freeze_batch_norms

skdata = pytest.importorskip("skimage.data")
detection = pytest.importorskip("torchvision.models.detection")

ROOT = Path(__file__).resolve().parents[2]
RETINANET = ROOT / "configs" / "torchvision" / "retinanet_r50_fpn_torchvision.py"
FCOS = ROOT / "configs" / "torchvision" / "fcos_r50_fpn_torchvision.py"
CONFIGS = {"retinanet": RETINANET, "fcos": FCOS}
NUM_CLASSES = 4  # object classes; torchvision's model has one more (background 0)
HEIGHT, WIDTH = 384, 512  # training inputs; inference: astronaut (512 x 512) resized to 384


def _torchvision_model(arch="retinanet", **kwargs):
    torch.manual_seed(0)
    build = detection.retinanet_resnet50_fpn if arch == "retinanet" else detection.fcos_resnet50_fpn
    model = build(weights=None, weights_backbone=None, num_classes=NUM_CLASSES + 1, **kwargs)
    body = freeze_batch_norms(model.backbone.body)
    for module in (body.conv1, body.layer1):  # torchvision's trainable_backbone_layers=3
        module.requires_grad_(False)
    head = model.head.classification_head
    with torch.no_grad():
        head.cls_logits.weight.mul_(4.0)
        bias = head.cls_logits.bias.view(-1, NUM_CLASSES + 1)  # (anchors, classes)
        bias[:, 0] = -100.0  # the background channel: off (see the module doc)
        head.cls_logits.weight.view(-1, NUM_CLASSES + 1, *head.cls_logits.weight.shape[1:])[
            :, 0
        ] = 0.0
        bias[:, 1:4] = -1.5
    return model


def _config(arch="retinanet", **overrides):
    cfg = load_config(
        str(CONFIGS[arch]),
        dict(model=dict(backbone=dict(fold_norm=False), bbox_head=dict(num_classes=NUM_CLASSES))),
    )
    cfg.merge_from_dict(overrides)
    return cfg


def _ours_from_file(tmp_path, tv_model, cfg, arch):
    src, dst = tmp_path / "torchvision.pth", tmp_path / "converted.pth"
    torch.save(tv_model.state_dict(), src)
    meta = load_tool("convert_torchvision_detection").convert(str(src), str(dst))
    assert (meta["arch"], meta["num_classes"]) == (arch, NUM_CLASSES)
    return init_detector(cfg, str(dst))


def _flatten(bbox_results):
    labels = np.concatenate([np.full(len(b), c + 1) for c, b in enumerate(bbox_results)])
    dets = np.concatenate(bbox_results)
    order = np.lexsort((-dets[:, 4], labels))
    return dets[order, :4], dets[order, 4], labels[order]


@pytest.mark.parametrize("arch, count", [("retinanet", 300), ("fcos", 100)])
def test_inference_matches_torchvision(tmp_path, arch, count, at_most_4_threads):
    tv_model = _torchvision_model(arch, min_size=HEIGHT, max_size=WIDTH).eval()
    cfg = _config(arch)
    pipeline = cfg.data.test.pipeline
    pipeline[1]["img_scale"] = (WIDTH, HEIGHT)
    cfg.data.test.pipeline = pipeline
    ours = _ours_from_file(tmp_path, tv_model, cfg, arch)
    rgb = skdata.astronaut()  # (512, 512, 3) uint8 RGB photograph
    with torch.no_grad():
        expected = tv_model([torch.from_numpy(rgb).permute(2, 0, 1).float() / 255])[0]
    got = _flatten(inference_detector(ours, np.ascontiguousarray(rgb[..., ::-1])))
    order = np.lexsort((-expected["scores"].numpy(), expected["labels"].numpy()))
    want = [expected[k].numpy()[order] for k in ("boxes", "scores", "labels")]
    assert len(want[0]) == count  # torchvision's cap: enough detections to compare
    assert len(got[0]) == len(want[0])
    np.testing.assert_array_equal(got[2], want[2])
    np.testing.assert_allclose(got[0], want[0], rtol=0, atol=1e-2)
    np.testing.assert_allclose(got[1], want[1], rtol=0, atol=1e-4)


# ------------------------------------------------------------------------------ training
OBJECTS = (  # per image: (class, box) in the 384 x 512 inputs
    ((0, (150.0, 10.0, 270.0, 150.0)), (1, (20.0, 150.0, 190.0, 370.0)),
     (2, (300.0, 40.0, 420.0, 300.0))),
    ((3, (60.0, 20.0, 400.0, 350.0)), (1, (250.0, 100.0, 330.0, 180.0))),
)  # fmt: skip


def _batch():
    """(2, 3, H, W) normalised photographs and per image (boxes, labels)."""
    images = []
    for rgb in (skdata.astronaut(), skdata.coffee()):
        x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float()[None] / 255
        x = F.interpolate(x, size=(HEIGHT, WIDTH), mode="bilinear", align_corners=False)[0]
        mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
        std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
        images.append((x - mean) / std)
    targets = [
        (torch.tensor([box for _, box in objects]), torch.tensor([c for c, _ in objects]))
        for objects in OBJECTS
    ]
    return torch.stack(images), targets


def _ours_from_state(tv_model, cfg):
    model = build_detector(cfg.model, cfg.train_cfg, cfg.test_cfg)
    state, meta = convert_torchvision_detection(tv_model.state_dict())
    assert meta["num_classes"] == NUM_CLASSES
    model.load_state_dict(state, strict=True)
    return model.train()


def _losses_ours(model, images, targets):
    shape = (HEIGHT, WIDTH, 3)
    meta = dict(img_shape=shape, pad_shape=shape, ori_shape=shape,
                scale_factor=np.ones(4, dtype=np.float32), flip=False)  # fmt: skip
    samples = [
        DetDataSample(dict(meta), gt_instances=InstanceData(bboxes=boxes, labels=labels))
        for boxes, labels in targets
    ]
    return model(img=images, data_samples=samples)


def _assert_same_grads(model, tv_model, tolerance=1e-4):
    grads = {n: p.grad for n, p in tv_model.named_parameters() if p.grad is not None}
    expected = convert_torchvision_detection(grads)[0]
    ours = {name: p.grad for name, p in model.named_parameters() if p.requires_grad}
    assert set(ours) == set(expected)
    worst = {}
    for name, want in expected.items():
        scale = want.abs().max().item()
        worst[name] = (ours[name] - want).abs().max().item() / max(scale, 1e-12)
    name = max(worst, key=worst.get)
    assert worst[name] <= tolerance, (name, worst[name])


LOSS_NAMES = {
    "retinanet": {"loss_cls": "classification", "loss_bbox": "bbox_regression"},
    "fcos": {"loss_cls": "classification", "loss_bbox": "bbox_regression",
             "loss_centerness": "bbox_ctrness"},
}  # fmt: skip


@pytest.mark.parametrize("arch", ["retinanet", "fcos"])
def test_training_step_matches_torchvision(arch, at_most_4_threads):
    images, targets = _batch()
    tv_model = _torchvision_model(
        arch, min_size=HEIGHT, max_size=WIDTH, image_mean=[0.0] * 3, image_std=[1.0] * 3
    ).train()
    tv_losses = tv_model(
        list(images), [dict(boxes=b, labels=c + 1) for b, c in targets]
    )  # fmt: skip
    sum(tv_losses.values()).backward()

    model = _ours_from_state(tv_model, _config(arch))
    losses = _losses_ours(model, images, targets)
    assert set(losses) == set(LOSS_NAMES[arch])
    for ours, theirs in LOSS_NAMES[arch].items():
        got, want = losses[ours].item(), tv_losses[theirs].item()
        assert want > 0 and abs(got - want) <= 1e-4 * want, (ours, got, want)
    sum(losses.values()).backward()
    _assert_same_grads(model, tv_model)

    # one SGD step from the same weights and gradients
    build_optimizer(model, dict(type="SGD", lr=0.01, momentum=0.9, weight_decay=1e-4)).step()
    params = [p for p in tv_model.parameters() if p.requires_grad]
    torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=1e-4).step()
    expected = convert_torchvision_detection(tv_model.state_dict())[0]
    state = model.state_dict()
    for name, want in expected.items():
        assert (state[name] - want).abs().max().item() <= 1e-5, name


def test_mmdetection_normalisation_differs_where_images_have_different_positives():
    """The switch matters: with mmdetection's normalisation (the batch's sum over the batch's
    positives) the same step gives other losses, since the two images have different numbers
    of positive anchors."""
    images, targets = _batch()
    tv_model = _torchvision_model(min_size=HEIGHT, max_size=WIDTH)
    per_image = _losses_ours(_ours_from_state(tv_model, _config()), images, targets)
    batch = _losses_ours(
        _ours_from_state(tv_model, _config(train_cfg=dict(loss_avg="batch"))), images, targets
    )
    assert abs(per_image["loss_cls"].item() - batch["loss_cls"].item()) > 1e-3


def test_torchvision_configs_have_torchvision_settings():
    cfg = load_config(str(RETINANET))
    assert cfg.model.neck.add_extra_convs == "on_output" and cfg.model.neck.relu_before_extra_convs
    generator = cfg.model.bbox_head.anchor_generator
    assert generator.round_base_anchors and generator.base_sizes == [32, 64, 128, 256, 512]
    sizes = [
        [round(b * s) for s in level] for b, level in zip(generator.base_sizes, generator.scales)
    ]
    assert sizes == [
        [x, int(x * 2 ** (1 / 3)), int(x * 2 ** (2 / 3))] for x in generator.base_sizes
    ]
    assert cfg.model.bbox_head.bbox_coder.symmetric_clip is False
    assert cfg.train_cfg.assigner.low_quality_gt == "best"
    assert cfg.train_cfg.loss_avg == "image"
    assert cfg.test_cfg.max_per_img == 300
    base = load_config(str(ROOT / "configs" / "retinanet_r50_fpn_1x.py"))
    assert base.model.neck.add_extra_convs == "on_input"
    assert base.train_cfg.get("loss_avg", "batch") == "batch" and base.test_cfg.max_per_img == 100
    fcos = load_config(str(FCOS)).model.bbox_head
    assert (fcos.point_offset, fcos.scale_regression, fcos.strict_regress_ranges) == (
        0.0,
        False,
        True,
    )
    assert fcos.regress_ranges[0][0] == 0 and fcos.centerness_weighted_bbox_loss is False
    assert fcos.sqrt_score and load_config(str(FCOS)).test_cfg.score_thr == 0.2
    assert (fcos.norm_on_bbox, fcos.centerness_on_reg, fcos.center_sampling) == (True, True, True)
