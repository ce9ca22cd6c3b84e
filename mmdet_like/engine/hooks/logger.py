"""Logger hooks: console + ``{timestamp}.log.json`` (TextLoggerHook), TensorBoard; W&B and
MLflow in :mod:`mmdet_like.engine.hooks.experiment_loggers`."""

import datetime
import json
import os.path as osp
import resource
import time

import torch

from mmdet_like.engine.hooks.hook import Hook
from mmdet_like.registry import HOOKS


def memory_mb(device):
    """Peak memory in MB: CUDA allocated on a GPU, else the process's peak resident size."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device) / 2**20)
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


POSITION_KEYS = ("mode", "epoch", "iter", "iters_per_epoch")
"""The keys of a log record that say where it is in the run (not logged values)."""


class LoggerHook(Hook):
    """Builds log records every ``interval`` iterations and at epoch ends; rank 0 writes.

    A record is a dict: ``mode`` ("train" / "val"), ``epoch`` (1-based), ``iter``
    (1-based within the epoch), ``iters_per_epoch`` (training records and evaluation
    results: the training epoch's length, so that a record's place in the run is known from
    the record alone, in a resumed run's log too), ``lr``, ``time``, ``data_time``,
    ``memory`` and every averaged loss / metric; training records also hold the log
    buffer's counters (totals since the run started, e.g. ``skipped_steps``,
    ``skipped_images``). Subclasses implement :meth:`write`.
    """

    priority = "VERY_LOW"

    def __init__(self, interval=50, ignore_last=False):
        self.interval = interval
        self.ignore_last = ignore_last
        self._last_logged = 0

    def write(self, runner, record):
        raise NotImplementedError

    @staticmethod
    def global_step(runner, record):
        """The step to log ``record`` at: the global iteration it ends (1-based); an
        evaluation or ``val`` workflow record at the last training iteration before it (an
        evaluation by iterations is logged in that iteration's ``after_train_iter``)."""
        in_iteration = record["mode"] == "train" or runner._stage == "after_train_iter"
        return runner.iter + 1 if in_iteration else runner.iter

    @staticmethod
    def scalars(record):
        """``{"{mode}/{key}": value}`` for every number of ``record`` but its epoch and
        iteration (losses, ``lr``, times, metrics, counters)."""
        return {
            f"{record['mode']}/{key}": value
            for key, value in record.items()
            if key not in POSITION_KEYS
            and isinstance(value, int | float)
            and not isinstance(value, bool)
        }

    def _emit(self, runner, record):
        if runner.rank == 0:
            self.write(runner, record)

    def before_train_epoch(self, runner):
        self._last_logged = 0

    def after_train_iter(self, runner):
        done = runner.inner_iter + 1
        last = done == len(runner.data_loader) or runner.iter + 1 == runner.max_iters
        if self.every_n_inner_iters(runner, self.interval) or (last and not self.ignore_last):
            self._log_train(runner, done)
        if runner.log_buffer.eval_output and runner.log_buffer.eval_iter == runner.iter + 1:
            # an evaluation by iterations (EvalHook(by_epoch=False)) after this iteration
            evaluated = {"mode": "val", "epoch": runner.epoch + 1, "iter": done,
                         "iters_per_epoch": len(runner.data_loader)}  # fmt: skip
            evaluated.update(runner.log_buffer.eval_output)
            self._emit(runner, evaluated)

    def _log_train(self, runner, done):
        values = runner.log_buffer.average(last=max(done - self._last_logged, 1))
        self._last_logged = done
        record = {
            "mode": "train",
            "epoch": runner.epoch + 1,
            "iter": done,
            "iters_per_epoch": len(runner.data_loader),
            "lr": runner.current_lr()[0] if runner.current_lr() else None,
            "memory": memory_mb(runner.device),
        }
        record.update({k: values[k] for k in ("time", "data_time") if k in values})
        record.update({k: v for k, v in values.items() if k not in record})
        record.update(runner.log_buffer.counters)  # totals since the run started
        self._emit(runner, record)

    def after_train_epoch(self, runner):
        if runner.log_buffer.eval_output and runner.log_buffer.eval_iter is None:
            record = {"mode": "val", "epoch": runner.epoch + 1, "iter": runner.inner_iter + 1,
                      "iters_per_epoch": len(runner.data_loader)}  # fmt: skip
            record.update(runner.log_buffer.eval_output)
            self._emit(runner, record)

    def after_val_epoch(self, runner):
        values = runner.log_buffer.average()
        record = {
            "mode": "val",
            "epoch": runner.epoch,
            "iter": runner.inner_iter + 1,
            "lr": runner.current_lr()[0] if runner.current_lr() else None,
            "memory": memory_mb(runner.device),
        }
        record.update({k: values[k] for k in ("time", "data_time") if k in values})
        record.update({k: v for k, v in values.items() if k not in record})
        self._emit(runner, record)


@HOOKS.register()
class TextLoggerHook(LoggerHook):
    """Console lines with an ETA, and one JSON object a line in
    ``{work_dir}/{timestamp}.log.json``."""

    def __init__(self, interval=50, ignore_last=False):
        super().__init__(interval, ignore_last)
        self.json_path = None
        self._start_time = None
        self._start_iter = 0

    def before_run(self, runner):
        if runner.work_dir is not None:
            self.json_path = osp.join(runner.work_dir, f"{runner.timestamp}.log.json")
        self._start_time = time.perf_counter()
        self._start_iter = runner.iter

    def eta(self, runner):
        done = runner.iter + 1 - self._start_iter
        per_iter = (time.perf_counter() - self._start_time) / max(done, 1)
        remaining = max((runner.max_iters or 0) - runner.iter - 1, 0)
        return str(datetime.timedelta(seconds=int(per_iter * remaining)))

    def write(self, runner, record):
        if self.json_path is not None:
            with open(self.json_path, "a") as f:
                f.write(json.dumps(record) + "\n")
        if record["mode"] == "train":
            head = (
                f"Epoch [{record['epoch']}][{record['iter']}/{len(runner.data_loader)}]\t"
                f"lr: {record['lr']:.3e}, eta: {self.eta(runner)}, "
            )
        else:
            head = f"Epoch({record['mode']}) [{record['epoch']}][{record['iter']}]\t"
        skip = {*POSITION_KEYS, "lr"}
        items = []
        for key, value in record.items():
            if key in skip or value is None:
                continue
            items.append(f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}")
        runner.logger.info(head + ", ".join(items))


@HOOKS.register()
class TensorboardLoggerHook(LoggerHook):
    """Scalars ``{mode}/{key}`` at step = global iteration (:meth:`LoggerHook.global_step`),
    in ``log_dir`` (default: ``{work_dir}/tf_logs``). Needs the ``tensorboard`` package."""

    def __init__(self, interval=50, ignore_last=False, log_dir=None):
        super().__init__(interval, ignore_last)
        self.log_dir = log_dir
        self.writer = None

    def before_run(self, runner):
        if runner.rank != 0:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise ImportError(
                "TensorboardLoggerHook needs tensorboard: pip install "
                "tensorboard (or remove it from log_config.hooks)"
            ) from exc
        self.log_dir = self.log_dir or osp.join(runner.work_dir, "tf_logs")
        self.writer = SummaryWriter(self.log_dir)

    def write(self, runner, record):
        step = self.global_step(runner, record)
        for tag, value in self.scalars(record).items():
            self.writer.add_scalar(tag, value, step)
        self.writer.flush()

    def after_run(self, runner):
        if self.writer is not None:
            self.writer.close()
