import pytest

import mmdet_like.engine  # noqa: F401 (registers the built-in hooks)
from mmdet_like.registry import (
    HOOKS,
    OPTIMIZERS,
    BuildError,
    Registry,
    RegistryError,
    build_from_cfg,
)


def test_every_built_in_hook_and_optimizer_is_registered():
    for name in (
        "CheckpointHook",
        "OptimizerHook",
        "IterTimerHook",
        "TextLoggerHook",
        "TensorboardLoggerHook",
        "EvalHook",
        "DistEvalHook",
        "EmptyCacheHook",
        "StepLrUpdaterHook",
        "CosineLrUpdaterHook",
        "PolyLrUpdaterHook",
        "ExpLrUpdaterHook",
    ):
        assert name in HOOKS
    assert {"SGD", "Adam", "AdamW"} <= set(OPTIMIZERS.names)


def test_unknown_type_names_registry_type_and_closest():
    with pytest.raises(RegistryError) as info:
        build_from_cfg({"type": "CheckpointHok"}, HOOKS)
    message = str(info.value)
    assert "'CheckpointHok'" in message and "HOOKS" in message
    assert "Did you mean 'CheckpointHook'" in message


def test_wrong_argument_names_class_and_argument():
    with pytest.raises(BuildError) as info:
        build_from_cfg({"type": "CheckpointHook", "intervall": 2}, HOOKS)
    message = str(info.value)
    assert "CheckpointHook" in message and "'intervall'" in message
    assert "did you mean 'interval'" in message


def test_missing_argument_and_missing_type():
    registry = Registry("THINGS")

    @registry.register()
    class Thing:
        def __init__(self, size):
            self.size = size

    with pytest.raises(BuildError, match="Thing is missing required argument.*'size'"):
        build_from_cfg({"type": "Thing"}, registry)
    with pytest.raises(BuildError, match="no 'type' key"):
        build_from_cfg({"size": 1}, registry)
    assert build_from_cfg({"type": "Thing"}, registry, {"size": 3}).size == 3


def test_import_mmdet_like_alone_registers_every_built_in():
    """A fresh interpreter that imports only ``mmdet_like`` finds the built-ins of every
    registry (it found none: the subpackages registered on their own import only)."""
    import subprocess
    import sys

    code = (
        "import mmdet_like\n"
        "from mmdet_like import registry as r\n"
        "names = {'DATASETS': 'CocoDataset', 'PIPELINES': 'LoadImageFromFile', "
        "'DETECTORS': 'MaskRCNN', 'BACKBONES': 'ResNet', 'HOOKS': 'CheckpointHook', "
        "'BBOX_ASSIGNERS': 'MaxIoUAssigner', 'LOSSES': 'CrossEntropyLoss', "
        "'MATCH_COSTS': 'FocalLossCost', 'PRIOR_GENERATORS': 'MlvlPointGenerator', "
        "'BBOX_CODERS': 'DistancePointBBoxCoder'}\n"
        "for reg, name in names.items():\n"
        "    getattr(r, reg).get(name)\n"
        "print(len(r.DATASETS), len(r.HOOKS), len(r.DETECTORS))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert all(int(n) > 0 for n in out.stdout.split())


def test_training_testing_and_inference_build_through_one_builder(monkeypatch, tmp_path):
    """``apis.build_detector`` (tools/train.py, tools/test.py) is the models builder, and
    ``init_detector`` calls it: one rule for train_cfg / test_cfg."""
    import mmdet_like.apis.inference as inference
    from mmdet_like import apis, models
    from mmdet_like.registry import BuildError

    assert apis.build_detector is models.build_detector
    calls = []

    def spy(cfg, train_cfg=None, test_cfg=None):
        calls.append((train_cfg, test_cfg))
        raise RuntimeError("built")

    monkeypatch.setattr(inference, "build_detector", spy)
    config = tmp_path / "cfg.py"
    config.write_text(
        "model = dict(type='RPN', backbone=dict(type='ResNet', depth=18))\n"
        "train_cfg = dict(rpn=dict())\ntest_cfg = dict(rpn=dict())\n"
    )
    with pytest.raises(RuntimeError, match="built"):
        inference.init_detector(str(config))
    assert calls == [(None, {"rpn": {}})]
    with pytest.raises(BuildError, match="train_cfg is given both"):
        models.build_detector(dict(type="RPN", train_cfg={}), train_cfg={})
