"""High-level entry points used by tools/ (training, testing) and the Python inference API."""

from mmdet_like.apis.inference import (
    LoadImageFromArray,
    inference_detector,
    inference_detector_samples,
    init_detector,
    show_result,
)
from mmdet_like.apis.slicing import (
    SlicedDetector,
    merge_detections,
    slice_windows,
    sliced_inference_samples,
)
from mmdet_like.apis.test import (
    encode_mask_results,
    multi_gpu_test,
    single_gpu_test,
)
from mmdet_like.apis.train import (
    init_random_seed,
    set_random_seed,
    train_detector,
)
from mmdet_like.models import build_detector  # the one detector builder
from mmdet_like.visualization import DrawStyle, draw_result  # the one drawing module

__all__ = [
    "DrawStyle",
    "LoadImageFromArray",
    "SlicedDetector",
    "build_detector",
    "draw_result",
    "encode_mask_results",
    "inference_detector",
    "inference_detector_samples",
    "init_detector",
    "init_random_seed",
    "merge_detections",
    "multi_gpu_test",
    "set_random_seed",
    "show_result",
    "single_gpu_test",
    "slice_windows",
    "sliced_inference_samples",
    "train_detector",
]
