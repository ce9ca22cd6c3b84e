"""Periodic checkpoints, ``latest.pth`` and removal of old ones."""

import os
import os.path as osp
import re

from mmdet_like.engine.checkpoint import CheckpointError, remove_partial_checkpoints
from mmdet_like.engine.hooks.hook import Hook
from mmdet_like.registry import HOOKS

ON_ERROR = ("stop", "warn")


def update_latest(out_dir, filename):
    """Point ``out_dir/latest.pth`` at ``filename`` atomically (symlink, else a copy)."""
    latest = osp.join(out_dir, "latest.pth")
    tmp = osp.join(out_dir, f".latest.pth.{os.getpid()}.tmp")
    try:
        if osp.lexists(tmp):
            os.remove(tmp)
        os.symlink(filename, tmp)
    except OSError:  # no symlinks on this file system: a copy, made durable before the rename
        import shutil

        shutil.copyfile(osp.join(out_dir, filename), tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
    os.replace(tmp, latest)


@HOOKS.register()
class CheckpointHook(Hook):
    """Save a checkpoint every ``interval`` epochs (or iterations with ``by_epoch=False``).

    Files are ``epoch_{N}.pth`` / ``iter_{N}.pth`` in ``out_dir`` (default: the work dir);
    ``latest.pth`` points at the newest. ``max_keep_ckpts > 0`` keeps only that many of
    the newest; ``save_optimizer=False`` omits the optimizer state (weights-only files that
    ``resume_from`` still accepts, without optimizer state); ``save_last`` also saves at
    the final epoch / iteration.

    Writes are atomic (temporary file, fsync, rename): a failed or killed save never
    replaces a checkpoint, and ``latest.pth`` moves only once the new file is complete.
    ``on_error`` says what a save that fails with an OS error (disk full, quota, permission)
    does: ``"stop"`` (default) raises :class:`CheckpointError` naming the file, the error and
    the last good checkpoint; ``"warn"`` logs that and trains on (the next save tries
    again). Temporary files left by a killed save are removed at the start of a run.
    """

    priority = "NORMAL"

    def __init__(
        self,
        interval=1,
        by_epoch=True,
        save_optimizer=True,
        max_keep_ckpts=-1,
        save_last=True,
        out_dir=None,
        on_error="stop",
    ):
        if interval <= 0:
            raise ValueError(f"checkpoint interval must be positive, got {interval}")
        if on_error not in ON_ERROR:
            raise ValueError(f"checkpoint on_error must be one of {ON_ERROR}, got {on_error!r}")
        self.on_error = on_error
        self.interval = interval
        self.by_epoch = by_epoch
        self.save_optimizer = save_optimizer
        self.max_keep_ckpts = max_keep_ckpts
        self.save_last = save_last
        self.out_dir = out_dir

    def before_run(self, runner):
        self.out_dir = self.out_dir or runner.work_dir
        if self.out_dir is None:
            raise ValueError("CheckpointHook: no out_dir and the runner has no work_dir")
        if runner.rank == 0:
            for path in remove_partial_checkpoints(self.out_dir):
                runner.logger.warning("removed %s, left by a save that was interrupted", path)

    def _save(self, runner, number):
        prefix = "epoch" if self.by_epoch else "iter"
        filename = f"{prefix}_{number}.pth"
        saved = False
        try:
            runner.save_checkpoint(self.out_dir, filename, save_optimizer=self.save_optimizer)
            saved = True
            if runner.rank == 0:
                update_latest(self.out_dir, filename)
        except OSError as exc:
            self._failed(runner, osp.join(self.out_dir, filename), saved, exc)
            return
        if runner.rank != 0:
            return
        if self.max_keep_ckpts > 0:
            pattern = re.compile(rf"^{prefix}_(\d+)\.pth$")
            numbers = sorted(
                int(m.group(1)) for f in os.listdir(self.out_dir) if (m := pattern.match(f))
            )
            for old in numbers[: -self.max_keep_ckpts]:
                os.remove(osp.join(self.out_dir, f"{prefix}_{old}.pth"))

    def _failed(self, runner, path, saved, exc):
        """A save that raised ``exc`` (an OSError): stop or warn as ``on_error`` says.

        ``saved``: the checkpoint itself was written and only ``latest.pth`` failed.
        """
        if saved:
            what = (
                f"wrote checkpoint {path} but could not point latest.pth at it: {exc}. "
                f"{path} is complete (--auto-resume finds it)"
            )
        else:
            kept = runner.last_checkpoint or "none (no checkpoint was written in this run)"
            what = (
                f"could not write checkpoint {path}: {exc}. Nothing was replaced: the last "
                f"good checkpoint is {kept}"
            )
        message = (
            f"{what}. Free space on that disk (or set checkpoint_config.out_dir to another "
            "one), then resume with --resume-from or --auto-resume"
        )
        if self.on_error == "stop":
            raise CheckpointError(
                message + "; or set checkpoint_config.on_error='warn' to train on when a save "
                "fails."
            ) from exc
        runner.logger.error("%s. Training goes on (checkpoint_config.on_error='warn').", message)
        runner.log_buffer.count("failed_checkpoints")

    def after_train_epoch(self, runner):
        if not self.by_epoch:
            return
        last = self.save_last and runner.epoch + 1 == runner.max_epochs
        if self.every_n_epochs(runner, self.interval) or last:
            self._save(runner, runner.epoch + 1)

    def after_train_iter(self, runner):
        if self.by_epoch:
            return
        last = self.save_last and runner.iter + 1 == runner.max_iters
        if self.every_n_iters(runner, self.interval) or last:
            self._save(runner, runner.iter + 1)
