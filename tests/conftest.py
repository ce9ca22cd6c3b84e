import pytest
import torch


def pytest_collection_modifyitems(config, items):
    skip_cuda = pytest.mark.skip(reason="needs a CUDA device")
    skip_slow = pytest.mark.skip(reason="slow test: run with `make test-slow` (pytest -m slow)")
    run_slow = "slow" in (config.getoption("-m") or "")
    for item in items:
        if "cuda" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_cuda)
        if "slow" in item.keywords and not run_slow:
            item.add_marker(skip_slow)
