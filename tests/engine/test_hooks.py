"""Checkpoint, logger, optimizer (clipping, mixed precision), priorities, cache hooks.

Non-finite losses: tests/reliability/test_nan_loss.py."""

import json
import os
from types import SimpleNamespace

import pytest
import torch

from mmdet_like.engine import (
    CheckpointHook,
    EmptyCacheHook,
    Hook,
    TextLoggerHook,
)
from tests.engine.toy import ToyRegressor, toy_loader, toy_runner


def test_checkpoints_kept_removed_latest_and_plain(tmp_path):
    runner = toy_runner(
        tmp_path, max_epochs=4, checkpoint_config={"interval": 1, "max_keep_ckpts": 2}
    )
    runner.run([toy_loader(16, 4)], [("train", 1)])
    assert sorted(f for f in os.listdir(tmp_path) if f.endswith(".pth")) == [
        "epoch_3.pth",
        "epoch_4.pth",
        "latest.pth",
    ]
    assert os.path.realpath(tmp_path / "latest.pth") == str(tmp_path / "epoch_4.pth")
    ckpt = torch.load(tmp_path / "latest.pth", weights_only=True)
    assert ckpt["meta"]["epoch"] == 4 and ckpt["meta"]["iter"] == 16
    assert {"python", "numpy", "torch"} <= set(ckpt["meta"]["rng"])
    assert "optimizer" in ckpt and "state" in ckpt["optimizer"]
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_checkpoint_interval_without_optimizer_and_by_iteration(tmp_path):
    runner = toy_runner(
        tmp_path / "a", max_epochs=3, checkpoint_config={"interval": 2, "save_optimizer": False}
    )
    runner.run([toy_loader(16, 4)], [("train", 1)])
    names = sorted(f for f in os.listdir(tmp_path / "a") if f.endswith(".pth"))
    assert names == ["epoch_2.pth", "epoch_3.pth", "latest.pth"]  # 3 = save_last
    assert "optimizer" not in torch.load(tmp_path / "a" / "epoch_2.pth", weights_only=True)
    runner = toy_runner(
        tmp_path / "b",
        max_epochs=2,
        checkpoint_config={"interval": 3, "by_epoch": False, "save_last": False},
    )
    runner.run([toy_loader(16, 4)], [("train", 1)])
    names = sorted(f for f in os.listdir(tmp_path / "b") if f.endswith(".pth"))
    assert names == ["iter_3.pth", "iter_6.pth", "latest.pth"]
    meta = torch.load(tmp_path / "b" / "iter_6.pth", weights_only=True)["meta"]
    assert (meta["epoch"], meta["iter"], meta["inner_iter"]) == (1, 6, 2)


def test_text_logger_writes_json_lines_with_all_fields(tmp_path):
    runner = toy_runner(tmp_path, max_epochs=2, log_config={"interval": 2})
    runner.run([toy_loader(16, 4), toy_loader(8, 4)], [("train", 1), ("val", 1)])
    (log_json,) = tmp_path.glob("*.log.json")
    records = [json.loads(line) for line in log_json.read_text().splitlines()]
    train = [r for r in records if r["mode"] == "train"]
    val = [r for r in records if r["mode"] == "val"]
    assert [(r["epoch"], r["iter"]) for r in train] == [(1, 2), (1, 4), (2, 2), (2, 4)]
    for record in train:
        assert {
            "mode",
            "epoch",
            "iter",
            "iters_per_epoch",
            "lr",
            "time",
            "data_time",
            "memory",
            "loss_mse",
            "mae",
            "loss",
        } <= set(record)
        assert record["time"] >= record["data_time"] >= 0 and record["memory"] > 0
        assert record["iters_per_epoch"] == 4
        assert record["loss"] == pytest.approx(record["loss_mse"])  # mae is not a loss
    assert [(r["epoch"], r["iter"]) for r in val] == [(1, 2), (2, 2)]
    assert {"loss_mse", "loss", "lr"} <= set(val[0]) and "grad_norm" not in val[0]


class GradNormAfterStep(Hook):
    priority = "NORMAL"  # after OptimizerHook (ABOVE_NORMAL): grads are the clipped ones

    def __init__(self):
        self.norms = []

    def after_train_iter(self, runner):
        grads = [p.grad.flatten() for p in runner.model.parameters()]
        self.norms.append(float(torch.cat(grads).norm()))


def test_grad_clipping_norm(tmp_path):
    runner = toy_runner(
        tmp_path,
        max_epochs=1,
        log_config={"interval": 1},
        optimizer_config={"grad_clip": {"max_norm": 0.5, "norm_type": 2}},
    )
    recorder = runner.register_hook(GradNormAfterStep())
    runner.run([toy_loader(16, 4)], [("train", 1)])
    logged = [v for v, _ in runner.log_buffer.history["grad_norm"]]
    assert len(logged) == len(recorder.norms) == 4
    for before, after in zip(logged, recorder.norms):
        assert after == pytest.approx(min(before, 0.5), rel=1e-4)
    assert max(logged) > 0.5  # the clip did happen


