"""EMAHook: each ``ema_type`` against its formula computed by hand, buffers, evaluation on
the average, the checkpoint layout (state_dict = average, source_state_dict = trained
weights), exact resume, and the errors a bad config gets.

The tools (train, test, init_detector) and a killed run resumed: tests/engine/test_recipe_tools.py
and tests/reliability/test_resume_mid_epoch.py."""

import math
import re

import pytest
import torch
from torch import nn

from mmdet_like.engine import ConfigError, EMAHook, EvalHook, Hook, load_checkpoint
from mmdet_like.registry import HOOKS
from tests.engine.recipe_toys import RecordSteps, make_runner, ordered_loader, snapshot
from tests.engine.toy import ToyRegressionDataset, ToyRegressor, toy_loader

# float32 averages against float64 hand computations over 8 updates (values up to 1.0): the
# largest difference measured was 5.2e-8 for the parameters, 6.2e-8 for batch-norm buffers
TOLERANCE = 3e-7


def hand_average(record, weight, copies_first=True, interval=1):
    """The average of ``record.after_steps`` by the formula, in float64: ``weight(t)`` is
    the weight of the new weights at the update after ``t`` steps."""
    average = dict(record.initial)
    for t, weights in enumerate(record.after_steps):
        if t % interval:
            continue
        if t == 0 and copies_first:
            average = dict(weights)
            continue
        w = weight(t)
        average = {k: average[k] * (1 - w) + weights[k] * w for k in average}
    return average


CASES = {
    "ExponentialMovingAverage": (dict(momentum=0.2), lambda t: 0.2, True),
    "ExpMomentumEMA": (
        dict(momentum=0.05, gamma=4),
        lambda t: (1 - 0.05) * math.exp(-(1 + t) / 4) + 0.05,
        True,
    ),
    "MomentumAnnealingEMA": (dict(momentum=0.05, gamma=3), lambda t: max(0.05, 3 / (3 + t)), True),
    # RT-DETR's ModelEMA: d = decay * (1 - exp(-updates / warmups)), updates counted from 1
    "DecayWarmupEMA": (
        dict(decay=0.9, warmups=3),
        lambda t: 1 - 0.9 * (1 - math.exp(-(t + 1) / 3)),
        False,
    ),
}


@pytest.mark.parametrize("interval", [1, 2])
@pytest.mark.parametrize("ema_type", sorted(CASES))
def test_each_ema_type_matches_its_formula_by_hand(tmp_path, ema_type, interval):
    args, weight, copies_first = CASES[ema_type]
    record = RecordSteps()
    runner = make_runner(
        tmp_path, custom_hooks=[dict(type="EMAHook", ema_type=ema_type, interval=interval, **args)]
    )
    runner.register_hook(record)
    (ema,) = [h for h in runner.hooks if isinstance(h, EMAHook)]
    runner.run([toy_loader(16, 4)], [("train", 1)])
    assert len(record.after_steps) == ema.steps == 8
    want = hand_average(record, weight, copies_first, interval)
    got = ema.averaged_weights()
    assert sorted(got) == sorted(want)
    for key, value in want.items():
        assert torch.allclose(got[key].double(), value, rtol=0, atol=TOLERANCE), key
    # the average is not the last weights: the test sees the formula
    last = record.after_steps[-1]
    assert max(float((want[k] - last[k]).abs().max()) for k in want) > 1e-3
    # the model keeps the trained weights
    for key, value in snapshot(runner.model).items():
        assert torch.equal(value, last[key]), key


def test_begin_iter_copies_the_weights_until_then(tmp_path):
    record = RecordSteps()
    hook = dict(type="EMAHook", ema_type="ExponentialMovingAverage", momentum=0.3, begin_iter=5)
    runner = make_runner(tmp_path, custom_hooks=[hook])
    runner.register_hook(record)
    (ema,) = [h for h in runner.hooks if isinstance(h, EMAHook)]
    runner.run([toy_loader(16, 4)], [("train", 1)])
    # iterations 1-4 copy; from iteration 5 (t = 0: a copy) the average runs for 4 updates
    assert ema.steps == 4
    late = RecordSteps()
    late.initial, late.after_steps = record.after_steps[3], record.after_steps[4:]
    want = hand_average(late, lambda t: 0.3)
    for key, value in ema.averaged_weights().items():
        assert torch.allclose(value.double(), want[key], rtol=0, atol=TOLERANCE), key


class ToyBN(ToyRegressor):
    """The toy regressor with batch norm between its layers: (B, 4) -> (B, 8) -> BN ->
    (B, 1)."""

    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm1d(8)

    def forward(self, x, y=None, index=None, return_loss=True, rescale=False):
        pred = self.fc2(self.bn(self.fc1(x)))
        if not return_loss:
            return list(pred.detach().cpu())
        return {"loss_mse": ((pred - y) ** 2).mean()}


