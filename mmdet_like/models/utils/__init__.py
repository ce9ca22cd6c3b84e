"""Helpers shared by models (pretrained-weight loading, conv-BN fusion)."""

from mmdet_like.models.utils.fuse_conv_bn import fuse_conv_bn
from mmdet_like.models.utils.pretrained import (
    PretrainedWeightsError,
    load_pretrained,
    load_state_dict_report,
    load_torchvision_state_dict,
    read_checkpoint_state_dict,
    torchvision_cache_path,
)
from mmdet_like.models.utils.torchvision_detection import (
    TorchvisionConversionError,
    convert_to_torchvision_detection,
    convert_torchvision_detection,
)

__all__ = [
    "PretrainedWeightsError",
    "TorchvisionConversionError",
    "convert_to_torchvision_detection",
    "convert_torchvision_detection",
    "fuse_conv_bn",
    "load_pretrained",
    "load_state_dict_report",
    "load_torchvision_state_dict",
    "read_checkpoint_state_dict",
    "torchvision_cache_path",
]
