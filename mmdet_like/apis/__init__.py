"""High-level entry points used by tools/ (training; inference helpers come later)."""

from mmdet_like.apis.train import (
    build_detector,
    init_random_seed,
    set_random_seed,
    train_detector,
)

__all__ = ["build_detector", "init_random_seed", "set_random_seed", "train_detector"]
