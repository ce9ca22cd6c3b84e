"""ms_deform_attn against the plain-PyTorch grid_sample formulation
(mmdet_like.ops.ms_deform_attn_reference, differentiated by autograd).

Tolerances, from the largest differences measured over test_matches_grid_sample_reference's
cases (5 seeds): float32 forward 1e-5 absolute (measured 1.7e-6); gradients 1e-4 absolute
plus 1e-6 of the value (measured: value 1.9e-6, attention weights 7.2e-6, sampling locations
6.1e-5 on gradients of up to 300, as they are in pixels). float64: relative to the largest
value of each result, 4e-15 (measured 3.9e-16 forward, 1.0e-15 gradients).
"""

import pytest
import torch

from mmdet_like.ops import (
    backend,
    ms_deform_attn,
    ms_deform_attn_reference,
    parallel_regions_opened,
)

LEVELS = [(7, 9), (4, 5), (2, 3), (1, 1)]
FLOAT64_REL = 4e-15


def make_inputs(bs, queries, levels=LEVELS, heads=3, dim=13, points=4, dtype=torch.float32,
                seed=0, low=-0.2, high=1.2):  # fmt: skip
    """(value, spatial_shapes, level_start_index, sampling_locations, attention_weights);
    locations uniform in [low, high] (by default some outside the maps)."""
    g = torch.Generator().manual_seed(seed)
    shapes = torch.tensor(levels, dtype=torch.long).reshape(-1, 2)
    sizes = shapes.prod(1)
    starts = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])
    num_keys = int(sizes.sum())
    f64 = torch.float64
    value = torch.randn(bs, num_keys, heads, dim, generator=g, dtype=f64)
    locations = torch.rand(bs, queries, heads, len(levels), points, 2, generator=g, dtype=f64)
    locations = locations * (high - low) + low
    weights = torch.rand(bs, queries, heads, len(levels), points, generator=g, dtype=f64)
    return value.to(dtype), shapes, starts, locations.to(dtype), weights.to(dtype)


def forward_backward(fn, inputs, grad_seed=1, grad_dtype=None):
    """fn's output and the gradients of value, sampling_locations and attention_weights, for
    a random output gradient (rounded to ``grad_dtype`` first, if given)."""
    value, shapes, starts, locations, weights = inputs
    leaves = [t.detach().clone().requires_grad_(True) for t in (value, locations, weights)]
    out = fn(leaves[0], shapes, starts, leaves[1], leaves[2])
    g = torch.Generator().manual_seed(grad_seed)
    grad = torch.randn(out.shape, generator=g, dtype=torch.float64)
    grad = grad.to(grad_dtype or out.dtype).to(device=out.device, dtype=out.dtype)
    out.backward(grad)
    return out.detach(), [leaf.grad for leaf in leaves]


def reference(value, shapes, starts, locations, weights):
    return ms_deform_attn_reference(value, shapes, locations, weights)


def assert_close_rel(actual, expected, rel, what):
    scale = max(expected.abs().max().item(), 1e-30) if expected.numel() else 1.0
    diff = (actual - expected).abs().max().item() if actual.numel() else 0.0
    assert diff <= rel * scale, f"{what}: max difference {diff:.3g} > {rel:.1g} x {scale:.3g}"


def assert_matches_reference(inputs, what=""):
    out, grads = forward_backward(ms_deform_attn, inputs)
    ref_out, ref_grads = forward_backward(reference, inputs)
    assert out.shape == ref_out.shape and out.dtype == ref_out.dtype
    names = ("value", "sampling_locations", "attention_weights")
    if out.dtype == torch.float64:
        assert_close_rel(out, ref_out, FLOAT64_REL, f"{what} forward")
        for name, g, r in zip(names, grads, ref_grads):
            assert_close_rel(g, r, FLOAT64_REL, f"{what} gradient of {name}")
    else:
        torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=0)
        for name, g, r in zip(names, grads, ref_grads):
            torch.testing.assert_close(
                g, r, atol=1e-4, rtol=1e-6, msg=lambda m, n=name: f"{n}: {m}"
            )
    return out, grads


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("dim", [13, 32])
def test_matches_grid_sample_reference(dtype, dim):
    for seed in range(2):
        inputs = make_inputs(2, 17, dim=dim, dtype=dtype, seed=seed)
        assert_matches_reference(inputs, f"seed {seed}")


