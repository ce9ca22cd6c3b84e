"""Helpers shared by models (pretrained-weight loading)."""

from mmdet_like.models.utils.pretrained import (
    PretrainedWeightsError,
    load_pretrained,
    load_state_dict_report,
    load_torchvision_state_dict,
    read_checkpoint_state_dict,
    torchvision_cache_path,
)

__all__ = [
    "PretrainedWeightsError",
    "load_pretrained",
    "load_state_dict_report",
    "load_torchvision_state_dict",
    "read_checkpoint_state_dict",
    "torchvision_cache_path",
]
