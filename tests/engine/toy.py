"""A toy regression model, dataset and test-only hooks, registered for config-driven tests.

Imported by test configs through ``custom_imports=dict(imports=["tests.engine.toy"])``.
"""

import json
import os
import os.path as osp
import random
import signal
import time

import torch
from torch import nn

from mmdet_like.engine import Hook
from mmdet_like.registry import DATASETS, DETECTORS, HOOKS


@DETECTORS.register(force=True)
class ToyRegressor(nn.Module):
    """Two linear layers, (B, in_features) -> (B, 1). Training returns
    ``{"loss_mse": (), "mae": ()}``; ``return_loss=False`` a list of (1,) predictions.

    ``nan_after``: forward calls from that number on return a NaN loss. ``input_noise``:
    training adds that much Gaussian noise to the inputs, drawn from torch's global generator
    (as the detectors' anchor and RoI samplers draw).
    """

    def __init__(self, in_features=4, hidden=8, nan_after=None, input_noise=0.0):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden)
        self.fc2 = nn.Linear(hidden, 1)
        self.nan_after = nan_after
        self.input_noise = input_noise
        self.calls = 0

    def forward(self, x, y=None, index=None, return_loss=True, rescale=False):
        if return_loss and self.input_noise:
            x = x + self.input_noise * torch.randn_like(x)
        pred = self.fc2(self.fc1(x))
        if not return_loss:
            return list(pred.detach().cpu())
        self.calls += 1
        loss = ((pred - y) ** 2).mean()
        if self.nan_after is not None and self.calls >= self.nan_after:
            loss = loss * float("nan")
        return {"loss_mse": loss, "mae": (pred - y).abs().mean().detach()}


@DATASETS.register(force=True)
class ToyRegressionDataset(torch.utils.data.Dataset):
    """``num_samples`` samples ``{"x": (4,), "y": (1,), "index": int}`` of a fixed linear
    function plus noise. ``groups`` > 1 sets ``flag`` (aspect-ratio groups) to i % groups.
    ``augment``: each item's ``x`` is shifted by that much Gaussian noise drawn from Python's
    ``random`` (as the pipelines' random transforms draw)."""

    CLASSES = ("value",)
    STACK_KEYS = ("x", "y", "index")  # the regressor takes (B, in_features) batches

    def __init__(
        self, num_samples=32, in_features=4, seed=0, noise=0.01, groups=1, test_mode=False,
        augment=0.0,
    ):  # fmt: skip
        generator = torch.Generator().manual_seed(seed)
        self.x = torch.randn(num_samples, in_features, generator=generator)
        weight = torch.arange(1.0, in_features + 1).unsqueeze(1) / in_features
        self.y = self.x @ weight + 0.5 + noise * torch.randn(num_samples, 1, generator=generator)
        self.test_mode = test_mode
        self.augment = augment
        if groups > 1:
            self.flag = torch.arange(num_samples).remainder(groups).numpy()

    def __len__(self):
        return len(self.x)

    def __getitem__(self, index):
        x = self.x[index]
        if self.augment:
            x = x + self.augment * random.gauss(0.0, 1.0)
        return {"x": x, "y": self.y[index], "index": index}

    def evaluate(self, results, logger=None):
        preds = torch.stack([torch.as_tensor(r).reshape(1) for r in results])
        if len(preds) != len(self):
            raise ValueError(f"{len(preds)} results for {len(self)} samples")
        return {"mse": float(((preds - self.y) ** 2).mean())}


@HOOKS.register(force=True)
class KillAtIterHook(Hook):
    """Sends ``SIGKILL`` to this process before global iteration ``iteration`` (0-based),
    on ``rank`` only when given."""

    def __init__(self, iteration, rank=None):
        self.iteration = iteration
        self.rank = rank

    def before_train_iter(self, runner):
        if runner.iter == self.iteration and self.rank in (None, runner.rank):
            os.kill(os.getpid(), signal.SIGKILL)


@HOOKS.register(force=True)
class SignalAtIterHook(Hook):
    """Sends ``signal_name`` (``"SIGINT"``, ``"SIGTERM"``) before global iteration
    ``iteration`` (0-based): to this process, or with ``group=True`` to its whole process
    group (the data-loader workers too, as a terminal's Ctrl-C does). ``again_after``:
    seconds after which the same signal is sent a second time, waiting here for it. With
    ``epoch`` instead of ``iteration``: at the end of that (1-based) epoch, before its
    checkpoint is written (the hook runs before CheckpointHook)."""

    priority = "VERY_HIGH"

    def __init__(
        self, iteration=None, signal_name="SIGINT", group=False, again_after=None, epoch=None
    ):
        self.iteration = iteration
        self.epoch = epoch
        self.signum = getattr(signal, signal_name)
        self.group = group
        self.again_after = again_after

    def _send(self):
        if self.group:
            os.killpg(os.getpgrp(), self.signum)
        else:
            os.kill(os.getpid(), self.signum)

    def after_train_epoch(self, runner):
        if runner.epoch + 1 == self.epoch:
            self._send()

    def before_train_iter(self, runner):
        if runner.iter != self.iteration:
            return
        self._send()
        if self.again_after is not None:
            time.sleep(self.again_after)
            self._send()
            time.sleep(5)  # the second signal ends the run during this wait


@HOOKS.register(force=True)
class HangAtIterHook(Hook):
    """Sleeps ``seconds`` before global iteration ``iteration`` on ``rank``."""

    def __init__(self, iteration, rank, seconds=300):
        self.iteration = iteration
        self.rank = rank
        self.seconds = seconds

    def before_train_iter(self, runner):
        if runner.iter == self.iteration and runner.rank == self.rank:
            time.sleep(self.seconds)


@HOOKS.register(force=True)
class RecordSamplesHook(Hook):
    """Writes ``{work_dir}/samples_rank{r}.json``: the sample indices of every iteration."""

    def before_run(self, runner):
        self.batches = []

    def after_train_iter(self, runner):
        self.batches.append([int(i) for i in runner.data_batch["index"]])

    def after_run(self, runner):
        path = osp.join(runner.work_dir, f"samples_rank{runner.rank}.json")
        with open(path, "w") as f:
            json.dump(self.batches, f)


def toy_loader(num_samples=16, batch_size=4, **dataset_kwargs):
    """A DataLoader over :class:`ToyRegressionDataset` with the library's sampler/collate."""
    from mmdet_like.datasets import build_dataloader

    dataset = ToyRegressionDataset(num_samples=num_samples, **dataset_kwargs)
    return build_dataloader(dataset, batch_size, 0, shuffle=True, seed=0)


def toy_runner(
    work_dir,
    model=None,
    lr=0.01,
    max_epochs=2,
    optimizer_config=None,
    lr_config=None,
    checkpoint_config=None,
    log_config=None,
    custom_hooks=None,
):
    """An :class:`EpochBasedRunner` on a toy model with the standard hooks registered."""
    from mmdet_like.engine import EpochBasedRunner, build_optimizer

    torch.manual_seed(0)
    model = model or ToyRegressor()
    optimizer = build_optimizer(model, {"type": "SGD", "lr": lr, "momentum": 0.9})
    runner = EpochBasedRunner(model, optimizer, work_dir=str(work_dir), max_epochs=max_epochs)
    runner.register_training_hooks(
        lr_config, optimizer_config or {}, checkpoint_config, log_config, custom_hooks
    )
    return runner
