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
