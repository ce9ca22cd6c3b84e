"""Chooses, once at import, what runs the ``torch.ops.mmdet_like`` ops:

- ``compiled``: the extension ``mmdet_like._ext`` that setup.py builds from ``ops/``;
- ``fallback``: the same op schemas, defined here from Python, with the kernels of
  :mod:`mmdet_like.ops.fallback` (torchvision's kernels and plain PyTorch; slower).

The compiled extension runs when it is built. When it is not (installed with
``MMDET_LIKE_WITH_OPS=0``, or where setup.py found no C++ compiler) the fallback runs, and a
warning says so once. ``MMDET_LIKE_OPS_BACKEND=fallback`` chooses the fallback although the
extension is built (the extension is then not loaded); ``MMDET_LIKE_OPS_BACKEND=compiled``
requires the extension. An extension that is built but does not fit the running torch (it
fails to load, or reports another torch) raises :class:`ExtensionError` with the rebuild
command instead of being replaced silently.

Both backends define the same ops with the same schemas, so the fake-tensor, autograd and
autocast registrations (``nms_op.py``, ``roi_align_op.py``, ``ms_deform_attn_op.py``) and the
ONNX translation (``mmdet_like/deployment/onnx_ops.py``) are the same for both.
:func:`backend` says which runs.
"""

import importlib
import logging
import os

import torch

from mmdet_like.errors import ProjectError

REBUILD_COMMAND = "pip install -e . --no-build-isolation  (or: make install)"
BACKEND_ENV = "MMDET_LIKE_OPS_BACKEND"
BACKENDS = ("compiled", "fallback")

logger = logging.getLogger("mmdet_like")

# The op schemas of ops/registration.cpp and ops/memory/cpu_caching_allocator.cpp, verbatim
# (tests/ops/test_fallback.py compares them with the compiled extension's).
SCHEMAS = (
    "build_info() -> str",
    "parallel_regions_opened() -> int",
    "roi_align(Tensor input, Tensor rois, float spatial_scale, int pooled_height, "
    "int pooled_width, int sampling_ratio, bool aligned) -> Tensor",
    "_roi_align_backward(Tensor grad, Tensor rois, float spatial_scale, int pooled_height, "
    "int pooled_width, int batch_size, int channels, int height, int width, "
    "int sampling_ratio, bool aligned) -> Tensor",
    "ms_deform_attn(Tensor value, Tensor spatial_shapes, Tensor level_start_index, "
    "Tensor sampling_locations, Tensor attention_weights) -> Tensor",
    "_ms_deform_attn_backward(Tensor value, Tensor spatial_shapes, Tensor level_start_index, "
    "Tensor sampling_locations, Tensor attention_weights, Tensor grad_output) "
    "-> (Tensor, Tensor, Tensor)",
    "nms(Tensor boxes, Tensor scores, float iou_threshold) -> Tensor",
    "soft_nms(Tensor boxes, Tensor scores, float iou_threshold, float sigma, "
    "float min_score, int method) -> (Tensor, Tensor)",
    "enable_cpu_caching_allocator(int min_block_bytes) -> bool",
    "disable_cpu_caching_allocator() -> bool",
    "cpu_caching_allocator_enabled() -> bool",
    "cpu_caching_allocator_stats() -> int[]",
    "cpu_caching_allocator_release() -> ()",
)

# {op: the dispatch keys of its fallback kernel, mmdet_like.ops.fallback.<op without its
# leading underscore>}: the devices the compiled kernels are registered for (soft_nms: the
# CPU only; its Python face moves CUDA inputs there). Ops without tensor arguments are
# registered as C++'s m.def(schema, function) registers them.
_NO_TENSORS = ("CompositeImplicitAutograd",)
FALLBACK_KERNELS = {
    "build_info": _NO_TENSORS,
    "parallel_regions_opened": _NO_TENSORS,
    "roi_align": ("CPU", "CUDA"),
    "_roi_align_backward": ("CPU", "CUDA"),
    "ms_deform_attn": ("CPU", "CUDA"),
    "_ms_deform_attn_backward": ("CPU", "CUDA"),
    "nms": ("CPU", "CUDA"),
    "soft_nms": ("CPU",),
    "enable_cpu_caching_allocator": _NO_TENSORS,
    "disable_cpu_caching_allocator": _NO_TENSORS,
    "cpu_caching_allocator_enabled": _NO_TENSORS,
    "cpu_caching_allocator_stats": _NO_TENSORS,
    "cpu_caching_allocator_release": _NO_TENSORS,
}