class DtypeRecorder(ToyRegressor):
    def forward(self, x, y=None, **kwargs):
        self.seen_dtype = self.fc1(x).dtype
        return super().forward(x, y, **kwargs)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_mixed_precision(tmp_path, dtype):
    torch.manual_seed(0)
    model = DtypeRecorder()
    runner = toy_runner(
        tmp_path,
        model=model,
        max_epochs=2,
        checkpoint_config={},
        optimizer_config={"fp16": {"dtype": dtype}},
    )
    runner.run([toy_loader(16, 4)], [("train", 1)])
    assert model.seen_dtype == getattr(torch, dtype)
    assert model.fc1.weight.dtype == torch.float32  # master weights stay float32
    states = torch.load(tmp_path / "latest.pth", weights_only=True)["meta"]["hook_states"]
    if dtype == "float16":
        assert states["OptimizerHook"]["scaler"]["scale"] > 0
        assert "loss_scale" in runner.log_buffer.history
    else:
        assert "OptimizerHook" not in states


def test_hooks_run_in_priority_order(tmp_path):
    runner = toy_runner(
        tmp_path, lr_config={"policy": "fixed"}, checkpoint_config={}, log_config={"interval": 1}
    )
    first = runner.register_hook(Hook(), "HIGHEST")
    last = runner.register_hook(Hook(), 100)
    names = [type(h).__name__ for h in runner.hooks]
    assert names == [
        "Hook",
        "FixedLrUpdaterHook",
        "OptimizerHook",
        "CheckpointHook",
        "IterTimerHook",
        "TextLoggerHook",
        "Hook",
    ]
    assert runner.hooks[0] is first and runner.hooks[-1] is last
    with pytest.raises(ValueError, match="priority"):
        runner.register_hook(Hook(), "SOMETIMES")


def test_empty_cache_hook_calls_cuda_empty_cache(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: calls.append(1))
    hook = EmptyCacheHook(before_epoch=True, after_epoch=True, after_iter=True)
    cuda_runner = SimpleNamespace(device=torch.device("cuda"))
    hook.before_train_epoch(cuda_runner)
    hook.after_train_iter(cuda_runner)
    hook.after_val_epoch(cuda_runner)
    assert len(calls) == 3
    hook.after_train_iter(SimpleNamespace(device=torch.device("cpu")))
    assert len(calls) == 3


def test_tensorboard_logger_hook(tmp_path):
    pytest.importorskip("tensorboard")
    runner = toy_runner(
        tmp_path,
        max_epochs=1,
        log_config={"interval": 2, "hooks": [{"type": "TensorboardLoggerHook"}]},
    )
    runner.run([toy_loader(16, 4)], [("train", 1)])
    assert list((tmp_path / "tf_logs").glob("events.out.tfevents.*"))


def test_checkpoint_hook_rejects_bad_interval_and_logger_needs_no_work_dir():
    with pytest.raises(ValueError, match="interval"):
        CheckpointHook(interval=0)
    assert TextLoggerHook(interval=5).interval == 5


class _CountingHook(Hook):
    """A stateful hook: counts its training iterations; ``start`` is its initial count."""

    def __init__(self, start=0):
        self.count = start

    def after_train_iter(self, runner):
        self.count += 1

    def state_dict(self):
        return {"count": self.count}

    def load_state_dict(self, state):
        self.count = state["count"]


def test_two_stateful_hooks_of_one_class_keep_their_own_state_on_resume(tmp_path):
    """Hook states were keyed by class name: the second hook's state overwrote the first's
    in the checkpoint, and both resumed with it."""
    runner = toy_runner(tmp_path / "a", max_epochs=1, checkpoint_config={})
    runner.register_hook(_CountingHook(0))
    runner.register_hook(_CountingHook(1000))
    runner.run([toy_loader()], [("train", 1)])
    saved = torch.load(tmp_path / "a" / "latest.pth", weights_only=True)["meta"]["hook_states"]
    assert saved["_CountingHook"] == {"count": 4}
    assert saved["_CountingHook#1"] == {"count": 1004}
    resumed = toy_runner(tmp_path / "b", max_epochs=1, checkpoint_config={})
    first, second = resumed.register_hook(_CountingHook()), resumed.register_hook(_CountingHook())
    resumed.resume(str(tmp_path / "a" / "latest.pth"))
    assert (first.count, second.count) == (4, 1004)


@pytest.mark.parametrize(
    "workflow, match",
    [([("val", 1)], "no 'train' phase"), ([("train", 0)], "whole number of epochs")],
)
def test_workflow_that_would_never_end_is_refused(tmp_path, workflow, match):
    runner = toy_runner(tmp_path, max_epochs=1)
    with pytest.raises(ValueError, match=match):
        runner.run([toy_loader()], workflow)
