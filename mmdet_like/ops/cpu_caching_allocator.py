"""Python face of the caching allocator for large CPU blocks (``ops/memory/``).

torch's default CPU allocator gets every block from ``malloc``; glibc maps each block above
32 MiB afresh and unmaps it on free, so each training iteration of a detector page-faults
its large activations in again (2.7 million faults an iteration for Mask R-CNN R50-FPN at
800 x 1216, about a sixth of its CPU time). With the caching allocator, freed blocks of at
least ``min_block_bytes`` stay mapped and serve later requests of the same size class (or
down to half their size). A miss that would take the mapped total past the most the process
ever had in use at once first unmaps the least recently freed blocks, so peak memory stays
what it is without the cache.

``tools/train.py`` and ``tools/test.py`` enable it on the CPU;
``MMDET_LIKE_CPU_CACHING_ALLOCATOR=0`` in the environment turns that off. It is compiled code:
with the fallback ops (``mmdet_like.ops.backend() == "fallback"``) enabling it returns False
and torch's default allocator stays in place.
"""

import os
from typing import NamedTuple

import torch

from mmdet_like.ops._ext_loader import backend

ENV_SWITCH = "MMDET_LIKE_CPU_CACHING_ALLOCATOR"
DEFAULT_MIN_BLOCK_BYTES = 1 << 20


class CachingAllocatorStats(NamedTuple):
    """Counters of the caching allocator (large blocks only)."""

    cached_bytes: int  # freed blocks kept mapped for reuse
    in_use_bytes: int  # blocks handed out and not yet freed
    peak_in_use_bytes: int  # high-water mark of in_use_bytes; in use + cached stays below it
    hits: int  # requests served from the cache
    misses: int  # requests that mapped a new block
    released_blocks: int  # cached blocks unmapped to make room or on release


def cpu_caching_allocator_available():
    """Whether the caching allocator exists here: it is part of the compiled extension."""
    return backend() == "compiled"


def enable_cpu_caching_allocator(min_block_bytes=DEFAULT_MIN_BLOCK_BYTES):
    """Make the caching allocator torch's CPU allocator. Returns True if it is in place.

    Tensors allocated before keep their own allocator; new CPU tensors of at least
    ``min_block_bytes`` come from the cache. With the fallback ops it returns False (and logs
    once that the allocator is not available).
    """
    return bool(torch.ops.mmdet_like.enable_cpu_caching_allocator(int(min_block_bytes)))


def disable_cpu_caching_allocator():
    """Put back the previous CPU allocator and unmap the cached blocks."""
    return bool(torch.ops.mmdet_like.disable_cpu_caching_allocator())


def cpu_caching_allocator_enabled():
    return bool(torch.ops.mmdet_like.cpu_caching_allocator_enabled())


def cpu_caching_allocator_stats():
    return CachingAllocatorStats(*torch.ops.mmdet_like.cpu_caching_allocator_stats())


def release_cached_cpu_blocks():
    """Unmap every cached block (blocks in use stay)."""
    torch.ops.mmdet_like.cpu_caching_allocator_release()


def cpu_caching_allocator_switched_on():
    """False where ``MMDET_LIKE_CPU_CACHING_ALLOCATOR`` is 0 (or false, no, off)."""
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "no", "off")


def enable_cpu_caching_allocator_from_env():
    """What the command-line tools call: enable unless ``MMDET_LIKE_CPU_CACHING_ALLOCATOR=0``."""
    return cpu_caching_allocator_switched_on() and enable_cpu_caching_allocator()
