"""mmdet_like: a config-driven object-detection toolbox on PyTorch."""

from mmdet_like.version import __version__

__all__ = ["__version__"]
