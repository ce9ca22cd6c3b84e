"""The CPU kernels open at most one parallel region per call, and none for small inputs.

Beside another busy process (a training run's data-loader workers) every parallel region
costs a wait for a core: the CPU nms opened one per block of 64 boxes, and 2,000 boxes took
300 ms against torchvision's 26 ms that way. What it costs in time is measured by
``tools/benchmark_ops.py --contend N`` (docs/benchmarks.md); this test counts regions.
"""

import pytest
import torch

from mmdet_like.ops import backend, ms_deform_attn, nms, parallel_regions_opened, roi_align

pytestmark = pytest.mark.skipif(
    backend() != "compiled",
    reason="counts the parallel regions of the compiled kernels; the fallback ops (torch's "
    "and torchvision's kernels) open none of their own",
)


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def regions(fn):
    start = parallel_regions_opened()
    fn()
    return parallel_regions_opened() - start


def proposals(num, seed=0):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(num, 2, generator=g) * 600
    wh = torch.rand(num, 2, generator=g) * 150 + 10
    return torch.cat([xy, xy + wh], 1), torch.rand(num, generator=g)


@pytest.mark.parametrize("num", [2_000, 20_000])
def test_nms_opens_no_parallel_region(two_threads, num):
    boxes, scores = proposals(num)
    assert regions(lambda: nms(boxes, scores, 0.7)) == 0


def _rois(num, side, seed=0):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(num, 2, generator=g) * side * 0.6
    wh = torch.rand(num, 2, generator=g) * side * 0.4 + 4
    batch = torch.randint(0, 2, (num, 1), generator=g).float()
    return torch.cat([batch, xy, xy + wh], 1)


def test_small_roi_align_runs_serially_and_large_opens_one_region(two_threads):
    feature = torch.randn(2, 16, 20, 20, requires_grad=True)
    rois = _rois(8, 80)
    out = roi_align(feature, rois, 7, 0.25, 2, True)
    assert regions(lambda: roi_align(feature, rois, 7, 0.25, 2, True)) == 0
    assert regions(lambda: out.sum().backward()) == 0

    feature = torch.randn(2, 64, 64, 64, requires_grad=True)
    rois = _rois(256, 256)
    holder = {}
    assert regions(lambda: holder.update(out=roi_align(feature, rois, 7, 0.25, 2, True))) == 1
    assert regions(lambda: holder["out"].sum().backward()) == 1


def _ms_deform_attn_inputs(bs, queries, heads, seed=0):
    g = torch.Generator().manual_seed(seed)
    shapes = torch.tensor([[32, 40], [16, 20], [8, 10], [4, 5]])
    sizes = shapes.prod(1)
    starts = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])
    value = torch.randn(bs, int(sizes.sum()), heads, 32, generator=g, requires_grad=True)
    locations = torch.rand(bs, queries, heads, 4, 4, 2, generator=g, requires_grad=True)
    weights = torch.rand(bs, queries, heads, 4, 4, generator=g, requires_grad=True)
    return value, shapes, starts, locations, weights


def test_small_ms_deform_attn_runs_serially_and_large_opens_one_region(two_threads):
    inputs = _ms_deform_attn_inputs(1, 10, 2)
    holder = {}
    assert regions(lambda: holder.update(out=ms_deform_attn(*inputs))) == 0
    assert regions(lambda: holder["out"].sum().backward()) == 0

    inputs = _ms_deform_attn_inputs(2, 300, 8)  # a Deformable DETR decoder's call
    assert regions(lambda: holder.update(out=ms_deform_attn(*inputs))) == 1
    assert regions(lambda: holder["out"].sum().backward()) == 1
