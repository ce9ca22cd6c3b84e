"""Training machinery: config loading, runner, hooks, checkpoints, distributed helpers.

The engine never imports models or datasets: it is handed them.
"""

from mmdet_like.engine.batch_augments import (
    BatchAugmentedLoader,
    BatchSyncRandomResize,
    build_batch_augments,
)
from mmdet_like.engine.checkpoint import (
    CheckpointError,
    find_latest_checkpoint,
    load_checkpoint,
    load_checkpoint_file,
    load_state_dict,
    save_checkpoint,
)
from mmdet_like.engine.config import (
    CfgOptionsAction,
    ConfigError,
    ConfigKeyWarning,
    add_cfg_options_argument,
    load_config,
    parse_cfg_options,
    register_top_level_keys,
    unknown_top_level_keys,
)
from mmdet_like.engine.dist import (
    DistributedError,
    close_dist,
    get_dist_info,
    init_dist,
    is_distributed,
    master_only,
)
from mmdet_like.engine.hooks import *  # noqa: F403 (registers the built-in hooks)
from mmdet_like.engine.hooks import __all__ as _hooks_all
from mmdet_like.engine.log_buffer import LogBuffer
from mmdet_like.engine.logging import get_logger
from mmdet_like.engine.optimizer import (
    DefaultOptimizerConstructor,
    LearningRateDecayOptimizerConstructor,
    OptimizerConfigError,
    build_optimizer,
    param_group_settings,
)
from mmdet_like.engine.runner import (
    DataLoaderWorkerError,
    EpochBasedRunner,
    IterBasedRunner,
    NonFiniteLossError,
    NonFiniteWeightsError,
    move_to_device,
    parse_losses,
)

__all__ = [
    "BatchAugmentedLoader",
    "BatchSyncRandomResize",
    "build_batch_augments",
    "CfgOptionsAction",
    "add_cfg_options_argument",
    "CheckpointError",
    "ConfigKeyWarning",
    "DistributedError",
    "ConfigError",
    "DataLoaderWorkerError",
    "EpochBasedRunner",
    "IterBasedRunner",
    "LogBuffer",
    "NonFiniteLossError",
    "NonFiniteWeightsError",
    "build_optimizer",
    "DefaultOptimizerConstructor",
    "LearningRateDecayOptimizerConstructor",
    "OptimizerConfigError",
    "param_group_settings",
    "find_latest_checkpoint",
    "get_dist_info",
    "get_logger",
    "close_dist",
    "init_dist",
    "is_distributed",
    "load_checkpoint",
    "load_checkpoint_file",
    "load_config",
    "load_state_dict",
    "master_only",
    "move_to_device",
    "parse_cfg_options",
    "parse_losses",
    "register_top_level_keys",
    "save_checkpoint",
    "unknown_top_level_keys",
    *_hooks_all,
]