def test_samples_a_ramp_at_its_pixel_coordinates():
    # value = the column (channel 0) and row (channel 1) of each key: bilinear sampling
    # reproduces a linear function, so a point inside the pixel centres reads its pixel
    # coordinates (x * w - 0.5, y * h - 0.5), independently of the reference
    shapes = torch.tensor([[5, 7], [3, 4]])
    starts = torch.tensor([0, 35])
    ramps = []
    for h, w in shapes.tolist():
        y, x = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        ramps.append(torch.stack([x, y], dim=-1).reshape(-1, 2).double())
    value = torch.cat(ramps)[None, :, None, :]  # (1, 47, 1, 2)
    g = torch.Generator().manual_seed(14)
    wh = shapes.flip(1).double()  # [w, h]
    inner = torch.rand(1, 20, 1, 2, 1, 2, generator=g, dtype=torch.float64)
    locations = (0.5 + inner * (wh[:, None, :] - 1)) / wh[:, None, :]  # inside the centres
    weights = torch.tensor([1.0, 0.0], dtype=torch.float64).expand(1, 20, 1, 2).clone()
    out = ms_deform_attn(value, shapes, starts, locations, weights[..., None])
    expected = locations[0, :, 0, 0, 0] * wh[0] - 0.5  # level 0's pixel coordinates
    torch.testing.assert_close(out[0], expected, atol=1e-12, rtol=0)


def test_non_contiguous_inputs():
    value, shapes, starts, locations, weights = make_inputs(2, 11, heads=2, dim=8, seed=3)
    # value as a projection's output viewed per head, transposed; locations and weights views
    value_t = value.transpose(0, 1).contiguous().transpose(0, 1)
    locations_t = torch.cat([locations, locations], dim=-1)[..., 1:3]
    weights_t = weights.transpose(1, 2).contiguous().transpose(1, 2)
    for t in (value_t, locations_t, weights_t):
        assert not t.is_contiguous()
    ours = ms_deform_attn(value_t, shapes, starts, locations_t, weights_t)
    expected = reference(value, shapes, starts, locations[..., [1, 0]], weights)
    assert ours.is_contiguous()
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=0)
    # output gradients with strides: expanded (of a sum) and transposed
    g = torch.randn(11, 2, 16, generator=torch.Generator().manual_seed(15)).transpose(0, 1)
    for loss in (lambda out: out.sum(), lambda out: (out * g).sum()):
        leaves = [t.detach().clone().requires_grad_(True) for t in (value, locations, weights)]
        loss(ms_deform_attn(leaves[0], shapes, starts, leaves[1], leaves[2])).backward()
        ref_leaves = [t.detach().clone().requires_grad_(True) for t in (value, locations, weights)]
        loss(reference(ref_leaves[0], shapes, starts, ref_leaves[1], ref_leaves[2])).backward()
        for leaf, ref in zip(leaves, ref_leaves):
            torch.testing.assert_close(leaf.grad, ref.grad, atol=1e-4, rtol=1e-6)


def test_points_outside_the_maps():
    # on the border, within one pixel outside (partly read), and further out (read nothing)
    value, shapes, starts, _, weights = make_inputs(1, 6, heads=2, dim=5, points=2, seed=4)
    coords = torch.tensor([-1.5, -0.3, -0.04, 0.0, 1.0, 1.04, 1.3, 2.0])
    x, y = torch.meshgrid(coords, coords, indexing="ij")
    grid = torch.stack([x.flatten(), y.flatten()], dim=-1)  # (64, 2)
    locations = grid[:, None, None, None, :].expand(64, 2, 4, 2, 2).reshape(1, 64, 2, 4, 2, 2)
    locations = locations.contiguous()
    weights = torch.rand(1, 64, 2, 4, 2, generator=torch.Generator().manual_seed(5))
    out, grads = assert_matches_reference((value, shapes, starts, locations, weights))
    # more than one pixel outside every level (x * w - 0.5 <= -1 or >= w, for w >= 1): nothing
    # read, no gradient; -0.3 and 1.3 still read the 1 x 1 level
    far = ((grid <= -1.5) | (grid >= 2.0)).any(dim=1)
    assert far.sum() > 0
    assert torch.count_nonzero(out[0, far]) == 0
    assert torch.count_nonzero(grads[1][0, far]) == 0 and torch.count_nonzero(grads[2][0, far]) == 0
    assert torch.count_nonzero(out[0, ~far]) > 0


def test_one_by_one_levels():
    inputs = make_inputs(2, 9, levels=[(1, 1), (1, 1), (1, 1)], heads=2, dim=6, seed=6)
    assert_matches_reference(inputs)
    # the centre of a 1 x 1 level is its pixel: the output is the weighted sum of the pixels
    value, shapes, starts, locations, weights = inputs
    locations = torch.full_like(locations, 0.5)
    out = ms_deform_attn(value, shapes, starts, locations, weights)
    per_level = weights.sum(-1)  # (bs, queries, heads, levels)
    expected = torch.einsum("bqhl,blhd->bqhd", per_level, value).flatten(2)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-6)


