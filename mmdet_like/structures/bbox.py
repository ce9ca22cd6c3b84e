"""Box math on ``[x1, y1, x2, y2]`` tensors: overlaps, format conversions, RoI packing.

Boxes are continuous coordinates: width is ``x2 - x1`` (no ``+ 1``).
"""

import numpy as np
import torch

# Above this many box pairs (N * M), ``bbox_overlaps`` works on row chunks of ``bboxes1`` so
# that its (rows, M, 2) intermediates stay bounded (about 32 bytes per pair in float32).
OVERLAPS_CHUNK_PAIRS = 1 << 22

OVERLAP_MODES = ("iou", "iof", "giou")


def _namespace(array):
    """``torch`` for tensors, ``numpy`` for arrays: the box math below is written once for
    both (the numpy path serves evaluation and the data pipeline)."""
    return torch if isinstance(array, torch.Tensor) else np


def bbox_areas(bboxes):
    """(..., 4) boxes (tensor or array) -> (...,) areas (negative sizes count as zero)."""
    wh = (bboxes[..., 2:] - bboxes[..., :2]).clip(min=0)
    return wh[..., 0] * wh[..., 1]


def bbox_overlaps(bboxes1, bboxes2, mode="iou", is_aligned=False, eps=1e-6, chunk_pairs=None):
    """IoU, IoF (intersection over the area of ``bboxes1``) or generalised IoU.

    Tensors in, a tensor out; numpy arrays in (any float dtype), a numpy array out, computed
    by the same code.

    Args:
        bboxes1: (..., N, 4) boxes.
        bboxes2: (..., M, 4) boxes (M == N when ``is_aligned``).
        mode: ``"iou"``, ``"iof"`` or ``"giou"``.
        is_aligned: compare ``bboxes1[i]`` with ``bboxes2[i]`` only.
        eps: floor of the denominators.
        chunk_pairs: row-chunking threshold in box pairs (default ``OVERLAPS_CHUNK_PAIRS``).

    Returns:
        (..., N, M) overlaps, or (..., N) when ``is_aligned``.
    """
    if mode not in OVERLAP_MODES:
        raise ValueError(f"bbox_overlaps: mode must be one of {OVERLAP_MODES}, got {mode!r}")
    if bboxes1.shape[-1] != 4 or bboxes2.shape[-1] != 4:
        raise ValueError(
            f"bbox_overlaps: boxes must end in 4 coordinates, got {tuple(bboxes1.shape)} "
            f"and {tuple(bboxes2.shape)}"
        )
    if is_aligned:
        if bboxes1.shape[:-1] != bboxes2.shape[:-1]:
            raise ValueError(
                f"bbox_overlaps(is_aligned=True): shapes differ, {tuple(bboxes1.shape)} vs "
                f"{tuple(bboxes2.shape)}"
            )
        return _overlaps(bboxes1, bboxes2, mode, eps)
    xp = _namespace(bboxes1)
    rows, cols = bboxes1.shape[-2], bboxes2.shape[-2]
    limit = OVERLAPS_CHUNK_PAIRS if chunk_pairs is None else chunk_pairs
    b2 = bboxes2[..., None, :, :]  # (..., 1, M, 4)
    if rows * cols <= limit or rows <= 1:
        return _overlaps(bboxes1[..., :, None, :], b2, mode, eps)
    step = max(1, limit // max(cols, 1))
    chunks = [
        _overlaps(bboxes1[..., start : start + step, None, :], b2, mode, eps)
        for start in range(0, rows, step)
    ]
    return torch.cat(chunks, dim=-2) if xp is torch else np.concatenate(chunks, axis=-2)


def _overlaps(b1, b2, mode, eps):
    """Broadcasting overlaps of (..., 4) against (..., 4) -> (...,)."""
    xp = _namespace(b1)
    area1 = bbox_areas(b1)
    lt = xp.maximum(b1[..., :2], b2[..., :2])
    rb = xp.minimum(b1[..., 2:], b2[..., 2:])
    wh = (rb - lt).clip(min=0)
    inter = wh[..., 0] * wh[..., 1]
    if mode == "iof":
        return inter / area1.clip(min=eps)
    union = (area1 + bbox_areas(b2) - inter).clip(min=eps)
    ious = inter / union
    if mode == "iou":
        return ious
    enclose_wh = (xp.maximum(b1[..., 2:], b2[..., 2:]) - xp.minimum(b1[..., :2], b2[..., :2])).clip(
        min=0
    )
    enclose = (enclose_wh[..., 0] * enclose_wh[..., 1]).clip(min=eps)
    return ious - (enclose - union) / enclose


def bbox_xyxy_to_cxcywh(bboxes):
    """(..., 4) ``[x1, y1, x2, y2]`` -> (..., 4) ``[cx, cy, w, h]``."""
    x1, y1, x2, y2 = bboxes.unbind(-1)
    return torch.stack([(x1 + x2) * 0.5, (y1 + y2) * 0.5, x2 - x1, y2 - y1], dim=-1)


def bbox_cxcywh_to_xyxy(bboxes):
    """(..., 4) ``[cx, cy, w, h]`` -> (..., 4) ``[x1, y1, x2, y2]``."""
    cx, cy, w, h = bboxes.unbind(-1)
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)


