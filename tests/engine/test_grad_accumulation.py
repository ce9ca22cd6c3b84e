"""Gradient accumulation (``optimizer_config.cumulative_iters``): N iterations of a batch of
b train as one of N * b (SGD and AdamW, with grad clipping, float16 and bfloat16, a short
last group at an epoch's end and at an iteration-based run's end), what an iteration is
for the LR schedule, and a resume in the middle of a group."""

import re

import pytest
import torch

from mmdet_like.engine import ConfigError, GradientCumulativeOptimizerHook, OptimizerHook
from mmdet_like.registry import HOOKS
from tests.engine.recipe_toys import RecordSteps, make_runner, ordered_loader
from tests.engine.toy import toy_loader

# Largest weight difference between 2 epochs of 10 iterations of batch 2 accumulated 4 at a
# time and 2 epochs of batches of 8 (20 samples: the last group of each epoch has 2
# iterations, the last big batch 4 samples), measured on the CPU: float32 7.5e-9 (SGD) and
# 1.5e-8 (AdamW); float16 autocast (loss scale 512) 1.9e-5 and 6.6e-6; bfloat16 1.9e-4 and
# 4.7e-5 (the forward's own rounding of other batch shapes). Training moves the weights by
# 0.045 (AdamW) to 0.12 (SGD), over 50 times each tolerance.
TOLERANCE = {None: 1e-7, "float16": 1e-4, "bfloat16": 5e-4}
GRAD_CLIP = dict(max_norm=0.5)  # the toy's gradient norms are 0.3 - 3: most steps clip


def train(work_dir, batch, cumulative_iters, optimizer="sgd", fp16=None, lr_config=None,
          max_epochs=2, loader=None, max_iters=None):  # fmt: skip
    """The runner after training on 20 toy samples in order, in batches of ``batch``."""
    optimizer_config = dict(grad_clip=GRAD_CLIP, cumulative_iters=cumulative_iters)
    if fp16 is not None:  # float16: a fixed loss scale, which never overflows here
        optimizer_config["fp16"] = dict(
            dtype=fp16, loss_scale=512.0 if fp16 == "float16" else "dynamic"
        )
    record = RecordSteps()
    runner = make_runner(work_dir, optimizer, max_epochs=max_epochs, max_iters=max_iters,
                         optimizer_config=optimizer_config, lr_config=lr_config)  # fmt: skip
    runner.register_hook(record)
    runner.record = record
    runner.run([loader or ordered_loader(20, batch)], [("train", 1)])
    return runner


def largest_difference(a, b):
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.mark.parametrize("fp16", [None, "float16", "bfloat16"])
@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_n_iterations_of_batch_b_train_as_one_of_batch_n_b(tmp_path, optimizer, fp16):
    step_lr = dict(policy="step", step=[1], gamma=0.5)  # by epoch: the second epoch at half
    small = train(tmp_path / "small", 2, 4, optimizer, fp16, step_lr)
    large = train(tmp_path / "large", 8, 1, optimizer, fp16, step_lr)
    # iterations are batches: 10 an epoch; a step after iterations 4, 8 and 10 of each
    assert small.iter == 20 and large.iter == 6
    epoch = [False, False, False, True, False, False, False, True, False, True]
    assert small.record.steps == epoch * 2
    assert small.record.lrs == large.record.lrs
    difference = largest_difference(small.record.after_steps[-1], large.record.after_steps[-1])
    assert difference < TOLERANCE[fp16]
    # the steps clipped, and training moved the weights far more than the tolerance
    clipped = [v for v, _ in small.log_buffer.history["grad_norm"]]
    assert len(clipped) == 3 and max(clipped) > GRAD_CLIP["max_norm"]  # the last epoch's
    moved = largest_difference(small.record.initial, small.record.after_steps[-1])
    assert moved > 50 * TOLERANCE[fp16]
    # a group's losses are divided by its size: without that, the weights differ
    if fp16 is None and optimizer == "sgd":
        assert (
            largest_difference(
                small.record.after_steps[0], train(tmp_path / "b2", 2, 1).record.after_steps[0]
            )
            > 1e-3
        )


def test_the_last_group_of_an_iteration_based_run_is_scaled_by_its_size(tmp_path):
    """max_iters=7 over 10-iteration epochs of batch 2: groups of 4 and 3 iterations, the
    same as batches of 8 and 6 samples."""
    small = train(tmp_path / "small", 2, 4, max_iters=7)
    large_loader = ordered_loader(20, None, batch_sampler=[list(range(8)), list(range(8, 14))])
    large = train(tmp_path / "large", None, 1, loader=large_loader, max_epochs=1)
    assert small.record.steps == [False, False, False, True, False, False, True]
    difference = largest_difference(small.record.after_steps[-1], large.record.after_steps[-1])
    assert difference < TOLERANCE[None]  # measured: 1.5e-8


