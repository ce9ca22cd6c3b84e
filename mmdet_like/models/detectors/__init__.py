"""Detectors, registered in ``DETECTORS``."""

from mmdet_like.models.detectors.base import BaseDetector, pad_images
from mmdet_like.models.detectors.deformable_detr import DeformableDETR
from mmdet_like.models.detectors.detection_transformer import DetectionTransformer
from mmdet_like.models.detectors.detr import DETR
from mmdet_like.models.detectors.dino import DINO
from mmdet_like.models.detectors.rpn import RPN
from mmdet_like.models.detectors.rtdetr import RTDETR
from mmdet_like.models.detectors.single_stage import (
    ATSS,
    FCOS,
    GFL,
    RetinaNet,
    SingleStageDetector,
)
from mmdet_like.models.detectors.two_stage import (
    CascadeRCNN,
    FasterRCNN,
    FastRCNN,
    KeypointRCNN,
    MaskRCNN,
    TwoStageDetector,
)

__all__ = [
    "ATSS",
    "FCOS",
    "GFL",
    "RPN",
    "BaseDetector",
    "CascadeRCNN",
    "DETR",
    "DINO",
    "DeformableDETR",
    "DetectionTransformer",
    "FastRCNN",
    "FasterRCNN",
    "KeypointRCNN",
    "MaskRCNN",
    "RTDETR",
    "RetinaNet",
    "SingleStageDetector",
    "TwoStageDetector",
    "pad_images",
]
