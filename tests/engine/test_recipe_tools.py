"""The training-recipe options through the tools: tools/train.py with ``EMAHook`` and
``optimizer_config.cumulative_iters`` from a config, then tools/test.py and init_detector
on its checkpoint test the averaged weights; a bad value stops the run with one line; the
mmdetection 3 config converter keeps the hooks and the accumulation."""

import pickle

import torch

from mmdet_like.apis import init_detector
from mmdet_like.engine import EMAHook, PipelineSwitchHook
from mmdet_like.registry import DETECTORS
from tests.engine.cli_utils import call_tool, run_tool_here, tool_module, write_config
from tests.engine.toy import ToyRegressionDataset, ToyRegressor


@DETECTORS.register(force=True)
class InferenceToyRegressor(ToyRegressor):
    """The toy regressor with the ``pretrained`` argument that init_detector sets."""

    def __init__(self, pretrained=None, **kwargs):
        super().__init__(**kwargs)


EXTRA = """
model = dict(type="InferenceToyRegressor")
data["test"] = dict(type="ToyRegressionDataset", num_samples=8, seed=1)
optimizer_config = dict(cumulative_iters=3, grad_clip=dict(max_norm=1.0))
custom_hooks = [dict(type="EMAHook", ema_type="ExpMomentumEMA", momentum=0.05, gamma=10,
                     priority=49)]
evaluation = dict(interval=1)
total_epochs = 2
"""


def predictions(state_dict):
    """The toy model's predictions with ``state_dict`` on data.test, one image a batch (as
    tools/test.py runs them)."""
    model = ToyRegressor()
    model.load_state_dict(state_dict)
    model.eval()
    x = ToyRegressionDataset(num_samples=8, seed=1).x
    return torch.cat([torch.stack(model(x[i : i + 1], return_loss=False)) for i in range(len(x))])


def test_train_then_test_and_init_detector_use_the_averaged_weights(tmp_path):
    config = write_config(tmp_path / "ema.py", EXTRA)
    out = run_tool_here(["train.py", config, "--work-dir", tmp_path / "work", "--seed", "0"],
                        cwd=tmp_path)  # fmt: skip
    assert "optimizer_config.cumulative_iters=3: one optimizer step every 3 iterations" in out
    checkpoint_path = tmp_path / "work" / "latest.pth"
    checkpoint = torch.load(checkpoint_path, weights_only=True)
    # 8 iterations an epoch in groups of 3, 3 and 2: 6 steps averaged
    assert checkpoint["meta"]["hook_states"]["EMAHook"]["steps"] == 6
    averaged, trained = checkpoint["state_dict"], checkpoint["source_state_dict"]
    assert any(not torch.equal(averaged[k], trained[k]) for k in averaged)

    out = run_tool_here(
        ["test.py", config, checkpoint_path, "--out", tmp_path / "r.pkl"], cwd=tmp_path
    )
    assert "loaded its averaged weights (state_dict, written by EMAHook)" in out
    with open(tmp_path / "r.pkl", "rb") as f:
        results = torch.stack([torch.as_tensor(r).reshape(1) for r in pickle.load(f)])
    assert torch.equal(results, predictions(averaged))
    assert float((results - predictions(trained)).abs().max()) > 1e-3

    model = init_detector(config, str(checkpoint_path))
    for key, value in averaged.items():
        assert torch.equal(model.state_dict()[key], value), key
    # a release keeps the average only
    released = tool_module("model_converters/publish_model.py").publishable(checkpoint)
    assert "source_state_dict" not in released and released["state_dict"] is averaged


def test_a_bad_cumulative_iters_stops_train_py_with_one_line(tmp_path):
    config = write_config(tmp_path / "bad.py", "optimizer_config = dict(cumulative_iters=0)\n")
    run = call_tool("train.py", config, "--work-dir", tmp_path / "work", cwd=tmp_path)
    assert run.status == 1
    assert "optimizer_config.cumulative_iters: must be an integer >= 1, got 0 (a int)" in run.output


def test_mmdet3_configs_recipe_parts_are_translated():
    """mmdetection 3's YOLOX-style hooks and ``accumulative_counts`` convert to ours: the
    switch pipeline as a training pipeline (RandomFlip's prob -> flip_ratio, the data
    preprocessor's Normalize and Pad before PackDetInputs)."""
    from mmdet_like.apis.mmdet3_config import convert_mmdet3_config

    preprocessor = dict(type="DetDataPreprocessor", mean=[1, 2, 3], std=[4, 5, 6],
                        bgr_to_rgb=True, pad_size_divisor=32)  # fmt: skip
    switch = [dict(type="LoadImageFromFile", backend_args=None),
              dict(type="LoadAnnotations", with_bbox=True),
              dict(type="RandomFlip", prob=0.5), dict(type="PackDetInputs")]  # fmt: skip
    cfg = dict(
        model=dict(type="RetinaNet", data_preprocessor=preprocessor),
        optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.01), accumulative_counts=4),
        custom_hooks=[
            dict(type="EMAHook", ema_type="ExpMomentumEMA", momentum=0.0001,
                 update_buffers=True, strict_load=False, priority=49),
            dict(type="PipelineSwitchHook", switch_epoch=285, switch_pipeline=switch),
        ],
    )  # fmt: skip
    conversion = convert_mmdet3_config(cfg)
    ema, switched = conversion.entries["custom_hooks"]
    assert ema == dict(type="EMAHook", ema_type="ExpMomentumEMA", momentum=0.0001,
                       update_buffers=True, priority=49)  # fmt: skip
    assert "custom_hooks[0].strict_load=False: ours (EMAHook) takes no strict_load" in (
        conversion.untranslated
    )
    assert switched["switch_epoch"] == 285
    assert switched["switch_pipeline"] == [
        dict(type="LoadImageFromFile"),
        dict(type="LoadAnnotations", with_bbox=True),
        dict(type="RandomFlip", flip_ratio=0.5),
        dict(type="Normalize", mean=[1, 2, 3], std=[4, 5, 6], to_rgb=True),
        dict(type="Pad", size_divisor=32),
        dict(type="PackDetInputs"),
    ]
    PipelineSwitchHook(**{k: v for k, v in switched.items() if k != "type"})
    EMAHook(**{k: v for k, v in ema.items() if k not in ("type", "priority")})
    assert conversion.entries["optimizer_config"]["cumulative_iters"] == 4
    assert any("accumulative_counts=4 -> optimizer_config.cumulative_iters" in n
               for n in conversion.notes)  # fmt: skip
