"""The caching allocator for large CPU blocks (ops/memory/cpu_caching_allocator.cpp).

Runs that need a process of their own (page-fault counts, switching the allocator off) are
run in a subprocess; the others enable it in this process, as tools/train.py does.
"""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from mmdet_like.ops import (
    backend,
    cpu_caching_allocator_enabled,
    cpu_caching_allocator_stats,
    disable_cpu_caching_allocator,
    enable_cpu_caching_allocator,
)

pytestmark = pytest.mark.skipif(
    backend() != "compiled",
    reason="the caching allocator is part of the compiled extension; the fallback has none "
    "(tests/ops/test_fallback.py checks that enabling it returns False)",
)

MiB = 1 << 20


@pytest.fixture(autouse=True)
def default_allocator_afterwards():
    """Tests that enable the cache in this process leave torch's default allocator behind
    them (later tests in this worker measure memory with the profiler)."""
    was_enabled = cpu_caching_allocator_enabled()
    yield
    if not was_enabled:
        assert disable_cpu_caching_allocator()


def _run(code):
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_freed_blocks_are_reused_without_page_faults():
    # 4 rounds of allocating, touching and freeing 64 MiB, after one round that maps it
    code = """
        import resource, sys, torch
        from mmdet_like.ops import enable_cpu_caching_allocator
        if sys.argv[1:] == ["on"]:
            assert enable_cpu_caching_allocator()
        def round_trip():
            x = torch.empty(16 * 1024 * 1024, dtype=torch.float32)
            x.fill_(1.0)
            del x
        round_trip()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(4):
            round_trip()
        print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    """
    off = int(_run(code)[0])
    on = int(_run(code.replace('sys.argv[1:] == ["on"]', "True"))[0])
    assert off > 4 * 1000  # glibc maps 16,384 pages of 4 KiB afresh each round
    assert on < 200, (off, on)


