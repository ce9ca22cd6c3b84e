"""Iteration timing: ``data_time`` (waiting for the batch) and ``time`` (whole iteration)."""

import time

from mmdet_like.engine.hooks.hook import Hook
from mmdet_like.registry import HOOKS


@HOOKS.register()
class IterTimerHook(Hook):
    """Logs ``data_time`` and ``time`` (seconds) of every iteration into the log buffer."""

    priority = "LOW"

    def before_epoch(self, runner):
        self._last = time.perf_counter()

    def before_iter(self, runner):
        runner.log_buffer.update({"data_time": time.perf_counter() - self._last})

    def after_iter(self, runner):
        now = time.perf_counter()
        runner.log_buffer.update({"time": now - self._last})
        self._last = now
