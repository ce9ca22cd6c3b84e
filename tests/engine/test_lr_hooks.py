"""LR values at given iterations for every policy and warmup (4 iterations an epoch)."""

import math

import pytest

from mmdet_like.engine import Hook
from tests.engine.toy import toy_loader, toy_runner


class LrRecorder(Hook):
    priority = "LOW"  # after the LR hook (VERY_HIGH)

    def __init__(self):
        self.lrs = []

    def before_train_iter(self, runner):
        self.lrs.append(runner.current_lr()[0])


B = 0.01  # base LR


def run_schedule(tmp_path, lr_config, epochs=4):
    runner = toy_runner(tmp_path, lr=B, max_epochs=epochs, lr_config=lr_config)
    recorder = runner.register_hook(LrRecorder())
    runner.run([toy_loader(16, 4)], [("train", 1)])
    assert len(recorder.lrs) == 4 * epochs
    return recorder.lrs


def expect(lrs, expected):
    assert lrs == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_step_by_epoch(tmp_path):
    lrs = run_schedule(tmp_path, {"policy": "step", "step": [2, 3]})
    expect(lrs, [B] * 8 + [B / 10] * 4 + [B / 100] * 4)


def test_step_int_with_min_lr(tmp_path):
    lrs = run_schedule(tmp_path, {"policy": "step", "step": 1, "gamma": 0.5, "min_lr": B / 5})
    expect(lrs, [B] * 4 + [B / 2] * 4 + [B / 4] * 4 + [B / 5] * 4)


@pytest.mark.parametrize(
    "warmup, factor",
    [
        ("linear", lambda i: 1 - (1 - i / 4) * 0.75),
        ("constant", lambda i: 0.25),
        ("exp", lambda i: 0.25 ** (1 - i / 4)),
    ],
)
def test_warmups_then_step(tmp_path, warmup, factor):
    lrs = run_schedule(
        tmp_path,
        {"policy": "step", "step": [3], "warmup": warmup, "warmup_iters": 4, "warmup_ratio": 0.25},
    )
    expect(lrs, [B * factor(i) for i in range(4)] + [B] * 8 + [B / 10] * 4)


def test_linear_warmup_from_zero(tmp_path):
    lrs = run_schedule(
        tmp_path,
        {"policy": "fixed", "warmup": "linear", "warmup_iters": 4, "warmup_ratio": 0.0},
        epochs=2,
    )
    expect(lrs, [B * i / 4 for i in range(4)] + [B] * 4)


def test_warmup_by_epochs(tmp_path):
    lrs = run_schedule(
        tmp_path,
        {"policy": "fixed", "warmup": "linear", "warmup_epochs": 1, "warmup_ratio": 0.5},
        epochs=2,
    )
    expect(lrs, [B * (1 - (1 - i / 4) * 0.5) for i in range(4)] + [B] * 4)


def test_cosine_by_iteration(tmp_path):
    lrs = run_schedule(tmp_path, {"policy": "cosine", "by_epoch": False, "min_lr": 0.0})
    expect(lrs, [B / 2 * (1 + math.cos(math.pi * i / 16)) for i in range(16)])


def test_cosine_after_a_linear_warmup_from_zero(tmp_path):
    # issue 28's plain loop: i / 4 for 4 iterations, then cosine from B to 0 over the other 12
    lrs = run_schedule(
        tmp_path,
        {"policy": "cosine", "by_epoch": False, "min_lr_ratio": 0.0, "warmup": "linear",
         "warmup_iters": 4, "warmup_ratio": 0.0, "anneal_after_warmup": True},
    )  # fmt: skip
    expect(lrs, [B * i / 4 for i in range(4)]
           + [B / 2 * (1 + math.cos(math.pi * i / 12)) for i in range(12)])  # fmt: skip
    with pytest.raises(Exception, match="anneal_after_warmup needs by_epoch=False"):
        run_schedule(tmp_path, {"policy": "cosine", "min_lr": 0.0, "anneal_after_warmup": True})


def test_cosine_min_lr_ratio_by_epoch(tmp_path):
    lrs = run_schedule(tmp_path, {"policy": "CosineAnnealing", "min_lr_ratio": 0.1})
    per_epoch = [B / 10 + 0.5 * 0.9 * B * (1 + math.cos(math.pi * e / 4)) for e in range(4)]
    expect(lrs, [lr for lr in per_epoch for _ in range(4)])


def test_poly_by_epoch(tmp_path):
    lrs = run_schedule(tmp_path, {"policy": "poly", "power": 2.0, "min_lr": B / 100})
    per_epoch = [(B - B / 100) * (1 - e / 4) ** 2 + B / 100 for e in range(4)]
    expect(lrs, [lr for lr in per_epoch for _ in range(4)])


def test_exp_by_iteration_with_warmup(tmp_path):
    lrs = run_schedule(
        tmp_path,
        {
            "policy": "exp",
            "gamma": 0.9,
            "by_epoch": False,
            "warmup": "constant",
            "warmup_iters": 2,
            "warmup_ratio": 0.1,
        },
        epochs=1,
    )
    expect(lrs, [B * 0.9**i * (0.1 if i < 2 else 1) for i in range(4)])


def test_unknown_policy_and_bad_warmup():
    from mmdet_like.engine import build_lr_updater_hook

    with pytest.raises(ValueError, match="unknown policy 'stepp'"):
        build_lr_updater_hook({"policy": "stepp", "step": [1]})
    with pytest.raises(Exception, match="warmup must be"):
        build_lr_updater_hook({"policy": "step", "step": [1], "warmup": "lin"})
    for warmup in ("exp", "constant"):
        with pytest.raises(Exception, match=f"{warmup} warmup: warmup_ratio must be in"):
            build_lr_updater_hook(
                {"policy": "step", "step": [1], "warmup": warmup, "warmup_ratio": 0.0}
            )
