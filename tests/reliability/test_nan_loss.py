"""Non-finite losses and gradients, injected by toy models (tests/reliability/faults.py).

Default: the run stops naming the iteration and the loss term, and the last good checkpoint
is kept (loadable, finite, never overwritten by NaN weights). ``optimizer_config=dict(
skip_nonfinite_loss=True)``: the step is dropped and counted (``skipped_steps`` in the log).
"""

import json
import os

import pytest
import torch

from mmdet_like.engine import Hook, NonFiniteLossError, NonFiniteWeightsError
from tests.engine.toy import ToyRegressor, toy_loader, toy_runner
from tests.reliability.faults import NaNGradToy, TwoLossToy

# toy_loader(16, 4): 4 iterations an epoch


class WeightsAfterEachStep(Hook):
    priority = "LOWEST"  # after OptimizerHook

    def __init__(self):
        self.weights = []

    def after_train_iter(self, runner):
        self.weights.append({k: v.clone() for k, v in runner.model.state_dict().items()})


def finite(state_dict):
    return all(torch.isfinite(v).all() for v in state_dict.values())


def load(path):
    return torch.load(path, weights_only=True)


def log_records(work_dir):
    (log_json,) = work_dir.glob("*.log.json")
    return [json.loads(line) for line in log_json.read_text().splitlines()]


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nonfinite_loss_stops_naming_iteration_term_and_checkpoint(tmp_path, bad):
    torch.manual_seed(0)
    model = TwoLossToy(bad_term="loss_l1", bad_from=6, bad_value=bad)
    runner = toy_runner(tmp_path, model=model, max_epochs=3, checkpoint_config={"interval": 1})
    with pytest.raises(NonFiniteLossError) as info:
        runner.run([toy_loader(16, 4)], [("train", 1)])
    message = str(info.value)
    assert "epoch 2, iteration 2/4 (global iteration 6)" in message
    assert f"loss_l1={bad}" in message and "loss_mse=" not in message  # only the bad term
    assert "skip_nonfinite_loss" in message
    assert f"the last good checkpoint is {tmp_path / 'epoch_1.pth'}" in message
    assert os.path.realpath(tmp_path / "latest.pth") == str(tmp_path / "epoch_1.pth")
    assert not (tmp_path / "epoch_2.pth").exists()
    assert finite(load(tmp_path / "latest.pth")["state_dict"])


def test_nonfinite_loss_never_reaches_the_weights_or_a_checkpoint(tmp_path):
    torch.manual_seed(0)
    runner = toy_runner(
        tmp_path,
        model=ToyRegressor(nan_after=6),
        max_epochs=3,
        checkpoint_config={"interval": 1, "by_epoch": False},  # a checkpoint every step
    )
    with pytest.raises(NonFiniteLossError, match="global iteration 6"):
        runner.run([toy_loader(16, 4)], [("train", 1)])
    names = sorted(f for f in os.listdir(tmp_path) if f.endswith(".pth"))
    assert names == [f"iter_{i}.pth" for i in range(1, 6)] + ["latest.pth"]
    last = load(tmp_path / "latest.pth")
    assert last["meta"]["iter"] == 5 and finite(last["state_dict"])
    for key, value in runner.model.state_dict().items():  # the bad step changed nothing
        assert torch.equal(value, last["state_dict"][key]), key


def test_nonfinite_gradients_never_reach_a_checkpoint(tmp_path):
    torch.manual_seed(0)
    runner = toy_runner(
        tmp_path,
        model=NaNGradToy(nan_grad_at=6),  # finite loss, NaN gradients: NaN weights after step 6
        max_epochs=3,
        checkpoint_config={"interval": 1, "by_epoch": False},
    )
    with pytest.raises(NonFiniteWeightsError) as info:
        runner.run([toy_loader(16, 4)], [("train", 1)])
    message = str(info.value)
    assert "not finite after global iteration 6" in message and "fc1.weight" in message
    assert f"{tmp_path / 'iter_6.pth'} is not written" in message
    assert f"the last good checkpoint is {tmp_path / 'iter_5.pth'}" in message
    assert not (tmp_path / "iter_6.pth").exists()
    assert os.path.realpath(tmp_path / "latest.pth") == str(tmp_path / "iter_5.pth")
    assert finite(load(tmp_path / "latest.pth")["state_dict"])


def test_nonfinite_loss_steps_are_skipped_and_counted(tmp_path):
    torch.manual_seed(0)
    model = ToyRegressor(nan_after=6)
    runner = toy_runner(
        tmp_path,
        model=model,
        max_epochs=2,
        optimizer_config={"skip_nonfinite_loss": True},
        checkpoint_config={"interval": 1},
        log_config={"interval": 2},
    )
    recorder = runner.register_hook(WeightsAfterEachStep())
    runner.run([toy_loader(16, 4)], [("train", 1)])
    assert runner.iter == 8 and runner.epoch == 2
    assert runner.log_buffer.counters["skipped_steps"] == 3  # calls 6, 7, 8
    for weights in recorder.weights[5:]:  # iterations 6-8 dropped: weights stay
        for key, value in weights.items():
            assert torch.equal(value, recorder.weights[4][key]), key
    assert finite(load(tmp_path / "latest.pth")["state_dict"])
    train = [r for r in log_records(tmp_path) if r["mode"] == "train"]
    assert [(r["epoch"], r["iter"], r["skipped_steps"]) for r in train] == [
        (1, 2, 0),
        (1, 4, 0),
        (2, 2, 1),
        (2, 4, 3),
    ]


def test_nonfinite_gradient_steps_are_skipped_with_the_option(tmp_path):
    torch.manual_seed(0)
    runner = toy_runner(
        tmp_path,
        model=NaNGradToy(nan_grad_at=3),
        max_epochs=2,
        optimizer_config={"skip_nonfinite_loss": True},
        checkpoint_config={"interval": 1},
    )
    recorder = runner.register_hook(WeightsAfterEachStep())
    runner.run([toy_loader(16, 4)], [("train", 1)])
    assert runner.epoch == 2 and runner.log_buffer.counters["skipped_steps"] == 1
    for key, value in recorder.weights[2].items():
        assert torch.equal(value, recorder.weights[1][key]), key
    assert not torch.equal(recorder.weights[3]["fc1.weight"], recorder.weights[2]["fc1.weight"])
    assert finite(load(tmp_path / "latest.pth")["state_dict"])
