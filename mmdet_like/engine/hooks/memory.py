"""Release cached CUDA memory at chosen points."""

import torch

from mmdet_like.engine.hooks.hook import Hook
from mmdet_like.registry import HOOKS


@HOOKS.register()
class EmptyCacheHook(Hook):
    """``torch.cuda.empty_cache()`` before/after epochs and/or after iterations (CUDA only)."""

    def __init__(self, before_epoch=False, after_epoch=True, after_iter=False):
        self._before_epoch = before_epoch
        self._after_epoch = after_epoch
        self._after_iter = after_iter

    @staticmethod
    def _empty(runner):
        if runner.device.type == "cuda":
            torch.cuda.empty_cache()

    def before_epoch(self, runner):
        if self._before_epoch:
            self._empty(runner)

    def after_epoch(self, runner):
        if self._after_epoch:
            self._empty(runner)

    def after_iter(self, runner):
        if self._after_iter:
            self._empty(runner)
