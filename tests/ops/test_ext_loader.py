"""A missing or stale compiled extension fails with the cause and the rebuild command."""

import importlib

import pytest

from mmdet_like.ops import ExtensionError, _ext_loader, backend

compiled_only = pytest.mark.skipif(
    backend() != "compiled", reason="needs the compiled extension, which this process does not run"
)


def test_missing_extension_names_the_rebuild_command(monkeypatch):
    monkeypatch.setattr(_ext_loader, "_fallback_library", None)

    def fail(name):
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)

    monkeypatch.setattr(importlib, "import_module", fail)
    with pytest.raises(ExtensionError, match="is not built") as info:
        _ext_loader.load_extension()
    assert "pip install -e . --no-build-isolation" in str(info.value)


def test_extension_that_fails_to_load(monkeypatch):
    monkeypatch.setattr(_ext_loader, "_fallback_library", None)

    def fail(name):
        raise ImportError("undefined symbol: _ZN3c104impl")

    monkeypatch.setattr(importlib, "import_module", fail)
    with pytest.raises(ExtensionError, match="failed to load .*undefined symbol") as info:
        _ext_loader.load_extension()
    assert not info.value.not_built  # a broken build is an error, not a reason to fall back
    assert "MMDET_LIKE_OPS_BACKEND=fallback" in str(info.value)


@compiled_only
def test_extension_built_for_another_torch(monkeypatch):
    monkeypatch.setattr(_ext_loader, "_running_torch_version", lambda: "1.13.1")
    with pytest.raises(ExtensionError, match=r"built for torch 2\.\d+\.\d+ but torch 1\.13\.1"):
        _ext_loader.load_extension()


@compiled_only
def test_build_info_matches_running_torch():
    info = _ext_loader.load_extension()
    assert set(info) == {"torch", "cuda"}
    assert info["cuda"] in {"0", "1"}
