"""Box math and small data structures shared by models, datasets and evaluation."""

from mmdet_like.structures.bbox import (
    bbox2result,
    bbox2roi,
    bbox_areas,
    bbox_cxcywh_to_xyxy,
    bbox_overlaps,
    bbox_xywh_to_xyxy,
    bbox_xyxy_to_cxcywh,
    bbox_xyxy_to_xywh,
    clip_bboxes,
    roi2bbox,
)

__all__ = [
    "bbox2result",
    "bbox2roi",
    "bbox_areas",
    "bbox_cxcywh_to_xyxy",
    "bbox_overlaps",
    "bbox_xywh_to_xyxy",
    "bbox_xyxy_to_cxcywh",
    "bbox_xyxy_to_xywh",
    "clip_bboxes",
    "roi2bbox",
]
