"""Periodic checkpoints, ``latest.pth`` and removal of old ones."""

import os
import os.path as osp
import re

from mmdet_like.engine.hooks.hook import Hook
from mmdet_like.registry import HOOKS


def _update_latest(out_dir, filename):
    """Point ``out_dir/latest.pth`` at ``filename`` atomically (symlink, else a copy)."""
    latest = osp.join(out_dir, "latest.pth")
    tmp = osp.join(out_dir, f".latest.pth.{os.getpid()}.tmp")
    try:
        if osp.lexists(tmp):
            os.remove(tmp)
        os.symlink(filename, tmp)
    except OSError:  # no symlinks on this file system: hard link or copy
        import shutil

        shutil.copyfile(osp.join(out_dir, filename), tmp)
    os.replace(tmp, latest)


@HOOKS.register()
class CheckpointHook(Hook):
    """Save a checkpoint every ``interval`` epochs (or iterations with ``by_epoch=False``).

    Files are ``epoch_{N}.pth`` / ``iter_{N}.pth`` in ``out_dir`` (default: the work dir);
    ``latest.pth`` points at the newest. ``max_keep_ckpts > 0`` keeps only that many of
    the newest; ``save_optimizer=False`` omits the optimizer state (weights-only files that
    ``resume_from`` still accepts, without optimizer state); ``save_last`` also saves at
    the final epoch / iteration.
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
    ):
        if interval <= 0:
            raise ValueError(f"checkpoint interval must be positive, got {interval}")
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

    def _save(self, runner, number):
        prefix = "epoch" if self.by_epoch else "iter"
        filename = f"{prefix}_{number}.pth"
        runner.save_checkpoint(self.out_dir, filename, save_optimizer=self.save_optimizer)
        if runner.rank != 0:
            return
        _update_latest(self.out_dir, filename)
        if self.max_keep_ckpts > 0:
            pattern = re.compile(rf"^{prefix}_(\d+)\.pth$")
            numbers = sorted(
                int(m.group(1)) for f in os.listdir(self.out_dir) if (m := pattern.match(f))
            )
            for old in numbers[: -self.max_keep_ckpts]:
                os.remove(osp.join(self.out_dir, f"{prefix}_{old}.pth"))

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