class ExtensionError(ProjectError, ImportError):
    """The compiled ops of mmdet_like are missing, were built for another torch, or cannot
    be used in this process."""

    not_built = False  # True: no extension at all (the fallback may then run instead)


def _running_torch_version():
    return torch.__version__.split("+")[0]


_FALLBACK_HINT = (
    f"; or set {BACKEND_ENV}=fallback to run without it on the slower PyTorch/torchvision "
    "fallback ops"
)


_fallback_library = None  # the torch.library.Library holding the fallback registrations


def load_extension():
    """Import ``mmdet_like._ext`` (registering the ``torch.ops.mmdet_like`` ops) once."""
    if _fallback_library is not None:
        raise ExtensionError(
            "mmdet_like.ops: this process runs the fallback ops, which define the "
            "torch.ops.mmdet_like ops themselves; the compiled extension cannot be loaded "
            f"beside them. Start a new process without {BACKEND_ENV}=fallback to use it."
        )
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
        error = ExtensionError(
            f"mmdet_like.ops: {cause}. Rebuild it from the repository root with: "
            f"{REBUILD_COMMAND}{'' if missing else _FALLBACK_HINT}"
        )
        error.not_built = missing
        raise error from exc
    info = dict(item.split("=", 1) for item in torch.ops.mmdet_like.build_info().split(";"))
    built_for = info["torch"]
    running = ".".join(_running_torch_version().split(".")[:3])
    if built_for != running:
        raise ExtensionError(
            f"mmdet_like.ops: the compiled extension was built for torch {built_for} but torch "
            f"{running} is running. Rebuild it from the repository root with: "
            f"{REBUILD_COMMAND}{_FALLBACK_HINT}"
        )
    return info


def register_fallback():
    """Define the ``torch.ops.mmdet_like`` ops from Python, with the fallback kernels."""
    global _fallback_library
    from mmdet_like.ops import fallback

    library = torch.library.Library("mmdet_like", "DEF")
    for schema in SCHEMAS:
        library.define(schema)
    for op, keys in FALLBACK_KERNELS.items():
        for key in keys:
            library.impl(op, getattr(fallback, op.lstrip("_")), key)
    _fallback_library = library


def _requested_backend():
    value = os.environ.get(BACKEND_ENV, "").strip().lower()
    if value in ("", "auto"):
        return None
    if value not in BACKENDS:
        raise ExtensionError(
            f"mmdet_like.ops: {BACKEND_ENV}={value!r} is not one of compiled, fallback (or "
            "auto, the default: the compiled extension where it is built)"
        )
    return value


def _choose_backend():
    requested = _requested_backend()
    if requested == "fallback":
        register_fallback()
        logger.info(
            "mmdet_like.ops: using the PyTorch/torchvision fallback ops, as %s=fallback asks "
            "(slower than the compiled extension)",
            BACKEND_ENV,
        )
        return "fallback"
    try:
        info = load_extension()
    except ExtensionError as exc:
        if requested == "compiled" or not exc.not_built:
            raise
        register_fallback()
        logger.warning(
            "mmdet_like.ops: compiled extension not built; using the PyTorch/torchvision "
            "fallback ops (slower; rebuild with: %s; %s=fallback chooses the fallback without "
            "this warning)",
            REBUILD_COMMAND,
            BACKEND_ENV,
        )
        return "fallback"
    logger.info(
        "mmdet_like.ops: using the compiled extension mmdet_like._ext (torch %s, CUDA kernels: %s)",
        info["torch"],
        "yes" if info["cuda"] == "1" else "no",
    )
    return "compiled"


BACKEND = _choose_backend()
BUILD_INFO = dict(item.split("=", 1) for item in torch.ops.mmdet_like.build_info().split(";"))


def backend():
    """``"compiled"`` (the extension mmdet_like._ext) or ``"fallback"`` (PyTorch/torchvision):
    what runs the ops in this process, chosen once at import."""
    return BACKEND


def built_with_cuda():
    """True when the ops have CUDA kernels: compiled into the extension, or (fallback)
    torchvision's."""
    return BUILD_INFO["cuda"] == "1"


def parallel_regions_opened():
    """How many parallel regions the CPU kernels of mmdet_like have opened in this process
    (calls split over more than one thread). Each call of an op opens at most one, and none
    for small inputs (ops/common/parallel.h). Always 0 on the fallback, which has no kernels
    of its own."""
    return int(torch.ops.mmdet_like.parallel_regions_opened())
