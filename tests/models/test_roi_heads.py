"""RoI heads: level mapping, extractor, box head targets/loss/detections, mask targets and
paste, StandardRoIHead training and testing."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmdet_like.models import build_head, build_roi_extractor
from mmdet_like.models.roi_heads import map_roi_levels, mask_targets, multiclass_nms, paste_masks
from mmdet_like.models.roi_heads.mask_heads import FCNMaskHead
from mmdet_like.models.task_modules.assign_result import AssignResult
from mmdet_like.models.task_modules.sampling_result import SamplingResult
from mmdet_like.ops import roi_align
from mmdet_like.structures import (
    BitmapMasks,
    DetDataSample,
    InstanceData,
    detection_to_per_class,
    samples_from_lists,
)

STRIDES = [4, 8, 16, 32]


def box_of_side(side, x=0.0, y=0.0):
    return [0.0, x, y, x + side, y + side]


def test_level_mapping_follows_the_fpn_rule():
    sides = [10, 111.9, 112, 223.9, 224, 447, 448, 2000]
    rois = torch.tensor([box_of_side(s) for s in sides])
    assert map_roi_levels(rois, 4).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert map_roi_levels(rois, 2).tolist() == [0, 0, 1, 1, 1, 1, 1, 1]  # clamped


def test_extractor_matches_per_roi_roi_align():
    torch.manual_seed(0)
    extractor = build_roi_extractor(
        dict(
            type="SingleRoIExtractor",
            roi_layer=dict(type="RoIAlign", output_size=7, sampling_ratio=2, aligned=True),
            out_channels=3,
            featmap_strides=STRIDES,
        )
    )
    feats = [torch.randn(2, 3, 256 // s, 256 // s) for s in STRIDES]
    rois = torch.tensor(
        [box_of_side(30, 5, 5), [1.0, 10, 20, 200, 150], box_of_side(250), [1.0, 0, 0, 60, 90]]
    )
    out = extractor(feats, rois)
    assert out.shape == (4, 3, 7, 7)
    for roi, pooled in zip(rois, out):
        level = int(map_roi_levels(roi[None], 4))
        expected = roi_align(feats[level], roi[None], 7, 1.0 / STRIDES[level], 2, True)[0]
        torch.testing.assert_close(pooled, expected)
    assert extractor(feats, rois[:0]).shape == (0, 3, 7, 7)


def bbox_head(**kwargs):
    torch.manual_seed(0)
    cfg = dict(
        type="Shared2FCBBoxHead", in_channels=2, roi_feat_size=3, fc_out_channels=8, num_classes=3
    )
    return build_head(dict(cfg, **kwargs))


def sampling_result(bboxes, gt_bboxes, gt_labels, gt_inds, pos_inds, neg_inds):
    """A SamplingResult from an explicit assignment (gt_inds as AssignResult: 0 neg, i+1 pos)."""
    gt_inds = torch.tensor(gt_inds)
    labels = torch.full_like(gt_inds, -1)
    if len(gt_labels):
        labels = torch.where(gt_inds > 0, gt_labels[(gt_inds - 1).clamp(min=0)], -1)
    assign = AssignResult(len(gt_bboxes), gt_inds, torch.zeros(len(gt_inds)), labels)
    flags = torch.zeros(len(bboxes), dtype=torch.uint8)
    return SamplingResult(
        torch.tensor(pos_inds, dtype=torch.long),
        torch.tensor(neg_inds, dtype=torch.long),
        bboxes,
        gt_bboxes,
        assign,
        flags,
    )


def hand_case():
    gt_a = torch.tensor([[10.0, 10, 50, 50], [60, 60, 90, 100]])
    props_a = torch.tensor([[12.0, 8, 52, 48], [0, 0, 5, 5], [58, 62, 92, 98]])
    res_a = sampling_result(props_a, gt_a, torch.tensor([2, 0]), [1, 0, 2], [0, 2], [1])
    gt_b = torch.zeros((0, 4))
    props_b = torch.tensor([[1.0, 1, 9, 9], [3, 3, 30, 30]])
    res_b = sampling_result(props_b, gt_b, torch.zeros(0, dtype=torch.long), [0, 0], [], [1, 0])
    return [res_a, res_b]


def test_bbox_targets_on_a_hand_case():
    head = bbox_head()
    results = hand_case()
    labels, label_weights, targets, target_weights = head.get_targets(results)
    assert labels.tolist() == [2, 0, 3, 3, 3]  # background is the last index (num_classes)
    assert label_weights.tolist() == [1.0] * 5
    expected = head.bbox_coder.encode(results[0].pos_bboxes, results[0].pos_gt_bboxes)
    torch.testing.assert_close(targets[:2], expected)
    assert targets[2:].abs().sum() == 0
    assert target_weights.tolist() == [[1.0] * 4] * 2 + [[0.0] * 4] * 3
    # decoding the targets at the positives gives back their gts
    decoded = head.bbox_coder.decode(results[0].pos_bboxes, targets[:2])
    torch.testing.assert_close(decoded, torch.tensor([[10.0, 10, 50, 50], [60, 60, 90, 100]]))
    pos_weighted = head.get_targets(results, dict(pos_weight=3.0))[1]
    assert pos_weighted.tolist() == [3.0, 3.0, 1.0, 1.0, 1.0]


@pytest.mark.parametrize("agnostic", [False, True])
def test_bbox_loss_uses_the_own_class_deltas(agnostic):
    head = bbox_head(reg_class_agnostic=agnostic)
    labels, label_weights, targets, target_weights = head.get_targets(hand_case())
    cls_score = torch.randn(5, 4)
    width = 1 if agnostic else 3
    bbox_pred = torch.randn(5, width, 4) * 5
    for i in range(2):  # exact deltas in each positive's own class channel
        bbox_pred[i, 0 if agnostic else labels[i]] = targets[i]
    losses = head.loss(
        cls_score, bbox_pred.view(5, -1), labels, label_weights, targets, target_weights
    )
    torch.testing.assert_close(losses["loss_cls"], F.cross_entropy(cls_score, labels))
    assert losses["loss_bbox"].item() == pytest.approx(0.0, abs=1e-6)
    expected_acc = (cls_score.argmax(1) == labels).float().mean() * 100
    torch.testing.assert_close(losses["acc"], expected_acc)
    bbox_pred[0, 0 if agnostic else labels[0], 0] += 2.0  # |error| 2 > beta=1: 2 - 0.5
    losses = head.loss(
        cls_score, bbox_pred.view(5, -1), labels, label_weights, targets, target_weights
    )
    assert losses["loss_bbox"].item() == pytest.approx(1.5 / 5 / 4 * 4, rel=1e-4)


def test_get_bboxes_decodes_rescales_and_suppresses():
    head = bbox_head()
    rois = torch.tensor(
        [[0.0, 10, 10, 50, 50], [0, 12, 10, 52, 50], [0, 100, 100, 140, 140], [0, 0, 0, 20, 20]]
    )
    cls_score = torch.full((4, 4), -10.0)
    cls_score[0, 1] = cls_score[1, 1] = 5.0  # two overlapping class-1 boxes: NMS keeps one
    cls_score[2, 2] = 4.0  # class 2
    cls_score[3, 3] = 10.0  # background
    bbox_pred = torch.zeros(4, 12)
    cfg = dict(score_thr=0.3, nms=dict(iou_thr=0.5), max_per_img=10)
    dets, labels = head.get_bboxes(rois, cls_score, bbox_pred, (200, 200, 3), None, False, cfg)
    assert labels.tolist() == [1, 2]
    torch.testing.assert_close(
        dets[:, :4], torch.tensor([[10.0, 10, 50, 50], [100, 100, 140, 140]])
    )
    scores = F.softmax(cls_score, 1)
    torch.testing.assert_close(dets[:, 4], torch.stack([scores[0, 1], scores[2, 2]]))
    factor = np.array([2.0, 4.0, 2.0, 4.0], dtype=np.float32)
    dets2, _ = head.get_bboxes(rois, cls_score, bbox_pred, (200, 200, 3), factor, True, cfg)
    torch.testing.assert_close(dets2[:, :4], dets[:, :4] / torch.tensor(factor))
    cfg1 = dict(cfg, max_per_img=1)
    assert head.get_bboxes(rois, cls_score, bbox_pred, (200, 200), None, False, cfg1)[
        1
    ].tolist() == [1]
    # boxes are clipped to the image
    bbox_pred[2, 8:10] = 2.0
    dets3, _ = head.get_bboxes(rois, cls_score, bbox_pred, (150, 150), None, False, cfg)
    assert dets3[:, :4].max() <= 150


def test_multiclass_nms_keeps_classes_apart():
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 0, 11, 10]])
    scores = torch.tensor([[0.9, 0.1], [0.7, 0.8]])  # IoU 0.82: one box per class survives
    dets, labels = multiclass_nms(boxes, scores, 0.05, dict(iou_thr=0.5))
    assert labels.tolist() == [0, 1]
    torch.testing.assert_close(dets, torch.tensor([[0.0, 0, 10, 10, 0.9], [1, 0, 11, 10, 0.8]]))
    assert len(multiclass_nms(boxes, scores, 0.05, dict(iou_thr=0.9))[1]) == 4
    assert multiclass_nms(boxes, scores, 0.75, dict(iou_thr=0.9))[1].tolist() == [0, 1]


@pytest.mark.parametrize("method", ["linear", "gaussian"])
def test_soft_nms_from_the_test_config_is_class_wise_soft_nms(method):
    """``nms=dict(type="soft_nms", ...)`` runs Soft-NMS (it ran hard NMS before): the result
    equals a per-class loop of the Soft-NMS op, with decayed scores, and keeps boxes that
    hard NMS removes."""
    from mmdet_like.ops import soft_nms

    g = torch.Generator().manual_seed(0)
    xy = torch.rand(40, 2, generator=g) * 60
    boxes = torch.cat([xy, xy + 10 + torch.rand(40, 2, generator=g) * 30], 1)
    scores = torch.rand(40, 3, generator=g)
    cfg = dict(type="soft_nms", iou_threshold=0.3, sigma=0.5, min_score=0.05, method=method)
    dets, labels = multiclass_nms(boxes, scores, 0.05, cfg)
    expected = []
    for c in range(3):
        cand = torch.where(scores[:, c] > 0.05)[0]
        d, _ = soft_nms(boxes[cand], scores[cand, c], 0.3, 0.5, 0.05, method)
        expected += [(float(row[4]), c, tuple(row[:4].tolist())) for row in d]
    expected.sort(key=lambda e: -e[0])
    assert labels.tolist() == [e[1] for e in expected]
    torch.testing.assert_close(dets[:, 4], torch.tensor([e[0] for e in expected]))
    torch.testing.assert_close(dets[:, :4], torch.tensor([e[2] for e in expected]))
    hard, _ = multiclass_nms(boxes, scores, 0.05, dict(type="nms", iou_thr=0.3))
    assert len(dets) > len(hard)
    assert len(multiclass_nms(boxes, scores, 0.05, cfg, max_num=7)[1]) == 7
    with pytest.raises(ValueError, match="'softnms' is not one of"):
        multiclass_nms(boxes, scores, 0.05, dict(type="softnms"))


def test_mask_targets_by_roi_align():
    masks = np.zeros((2, 40, 60), np.uint8)
    masks[0, 10:30, 20:50] = 1
    masks[1, 5:25, 5:15] = 1
    gt = torch.tensor([[20.0, 10, 50, 30], [5, 5, 15, 25]])
    # positives: gt 0 exactly, gt 1 exactly, and the left half of gt 0 extended right
    props = torch.tensor([[20.0, 10, 50, 30], [5, 5, 15, 25], [20, 10, 80, 30]])
    res = sampling_result(props, gt, torch.tensor([0, 1]), [1, 2, 1], [0, 1, 2], [])
    targets = mask_targets([res], [BitmapMasks(masks, 40, 60)], (28, 28))
    assert targets.shape == (3, 28, 28)
    assert targets[0].min() == 1 and targets[1].min() == 1  # a full-box mask: all ones
    assert targets[2, :, :13].min() == 1 and targets[2, :, 15:].max() == 0
    empty = sampling_result(props, gt, torch.tensor([0, 1]), [0, 0, 0], [], [0])
    assert mask_targets([empty], [BitmapMasks(masks, 40, 60)], (28, 28)).shape == (0, 28, 28)


def test_mask_targets_soft_and_unaligned_switches():
    """``binarize=False`` keeps RoIAlign's fractional values (torchvision's soft targets);
    thresholding them at 0.5 gives the default targets; ``aligned=False`` samples half a
    pixel off (torchvision's legacy RoIAlign)."""
    masks = np.zeros((1, 40, 60), np.uint8)
    masks[0, 10:30, 20:50] = 1
    gt = torch.tensor([[20.0, 10, 50, 30]])
    props = torch.tensor([[15.3, 7.7, 44.1, 26.9]])  # cuts through the mask's edges
    res = sampling_result(props, gt, torch.tensor([0]), [1], [0], [])
    gt_masks = [BitmapMasks(masks, 40, 60)]
    hard = mask_targets([res], gt_masks, (28, 28))
    soft = mask_targets([res], gt_masks, (28, 28), binarize=False)
    fractional = (soft > 0.01) & (soft < 0.99)
    assert fractional.any() and soft.min() >= 0 and soft.max() <= 1 + 1e-6
    torch.testing.assert_close(hard, (soft >= 0.5).float())
    unaligned = mask_targets([res], gt_masks, (28, 28), aligned=False, binarize=False)
    assert not torch.allclose(unaligned, soft)
    # the head reads the switches from train_cfg.rcnn
    head = FCNMaskHead(num_convs=1, in_channels=8, conv_out_channels=8, num_classes=2)
    cfg = dict(mask_size=28, mask_target_binarize=False, mask_target_aligned=False)
    torch.testing.assert_close(head.get_targets([res], gt_masks, cfg), unaligned)
    torch.testing.assert_close(head.get_targets([res], gt_masks, dict(mask_size=28)), hard)


def naive_paste(mask, box, height, width):
    """Per-pixel bilinear sampling of an (M, M) mask inside ``box`` (edge values extend to
    the box edge, zero outside the box)."""
    m = mask.shape[0]
    x0, y0, x1, y1 = box
    out = np.zeros((height, width))
    for y in range(height):
        for x in range(width):
            u = (x + 0.5 - x0) / (x1 - x0)  # in [0, 1] inside the box
            v = (y + 0.5 - y0) / (y1 - y0)
            if not (0 <= u <= 1 and 0 <= v <= 1):
                continue
            fx, fy = u * m - 0.5, v * m - 0.5  # mask pixel coordinates
            ix, iy = int(np.floor(fx)), int(np.floor(fy))
            ax, ay = fx - ix, fy - iy
            value = 0.0
            for dy, wy in ((0, 1 - ay), (1, ay)):
                for dx, wx in ((0, 1 - ax), (1, ax)):
                    value += (
                        wy * wx * mask[min(max(iy + dy, 0), m - 1), min(max(ix + dx, 0), m - 1)]
                    )
            out[y, x] = value
    return out


def test_paste_matches_a_naive_reference():
    torch.manual_seed(0)
    masks = torch.rand(3, 6, 6)
    boxes = torch.tensor([[2.0, 3, 15, 11], [10.3, 0.5, 23.9, 18.2], [-4, 14, 6, 30]])
    pasted = paste_masks(masks, boxes, 20, 24)
    for i in range(3):
        expected = naive_paste(masks[i].numpy(), boxes[i].tolist(), 20, 24)
        np.testing.assert_allclose(pasted[i].numpy(), expected, atol=1e-5)
    # chunked (one mask per chunk) gives the same result
    torch.testing.assert_close(paste_masks(masks, boxes, 20, 24, chunk_bytes=1), pasted)


def test_paste_equals_grid_sample_and_thresholds_in_chunks():
    import torch.nn.functional as F

    from mmdet_like.models.roi_heads import paste_masks_torchvision

    torch.manual_seed(1)
    masks = torch.rand(40, 28, 28)
    xy = torch.rand(40, 2) * torch.tensor([150.0, 100.0]) - 10
    wh = torch.rand(40, 2) * 60 + 0.5
    boxes = torch.cat([xy, xy + wh], 1)
    height, width = 96, 128
    # the separable paste against a per-pixel sampling grid (grid_sample itself)
    xs = torch.arange(width, dtype=torch.float32) + 0.5
    ys = torch.arange(height, dtype=torch.float32) + 0.5
    gx = (xs[None] - boxes[:, 0:1]) / (boxes[:, 2:3] - boxes[:, 0:1]) * 2 - 1
    gy = (ys[None] - boxes[:, 1:2]) / (boxes[:, 3:4] - boxes[:, 1:2]) * 2 - 1
    grid = torch.stack(
        [gx[:, None, :].expand(40, height, width), gy[:, :, None].expand(40, height, width)], -1
    )
    sampled = F.grid_sample(
        masks[:, None], grid, mode="bilinear", padding_mode="border", align_corners=False
    )[:, 0]
    expected = sampled * ((gx.abs() <= 1)[:, None, :] & (gy.abs() <= 1)[:, :, None])
    pasted = paste_masks(masks, boxes, height, width)
    torch.testing.assert_close(pasted, expected, atol=1e-5, rtol=0)
    # threshold: the same as thresholding the probabilities, chunked or not
    for chunk_bytes in (1, 1 << 16, 1 << 26):
        binary = paste_masks(masks, boxes, height, width, chunk_bytes, threshold=0.5)
        assert binary.dtype == torch.bool
        assert torch.equal(binary, pasted >= 0.5)
    # a threshold at or below 0 marks every pixel, as thresholding the probabilities would
    assert bool(paste_masks(masks[:2], boxes[:2], height, width, threshold=0.0).all())
    reference = paste_masks_torchvision(masks, boxes, height, width)
    assert torch.equal(
        paste_masks_torchvision(masks, boxes, height, width, threshold=0.5), reference >= 0.5
    )


def mask_head(**kwargs):
    cfg = dict(
        type="FCNMaskHead",
        num_convs=2,
        roi_feat_size=4,
        in_channels=2,
        conv_out_channels=4,
        num_classes=3,
    )
    return build_head(dict(cfg, **kwargs))


@pytest.mark.parametrize("agnostic", [False, True])
def test_mask_head_shapes_loss_and_seg_masks(agnostic):
    head = mask_head(class_agnostic=agnostic)
    pred = head(torch.randn(2, 2, 4, 4))
    assert pred.shape == (2, 1 if agnostic else 3, 8, 8)
    targets = (torch.rand(2, 8, 8) > 0.5).float()
    labels = torch.tensor([2, 0])
    loss = head.loss(pred, targets, labels)["loss_mask"]
    channel = [0, 0] if agnostic else [2, 0]
    expected = F.binary_cross_entropy_with_logits(pred[[0, 1], channel], targets)
    torch.testing.assert_close(loss, expected)
    assert head.loss(pred[:0], targets[:0], labels[:0])["loss_mask"].item() == 0
    logits = torch.full((2, pred.size(1), 8, 8), 5.0)  # all foreground
    boxes = torch.tensor([[2.0, 2, 10, 6], [0, 0, 30, 20]])
    seg = head.get_seg_masks(logits, boxes, labels, 16, 20)
    assert seg.dtype == torch.bool and seg.shape == (2, 16, 20)
    assert seg[0].sum() == 8 * 4 and seg[0, 2:6, 2:10].all()
    assert seg[1].all()  # clipped to the image
    assert head.get_seg_masks(logits[:0], boxes[:0], labels[:0], 16, 20).shape == (0, 16, 20)


RCNN_TRAIN = dict(
    assigner=dict(type="MaxIoUAssigner", pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0.5),
    sampler=dict(type="RandomSampler", num=32, pos_fraction=0.25, add_gt_as_proposals=True),
    pos_weight=-1,
    mask_size=8,
)


def roi_head(share=False, with_mask=True):
    torch.manual_seed(0)
    extractor = dict(
        type="SingleRoIExtractor",
        roi_layer=dict(type="RoIAlign", output_size=4, sampling_ratio=0),
        out_channels=2,
        featmap_strides=[4, 8],
    )
    cfg = dict(
        type="StandardRoIHead",
        bbox_roi_extractor=extractor,
        bbox_head=dict(
            type="Shared2FCBBoxHead",
            in_channels=2,
            roi_feat_size=4,
            fc_out_channels=8,
            num_classes=3,
        ),
        train_cfg=RCNN_TRAIN,
        test_cfg=dict(score_thr=0.0, nms=dict(iou_thr=0.5), max_per_img=5),
    )
    if with_mask:
        cfg.update(mask_head=dict(type="FCNMaskHead", num_convs=1, roi_feat_size=4,
                                  in_channels=2, conv_out_channels=4, num_classes=3))  # fmt: skip
        cfg.update(share_roi_extractor=True) if share else cfg.update(mask_roi_extractor=extractor)
    return build_head(cfg)


@pytest.mark.parametrize("share", [False, True])
def test_standard_roi_head_train_and_test(share):
    head = roi_head(share)
    feats = (torch.randn(2, 2, 16, 16, requires_grad=True), torch.randn(2, 2, 8, 8))
    metas = [
        dict(img_shape=(64, 64, 3), ori_shape=(32, 32, 3), scale_factor=np.full(4, 2.0)),
        dict(img_shape=(60, 50, 3), ori_shape=(60, 50, 3), scale_factor=np.ones(4)),
    ]
    gt_bboxes = [torch.tensor([[4.0, 4, 30, 30]]), torch.zeros((0, 4))]
    gt_labels = [torch.tensor([1]), torch.zeros(0, dtype=torch.long)]
    masks = np.zeros((1, 64, 64), np.uint8)
    masks[0, 4:30, 4:30] = 1
    gt_masks = [BitmapMasks(masks, 64, 64), BitmapMasks([], 64, 64)]
    proposals = [
        InstanceData(bboxes=torch.tensor([[5.0, 5, 28, 31], [40, 40, 60, 60]]),
                     scores=torch.tensor([0.9, 0.8])),
        InstanceData(bboxes=torch.zeros(0, 4), scores=torch.zeros(0)),
    ]  # fmt: skip
    samples = samples_from_lists(metas, gt_bboxes, gt_labels, gt_masks=gt_masks)
    losses = head.forward_train(feats, proposals, samples)
    assert set(losses) == {"loss_cls", "loss_bbox", "acc", "loss_mask"}
    total = sum(v for k, v in losses.items() if "loss" in k)
    assert torch.isfinite(total)
    total.backward()
    assert feats[0].grad.abs().sum() > 0

    head.eval()
    results = head.simple_test(feats, proposals, metas, rescale=True)
    assert len(results) == 2 and isinstance(results[0], InstanceData)
    assert results[0].keys() == ["bboxes", "scores", "labels", "masks"]
    assert len(results[0]) == 5 and len(results[1]) == 0  # 2 rois x 3 classes, top 5
    assert results[0].masks.shape == (5, 32, 32) and results[1].masks.shape == (0, 60, 50)
    assert results[0].bboxes.max() <= 32  # rescaled to the original image
    # a mask head without gt masks says what to load
    no_masks = [DetDataSample(m, gt_instances=InstanceData(bboxes=b, labels=lab))
                for m, b, lab in zip(metas, gt_bboxes, gt_labels)]  # fmt: skip
    head.train()
    with pytest.raises(ValueError, match="with_mask=True"):
        head.forward_train(feats, proposals, no_masks)


def test_detection_to_per_class():
    result = InstanceData(
        bboxes=torch.tensor([[0.0, 0, 1, 1], [1, 1, 2, 2], [2, 2, 3, 3]]),
        scores=torch.tensor([0.9, 0.8, 0.7]),
        labels=torch.tensor([2, 0, 2]),
        masks=torch.tensor([[[True]], [[False]], [[True]]]),
    )
    bboxes, segms = detection_to_per_class(result, 4)
    assert [b.shape for b in bboxes] == [(1, 5), (0, 5), (2, 5), (0, 5)]
    assert all(b.dtype == np.float32 for b in bboxes)
    np.testing.assert_allclose(bboxes[2][:, 4], [0.9, 0.7])
    assert [len(s) for s in segms] == [1, 0, 2, 0] and segms[0][0].dtype == bool
    no_masks = detection_to_per_class(InstanceData(bboxes=result.bboxes[:0],
        scores=result.scores[:0], labels=result.labels[:0]), 2)  # fmt: skip
    assert [b.shape for b in no_masks] == [(0, 5), (0, 5)]


class _WideningSharedHead(torch.nn.Module):
    """A test shared head: a 3x3 conv from 2 to 6 channels on every pooled RoI."""

    def __init__(self, in_channels=2, out_channels=6):
        super().__init__()
        self.conv = torch.nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.calls = 0

    def init_weights(self):
        torch.nn.init.normal_(self.conv.weight, std=0.1)

    def forward(self, x):
        self.calls += 1
        return torch.relu(self.conv(x))


@pytest.mark.parametrize("share", [False, True])
def test_roi_head_with_a_shared_head_from_the_registry(share):
    """``shared_head`` is built from SHARED_HEADS and runs on the pooled features before the
    box head (and, with a shared extractor, the mask head): both heads take its 6 channels,
    and its weights get gradients."""
    from mmdet_like.registry import SHARED_HEADS

    SHARED_HEADS.register("WideningTestSharedHead", force=True)(_WideningSharedHead)
    extractor = dict(type="SingleRoIExtractor", roi_layer=dict(type="RoIAlign", output_size=4,
                     sampling_ratio=0), out_channels=2, featmap_strides=[4, 8])  # fmt: skip
    cfg = dict(
        type="StandardRoIHead",
        bbox_roi_extractor=extractor,
        shared_head=dict(type="WideningTestSharedHead"),
        bbox_head=dict(
            type="Shared2FCBBoxHead",
            in_channels=6,
            roi_feat_size=4,
            fc_out_channels=8,
            num_classes=3,
        ),  # fmt: skip
        mask_head=dict(
            type="FCNMaskHead",
            num_convs=1,
            roi_feat_size=4,
            in_channels=6 if share else 2,
            conv_out_channels=4,
            num_classes=3,
        ),  # fmt: skip
        train_cfg=RCNN_TRAIN,
        test_cfg=dict(score_thr=0.0, nms=dict(iou_thr=0.5), max_per_img=5),
    )
    cfg.update(share_roi_extractor=True) if share else cfg.update(mask_roi_extractor=extractor)
    torch.manual_seed(0)
    head = build_head(cfg)
    head.init_weights()
    assert head.with_shared_head and isinstance(head.shared_head, _WideningSharedHead)
    feats = (torch.randn(1, 2, 16, 16), torch.randn(1, 2, 8, 8))
    metas = [dict(img_shape=(64, 64, 3), ori_shape=(64, 64, 3), scale_factor=np.ones(4))]
    masks = np.zeros((1, 64, 64), np.uint8)
    masks[0, 4:30, 4:30] = 1
    proposals = [InstanceData(bboxes=torch.tensor([[5.0, 5, 28, 31]]))]
    samples = samples_from_lists(metas, [torch.tensor([[4.0, 4, 30, 30]])], [torch.tensor([1])],
                                 gt_masks=[BitmapMasks(masks, 64, 64)])  # fmt: skip
    losses = head.forward_train(feats, proposals, samples)
    sum(v for k, v in losses.items() if "loss" in k).backward()
    assert head.shared_head.conv.weight.grad.abs().sum() > 0
    results = head.simple_test(feats, proposals, metas)
    assert "masks" in results[0] and len(results[0]) > 0
    # the mask branch runs the shared head only when it shares the box branch's extractor
    head.shared_head.calls = 0
    head.simple_test(feats, proposals, metas)
    assert head.shared_head.calls == (2 if share else 1)


def test_train_cfg_lists_are_for_multi_stage_heads():
    from mmdet_like.models.roi_heads import BaseRoIHead

    extractor = dict(type="SingleRoIExtractor", roi_layer=dict(type="RoIAlign", output_size=4),
                     out_channels=2, featmap_strides=[4])  # fmt: skip
    box = dict(type="Shared2FCBBoxHead", in_channels=2, roi_feat_size=4, fc_out_channels=8,
               num_classes=3)  # fmt: skip
    base = BaseRoIHead(extractor, box, train_cfg=[RCNN_TRAIN, RCNN_TRAIN])
    assert len(base.assigner) == len(base.sampler) == 2
    from mmdet_like.registry import BuildError

    with pytest.raises(BuildError, match="has one stage: give one dict"):
        build_head(dict(type="StandardRoIHead", bbox_roi_extractor=extractor, bbox_head=box,
                        train_cfg=[RCNN_TRAIN]))  # fmt: skip