@pytest.mark.parametrize("bs,queries", [(0, 5), (2, 0), (0, 0)])
def test_empty_batches(bs, queries):
    value, shapes, starts, locations, weights = make_inputs(bs, queries, heads=2, dim=4)
    leaves = [t.clone().requires_grad_(True) for t in (value, locations, weights)]
    out = ms_deform_attn(leaves[0], shapes, starts, leaves[1], leaves[2])
    assert out.shape == (bs, queries, 8)
    out.sum().backward()
    for leaf in leaves:
        assert leaf.grad.shape == leaf.shape and torch.count_nonzero(leaf.grad) == 0


def test_gradcheck_float64():
    inputs = make_inputs(1, 3, levels=[(3, 4), (2, 2)], heads=2, dim=3, points=2,
                         dtype=torch.float64, seed=7)  # fmt: skip
    value, shapes, starts, locations, weights = inputs
    leaves = tuple(t.clone().requires_grad_(True) for t in (value, locations, weights))
    assert torch.autograd.gradcheck(
        lambda v, loc, w: ms_deform_attn(v, shapes, starts, loc, w), leaves
    )


def test_fake_tensor_and_opcheck():
    inputs = make_inputs(2, 5, heads=2, dim=4, seed=8)
    with torch._subclasses.fake_tensor.FakeTensorMode() as mode:
        fake = [mode.from_tensor(t) for t in inputs]
        out = ms_deform_attn(*fake)
        grads = torch.ops.mmdet_like._ms_deform_attn_backward(*fake, out)
    assert out.shape == (2, 5, 8) and out.dtype == torch.float32
    assert [g.shape for g in grads] == [inputs[0].shape, inputs[3].shape, inputs[4].shape]
    value, shapes, starts, locations, weights = inputs
    args = (value.requires_grad_(True), shapes, starts, locations.requires_grad_(True),
            weights.requires_grad_(True))  # fmt: skip
    torch.library.opcheck(torch.ops.mmdet_like.ms_deform_attn.default, args)


