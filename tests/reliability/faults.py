"""Fault injectors for the reliability tests: hooks, a transform and models, registered for
configs through ``custom_imports=dict(imports=["tests.reliability.faults"])``.

Nothing here is imported by the package; the hooks patch functions only inside the
(training) process whose config names them.
"""

import io
import json
import os
import signal

import torch
from torch import nn

from mmdet_like.engine import Hook
from mmdet_like.registry import DETECTORS, HOOKS, PIPELINES


def _kill_self():
    os.kill(os.getpid(), signal.SIGKILL)


@HOOKS.register(force=True)
class KillAfterEpochHook(Hook):
    """SIGKILL at the end of training epoch ``epoch`` (1-based), after every other hook of
    that stage ran (the checkpoint is written and ``latest.pth`` points at it)."""

    priority = "LOWEST"

    def __init__(self, epoch):
        self.epoch = epoch

    def after_train_epoch(self, runner):
        if runner.epoch + 1 == self.epoch:
            _kill_self()


def _checkpoint_epoch(obj):
    meta = obj.get("meta") if isinstance(obj, dict) else None
    return meta.get("epoch") if isinstance(meta, dict) else None


@HOOKS.register(force=True)
class KillDuringSaveHook(Hook):
    """SIGKILL in the middle of writing the checkpoint of epoch ``epoch``: the real bytes of
    the checkpoint are serialised, the first ``fraction`` of them written to the file and
    fsynced, then the process kills itself (``torch.save`` is wrapped for this process)."""

    def __init__(self, epoch, fraction=0.5):
        self.epoch = epoch
        self.fraction = fraction

    def before_run(self, runner):
        real_save = torch.save

        def save(obj, f, *args, **kwargs):
            if _checkpoint_epoch(obj) != self.epoch or isinstance(f, str | os.PathLike):
                return real_save(obj, f, *args, **kwargs)
            buffer = io.BytesIO()
            real_save(obj, buffer, *args, **kwargs)
            data = buffer.getvalue()
            f.write(data[: int(len(data) * self.fraction)])
            f.flush()
            os.fsync(f.fileno())
            _kill_self()

        torch.save = save


@HOOKS.register(force=True)
class KillBeforeLatestHook(Hook):
    """SIGKILL after ``epoch_{epoch}.pth`` is complete and renamed into place, before
    ``latest.pth`` is pointed at it."""

    def __init__(self, epoch):
        self.epoch = epoch

    def before_run(self, runner):
        from mmdet_like.engine.hooks import checkpoint as checkpoint_hook

        real_update = checkpoint_hook.update_latest

        def update_latest(out_dir, filename):
            if filename == f"epoch_{self.epoch}.pth":
                _kill_self()
            return real_update(out_dir, filename)

        checkpoint_hook.update_latest = update_latest


@HOOKS.register(force=True)
class RecordFilenamesHook(Hook):
    """Writes ``{work_dir}/filenames.json``: the ``ori_filename`` of every image trained
    on, one list per iteration."""

    def before_run(self, runner):
        self.batches = []

    def after_train_iter(self, runner):
        metas = runner.data_batch["img_metas"]
        self.batches.append([m["ori_filename"] for m in metas])

    def after_run(self, runner):
        with open(os.path.join(runner.work_dir, "filenames.json"), "w") as f:
            json.dump(self.batches, f)


@PIPELINES.register(force=True)
class ExitInWorker:
    """Ends the data-loader worker process with ``os._exit(code)`` (no Python traceback,
    like a crash in native code or the OOM killer) when it loads ``filename``."""

    def __init__(self, filename, code=3):
        self.filename = filename
        self.code = code

    def __call__(self, results):
        in_worker = torch.utils.data.get_worker_info() is not None
        if in_worker and results["img_info"]["filename"] == self.filename:
            os._exit(self.code)
        return results


@DETECTORS.register(force=True)
class TinyImageModel(nn.Module):
    """A 1x1 conv and a linear layer over the batch of a detection pipeline: predicts the
    number of boxes of each image. Returns ``{"loss_count": ()}``."""

    def __init__(self, **kwargs):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.fc = nn.Linear(4, 1)

    def forward(self, img, img_metas=None, gt_bboxes=None, gt_labels=None, **kwargs):
        imgs = img if isinstance(img, list | tuple) else list(img)
        feats = torch.stack([self.conv(i[None] / 255).mean((2, 3))[0] for i in imgs])
        pred = self.fc(feats).squeeze(1)
        target = torch.tensor([float(len(b)) for b in gt_bboxes], device=pred.device)
        return {"loss_count": ((pred - target) ** 2).mean()}


@DETECTORS.register(force=True)
class TwoLossToy(nn.Module):
    """The toy regressor (tests.engine.toy) with two loss terms, ``loss_mse`` and
    ``loss_l1``. From forward call ``bad_from`` (1-based) on, term ``bad_term`` is multiplied
    by ``bad_value`` (nan or inf)."""

    def __init__(self, bad_term="loss_l1", bad_from=None, bad_value=float("nan")):
        super().__init__()
        self.fc1 = nn.Linear(4, 8)
        self.fc2 = nn.Linear(8, 1)
        self.bad_term, self.bad_from, self.bad_value = bad_term, bad_from, bad_value
        self.calls = 0

    def forward(self, x, y=None, index=None, return_loss=True, **kwargs):
        pred = self.fc2(self.fc1(x))
        self.calls += 1
        losses = {"loss_mse": ((pred - y) ** 2).mean(), "loss_l1": (pred - y).abs().mean()}
        if self.bad_from is not None and self.calls >= self.bad_from:
            losses[self.bad_term] = losses[self.bad_term] * self.bad_value
        return losses


class _NaNGrad(torch.autograd.Function):
    """Identity forward; NaN gradient backward."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * float("nan")


@DETECTORS.register(force=True)
class NaNGradToy(TwoLossToy):
    """A finite loss whose gradients are NaN at forward call ``nan_grad_at`` (1-based)."""

    def __init__(self, nan_grad_at):
        super().__init__()
        self.nan_grad_at = nan_grad_at

    def forward(self, x, y=None, index=None, return_loss=True, **kwargs):
        self.calls += 1
        hidden = self.fc1(x)
        if self.calls == self.nan_grad_at:
            hidden = _NaNGrad.apply(hidden)
        pred = self.fc2(hidden)
        return {"loss_mse": ((pred - y) ** 2).mean()}
