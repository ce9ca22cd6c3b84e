"""IoU calculator object for configs (``iou_calculator=dict(type="BboxOverlaps2D")``)."""

from mmdet_like.registry import IOU_CALCULATORS
from mmdet_like.structures import bbox_overlaps


@IOU_CALCULATORS.register()
class BboxOverlaps2D:
    """(N, 4) x (M, 4) boxes -> (N, M) overlaps (extra columns such as scores are ignored)."""

    def __call__(self, bboxes1, bboxes2, mode="iou", is_aligned=False):
        return bbox_overlaps(bboxes1[..., :4], bboxes2[..., :4], mode=mode, is_aligned=is_aligned)

    def __repr__(self):
        return "BboxOverlaps2D()"
