"""Python faces of the compiled ops (sources in ``ops/`` at the repository root), or of their
PyTorch/torchvision fallback where the extension is not built (:func:`backend` says which)."""

from mmdet_like.ops._ext_loader import (
    ExtensionError,
    backend,
    built_with_cuda,
    parallel_regions_opened,
)
from mmdet_like.ops.cpu_caching_allocator import (
    cpu_caching_allocator_available,
    cpu_caching_allocator_enabled,
    cpu_caching_allocator_stats,
    cpu_caching_allocator_switched_on,
    disable_cpu_caching_allocator,
    enable_cpu_caching_allocator,
    enable_cpu_caching_allocator_from_env,
    release_cached_cpu_blocks,
)
from mmdet_like.ops.ms_deform_attn_op import ms_deform_attn, ms_deform_attn_reference
from mmdet_like.ops.nms_op import batched_nms, nms, soft_nms
from mmdet_like.ops.roi_align_op import RoIAlign, roi_align

__all__ = [
    "ExtensionError",
    "RoIAlign",
    "backend",
    "batched_nms",
    "built_with_cuda",
    "cpu_caching_allocator_available",
    "cpu_caching_allocator_enabled",
    "cpu_caching_allocator_stats",
    "cpu_caching_allocator_switched_on",
    "disable_cpu_caching_allocator",
    "enable_cpu_caching_allocator",
    "enable_cpu_caching_allocator_from_env",
    "release_cached_cpu_blocks",
    "ms_deform_attn",
    "ms_deform_attn_reference",
    "nms",
    "parallel_regions_opened",
    "roi_align",
    "soft_nms",
]