@pytest.mark.parametrize("update_buffers", [True, False])
def test_buffers_are_averaged_only_with_update_buffers(tmp_path, update_buffers):
    record = RecordSteps()
    hook = dict(type="EMAHook", ema_type="ExponentialMovingAverage", momentum=0.25,
                update_buffers=update_buffers)  # fmt: skip
    runner = make_runner(tmp_path, model_cls=ToyBN, custom_hooks=[hook], checkpoint_config={})
    runner.register_hook(record)
    (ema,) = [h for h in runner.hooks if isinstance(h, EMAHook)]
    runner.run([toy_loader(16, 4)], [("train", 1)])
    averaged = ema.averaged_weights()
    saved = torch.load(tmp_path / "latest.pth", weights_only=True)
    model_state = runner.model.state_dict()
    if update_buffers:
        want = hand_average(record, lambda t: 0.25)
        for key in ("bn.running_mean", "bn.running_var"):
            assert torch.allclose(averaged[key].double(), want[key], rtol=0, atol=TOLERANCE)
            assert not torch.equal(averaged[key], model_state[key])
            assert torch.equal(saved["state_dict"][key], averaged[key])
        # an integer buffer is the model's
        assert int(averaged["bn.num_batches_tracked"]) == 8
    else:
        assert not any(k.startswith("bn.running") for k in averaged)
        for key in ("bn.running_mean", "bn.running_var", "bn.num_batches_tracked"):
            assert torch.equal(saved["state_dict"][key], model_state[key])
    for key, value in model_state.items():
        assert torch.equal(saved["source_state_dict"][key], value), key


class PredictionsDataset(ToyRegressionDataset):
    """Keeps the predictions of each evaluation."""

    def __init__(self):
        super().__init__(num_samples=8, seed=1, test_mode=True)
        self.seen = []

    def evaluate(self, results, logger=None):
        self.seen.append(torch.stack([torch.as_tensor(r).reshape(1) for r in results]))
        return super().evaluate(results)


class ValWeights(Hook):
    """The weights the ``val`` workflow's iterations run on."""

    priority = "LOW"

    def __init__(self):
        self.seen = []

    def after_val_iter(self, runner):
        self.seen.append(snapshot(runner.model))


def test_evaluation_and_val_workflow_run_on_the_average_then_training_goes_on(tmp_path):
    dataset = PredictionsDataset()
    eval_loader = torch.utils.data.DataLoader(
        dataset, batch_size=4, collate_fn=toy_loader().collate_fn
    )
    record, val_weights = RecordSteps(), ValWeights()
    hook = dict(type="EMAHook", ema_type="ExpMomentumEMA", momentum=0.1, gamma=3)
    runner = make_runner(tmp_path, max_epochs=2, custom_hooks=[hook])
    runner.register_hook(record)
    runner.register_hook(val_weights)
    runner.register_hook(EvalHook(eval_loader))
    (ema,) = [h for h in runner.hooks if isinstance(h, EMAHook)]
    averages = []
    runner.register_hook(
        _AfterEpoch(
            lambda r: averages.append({k: v.clone() for k, v in ema.averaged_weights().items()})
        )
    )
    runner.run([toy_loader(16, 4), ordered_loader(8, 4, seed=1)], [("train", 1), ("val", 1)])
    assert len(dataset.seen) == 2 and len(val_weights.seen) == 4
    for epoch, predictions in enumerate(dataset.seen):
        model = ToyRegressor()
        model.load_state_dict(averages[epoch])
        model.eval()
        want = torch.stack(model(dataset.x, return_loss=False))
        assert torch.equal(predictions, want)
        for seen in val_weights.seen[2 * epoch : 2 * epoch + 2]:
            for key, value in averages[epoch].items():
                assert torch.equal(seen[key], value.double()), key
    # training went on from the trained weights, not the average
    assert len(record.after_steps) == 8
    for key, value in snapshot(runner.model).items():
        assert torch.equal(value, record.after_steps[-1][key])


class _AfterEpoch(Hook):
    priority = "VERY_LOW"

    def __init__(self, call):
        self.call = call

    def after_train_epoch(self, runner):
        self.call(runner)


def test_checkpoint_holds_the_average_for_inference_and_the_trained_weights_to_resume(tmp_path):
    hook = dict(type="EMAHook", ema_type="ExpMomentumEMA", momentum=0.1, gamma=3)
    runner = make_runner(tmp_path, custom_hooks=[hook], checkpoint_config={})
    runner.run([toy_loader(16, 4)], [("train", 1)])
    (ema,) = [h for h in runner.hooks if isinstance(h, EMAHook)]
    checkpoint = torch.load(tmp_path / "latest.pth", weights_only=True)
    assert checkpoint["meta"]["hook_states"]["EMAHook"] == {
        "steps": 8,
        "ema_type": "ExpMomentumEMA",
    }
    for key, value in ema.averaged_weights().items():
        assert torch.equal(checkpoint["state_dict"][key], value), key
    for key, value in runner.model.state_dict().items():
        assert torch.equal(checkpoint["source_state_dict"][key], value), key
    # load_from (and tools/test.py, init_detector: load_checkpoint) read the average
    fresh = ToyRegressor()
    load_checkpoint(fresh, str(tmp_path / "latest.pth"))
    for key, value in ema.averaged_weights().items():
        assert torch.equal(fresh.state_dict()[key], value), key


