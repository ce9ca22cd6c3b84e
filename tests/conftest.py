import json
import os
from pathlib import Path

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


MODULE_COSTS = Path(__file__).with_name("module_costs.json")


def heaviest_modules_first(items):
    """Reorder ``items`` in place so that the modules of ``module_costs.json`` (seconds a
    module took, written by ``tools/dev/update_test_costs.py``) come heaviest first, the
    others after them in collection order. pytest-xdist's ``loadscope`` hands each worker the
    next module when it runs dry (``make test`` passes ``--no-loadscope-reorder`` so that it
    keeps this order): longest first keeps both workers busy to the end."""
    if not MODULE_COSTS.is_file():
        return
    costs = json.loads(MODULE_COSTS.read_text())
    items.sort(key=lambda item: -costs.get(item.nodeid.split("::")[0], 0.0))


def pytest_collection_modifyitems(config, items):
    heaviest_modules_first(items)
    skip_cuda = pytest.mark.skip(reason="needs a CUDA device")
    skip_slow = pytest.mark.skip(reason="slow test: run with `make test-slow` (pytest -m slow)")
    run_slow = "slow" in (config.getoption("-m") or "")
    for item in items:
        if "cuda" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_cuda)
        if "slow" in item.keywords and not run_slow:
            item.add_marker(skip_slow)