def test_an_iteration_is_a_batch_for_the_lr_schedule(tmp_path):
    """Warmup over 8 iterations (batches) with 4 to a step: the steps after iterations 4
    and 8 are warmed up with the factors of iterations 3 and 7 (0-based), the LR of a group's
    last iteration."""
    warmup = dict(policy="fixed", warmup="linear", warmup_iters=8, warmup_ratio=0.1)
    runner = train(tmp_path, 2, 4, lr_config=warmup, max_epochs=1)
    base = 0.05

    def factor(i):
        return 1 - (1 - i / 8) * (1 - 0.1)

    assert runner.record.lrs == pytest.approx([base * factor(3), base * factor(7), base])
    text = runner.log_lines.text()
    assert "one optimizer step every 4 iterations (batches)" in text
    assert "the warmup (lr_config.warmup_iters=8 batches) covers 2 optimizer steps" in text
    short = train(tmp_path / "short", 2, 4, lr_config=dict(warmup, warmup_iters=3), max_epochs=1)
    assert (
        "lr_config.warmup_iters=3 is shorter than one accumulation group "
        "(optimizer_config.cumulative_iters=4): no optimizer step is warmed up. Fix: count the "
        "warmup in batches, e.g. warmup_iters=12 for 3 warmed-up steps"
    ) in short.log_lines.text()


def run_with_checkpoints(work_dir, resume=None, fp16=None):
    """3 epochs of 20 shuffled samples in batches of 2 (10 iterations an epoch), 4 to a
    step; a checkpoint every 3 iterations."""
    optimizer_config = dict(cumulative_iters=4, grad_clip=GRAD_CLIP)
    if fp16:
        optimizer_config["fp16"] = dict(dtype=fp16)
    runner = make_runner(work_dir, max_epochs=3, optimizer_config=optimizer_config,
                         checkpoint_config=dict(interval=3, by_epoch=False))  # fmt: skip
    if resume is not None:
        runner.resume(str(resume))
    runner.run([toy_loader(20, 2)], [("train", 1)])
    return torch.load(work_dir / "iter_30.pth", weights_only=True), runner


@pytest.mark.parametrize("fp16", [None, "float16"])
def test_resume_in_the_middle_of_a_group_is_exact(tmp_path, fp16):
    want, _ = run_with_checkpoints(tmp_path / "full", fp16=fp16)
    # iter_3: 3 of a group of 4; iter_9: 1 of the epoch's last group of 2; iter_12: 2 of 4
    for name in ("iter_3.pth", "iter_9.pth", "iter_12.pth"):
        state = torch.load(tmp_path / "full" / name, weights_only=True)["meta"]["hook_states"]
        assert state["OptimizerHook"]["accumulated"]["iter"] == int(name[5:-4])
        got, _ = run_with_checkpoints(tmp_path / name, resume=tmp_path / "full" / name, fp16=fp16)
        for key, value in want["state_dict"].items():
            assert torch.equal(got["state_dict"][key], value), (name, key)
        for index, state in want["optimizer"]["state"].items():
            assert torch.equal(
                got["optimizer"]["state"][index]["momentum_buffer"], state["momentum_buffer"]
            )
    # a group boundary holds no gradients
    boundary = torch.load(tmp_path / "full" / "iter_18.pth", weights_only=True)
    assert "accumulated" not in boundary["meta"]["hook_states"].get("OptimizerHook", {})


def test_resume_mid_group_without_the_gradients_warns_and_differs(tmp_path):
    want, _ = run_with_checkpoints(tmp_path / "full")
    checkpoint = torch.load(tmp_path / "full" / "iter_3.pth", weights_only=True)
    del checkpoint["meta"]["hook_states"]["OptimizerHook"]["accumulated"]
    torch.save(checkpoint, tmp_path / "stripped.pth")
    got, runner = run_with_checkpoints(tmp_path / "resumed", resume=tmp_path / "stripped.pth")
    assert (
        "resumed in the middle of an accumulation group (iteration 4 of 4) from a checkpoint "
        "without its accumulated gradients" in runner.log_lines.text()
    )
    assert any(not torch.equal(got["state_dict"][k], v) for k, v in want["state_dict"].items())


def test_registered_and_bad_values_name_the_field(tmp_path):
    assert HOOKS.get("GradientCumulativeOptimizerHook") is GradientCumulativeOptimizerHook
    assert GradientCumulativeOptimizerHook(cumulative_iters=3).cumulative_iters == 3
    for value in (0, 2.0, "4", True):
        message = (
            f"optimizer_config.cumulative_iters must be a whole number >= 1 (the number of "
            f"batches whose gradients make one optimizer step), got {value!r}"
        )
        with pytest.raises(ConfigError, match=re.escape(message)):
            OptimizerHook(cumulative_iters=value)
