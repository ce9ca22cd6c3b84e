"""Data pipeline: ``Compose`` of registered transforms on a results dict.

Importing this package registers every transform and sets ``cv2.setNumThreads(0)``:
OpenCV's own thread pool would oversubscribe the CPU in every data-loader worker (and
can deadlock after fork).
"""

import cv2

from mmdet_like.datasets.pipelines.compose import Compose
from mmdet_like.datasets.pipelines.field_kinds import BoxField, MaskField, geometric_fields
from mmdet_like.datasets.pipelines.formatting import (
    Collect,
    DefaultFormatBundle,
    ImageToTensor,
    PackDetInputs,
    image_to_tensor,
    to_tensor,
)
from mmdet_like.datasets.pipelines.loading import LoadAnnotations, LoadImageFromFile, LoadProposals
from mmdet_like.datasets.pipelines.mix_transforms import (
    CopyPaste,
    MixUp,
    Mosaic,
    RandomAffine,
    YOLOXHSVRandomAug,
)
from mmdet_like.datasets.pipelines.test_time_aug import MultiScaleFlipAug
from mmdet_like.datasets.pipelines.transforms import (
    Expand,
    FilterAnnotations,
    MinIoURandomCrop,
    Normalize,
    Pad,
    PhotoMetricDistortion,
    RandomCrop,
    RandomFlip,
    RandomResize,
    Resize,
    flip_bboxes,
)
from mmdet_like.datasets.pipelines.wrappers import RandomChoice

cv2.setNumThreads(0)


__all__ = [
    "BoxField",
    "MaskField",
    "geometric_fields",
    "Collect",
    "Compose",
    "CopyPaste",
    "DefaultFormatBundle",
    "Expand",
    "FilterAnnotations",
    "ImageToTensor",
    "PackDetInputs",
    "LoadAnnotations",
    "LoadImageFromFile",
    "LoadProposals",
    "MinIoURandomCrop",
    "MixUp",
    "Mosaic",
    "MultiScaleFlipAug",
    "Normalize",
    "Pad",
    "PhotoMetricDistortion",
    "RandomAffine",
    "RandomChoice",
    "RandomCrop",
    "RandomFlip",
    "RandomResize",
    "Resize",
    "YOLOXHSVRandomAug",
    "flip_bboxes",
    "image_to_tensor",
    "to_tensor",
]
