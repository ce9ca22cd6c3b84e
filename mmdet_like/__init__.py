"""mmdet_like: a config-driven object-detection toolbox on PyTorch.

Importing the package registers every built-in part (models, datasets and transforms,
hooks, optimizers, metrics), so ``DATASETS.get("CocoDataset")`` works after
``import mmdet_like`` alone.
"""

from mmdet_like.version import __version__

# registration side effects: each subpackage's __init__ imports its modules
from mmdet_like import datasets, engine, evaluation, models  # noqa: E402, F401  isort: skip
from mmdet_like.engine.config_files import get_config, get_config_path, list_configs  # noqa: E402

__all__ = ["__version__", "get_config", "get_config_path", "list_configs"]
