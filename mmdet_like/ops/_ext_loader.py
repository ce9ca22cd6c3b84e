"""Loads the compiled extension ``mmdet_like._ext`` and checks that it fits the running torch.

There is no pure-Python fallback: a missing or stale build raises :class:`ExtensionError`
with the cause and the command that rebuilds it.
"""

import importlib

import torch

from mmdet_like.errors import ProjectError

REBUILD_COMMAND = "pip install -e . --no-build-isolation  (or: make install)"


class ExtensionError(ProjectError, ImportError):
    """The compiled ops of mmdet_like are missing or were built for another torch."""


def _running_torch_version():
    return torch.__version__.split("+")[0]


def load_extension():
    """Import ``mmdet_like._ext`` (registering the ``torch.ops.mmdet_like`` ops) once."""
    try:
        importlib.import_module("mmdet_like._ext")
    except ImportError as exc:
        missing = isinstance(exc, ModuleNotFoundError) and exc.name == "mmdet_like._ext"
        cause = (
            "the compiled extension mmdet_like._ext is not built"
            if missing
            else f"the compiled extension mmdet_like._ext failed to load ({exc}); it was most "
            f"likely built for another torch than the running {torch.__version__}"
        )
        raise ExtensionError(
            f"mmdet_like.ops: {cause}. Rebuild it from the repository root with: {REBUILD_COMMAND}"
        ) from exc
    info = dict(item.split("=", 1) for item in torch.ops.mmdet_like.build_info().split(";"))
    built_for = info["torch"]
    running = ".".join(_running_torch_version().split(".")[:3])
    if built_for != running:
        raise ExtensionError(
            f"mmdet_like.ops: the compiled extension was built for torch {built_for} but torch "
            f"{running} is running. Rebuild it from the repository root with: {REBUILD_COMMAND}"
        )
    return info


BUILD_INFO = load_extension()


def built_with_cuda():
    """True when the CUDA kernels were compiled into the extension."""
    return BUILD_INFO["cuda"] == "1"


def parallel_regions_opened():
    """How many parallel regions the CPU kernels of mmdet_like have opened in this process
    (calls split over more than one thread). Each call of an op opens at most one, and none
    for small inputs (ops/common/parallel.h)."""
    return int(torch.ops.mmdet_like.parallel_regions_opened())