def test_cpu_autocast_runs_in_float32():
    value, shapes, starts, locations, weights = make_inputs(1, 6, heads=2, dim=4, seed=9)
    low = [t.bfloat16() for t in (value, locations, weights)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = ms_deform_attn(low[0], shapes, starts, low[1], low[2])
    assert out.dtype == torch.float32
    expected = ms_deform_attn(low[0].float(), shapes, starts, low[1].float(), low[2].float())
    torch.testing.assert_close(out, expected)


@pytest.mark.skipif(backend() != "compiled", reason="the compiled CPU kernel's threads")
def test_backward_is_deterministic_whatever_the_threads():
    # large enough for the backward to split over (batch, head) pairs
    inputs = make_inputs(2, 64, heads=8, dim=32, seed=10)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        _, serial = forward_backward(ms_deform_attn, inputs)
        torch.set_num_threads(2)
        start = parallel_regions_opened()
        _, parallel = forward_backward(ms_deform_attn, inputs)
        assert parallel_regions_opened() > start
        _, again = forward_backward(ms_deform_attn, inputs)
    finally:
        torch.set_num_threads(threads)
    for s, p, a in zip(serial, parallel, again):
        assert torch.equal(s, p) and torch.equal(p, a)


def test_bad_arguments_raise_clear_errors():
    value, shapes, starts, locations, weights = make_inputs(2, 5, heads=2, dim=4)
    cases = [
        ((value[0], shapes, starts, locations, weights),
         r"value must be \(bs, num_keys, num_heads, dim_per_head\), got shape \[90, 2, 4\]"),
        ((value, shapes.flatten(), starts, locations, weights),
         r"spatial_shapes must be \(num_levels, 2\) \[h, w\], got shape \[8\]"),
        ((value, shapes, starts[:3], locations, weights),
         r"level_start_index must be \(num_levels,\) = \(4,\), got shape \[3\]"),
        ((value, shapes, starts, locations[:, :, :1], weights),
         r"sampling_locations must be \(bs, num_queries, num_heads, num_levels, num_points, 2\) "
         r"with bs = 2, num_heads = 2 \(from value\) and num_levels = 4 \(from spatial_shapes\), "
         r"got shape \[2, 5, 1, 4, 4, 2\]"),
        ((value, shapes, starts, locations, weights[..., :3]),
         r"attention_weights must be \(bs, num_queries, num_heads, num_levels, num_points\) = "
         r"\(2, 5, 2, 4, 4\), got shape \[2, 5, 2, 4, 3\]"),
        ((value, shapes.int(), starts, locations, weights),
         r"spatial_shapes must be int64 \(long\), got Int"),
        ((value, shapes, starts, locations.double(), weights),
         r"must have one floating dtype, got Float, Double and Float; convert them"),
        ((value, shapes[:0], starts[:0], locations[:, :, :, :0], weights[:, :, :, :0]),
         r"spatial_shapes must hold at least one level"),
        ((value[:, 1:], shapes, starts, locations, weights),
         r"value has 89 keys but spatial_shapes sum to 90 \(h \* w over the levels\); value must "
         r"be \(bs, 90, num_heads, dim_per_head\)"),
        ((value, shapes, starts + 1, locations, weights),
         r"level_start_index\[0\] = 1 but the levels before it hold 0 keys"),
        ((value, torch.tensor([[7, 9], [4, 5], [0, 6], [1, 1]]), starts, locations, weights),
         r"spatial_shapes\[2\] = \(0, 6\): every level must be at least 1 x 1"),
    ]  # fmt: skip
    for args, message in cases:
        with pytest.raises(RuntimeError, match=message):
            ms_deform_attn(*args)
    grad = torch.zeros(2, 5, 7)
    with pytest.raises(RuntimeError, match=r"grad_output must be \(bs, num_queries, num_heads "
                       r"\* dim_per_head\) = \(2, 5, 8\), got shape \[2, 5, 7\]"):  # fmt: skip
        torch.ops.mmdet_like._ms_deform_attn_backward(value, shapes, starts, locations, weights,
                                                      grad)  # fmt: skip


# ------------------------------------------------------------------------------ CUDA

# half and bfloat16 against the float32 reference: inputs rounded to the type, computed in
# float32, the output rounded once (not measured here: no GPU where this was written)
CUDA_TOL = {torch.float32: 1e-5, torch.float16: 1e-2, torch.bfloat16: 5e-2}


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("dim", [13, 32, 40])
def test_cuda_matches_reference(dtype, dim):
    inputs = make_inputs(2, 17, dim=dim, dtype=dtype, seed=11)
    cuda_inputs = [t.cuda() for t in inputs]
    out, grads = forward_backward(ms_deform_attn, cuda_inputs)
    assert out.dtype == dtype and all(g.dtype == dtype for g in grads)
    ref_inputs = [t.double() if t.is_floating_point() else t for t in inputs]
    ref_out, ref_grads = forward_backward(reference, ref_inputs, grad_dtype=dtype)
    if dtype == torch.float64:
        assert_close_rel(out.cpu(), ref_out, FLOAT64_REL, "cuda forward")
        for g, r in zip(grads, ref_grads):
            assert_close_rel(g.cpu(), r, FLOAT64_REL, "cuda gradient")
        return
    tol = CUDA_TOL[dtype]
    torch.testing.assert_close(out.cpu().double(), ref_out, atol=tol, rtol=tol)
    for g, r in zip(grads, ref_grads):
        # gradients of the locations are in pixels: relative to their largest value
        assert_close_rel(g.cpu().double(), r, 10 * tol, f"cuda {dtype} gradient")


@pytest.mark.cuda
def test_cuda_edge_cases_gradcheck_and_autocast():
    for bs, queries in [(0, 5), (2, 0)]:
        inputs = [t.cuda() for t in make_inputs(bs, queries, heads=2, dim=4)]
        out, grads = forward_backward(ms_deform_attn, inputs)
        assert out.shape == (bs, queries, 8) and all(g.abs().sum() == 0 for g in grads)
    inputs = make_inputs(2, 9, levels=[(1, 1), (1, 1)], heads=2, dim=6, seed=12)
    out, _ = forward_backward(ms_deform_attn, [t.cuda() for t in inputs])
    torch.testing.assert_close(out.cpu(), forward_backward(reference, inputs)[0], atol=1e-5,
                               rtol=0)  # fmt: skip
    value, shapes, starts, locations, weights = [
        t.cuda()
        for t in make_inputs(1, 3, levels=[(3, 4), (2, 2)], heads=2, dim=3, points=2,
                             dtype=torch.float64, seed=7)
    ]  # fmt: skip
    leaves = tuple(t.requires_grad_(True) for t in (value, locations, weights))
    assert torch.autograd.gradcheck(
        lambda v, loc, w: ms_deform_attn(v, shapes, starts, loc, w), leaves
    )
    value, shapes, starts, locations, weights = [t.cuda() for t in make_inputs(1, 6, seed=13)]
    with torch.autocast("cuda", dtype=torch.float16):
        out = ms_deform_attn(value.half(), shapes, starts, locations.half(), weights.half())
    assert out.dtype == torch.float32
