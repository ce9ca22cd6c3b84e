"""Box regression targets as distances from a point to the box's four sides (anchor-free
heads such as FCOS)."""

import torch

from mmdet_like.registry import BBOX_CODERS


@BBOX_CODERS.register()
class DistancePointBBoxCoder:
    """Encode boxes as ``(left, top, right, bottom)`` distances from points, and decode back
    (mmdetection's ``DistancePointBBoxCoder``).

    ``left = px - x1``, ``top = py - y1``, ``right = x2 - px``, ``bottom = y2 - py``: all
    positive for a point inside the box. Points and boxes broadcast against each other, so
    (P, 1, 2) points and (G, 4) boxes give every point's (P, G, 4) distances to every box.

    Args:
        clip_border: clip decoded boxes to ``max_shape`` when it is given.
    """

    def __init__(self, clip_border=True):
        self.clip_border = clip_border

    def encode(self, points, gt_bboxes, max_dis=None, eps=0.1):
        """(..., 2) points (further columns, e.g. strides, are not read) and (..., 4) boxes
        -> (..., 4) distances; with ``max_dis``, clamped to ``[0, max_dis - eps]``."""
        distances = torch.stack(
            [
                points[..., 0] - gt_bboxes[..., 0],
                points[..., 1] - gt_bboxes[..., 1],
                gt_bboxes[..., 2] - points[..., 0],
                gt_bboxes[..., 3] - points[..., 1],
            ],
            dim=-1,
        )
        if max_dis is not None:
            distances = distances.clamp(min=0, max=max_dis - eps)
        return distances

    def decode(self, points, distances, max_shape=None):
        """(..., 2) points (further columns are not read) and (..., 4) distances -> (..., 4)
        boxes; with ``max_shape`` ``(h, w)`` (and ``clip_border``) clipped to the image."""
        x1 = points[..., 0] - distances[..., 0]
        y1 = points[..., 1] - distances[..., 1]
        x2 = points[..., 0] + distances[..., 2]
        y2 = points[..., 1] + distances[..., 3]
        if self.clip_border and max_shape is not None:
            height, width = max_shape[0], max_shape[1]
            x1, x2 = x1.clamp(0, width), x2.clamp(0, width)
            y1, y2 = y1.clamp(0, height), y2.clamp(0, height)
        return torch.stack([x1, y1, x2, y2], dim=-1)
