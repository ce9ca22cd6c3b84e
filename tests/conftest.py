import os

import pytest
import torch


def pytest_configure(config):
    """Under pytest-xdist (``make test`` runs ``-n auto``), each worker gets its share of the
    cores: torch's intra-op threads and those of the tools the tests start
    (``OMP_NUM_THREADS``), so that the workers do not oversubscribe the CPU. A test that
    needs several threads sets them itself (tests/ops/test_parallel_regions.py)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        threads = max(1, len(os.sched_getaffinity(0)) // workers)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)


def pytest_collection_modifyitems(config, items):
    skip_cuda = pytest.mark.skip(reason="needs a CUDA device")
    skip_slow = pytest.mark.skip(reason="slow test: run with `make test-slow` (pytest -m slow)")
    run_slow = "slow" in (config.getoption("-m") or "")
    for item in items:
        if "cuda" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_cuda)
        if "slow" in item.keywords and not run_slow:
            item.add_marker(skip_slow)
    longest_modules_first(config, items)


# The modules whose tests take longest (pytest --durations on this 2-core machine, 2026-12-07;
# seconds of one xdist worker), longest first. pytest-xdist's --dist loadscope hands whole
# modules to the workers in collection order: starting with these and ending with the many
# short modules keeps one worker from running a long module alone at the end (the longest-
# first rule of scheduling). Only the order changes, never what runs.
LONGEST_MODULES = (
    "tests/deployment/test_export.py",  # ~170 s
    "tests/deployment/test_export_families.py",  # ~110 s
    "tests/engine/test_train_cli.py",  # ~75 s
    "tests/models/test_torchvision_training_equivalence.py",  # ~70 s
    "tests/models/test_torchvision_single_stage.py",  # ~45 s
    "tests/models/test_torchvision_keypoint_rcnn.py",  # ~45 s
    "tests/apis/test_test_tool.py",  # ~45 s
    "tests/deployment/test_benchmark_deployment.py",  # ~40 s
    "tests/models/test_configs.py",  # ~35 s
    "tests/apis/test_demos.py",  # ~35 s
    "tests/ops/test_cpu_caching_allocator.py",  # ~33 s
    "tests/test_benchmark_accuracy.py",  # ~29 s
    "tests/ops/test_fallback.py",  # ~28 s
)


def longest_modules_first(config, items):
    """Sort ``items`` with the :data:`LONGEST_MODULES` first (stable: the other modules, and
    each module's tests, keep their order)."""
    rank = {path: i for i, path in enumerate(LONGEST_MODULES)}
    root = config.rootpath

    def module_rank(item):
        return rank.get(item.path.relative_to(root).as_posix(), len(rank))

    items.sort(key=module_rank)
