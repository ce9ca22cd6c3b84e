import pytest
import torch


@pytest.fixture
def at_most_4_threads():
    """torch's intra-op threads capped at 4 during the test (the torchvision comparisons run
    big models; more threads gain little), and restored after it, so that no later test in
    the process runs with another thread count than it was started with."""
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, min(before, 4)))
    yield
    torch.set_num_threads(before)
