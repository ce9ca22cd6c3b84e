"""High-level entry points used by tools/ (training, testing; inference helpers come later)."""

from mmdet_like.apis.test import (
    draw_result,
    encode_mask_results,
    multi_gpu_test,
    single_gpu_test,
)
from mmdet_like.apis.train import (
    build_detector,
    init_random_seed,
    set_random_seed,
    train_detector,
)

__all__ = [
    "build_detector",
    "draw_result",
    "encode_mask_results",
    "init_random_seed",
    "multi_gpu_test",
    "set_random_seed",
    "single_gpu_test",
    "train_detector",
]
