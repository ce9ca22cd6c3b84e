"""Resume from an iteration checkpoint in the middle of an epoch is bit-exact.

The toy run draws from every random source a detector's training draws from: the model adds
noise from torch's global generator at every step (as the anchor and RoI samplers do) and
the dataset shifts every item by noise from Python's ``random`` (as the random transforms
do). Checkpoints are written every 3 iterations (``by_epoch=False``) in epochs of 8, so
most fall inside an epoch. A run killed there and resumed from its last checkpoint, or
resumed from any earlier one, ends with bitwise the weights of an uninterrupted run
(``--deterministic``), and sees the same samples in the same order, with or without
data-loader workers.
"""

import json

import pytest
import torch

from tests.engine.cli_utils import write_config
from tests.reliability.forkserver import run_train

EXTRA = """
custom_imports = dict(imports=["tests.engine.toy", "tests.reliability.faults"])
model = dict(type="ToyRegressor", input_noise=0.3)
data["train"]["augment"] = 0.2
checkpoint_config = dict(by_epoch=False, interval=3)
custom_hooks = [dict(type="RecordSamplesHook")]
"""
# 32 samples, 4 per batch: 8 iterations an epoch, 4 epochs; checkpoints at 3, 6, 9, ... 30


def write(tmp_path_factory, workers=0):
    extra = EXTRA + f'data["workers_per_gpu"] = {workers}\n'
    return write_config(tmp_path_factory.mktemp("cfg") / f"toy_w{workers}.py", extra)


def train(config, work_dir, *args):
    argv = [config, "--work-dir", str(work_dir), "--seed", "0", "--deterministic", *map(str, args)]
    work_dir.mkdir(parents=True, exist_ok=True)
    ((rc, out),) = run_train((argv, str(work_dir / f"run{len(list(work_dir.glob('*.out')))}.out")))
    return rc, out


def final_weights(work_dir):
    checkpoint = torch.load(work_dir / "iter_30.pth", weights_only=True)
    assert (checkpoint["meta"]["epoch"], checkpoint["meta"]["iter"]) == (3, 30)
    return checkpoint["state_dict"], checkpoint["optimizer"]


def samples_seen(work_dir):
    return json.loads((work_dir / "samples_rank0.json").read_text())


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    config = write(tmp_path_factory)
    work_dir = tmp_path_factory.mktemp("uninterrupted")
    rc, out = train(config, work_dir)
    assert rc == 0, out
    return config, final_weights(work_dir), samples_seen(work_dir)


def assert_same_weights(got, want):
    (state, optimizer), (ref_state, ref_optimizer) = got, want
    for key, value in ref_state.items():
        assert torch.equal(state[key], value), key
    for index, value in ref_optimizer["state"].items():
        assert torch.equal(optimizer["state"][index]["momentum_buffer"], value["momentum_buffer"])


@pytest.mark.parametrize("start", ["iter_12.pth", "iter_21.pth", "iter_3.pth"])
def test_resume_from_a_mid_epoch_checkpoint_is_bit_exact(reference, tmp_path, start):
    """iter_12 is epoch 2 after 4 of its 8 iterations, iter_21 epoch 3 after 5, iter_3 the
    first epoch after 3: the rest of the run is the uninterrupted run's, bit for bit."""
    config, want, want_samples = reference
    first = tmp_path / "first"
    rc, out = train(config, first)
    assert rc == 0, out
    resumed = tmp_path / "resumed"
    rc, out = train(config, resumed, "--resume-from", first / start)
    assert rc == 0, out
    done = int(start[len("iter_") : -len(".pth")])
    assert samples_seen(resumed) == want_samples[done:]
    assert_same_weights(final_weights(resumed), want)


def test_killed_mid_epoch_auto_resumes_from_its_iteration_checkpoint(reference, tmp_path):
    config, want, want_samples = reference
    rc, out = train(
        config,
        tmp_path,
        "--cfg-options",
        'custom_hooks=[dict(type="KillAtIterHook", iteration=13)]',
    )
    assert rc == -9, out
    rc, out = train(config, tmp_path, "--auto-resume")
    assert rc == 0, out
    assert "resumed from" in out and "iter_12.pth" in out, out
    assert_same_weights(final_weights(tmp_path), want)