def test_hits_serve_same_and_smaller_requests_with_correct_values():
    assert enable_cpu_caching_allocator()
    assert cpu_caching_allocator_enabled()
    x = torch.arange(3 * MiB // 4, dtype=torch.float32)  # 3 MiB
    del x
    before = cpu_caching_allocator_stats()
    y = torch.full((3 * MiB // 4,), 2.0)  # same size class
    z = torch.full((2 * MiB // 4,), 3.0)  # a 3 MiB block may serve a 2 MiB request ...
    after = cpu_caching_allocator_stats()
    assert after.hits >= before.hits + 1
    assert float(y.sum()) == 2.0 * y.numel() and float(z.sum()) == 3.0 * z.numel()
    small = torch.ones(1000)  # below min_block_bytes: the default path
    assert cpu_caching_allocator_stats().in_use_bytes == after.in_use_bytes
    assert float(small.sum()) == 1000.0
    # numpy views of cached blocks and tensors made from numpy stay correct
    a = np.arange(MiB, dtype=np.float32)
    t = torch.from_numpy(a).clone()
    assert np.array_equal(t.numpy(), a)


def test_mapped_bytes_never_exceed_the_peak_in_use():
    assert enable_cpu_caching_allocator()
    rng = np.random.default_rng(0)
    alive = []
    for _ in range(300):
        if alive and rng.random() < 0.45:
            alive.pop(int(rng.integers(len(alive))))
        else:
            numel = int(rng.integers(MiB // 4, 24 * MiB // 4))
            alive.append(torch.empty(numel).fill_(1.0))
        stats = cpu_caching_allocator_stats()
        assert stats.cached_bytes + stats.in_use_bytes <= stats.peak_in_use_bytes
    alive.clear()
    assert cpu_caching_allocator_stats().hits > 0


def test_training_step_is_identical_with_and_without_the_cache():
    code = """
        import sys, torch
        from mmdet_like.ops import enable_cpu_caching_allocator
        if sys.argv[1:] == ["on"]:
            assert enable_cpu_caching_allocator()
        torch.manual_seed(0)
        net = torch.nn.Sequential(
            torch.nn.Conv2d(3, 32, 3, padding=1), torch.nn.ReLU(),
            torch.nn.Conv2d(32, 32, 3, padding=1),
        )
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        x = torch.randn(4, 3, 96, 96)
        for _ in range(3):
            opt.zero_grad()
            net(x).square().mean().backward()
            opt.step()
        print(repr(float(sum(p.double().sum() for p in net.parameters()))))
    """
    off = _run(code)[0]
    on = _run(code.replace('sys.argv[1:] == ["on"]', "True"))[0]
    assert off == on


def test_switching_off_keeps_live_tensors_and_unmaps_the_cache():
    code = """
        import torch
        from mmdet_like.ops import (cpu_caching_allocator_enabled, cpu_caching_allocator_stats,
                                    disable_cpu_caching_allocator, enable_cpu_caching_allocator)
        assert enable_cpu_caching_allocator()
        kept = torch.full((4 << 20,), 7.0)
        freed = torch.ones(4 << 20)
        del freed
        assert cpu_caching_allocator_stats().cached_bytes > 0
        assert disable_cpu_caching_allocator() and not cpu_caching_allocator_enabled()
        assert cpu_caching_allocator_stats().cached_bytes == 0
        assert float(kept.sum()) == 7.0 * (4 << 20)
        in_use = cpu_caching_allocator_stats().in_use_bytes
        del kept  # handed out by the cache: unmapped now, not cached
        stats = cpu_caching_allocator_stats()
        assert stats.cached_bytes == 0 and stats.in_use_bytes < in_use
        after = torch.ones(4 << 20)  # the default allocator again
        assert cpu_caching_allocator_stats().in_use_bytes == stats.in_use_bytes
        print("ok")
    """
    assert _run(code) == ["ok"]


def test_data_loader_workers_fork_with_the_cache():
    code = """
        import torch
        from torch.utils.data import DataLoader, Dataset
        from mmdet_like.ops import enable_cpu_caching_allocator
        assert enable_cpu_caching_allocator()
        warm = torch.ones(8 << 20)
        del warm  # a cached block the workers inherit
        class Big(Dataset):
            def __len__(self):
                return 8
            def __getitem__(self, i):
                x = torch.empty(2 << 20)
                x.fill_(float(i))
                return x
        total = sum(float(b.sum()) for b in DataLoader(Big(), batch_size=2, num_workers=2))
        print(total == sum(i * (2 << 20) for i in range(8)))
    """
    assert _run(code) == ["True"]


def test_min_block_bytes_must_be_positive():
    with pytest.raises(RuntimeError, match="min_block_bytes must be positive"):
        enable_cpu_caching_allocator(0)


def test_the_tools_switch_is_read_from_the_environment(monkeypatch):
    from mmdet_like.ops import (
        cpu_caching_allocator_switched_on,
        enable_cpu_caching_allocator_from_env,
    )

    for value in ("0", "off", "False"):
        monkeypatch.setenv("MMDET_LIKE_CPU_CACHING_ALLOCATOR", value)
        assert not cpu_caching_allocator_switched_on()
        assert enable_cpu_caching_allocator_from_env() is False
    monkeypatch.setenv("MMDET_LIKE_CPU_CACHING_ALLOCATOR", "1")
    assert enable_cpu_caching_allocator_from_env() is True


def test_the_profiler_sees_allocations_and_frees_of_both_block_kinds():
    """torch.profiler(profile_memory=True) records the cache's blocks as it records the
    default allocator's: each allocation with its requested size, each free with minus it."""
    from torch.profiler import ProfilerActivity, profile

    assert enable_cpu_caching_allocator()
    large_bytes, small_bytes = 3 * MiB, 4000
    torch.empty(large_bytes // 4).fill_(1.0)  # a cached block of this class: the next is a hit

    def memory_events():
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            large = torch.empty(large_bytes // 4)
            small = torch.empty(small_bytes // 4)
            del large, small
        return [e.nbytes() for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]

    hits = cpu_caching_allocator_stats().hits
    changes = memory_events()
    assert cpu_caching_allocator_stats().hits == hits + 1
    for nbytes in (large_bytes, small_bytes):
        assert changes.count(nbytes) == 1 and changes.count(-nbytes) == 1, (nbytes, changes)
