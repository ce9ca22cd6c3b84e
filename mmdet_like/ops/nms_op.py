"""Non-maximum suppression backed by the compiled ``mmdet_like::nms`` and ``soft_nms`` ops."""

import torch

from mmdet_like.ops import _ext_loader  # noqa: F401  (registers torch.ops.mmdet_like)

_op = torch.ops.mmdet_like

# Above this many boxes, batched_nms runs one nms per class instead of one nms over all
# classes with offset coordinates: the single call does work quadratic in the total number
# of boxes kept, the per-class loop only in the boxes of each class.
BATCHED_NMS_LOOP_THRESHOLD = {"cpu": 4_000, "cuda": 20_000}

SOFT_NMS_METHODS = {"hard": 0, "naive": 0, "linear": 1, "gaussian": 2}


def nms(boxes, scores, iou_threshold):
    """Greedy non-maximum suppression.

    Args:
        boxes: (N, 4) ``[x1, y1, x2, y2]``.
        scores: (N,).
        iou_threshold: a box is dropped when its IoU with a kept, higher-scored box is above this.

    Returns:
        (M,) int64 indices of the kept boxes, in descending score order (ties: lower index first).
    """
    return _op.nms(boxes, scores, float(iou_threshold))


@torch.library.register_fake("mmdet_like::nms")
def _nms_fake(boxes, scores, iou_threshold):
    torch._check(boxes.dim() == 2 and boxes.size(1) == 4, lambda: "nms: boxes must be (N, 4)")
    torch._check(scores.dim() == 1 and scores.size(0) == boxes.size(0), lambda: "nms: scores (N,)")
    num_kept = torch.library.get_ctx().new_dynamic_size()
    return boxes.new_empty((num_kept,), dtype=torch.long)


def batched_nms(boxes, scores, idxs, iou_threshold, num_categories=None):
    """NMS within each category: boxes of different ``idxs`` never suppress each other.

    Args:
        boxes: (N, 4); scores: (N,); idxs: (N,) int category (or image) index of each box.
        num_categories: the number of categories when it is known (``idxs`` in
            ``[0, num_categories)``); a traced program (torch.export, ONNX) then runs one NMS
            per category, as eager mode does for many boxes, instead of one over all.

    Returns:
        (M,) int64 indices of the kept boxes in descending score order.
    """
    if torch.compiler.is_compiling():  # traced (torch.export): no branch on the box count
        if num_categories:
            return _batched_nms_static_categories(boxes, scores, idxs, iou_threshold,
                                                  num_categories)  # fmt: skip
        return _batched_nms_offset(boxes, scores, idxs, iou_threshold)
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.long, device=boxes.device)
    loop_above = BATCHED_NMS_LOOP_THRESHOLD.get(boxes.device.type, 4_000)
    if boxes.size(0) > loop_above:
        return _batched_nms_per_class(boxes, scores, idxs, iou_threshold)
    return _batched_nms_offset(boxes, scores, idxs, iou_threshold)


def _batched_nms_offset(boxes, scores, idxs, iou_threshold):
    # Shift each category to its own region of the plane so that categories cannot overlap.
    if torch.compiler.is_compiling():
        # a traced program may see no box at run time: the max of [boxes, 0] is defined then
        max_coordinate = torch.cat([boxes.reshape(-1), boxes.new_zeros(1)]).max()
    else:
        max_coordinate = boxes.max()
    offsets = idxs.to(boxes) * (
        max_coordinate + torch.tensor(1, dtype=boxes.dtype, device=boxes.device)
    )
    return nms(boxes + offsets[:, None], scores, iou_threshold)


def _batched_nms_per_class(boxes, scores, idxs, iou_threshold):
    keep_mask = torch.zeros_like(scores, dtype=torch.bool)
    for category in torch.unique(idxs).tolist():
        members = torch.where(idxs == category)[0]
        keep_mask[members[nms(boxes[members], scores[members], iou_threshold)]] = True
    kept = torch.where(keep_mask)[0]
    return kept[scores[kept].sort(descending=True, stable=True)[1]]


def _batched_nms_static_categories(boxes, scores, idxs, iou_threshold, num_categories):
    # one NMS per category in a loop of static length (a traced program cannot loop over the
    # categories present); the boxes _batched_nms_per_class keeps, in its order but for
    # exact score ties
    kept = []
    for category in range(num_categories):
        members = torch.nonzero(idxs == category).reshape(-1)
        kept.append(members[nms(boxes[members], scores[members], iou_threshold)])
    kept = torch.cat(kept).sort().values  # input order (ties: lower index first, mostly)
    # descending score; not the stable sort of eager mode, which ONNX cannot express
    return kept[torch.argsort(scores[kept], descending=True)]


def soft_nms(boxes, scores, iou_threshold=0.3, sigma=0.5, min_score=1e-3, method="linear"):
    """Soft-NMS: decay the scores of overlapping boxes instead of removing them.

    ``method`` is ``"linear"`` (score * (1 - IoU) above ``iou_threshold``), ``"gaussian"``
    (score * exp(-IoU^2 / sigma)) or ``"hard"`` (plain NMS). Boxes whose score falls below
    ``min_score`` are dropped. The algorithm is sequential; CUDA inputs are processed on the
    CPU and the results moved back.

    Args:
        boxes: (N, 4); scores: (N,).

    Returns:
        dets: (M, 5) ``[x1, y1, x2, y2, decayed_score]``; keep: (M,) int64 input indices; both in
        selection order (descending decayed score).
    """
    if method not in SOFT_NMS_METHODS:
        raise ValueError(
            f"soft_nms: method must be one of {sorted(SOFT_NMS_METHODS)}, got {method!r}"
        )
    device = boxes.device
    dets, keep = _op.soft_nms(
        boxes.detach().cpu(),
        scores.detach().cpu().to(boxes.dtype),
        float(iou_threshold),
        float(sigma),
        float(min_score),
        SOFT_NMS_METHODS[method],
    )
    return dets.to(device), keep.to(device)


@torch.library.register_fake("mmdet_like::soft_nms")
def _soft_nms_fake(boxes, scores, iou_threshold, sigma, min_score, method):
    num_kept = torch.library.get_ctx().new_dynamic_size()
    return boxes.new_empty((num_kept, 5)), boxes.new_empty((num_kept,), dtype=torch.long)
