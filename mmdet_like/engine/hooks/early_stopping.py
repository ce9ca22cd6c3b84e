"""Early stopping: end training once an evaluation metric stops improving."""

import math
import numbers
import warnings

from mmdet_like.engine.dist import broadcast_object, is_distributed
from mmdet_like.engine.hooks.evaluation import EvalHook
from mmdet_like.engine.hooks.hook import Hook
from mmdet_like.errors import ProjectError
from mmdet_like.registry import HOOKS

RULES = ("greater", "less")


class MonitoredMetricError(ProjectError, LookupError):
    """The metric an :class:`EarlyStoppingHook` watches is not among the evaluation's."""


@HOOKS.register()
class EarlyStoppingHook(Hook):
    """Stop training when the metric ``monitor`` has not improved for ``patience``
    evaluations in a row.

    It reads the metrics the evaluation hook (the ``evaluation`` config) logs after each
    evaluation; epochs without an evaluation do not count. An evaluation improves when its
    value beats the best so far by more than ``min_delta``: higher with ``rule="greater"``,
    lower with ``rule="less"`` (a value that is not finite never improves). After
    ``patience`` evaluations without improvement the hook calls ``runner.request_stop``: the
    epoch's hooks finish (its checkpoint is written as usual) and the run ends with one log
    line giving the reason and the epoch of the best value.

    ``strict=True``: a ``monitor`` the evaluation does not give is a
    :class:`MonitoredMetricError` at the first evaluation, naming the metrics it gave;
    ``strict=False`` logs that as a warning once and never stops.

    State (best value, its epoch, evaluations without improvement) goes into checkpoints,
    so a resumed run goes on counting. In a process group rank 0 (the one that evaluates)
    decides and every rank stops.
    """

    priority = "VERY_LOW"  # after the evaluation hook (LOW), which writes the metrics

    def __init__(self, monitor="bbox_mAP", patience=5, min_delta=0.0, rule="greater", strict=False):
        if not isinstance(monitor, str) or not monitor:
            raise ValueError(f"EarlyStoppingHook: monitor must be a metric name, got {monitor!r}")
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise ValueError(
                f"EarlyStoppingHook: patience must be a whole number >= 1, got {patience!r}"
            )
        if (
            isinstance(min_delta, bool)
            or not isinstance(min_delta, numbers.Real)
            or not min_delta >= 0
        ):
            raise ValueError(
                f"EarlyStoppingHook: min_delta must be a number >= 0, got {min_delta!r}"
            )
        if rule not in RULES:
            raise ValueError(f"EarlyStoppingHook: rule must be 'greater' or 'less', got {rule!r}")
        self.monitor = monitor
        self.patience = patience
        self.min_delta = float(min_delta)
        self.rule = rule
        self.strict = bool(strict)
        self.best_score = None
        self.best_epoch = None
        self.wait_count = 0
        self._warned = False

    # ------------------------------------------------------------------------- state
    def state_dict(self):
        return {
            "monitor": self.monitor,
            "rule": self.rule,
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "wait_count": self.wait_count,
        }

    def load_state_dict(self, state):
        saved = (state.get("monitor"), state.get("rule"))
        if saved != (self.monitor, self.rule):
            warnings.warn(
                f"EarlyStoppingHook: the checkpoint's state watches {saved[0]!r} "
                f"(rule {saved[1]!r}), this run {self.monitor!r} (rule {self.rule!r}); "
                "counting starts afresh",
                stacklevel=2,
            )
            return
        self.best_score = state.get("best_score")
        self.best_epoch = state.get("best_epoch")
        self.wait_count = int(state.get("wait_count", 0))

    # ----------------------------------------------------------------------- running
    def before_run(self, runner):
        if not any(isinstance(hook, EvalHook) for hook in runner.hooks):
            runner.logger.warning(
                "EarlyStoppingHook(monitor=%r): this run has no evaluation hook (no "
                "`evaluation` config, or --no-validate), so it never stops training",
                self.monitor,
            )

    def improves(self, score):
        """Whether ``score`` beats the best so far by more than ``min_delta``."""
        if not math.isfinite(score):
            return False
        if self.best_score is None:
            return True
        if self.rule == "greater":
            return score - self.min_delta > self.best_score
        return score + self.min_delta < self.best_score

    def update(self, runner, metrics):
        """Count one evaluation (``metrics``: name -> value) at ``runner.epoch``; returns
        the reason to stop, or None."""
        if self.monitor not in metrics:
            message = (
                f"EarlyStoppingHook: the evaluation gave no metric {self.monitor!r}; it gave "
                f"{sorted(metrics)}. Set the hook's monitor to one of them"
            )
            if self.strict:
                raise MonitoredMetricError(message)
            if not self._warned:
                runner.logger.warning("%s; early stopping is off for this run", message)
                self._warned = True
            return None
        score = float(metrics[self.monitor])
        if self.improves(score):
            self.best_score, self.best_epoch, self.wait_count = score, runner.epoch + 1, 0
            return None
        self.wait_count += 1
        if self.wait_count < self.patience:
            return None
        if self.best_score is None:
            best = "no finite value yet"
        else:
            best = f"best {self.best_score:.4f} at epoch {self.best_epoch}"
        return (
            f"early stopping: {self.monitor} has not improved by more than {self.min_delta:g} "
            f"({self.rule}) in {self.wait_count} evaluations ({best})"
        )

    def after_train_epoch(self, runner):
        outcome = None  # None, ("stop", reason) or ("error", message)
        metrics = runner.log_buffer.eval_output  # this epoch's evaluation, on rank 0
        if runner.rank == 0 and metrics:
            try:
                reason = self.update(runner, metrics)
            except MonitoredMetricError as exc:
                outcome = ("error", str(exc))
            else:
                outcome = ("stop", reason) if reason else None
        if is_distributed():
            outcome = broadcast_object(outcome)
        if outcome is None:
            return
        kind, message = outcome
        if kind == "error":
            raise MonitoredMetricError(message)
        runner.request_stop(message)
