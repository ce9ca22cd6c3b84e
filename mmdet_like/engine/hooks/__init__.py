"""Built-in hooks (importing this package registers them all in ``HOOKS``)."""

from mmdet_like.engine.hooks.checkpoint import CheckpointHook
from mmdet_like.engine.hooks.early_stopping import EarlyStoppingHook, MonitoredMetricError
from mmdet_like.engine.hooks.ema import (
    DecayWarmupEMA,
    EMAHook,
    ExpMomentumEMA,
    ExponentialMovingAverage,
    MomentumAnnealingEMA,
    WeightAverager,
)
from mmdet_like.engine.hooks.evaluation import (
    DistEvalHook,
    EvalHook,
    collect_results,
    multi_process_inference,
    single_process_inference,
)
from mmdet_like.engine.hooks.experiment_loggers import (
    LoggerBackendError,
    MLflowLoggerHook,
    WandbLoggerHook,
)
from mmdet_like.engine.hooks.hook import PRIORITIES, Hook, get_priority
from mmdet_like.engine.hooks.iter_timer import IterTimerHook
from mmdet_like.engine.hooks.logger import LoggerHook, TensorboardLoggerHook, TextLoggerHook
from mmdet_like.engine.hooks.lr_updater import (
    CosineLrUpdaterHook,
    ExpLrUpdaterHook,
    FixedLrUpdaterHook,
    LrUpdaterHook,
    PolyLrUpdaterHook,
    StepLrUpdaterHook,
    build_lr_updater_hook,
)
from mmdet_like.engine.hooks.memory import EmptyCacheHook
from mmdet_like.engine.hooks.optimizer import GradientCumulativeOptimizerHook, OptimizerHook
from mmdet_like.engine.hooks.pipeline_switch import PipelineSwitchHook, pipeline_holders

__all__ = [
    "PRIORITIES",
    "CheckpointHook",
    "CosineLrUpdaterHook",
    "DecayWarmupEMA",
    "DistEvalHook",
    "EMAHook",
    "EarlyStoppingHook",
    "EmptyCacheHook",
    "EvalHook",
    "ExpLrUpdaterHook",
    "ExpMomentumEMA",
    "ExponentialMovingAverage",
    "FixedLrUpdaterHook",
    "GradientCumulativeOptimizerHook",
    "Hook",
    "IterTimerHook",
    "LoggerBackendError",
    "LoggerHook",
    "LrUpdaterHook",
    "MLflowLoggerHook",
    "MomentumAnnealingEMA",
    "MonitoredMetricError",
    "OptimizerHook",
    "PipelineSwitchHook",
    "PolyLrUpdaterHook",
    "StepLrUpdaterHook",
    "TensorboardLoggerHook",
    "TextLoggerHook",
    "WandbLoggerHook",
    "WeightAverager",
    "build_lr_updater_hook",
    "collect_results",
    "get_priority",
    "multi_process_inference",
    "pipeline_holders",
    "single_process_inference",
]
