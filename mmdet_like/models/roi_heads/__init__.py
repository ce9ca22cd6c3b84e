"""Second-stage (RoI) heads: RoI extractors (``ROI_EXTRACTORS``) and heads (``HEADS``)."""

from mmdet_like.models.roi_heads.bbox_heads import (
    BBoxHead,
    ConvFCBBoxHead,
    Shared2FCBBoxHead,
    Shared4Conv1FCBBoxHead,
    multiclass_nms,
)
from mmdet_like.models.roi_heads.cascade_roi_head import CascadeRoIHead
from mmdet_like.models.roi_heads.keypoint_head import (
    KeypointRCNNHead,
    heatmaps_to_keypoints,
    keypoint_heatmap_targets,
)
from mmdet_like.models.roi_heads.mask_heads import (
    FCNMaskHead,
    mask_targets,
    paste_masks,
    paste_masks_torchvision,
)
from mmdet_like.models.roi_heads.roi_extractors import SingleRoIExtractor, map_roi_levels
from mmdet_like.models.roi_heads.shared_heads import ResLayer
from mmdet_like.models.roi_heads.standard_roi_head import BaseRoIHead, StandardRoIHead

__all__ = [
    "BBoxHead",
    "BaseRoIHead",
    "CascadeRoIHead",
    "ConvFCBBoxHead",
    "FCNMaskHead",
    "KeypointRCNNHead",
    "ResLayer",
    "Shared2FCBBoxHead",
    "Shared4Conv1FCBBoxHead",
    "SingleRoIExtractor",
    "StandardRoIHead",
    "heatmaps_to_keypoints",
    "keypoint_heatmap_targets",
    "map_roi_levels",
    "mask_targets",
    "multiclass_nms",
    "paste_masks",
    "paste_masks_torchvision",
]
