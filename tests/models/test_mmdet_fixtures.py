"""ATSS and GFL against mmdetection 3.3 itself, and tools/model_converters/mmdet2ours.py on
mmdetection's real parameter names.

The fixtures (tests/fixtures/mmdet/) were written by tools/dev/make_mmdet_fixtures.py in a
side environment with mmdetection 3.3 (``make mmdet-fixtures``; see its docstring): its ATSS
and GFL R-50 configs with fewer channels, seeded, initialised and trained 30 SGD steps by
mmdetection on two scikit-image photographs with hand-placed boxes. Here, mmdetection's
state dict goes through our converter into our model built from our config of the same name
(with the same channel cuts), and on the same inputs and targets ours gives:

- the anchors' assignment exactly (``AssignResult.gt_inds`` and ``labels`` of each image);
- the losses within 1e-6 (the issue asks 1e-4; measured 2026-12-07 on an AMD EPYC with
  AVX-512: at most 9e-8) and every head parameter's gradient within 1e-4 of its largest
  entry (measured: 2e-6 ATSS, 8e-6 GFL);
- the same detections: their count and labels exactly, boxes within 1e-3 px (the issue asks
  1e-2; measured 6e-5) and scores within 1e-5 (the issue asks 1e-4; measured 4e-7).

The differences are float32 accumulation order (sums per level there, over the flattened
batch here); the tolerances leave about ten times the measured ones for other CPUs.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mmdet_like.engine import load_config
from mmdet_like.models import build_detector
from mmdet_like.models.utils.foreign_checkpoints import compare_with_model, convert_mmdet
from mmdet_like.structures import DetDataSample, InstanceData

skdata = pytest.importorskip("skimage.data")

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "mmdet"
OURS = {
    "atss": ROOT / "configs" / "atss" / "atss_r50_fpn_1x_coco.py",
    "gfl": ROOT / "configs" / "gfl" / "gfl_r50_fpn_1x_coco.py",
}


def load_fixture(family):
    return torch.load(FIXTURES / f"{family}.pth", weights_only=True)


def our_model(family, source):
    """Our config of the family with the fixture's channel cuts, holding mmdetection's
    weights through the converter."""
    cfg = load_config(str(OURS[family]))
    base, fpn = source["base_channels"], source["fpn_channels"]
    cfg.model.pretrained = None
    cfg.model.backbone.base_channels = base
    cfg.model.neck.in_channels = [base * 4 * 2**i for i in range(4)]
    cfg.model.neck.out_channels = fpn
    cfg.model.bbox_head.update(
        num_classes=source["num_classes"], in_channels=fpn, feat_channels=fpn,
        norm_cfg=dict(type="GN", num_groups=source["gn_groups"], requires_grad=True),
    )  # fmt: skip
    model = build_detector(cfg.model, cfg.train_cfg, cfg.test_cfg)
    return model, cfg


def converted(fixture, family, model):
    state, info = convert_mmdet(fixture["state_dict"], source=f"{family}.pth")
    compare_with_model(state, model.state_dict(), f"{family}.pth", OURS[family].name)
    model.load_state_dict(state, strict=True)
    return state, info


def metas(inputs):
    height, width = inputs.shape[-2:]
    return [
        dict(img_shape=(height, width, 3), pad_shape=(height, width, 3),
             ori_shape=(height, width, 3), scale_factor=np.ones(4, dtype=np.float32), flip=False)
        for _ in range(len(inputs))
    ]  # fmt: skip


def training_samples(source, inputs):
    return [
        DetDataSample(
            metainfo=meta,
            gt_instances=InstanceData(
                bboxes=torch.tensor(photo["boxes"], dtype=torch.float32),
                labels=torch.tensor(photo["labels"]),
            ),
        )
        for photo, meta in zip(source["photos"], metas(inputs), strict=True)
    ]


def record_assignments(head):
    kept = []
    assign = head.assigner.assign

    def recording(*args, **kwargs):
        result = assign(*args, **kwargs)
        kept.append(result)
        return result

    head.assigner.assign = recording
    return kept


def photographs(source):
    """(2, 3, 320, 480) normalised crops of scikit-image's photographs, made as the fixture
    script makes them (float32 pixels, float64 normalisation, then float32)."""
    images = []
    for photo in source["photos"]:
        r0, r1, c0, c1 = photo["crop"]
        rgb = getattr(skdata, photo["name"])()[r0:r1, c0:c1].astype(np.float32)
        images.append(torch.from_numpy((rgb - source["mean"]) / source["std"]).permute(2, 0, 1))
    return torch.stack(images).float()


@pytest.fixture(scope="module", params=sorted(OURS))
def trained(request):
    """(family, fixture, our model with mmdetection's weights, its config); the fixture's
    ``inputs`` remade from the photographs."""
    family = request.param
    fixture = load_fixture(family)
    fixture["inputs"] = photographs(fixture["source"])
    model, cfg = our_model(family, fixture["source"])
    converted(fixture, family, model)
    return family, fixture, model, cfg


def test_the_inputs_are_the_photographs_mmdetection_saw(trained):
    _, fixture, _, _ = trained
    inputs = fixture["inputs"]
    assert list(inputs.shape) == fixture["inputs_shape"]
    assert inputs.double().sum().item() == pytest.approx(fixture["inputs_sum"], rel=1e-9)


def test_our_config_has_mmdetections_train_and_test_settings(trained):
    family, fixture, _, cfg = trained
    train3, test3 = fixture["source"]["train_cfg"], fixture["source"]["test_cfg"]
    assert cfg.train_cfg.assigner.type == train3["assigner"]["type"] == "ATSSAssigner"
    assert cfg.train_cfg.assigner.topk == train3["assigner"]["topk"]
    assert cfg.train_cfg.allowed_border == train3["allowed_border"]
    assert cfg.train_cfg.pos_weight == train3["pos_weight"]
    for key in ("nms_pre", "score_thr", "max_per_img"):
        assert cfg.test_cfg[key] == test3[key], key
    assert cfg.test_cfg.nms.iou_thr == test3["nms"]["iou_threshold"]


@pytest.fixture(scope="module")
def training_step(trained):
    """One training forward and backward of our model on the fixture's photographs and
    targets: (the AssignResults of its images, its losses, its parameters with their
    gradients)."""
    _, fixture, model, _ = trained
    inputs = fixture["inputs"]
    kept = record_assignments(model.bbox_head)
    model.train()
    model.zero_grad()
    losses = model(img=inputs, data_samples=training_samples(fixture["source"], inputs))
    sum(losses.values()).backward()
    del model.bbox_head.assigner.assign  # the recording off: the class's method again
    return kept, {k: v.detach() for k, v in losses.items()}, dict(model.named_parameters())


def test_anchors_are_assigned_as_mmdetection_assigns_them(trained, training_step):
    _, fixture, _, _ = trained
    kept = training_step[0]
    assert len(kept) == len(fixture["assignments"]) == len(fixture["inputs"])
    for ours, theirs in zip(kept, fixture["assignments"], strict=True):
        assert torch.equal(ours.gt_inds, theirs["gt_inds"])
        assert torch.equal(ours.labels, theirs["labels"])
        positive = theirs["gt_inds"] > 0
        assert positive.sum() >= 9  # every box has positives
        torch.testing.assert_close(
            ours.max_overlaps[positive], theirs["max_overlaps"][positive], rtol=0, atol=1e-5
        )


def test_losses_and_head_gradients_equal_mmdetections(trained, training_step):
    family, fixture, _, _ = trained
    _, losses, ours = training_step
    assert set(losses) == set(fixture["losses"])
    for name, value in fixture["losses"].items():
        torch.testing.assert_close(losses[name], value, rtol=0, atol=1e-6, msg=name)
    # mmdetection's head gradients in our names: the converter maps them as the weights
    with_grads = dict(fixture["state_dict"], **fixture["grads"])
    expected, _ = convert_mmdet(with_grads, source=f"{family}.pth")
    head = [k for k in expected if k.startswith("bbox_head.") and k in ours]
    assert len(head) == len(fixture["grads"])
    for name in head:
        grad, want = ours[name].grad, expected[name]
        scale = want.abs().max().clamp(min=1e-12)
        torch.testing.assert_close(grad / scale, want / scale, rtol=0, atol=1e-4, msg=name)


def test_detections_equal_mmdetections(trained):
    _, fixture, model, _ = trained
    inputs = fixture["inputs"]
    model.eval()
    samples = [DetDataSample(metainfo=meta) for meta in metas(inputs)]
    with torch.no_grad():
        outputs = model(img=inputs, data_samples=samples, return_loss=False, rescale=False)
    for output, theirs in zip(outputs, fixture["detections"], strict=True):
        pred = output.pred_instances
        assert len(theirs["scores"]) > 5  # trained: scores above the threshold
        assert len(pred) == len(theirs["scores"])
        order = pred.scores.argsort(descending=True, stable=True)
        expected = theirs["scores"].argsort(descending=True, stable=True)
        torch.testing.assert_close(pred.scores[order], theirs["scores"][expected],
                                   rtol=0, atol=1e-5)  # fmt: skip
        assert torch.equal(pred.labels[order], theirs["labels"][expected])
        torch.testing.assert_close(pred.bboxes[order], theirs["bboxes"][expected],
                                   rtol=0, atol=1e-3)  # fmt: skip


# ------------------------------------------------------------------------ converter names
NAMES = FIXTURES / "state_dict_names.json"
# mmdetection's family -> our config of the same model
CONVERTED = {
    "rpn": "rpn_r50_fpn_1x.py",
    "faster_rcnn": "faster_rcnn_r50_fpn_1x.py",
    "mask_rcnn": "mask_rcnn_r50_fpn_1x.py",
    "mask_rcnn_x101": "mask_rcnn_x101_32x4d_fpn_1x.py",
    "cascade_rcnn": "cascade_rcnn_r50_fpn_1x.py",
    "cascade_mask_rcnn": "cascade_mask_rcnn_r50_fpn_1x.py",
    "retinanet": "retinanet_r50_fpn_1x.py",
    "fcos": "fcos_r50_caffe_fpn_gn-head_1x.py",
    "atss": "atss/atss_r50_fpn_1x_coco.py",
    "gfl": "gfl/gfl_r50_fpn_1x_coco.py",
    "mask_rcnn_swin_t": "swin/mask_rcnn_swin-t-p4-w7_fpn_1x_coco.py",
    "mask_rcnn_convnext_t": "convnext/mask_rcnn_convnext-t_p4_w7_fpn_fp16_ms-crop_3x_coco.py",
    "detr": "detr/detr_r50_8x2_150e_coco.py",
    "deformable_detr": "deformable_detr/deformable_detr_r50_16x2_50e_coco.py",
    "deformable_detr_refine": "deformable_detr/deformable_detr_refine_r50_16x2_50e_coco.py",
    "deformable_detr_twostage": "deformable_detr/"
    "deformable_detr_twostage_refine_r50_16x2_50e_coco.py",
    "dino_4scale": "dino/dino-4scale_r50_8xb2-12e_coco.py",
}


def mmdet_names():
    with open(NAMES) as f:
        return json.load(f)["families"]


def test_every_family_the_converter_converts_has_real_names():
    assert set(mmdet_names()) == set(CONVERTED)


@pytest.mark.parametrize("family", sorted(CONVERTED))
def test_mmdet2ours_converts_mmdetections_real_names_into_our_model(family):
    """mmdetection 3.3's full-size model of the family (its names and shapes, from its own
    config; Swin's relative position indices with their values, which the converter checks)
    converts into exactly our config's parameters and buffers, shape for shape."""
    names, int_buffers = mmdet_names()[family]["names"], mmdet_names()[family]["int_buffers"]
    state = {k: torch.empty(shape, device="meta") for k, shape in names.items()}
    state.update({k: torch.tensor(v) for k, v in int_buffers.items()})
    assert (len(int_buffers) > 0) == ("swin" in family)
    ours, info = convert_mmdet(state, source=f"mmdetection {family}")
    cfg = load_config(str(ROOT / "configs" / CONVERTED[family]))
    cfg.model.pretrained = None
    with torch.device("meta"):
        model = build_detector(cfg.model, cfg.get("train_cfg"), cfg.get("test_cfg"))
    compare_with_model(ours, model.state_dict(), f"mmdetection {family}", CONVERTED[family])
    expected_classes = None if family == "rpn" else 80
    assert info["num_classes"] == expected_classes
