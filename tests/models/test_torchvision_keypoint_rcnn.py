"""Proof that configs/torchvision/keypoint_rcnn_r50_fpn_torchvision.py reproduces torchvision's
``keypointrcnn_resnet50_fpn``: detections with their keypoints at inference, and every loss
term (the keypoint loss with it) in training.

torchvision's model (random weights, fixed seed, frozen batch norms with random statistics,
stem and first stage frozen) is converted by tools/convert_torchvision_detection.py.

Inference: both run on scikit-image's ``astronaut`` (a photograph of a person) resized to
320 x 512, every score kept (threshold 0), the best 20 detections on both sides (the keypoint
head's eight 512-channel convolutions on each detection are most of the test's time); the box
classifier's person weights are scaled so that scores differ between boxes. The detections
must have the same labels, boxes within 1e-2 px, scores within 1e-4, keypoints within 1e-2 px
and keypoint scores within the bound below.

Training: the two photographs of the Mask / Faster R-CNN step test (``astronaut``,
``coffee``, 320 x 448) with people boxes and 17 keypoints each (some outside their box,
some unlabelled), samplers that take every anchor and RoI (no randomness): every loss term,
``loss_keypoint`` included, within 1e-4 of torchvision's.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from mmdet_like.apis import build_detector, inference_detector, init_detector
from mmdet_like.engine import load_config
from mmdet_like.models.utils.torchvision_detection import convert_torchvision_detection
from mmdet_like.structures import DetDataSample, InstanceData
from tests.engine.cli_utils import load_tool
from tests.models.test_torchvision_training_equivalence import FLOAT32_SIZE, TAKE_ALL, _batch
from tests.models.torchvision_helpers import freeze_batch_norms

skdata = pytest.importorskip("skimage.data")
detection = pytest.importorskip("torchvision.models.detection")

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "torchvision" / "keypoint_rcnn_r50_fpn_torchvision.py"
MIN_SIZE, MAX_SIZE = 320, 512
K = 17
DETS = 20  # detections per image at inference, both sides
HEIGHT, WIDTH = FLOAT32_SIZE  # the training batch: the photographs at 320 x 448


def _torchvision_model(**kwargs):
    torch.manual_seed(0)
    model = detection.keypointrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=2, num_keypoints=K, **kwargs
    )
    body = freeze_batch_norms(model.backbone.body)
    for module in (body.conv1, body.layer1):  # torchvision's trainable_backbone_layers=3
        module.requires_grad_(False)
    with torch.no_grad():  # person scores that differ between boxes
        model.roi_heads.box_predictor.cls_score.weight[1].mul_(20.0)
    return model


def _config(**overrides):
    cfg = load_config(str(CONFIG), dict(model=dict(backbone=dict(fold_norm=False))))
    cfg.merge_from_dict(overrides)
    return cfg


def test_inference_matches_torchvision(tmp_path, at_most_4_threads):
    tv_model = _torchvision_model(
        min_size=MIN_SIZE, max_size=MAX_SIZE, box_score_thresh=0.0, box_detections_per_img=DETS
    ).eval()
    src, dst = tmp_path / "torchvision.pth", tmp_path / "converted.pth"
    torch.save(tv_model.state_dict(), src)
    meta = load_tool("convert_torchvision_detection").convert(str(src), str(dst))
    assert (meta["arch"], meta["num_classes"], meta["CLASSES"]) == ("keypoint_rcnn", 1, ["person"])
    cfg = _config(test_cfg=dict(rcnn=dict(score_thr=0.0, max_per_img=DETS)))
    pipeline = cfg.data.test.pipeline
    pipeline[1]["img_scale"] = (MAX_SIZE, MIN_SIZE)
    cfg.data.test.pipeline = pipeline
    ours = init_detector(cfg, str(dst))
    assert ours.CLASSES == ("person",)
    # NCHW as torchvision computes (channels-last inference, our CPU default, rounds
    # differently: about 1e-4 px on a box, enough to reorder near-equal scores)
    ours.channels_last_inference = False

    rgb = skdata.astronaut()  # (512, 512, 3) uint8 RGB photograph of a person
    with torch.no_grad():
        want = tv_model([torch.from_numpy(rgb).permute(2, 0, 1).float() / 255])[0]
    bbox_results, segm_results, keypoint_results = inference_detector(
        ours, np.ascontiguousarray(rgb[..., ::-1])
    )
    assert segm_results is None and len(bbox_results) == len(keypoint_results) == 1
    dets, points = bbox_results[0], keypoint_results[0]
    order = np.argsort(-dets[:, 4], kind="stable")
    want_order = np.argsort(-want["scores"].numpy(), kind="stable")
    assert len(dets) == len(want["boxes"]) == DETS
    np.testing.assert_allclose(dets[order, :4], want["boxes"].numpy()[want_order], atol=1e-2)
    np.testing.assert_allclose(dets[order, 4], want["scores"].numpy()[want_order], atol=1e-4)
    assert points.shape == (DETS, K, 3)
    np.testing.assert_allclose(
        points[order, :, :2], want["keypoints"].numpy()[want_order, :, :2], rtol=0, atol=1e-2
    )
    # keypoint scores are heatmap logits (up to ~100 here): their float32 rounding scales
    # with them. Measured (ATen AVX2 / default, oneDNN AVX2 / SSE41, 1 and 2 threads, AVX2
    # CPU): up to 3.6e-4 at a largest score of 97, 3.7e-6 of it; the bound is 3e-5 of it.
    want_scores = want["keypoints_scores"].numpy()[want_order]
    np.testing.assert_allclose(
        points[order, :, 2], want_scores, rtol=0, atol=3e-5 * np.abs(want_scores).max()
    )


def _people_keypoints(boxes, seed):
    """(G, 17, 3) keypoints spread over (and a little beyond) each box; a third unlabelled."""
    g = torch.Generator().manual_seed(seed)
    x1, y1, x2, y2 = (boxes[:, i : i + 1] for i in range(4))
    u, v = torch.rand(len(boxes), K, generator=g), torch.rand(len(boxes), K, generator=g)
    xs = x1 + (u * 1.1 - 0.05) * (x2 - x1)
    ys = y1 + (v * 1.1 - 0.05) * (y2 - y1)
    visibility = torch.randint(0, 3, (len(boxes), K), generator=g).float()
    labelled = visibility > 0
    return torch.stack([xs * labelled, ys * labelled, visibility], 2)


def test_training_losses_match_torchvision(at_most_4_threads):
    images, targets = _batch((HEIGHT, WIDTH), torch.float32)
    tv_model = _torchvision_model(
        min_size=HEIGHT, max_size=WIDTH, image_mean=[0.0] * 3, image_std=[1.0] * 3,
        rpn_batch_size_per_image=TAKE_ALL, rpn_positive_fraction=1.0,
        box_batch_size_per_image=TAKE_ALL, box_positive_fraction=1.0,
    ).train()  # fmt: skip
    people = []
    for i, (boxes, _, _) in enumerate(targets):
        people.append((boxes, torch.zeros(len(boxes), dtype=torch.long),
                       _people_keypoints(boxes, seed=i)))  # fmt: skip
    tv_losses = tv_model(
        list(images), [dict(boxes=b, labels=lab + 1, keypoints=kp) for b, lab, kp in people]
    )
    take_all = dict(sampler=dict(num=TAKE_ALL, pos_fraction=1.0))
    cfg = _config(train_cfg=dict(rpn=take_all, rcnn=take_all))
    model = build_detector(cfg.model, cfg.train_cfg, cfg.test_cfg)
    state, _ = convert_torchvision_detection(tv_model.state_dict())
    model.load_state_dict(state, strict=True)
    shape = (HEIGHT, WIDTH, 3)
    meta = dict(img_shape=shape, pad_shape=shape, ori_shape=shape,
                scale_factor=np.ones(4, dtype=np.float32), flip=False)  # fmt: skip
    samples = [
        DetDataSample(dict(meta), gt_instances=InstanceData(bboxes=b, labels=lab, keypoints=kp))
        for b, lab, kp in people
    ]
    losses = model.train()(img=images, data_samples=samples)
    names = {"loss_rpn_cls": "loss_objectness", "loss_rpn_bbox": "loss_rpn_box_reg",
             "loss_cls": "loss_classifier", "loss_bbox": "loss_box_reg",
             "loss_keypoint": "loss_keypoint"}  # fmt: skip
    assert {k for k in losses if k.startswith("loss")} == set(names)
    for name, tv_name in names.items():
        got, want = losses[name].item(), tv_losses[tv_name].item()
        assert want > 0, name
        assert abs(got - want) <= 1e-4 * abs(want), (name, got, want)


def test_torchvision_keypoint_config_has_torchvision_settings():
    cfg = load_config(str(CONFIG))
    roi = cfg.model.roi_head
    assert roi.keypoint_roi_extractor.roi_layer.aligned is False
    assert roi.keypoint_roi_extractor.roi_layer.sampling_ratio == 2
    assert roi.keypoint_head.loss_normalizer == "visible"
    assert cfg.model.type == "KeypointRCNN" and roi.bbox_head.num_classes == 1