def test_with_workers_the_run_and_a_mid_epoch_resume_are_bit_exact_too(
    reference, tmp_path_factory, tmp_path
):
    """Two data-loader workers: every sample is augmented under its own seed (from the run's
    seed, the epoch and its place in the epoch), so the run equals the one without workers
    bit for bit, and so does a run resumed in the middle of an epoch."""
    _, want, want_samples = reference
    config = write(tmp_path_factory, workers=2)
    rc, out = train(config, tmp_path / "whole")
    assert rc == 0, out
    assert samples_seen(tmp_path / "whole") == want_samples
    assert_same_weights(final_weights(tmp_path / "whole"), want)
    rc, out = train(config, tmp_path / "resumed", "--resume-from", tmp_path / "whole/iter_12.pth")
    assert rc == 0, out
    assert samples_seen(tmp_path / "resumed") == want_samples[12:]
    assert_same_weights(final_weights(tmp_path / "resumed"), want)


# The same runs with the training recipe of issue 31: an EMA of the weights (buffers too),
# evaluated after each epoch, and gradients accumulated 3 iterations at a time (groups of 3,
# 3 and 2 in each 8-iteration epoch). Checkpoints every 4 iterations fall in the middle of
# a group (iter_12: epoch 2 after 4 iterations, one into its second group).
EMA_HOOK = (
    'dict(type="EMAHook", ema_type="ExpMomentumEMA", momentum=0.01, gamma=8, '
    "update_buffers=True, priority=49)"
)
RECIPE = (
    EXTRA
    + f"""
checkpoint_config = dict(by_epoch=False, interval=4)
optimizer_config = dict(cumulative_iters=3, grad_clip=dict(max_norm=10.0))
custom_hooks = [dict(type="RecordSamplesHook"), {EMA_HOOK}]
evaluation = dict(interval=1)
"""
)


def recipe_final(work_dir):
    checkpoint = torch.load(work_dir / "iter_32.pth", weights_only=True)
    assert (checkpoint["meta"]["epoch"], checkpoint["meta"]["iter"]) == (3, 32)
    return checkpoint


def assert_same_recipe_run(got, want):
    for part in ("state_dict", "source_state_dict"):
        assert got[part].keys() == want[part].keys()
        for key, value in want[part].items():
            assert torch.equal(got[part][key], value), (part, key)
    for index, value in want["optimizer"]["state"].items():
        assert torch.equal(
            got["optimizer"]["state"][index]["momentum_buffer"], value["momentum_buffer"]
        )
    assert got["meta"]["hook_states"]["EMAHook"] == want["meta"]["hook_states"]["EMAHook"]


@pytest.fixture(scope="module")
def recipe_reference(tmp_path_factory):
    config = write_config(tmp_path_factory.mktemp("cfg") / "recipe.py", RECIPE)
    work_dir = tmp_path_factory.mktemp("recipe_uninterrupted")
    rc, out = train(config, work_dir)
    assert rc == 0, out
    final = recipe_final(work_dir)
    assert final["meta"]["hook_states"]["EMAHook"]["steps"] == 12  # 3 steps an epoch
    return config, work_dir, final, samples_seen(work_dir)


@pytest.mark.parametrize("start", ["iter_12.pth", "iter_20.pth"])
def test_ema_and_accumulation_resume_mid_group_is_bit_exact(recipe_reference, tmp_path, start):
    config, first, want, want_samples = recipe_reference
    state = torch.load(first / start, weights_only=True)["meta"]["hook_states"]
    assert "accumulated" in state["OptimizerHook"]  # the checkpoint is inside a group
    rc, out = train(config, tmp_path, "--resume-from", first / start)
    assert rc == 0, out
    done = int(start[len("iter_") : -len(".pth")])
    assert samples_seen(tmp_path) == want_samples[done:]
    assert_same_recipe_run(recipe_final(tmp_path), want)


def test_ema_and_accumulation_killed_mid_group_auto_resume_is_bit_exact(recipe_reference, tmp_path):
    config, _, want, _ = recipe_reference
    kill = 'dict(type="KillAtIterHook",iteration=14)'
    hooks = f'custom_hooks=[dict(type="RecordSamplesHook"),{EMA_HOOK},{kill}]'
    rc, out = train(config, tmp_path, "--cfg-options", hooks.replace(" ", ""))
    assert rc == -9, out
    rc, out = train(config, tmp_path, "--auto-resume")
    assert rc == 0, out
    assert "resumed from" in out and "iter_12.pth" in out, out
    assert_same_recipe_run(recipe_final(tmp_path), want)
