"""Box math and small data structures shared by models, datasets and evaluation."""

from mmdet_like.structures.bbox import (
    bbox2result,
    bbox2roi,
    bbox_areas,
    bbox_cxcywh_to_xyxy,
    bbox_mapping,
    bbox_mapping_back,
    bbox_overlaps,
    bbox_xywh_to_xyxy,
    bbox_xyxy_to_cxcywh,
    bbox_xyxy_to_xywh,
    clip_bboxes,
    flip_bboxes,
    roi2bbox,
)
from mmdet_like.structures.ground_truth import DatasetGroundTruth
from mmdet_like.structures.instance_data import DetDataSample, InstanceData
from mmdet_like.structures.instances import (
    DetectionResult,
    detection_to_instances,
    detection_to_per_class,
)
from mmdet_like.structures.mask import (
    BitmapMasks,
    PolygonMasks,
    bitmap_to_rle,
    masks_to_boxes,
    polygons_to_bitmap,
    rle_to_bitmap,
)

__all__ = [
    "DetDataSample",
    "InstanceData",
    "DatasetGroundTruth",
    "DetectionResult",
    "detection_to_instances",
    "detection_to_per_class",
    "BitmapMasks",
    "PolygonMasks",
    "bitmap_to_rle",
    "masks_to_boxes",
    "polygons_to_bitmap",
    "rle_to_bitmap",
    "bbox2result",
    "bbox2roi",
    "bbox_areas",
    "bbox_cxcywh_to_xyxy",
    "bbox_overlaps",
    "bbox_xywh_to_xyxy",
    "bbox_xyxy_to_cxcywh",
    "bbox_xyxy_to_xywh",
    "clip_bboxes",
    "flip_bboxes",
    "bbox_mapping",
    "bbox_mapping_back",
    "roi2bbox",
]