def bbox_xyxy_to_xywh(bboxes):
    """(..., 4) ``[x1, y1, x2, y2]`` -> (..., 4) ``[x1, y1, w, h]`` (COCO's format); tensor
    or array, a new one of the same type and dtype."""
    out = bboxes[..., :4].clone() if isinstance(bboxes, torch.Tensor) else bboxes[..., :4].copy()
    out[..., 2:] = bboxes[..., 2:4] - bboxes[..., :2]
    return out


def bbox_xywh_to_xyxy(bboxes):
    """(..., 4) ``[x1, y1, w, h]`` -> (..., 4) ``[x1, y1, x2, y2]``."""
    return torch.cat([bboxes[..., :2], bboxes[..., :2] + bboxes[..., 2:]], dim=-1)


def clip_bboxes(bboxes, img_shape):
    """Clamp (..., 4 * k) boxes (tensor or array) to an image of shape ``(h, w, ...)``;
    returns a new tensor or array (x to ``[0, w]``, y to ``[0, h]``)."""
    height, width = img_shape[0], img_shape[1]
    out = bboxes.clone() if isinstance(bboxes, torch.Tensor) else bboxes.copy()
    out[..., 0::2] = bboxes[..., 0::2].clip(0, width)
    out[..., 1::2] = bboxes[..., 1::2].clip(0, height)
    return out