def final_checkpoint(work_dir, name):
    return torch.load(work_dir / name, weights_only=True)


def assert_same_run(got, want):
    for part in ("state_dict", "source_state_dict"):
        assert got[part].keys() == want[part].keys()
        for key, value in want[part].items():
            assert torch.equal(got[part][key], value), (part, key)
    for index, state in want["optimizer"]["state"].items():
        assert torch.equal(
            got["optimizer"]["state"][index]["momentum_buffer"], state["momentum_buffer"]
        )
    assert got["meta"]["hook_states"]["EMAHook"] == want["meta"]["hook_states"]["EMAHook"]


@pytest.mark.parametrize("start", ["iter_4.pth", "iter_8.pth", "epoch_2.pth"])
def test_resume_is_exact(tmp_path, start):
    """20 samples in batches of 4: 5 iterations an epoch; iter_4 and iter_8 are mid-epoch."""
    hook = dict(type="EMAHook", ema_type="ExpMomentumEMA", momentum=0.05, gamma=5,
                update_buffers=True)  # fmt: skip
    checkpoints = dict(interval=4, by_epoch=False)

    def run(work_dir, resume=None):
        runner = make_runner(work_dir, max_epochs=3, model_cls=ToyBN, custom_hooks=[hook],
                             checkpoint_config=checkpoints)  # fmt: skip
        if resume is not None:
            runner.resume(str(resume))
        runner.run([toy_loader(20, 4)], [("train", 1)])
        return runner

    run(tmp_path / "full")
    want = final_checkpoint(tmp_path / "full", "iter_15.pth")
    if start == "epoch_2.pth":  # an epoch checkpoint of the same run
        runner = make_runner(tmp_path / "epochs", max_epochs=3, model_cls=ToyBN,
                             custom_hooks=[hook], checkpoint_config={})  # fmt: skip
        runner.run([toy_loader(20, 4)], [("train", 1)])
        source = tmp_path / "epochs" / start
    else:
        source = tmp_path / "full" / start
    run(tmp_path / "resumed", resume=source)
    assert_same_run(final_checkpoint(tmp_path / "resumed", "iter_15.pth"), want)


def test_resume_without_the_hook_goes_on_from_the_trained_weights(tmp_path):
    hook = dict(type="EMAHook", momentum=0.1)
    runner = make_runner(tmp_path / "a", custom_hooks=[hook], checkpoint_config={})
    runner.run([toy_loader(16, 4)], [("train", 1)])
    trained = runner.model.state_dict()
    plain = make_runner(tmp_path / "b", max_epochs=3, checkpoint_config={}, log_name="plain")
    plain.resume(str(tmp_path / "a" / "latest.pth"))
    for key, value in trained.items():
        assert torch.equal(plain.model.state_dict()[key], value), key
    assert "the average is dropped: this config has no EMAHook" in plain.log_lines.text()
    # and a run with the hook resumed from a checkpoint without an average starts one
    ema_runner = make_runner(tmp_path / "c", max_epochs=4, custom_hooks=[hook], log_name="late")
    plain.run([toy_loader(16, 4)], [("train", 1)])
    ema_runner.resume(str(tmp_path / "b" / "latest.pth"))
    ema_runner.run([toy_loader(16, 4)], [("train", 1)])
    assert "has no averaged weights; the average starts from its weights" in (
        ema_runner.log_lines.text()
    )


def test_registered_and_bad_values_name_the_field_and_the_fix(tmp_path):
    assert HOOKS.get("EMAHook") is EMAHook
    cases = [
        (dict(momentum=2.0), "custom_hooks EMAHook (ema_type='ExponentialMovingAverage'): "
                             "momentum=2.0 must be a number in (0, 1)"),
        (dict(ema_type="ExpMomentEMA"), "Did you mean 'ExpMomentumEMA'"),
        (dict(ema_type="ExpMomentumEMA", decay=0.9), "got unexpected argument(s) 'decay'"),
        (dict(ema_type="ExpMomentumEMA", gamma=0), "gamma=0 must be a number in (0, inf)"),
        (dict(ema_type="DecayWarmupEMA", decay=1.0), "decay=1.0 must be a number in (0, 1)"),
        (dict(interval=0), "interval must be a whole number >= 1"),
        (dict(update_buffers="yes"), "update_buffers must be True or False"),
    ]  # fmt: skip
    for args, message in cases:
        with pytest.raises(ConfigError, match=re.escape(message)):
            EMAHook(**args)
    early = make_runner(tmp_path, custom_hooks=[dict(type="EMAHook", priority=30)])
    with pytest.raises(ConfigError, match="runs before OptimizerHook .*Fix: priority=49"):
        early.run([toy_loader(16, 4)], [("train", 1)])
    late = make_runner(tmp_path, custom_hooks=[dict(type="EMAHook", priority="LOW")],
                       checkpoint_config=dict(interval=2, by_epoch=False))  # fmt: skip
    with pytest.raises(ConfigError, match="runs after CheckpointHook .*by_epoch=False"):
        late.run([toy_loader(16, 4)], [("train", 1)])