def project_points(points, matrix):
    """(m, 2) ``x, y`` points (array) through a 3x3 projective ``matrix`` (``M @ (x, y, 1)``,
    divided by the third coordinate) -> (m, 2) float64."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    m = np.asarray(matrix, dtype=np.float64)
    out = points @ m[:2, :2].T + m[:2, 2]
    w = points @ m[2, :2] + m[2, 2]
    return out / w[:, None]


def warp_bboxes(bboxes, matrix):
    """(n, 4) boxes (array) moved by a 3x3 projective ``matrix``: the box around each box's
    four projected corners (mmdetection's ``RandomAffine`` rule; exact for scaling,
    translation and flips, a bound for rotation and shear). Not clipped. float32 (n, 4)."""
    bboxes = np.asarray(bboxes, dtype=np.float32).reshape(-1, 4)
    corners = bboxes[:, [0, 1, 2, 1, 2, 3, 0, 3]].reshape(-1, 2)
    moved = project_points(corners, matrix).reshape(-1, 4, 2)
    return np.concatenate([moved.min(axis=1), moved.max(axis=1)], axis=1).astype(np.float32)


def flip_bboxes(bboxes, img_shape, direction):
    """Flip (n, 4) boxes (tensor or array) inside an image of ``img_shape`` (h, w, ...):
    ``direction`` is ``"horizontal"``, ``"vertical"`` or ``"diagonal"`` (both)."""
    h, w = img_shape[:2]
    out = bboxes.clone() if isinstance(bboxes, torch.Tensor) else bboxes.copy()
    if direction in ("horizontal", "diagonal"):
        out[:, 0], out[:, 2] = w - bboxes[:, 2], w - bboxes[:, 0]
    if direction in ("vertical", "diagonal"):
        out[:, 1], out[:, 3] = h - bboxes[:, 3], h - bboxes[:, 1]
    return out


def bbox_mapping(bboxes, img_meta):
    """Boxes of the original image -> the augmented input described by ``img_meta``
    (resized by ``scale_factor``, then flipped if ``flip``). (n, 4 * k) tensor in and out."""
    factor = torch.as_tensor(img_meta.get("scale_factor", 1.0), dtype=bboxes.dtype)
    out = bboxes.reshape(-1, 4) * factor.to(bboxes.device)
    if img_meta.get("flip"):
        out = flip_bboxes(out, img_meta["img_shape"], img_meta.get("flip_direction"))
    return out.reshape(bboxes.shape)


def bbox_mapping_back(bboxes, img_meta):
    """The inverse of :func:`bbox_mapping`: boxes of an augmented input -> the original
    image. (n, 4 * k) tensor in and out."""
    out = bboxes.reshape(-1, 4)
    if img_meta.get("flip"):
        out = flip_bboxes(out, img_meta["img_shape"], img_meta.get("flip_direction"))
    factor = torch.as_tensor(img_meta.get("scale_factor", 1.0), dtype=bboxes.dtype)
    return (out / factor.to(bboxes.device)).reshape(bboxes.shape)


def bbox2roi(bbox_list):
    """Pack per-image boxes into RoIs.

    Args:
        bbox_list: list of (n_i, 4 or more) boxes, one per image (extra columns are dropped).

    Returns:
        (sum n_i, 5) ``[image_index, x1, y1, x2, y2]``.
    """
    if not bbox_list:
        raise ValueError("bbox2roi: got an empty list of images")
    boxes = torch.cat([b[:, :4] for b in bbox_list], dim=0)
    if len(bbox_list) == 1:  # every RoI of image 0 (and no per-image counts: traceable)
        return torch.cat([boxes.new_zeros((boxes.size(0), 1)), boxes], dim=1)
    counts = torch.tensor([b.size(0) for b in bbox_list], device=boxes.device)
    image_index = torch.repeat_interleave(
        torch.arange(len(bbox_list), device=boxes.device, dtype=boxes.dtype),
        counts,
        output_size=boxes.size(0),
    )
    return torch.cat([image_index[:, None], boxes], dim=1)


def roi2bbox(rois, num_images):
    """Unpack (K, 5) RoIs sorted by image index into a list of ``num_images`` (k_i, 4) boxes."""
    counts = torch.bincount(rois[:, 0].long(), minlength=num_images).tolist()
    return list(rois[:, 1:].split(counts, dim=0))


def bbox2result(bboxes, labels, num_classes):
    """Detections of one image as per-class arrays (mmdetection's result format).

    Args:
        bboxes: (N, 5) ``[x1, y1, x2, y2, score]``.
        labels: (N,) class indices in ``[0, num_classes)``.

    Returns:
        list of ``num_classes`` float32 numpy arrays of shape (n_c, 5).
    """
    if bboxes.size(0) == 0:
        return [np.zeros((0, 5), dtype=np.float32) for _ in range(num_classes)]
    order = torch.argsort(labels, stable=True)
    counts = torch.bincount(labels, minlength=num_classes).tolist()
    per_class = bboxes[order].detach().float().cpu().numpy()
    return list(np.split(per_class, np.cumsum(counts)[:-1]))
