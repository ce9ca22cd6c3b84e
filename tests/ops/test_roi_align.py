"""roi_align against torchvision.ops.roi_align (the reference we did not write)."""

import pytest
import torch
import torchvision

from mmdet_like.ops import RoIAlign, roi_align


def make_rois(num, batch_size, image_size, generator, device="cpu", dtype=torch.float32):
    """(num, 5) rois with boxes partly outside a square image of ``image_size`` pixels."""
    xy = torch.rand(num, 2, generator=generator) * image_size * 1.2 - image_size * 0.1
    wh = torch.rand(num, 2, generator=generator) * image_size * 0.6
    batch = torch.randint(0, batch_size, (num, 1), generator=generator).float()
    return torch.cat([batch, xy, xy + wh], dim=1).to(device=device, dtype=dtype)


def reference(input, rois, output_size, spatial_scale, sampling_ratio, aligned):
    return torchvision.ops.roi_align(
        input, rois, output_size, spatial_scale, sampling_ratio, aligned
    )


CASES = [
    # (output_size, spatial_scale, sampling_ratio, aligned)
    (7, 0.25, 0, True),
    (7, 0.25, 2, True),
    (7, 0.25, 0, False),
    (7, 0.25, 2, False),
    ((14, 5), 0.125, 0, True),
    (3, 1.0, 1, False),
]


@pytest.mark.parametrize("output_size,spatial_scale,sampling_ratio,aligned", CASES)
def test_forward_and_backward_match_torchvision(
    output_size, spatial_scale, sampling_ratio, aligned
):
    g = torch.Generator().manual_seed(0)
    input = torch.randn(3, 6, 23, 31, generator=g)
    rois = make_rois(40, 3, 23 / spatial_scale, g)
    ours_in = input.clone().requires_grad_(True)
    ref_in = input.clone().requires_grad_(True)
    ours = roi_align(ours_in, rois, output_size, spatial_scale, sampling_ratio, aligned)
    ref = reference(ref_in, rois, output_size, spatial_scale, sampling_ratio, aligned)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)
    grad = torch.randn(ref.shape, generator=g)
    ours.backward(grad)
    ref.backward(grad)
    torch.testing.assert_close(ours_in.grad, ref_in.grad, atol=1e-5, rtol=1e-5)


def test_edge_case_rois():
    input = torch.randn(2, 4, 10, 12)
    rois = torch.tensor(
        [
            [0, -50.0, -50.0, -20.0, -20.0],  # fully outside (top left)
            [1, 200.0, 200.0, 260.0, 240.0],  # fully outside (bottom right)
            [0, 5.0, 5.0, 5.0, 5.0],  # zero area
            [1, 8.0, 3.0, 4.0, 1.0],  # x2 < x1, y2 < y1
            [0, -3.0, -3.0, 100.0, 100.0],  # larger than the map
            [1, 0.0, 0.0, 47.9, 39.9],  # exactly the image
        ]
    )
    for aligned in (True, False):
        for sampling_ratio in (0, 2):
            ours = roi_align(input, rois, (5, 4), 0.25, sampling_ratio, aligned)
            ref = reference(input, rois, (5, 4), 0.25, sampling_ratio, aligned)
            torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)
    # RoIs entirely outside the map pool to exactly zero.
    out = roi_align(input, rois[:2], 7, 0.25, 2, True)
    assert torch.count_nonzero(out) == 0


def test_zero_rois_and_empty_grad():
    input = torch.randn(2, 4, 10, 12, requires_grad=True)
    out = roi_align(input, torch.zeros(0, 5), 7, 0.5, 0, True)
    assert out.shape == (0, 4, 7, 7)
    out.sum().backward()
    assert input.grad.shape == input.shape
    assert torch.count_nonzero(input.grad) == 0


@pytest.mark.parametrize("layout", ["channels_last", "sliced", "transposed"])
def test_non_contiguous_input(layout):
    g = torch.Generator().manual_seed(1)
    base = torch.randn(2, 16, 20, 26, generator=g)
    if layout == "channels_last":
        input = base.contiguous(memory_format=torch.channels_last)
        assert not input.is_contiguous()
    elif layout == "sliced":
        input = torch.randn(2, 32, 20, 52, generator=g)[:, ::2, :, ::2]
    else:
        input = base.transpose(2, 3).contiguous().transpose(2, 3)
    rois = make_rois(25, 2, 80, g)
    ours_in = input.detach().clone().requires_grad_(True)
    ref_in = input.detach().contiguous().requires_grad_(True)
    ours = roi_align(ours_in, rois, 7, 0.25, 0, True)
    ref = reference(ref_in, rois, 7, 0.25, 0, True)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)
    ours.sum().backward()
    ref.sum().backward()
    torch.testing.assert_close(ours_in.grad, ref_in.grad, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [0, 2])
def test_gradcheck_float64(aligned, sampling_ratio):
    g = torch.Generator().manual_seed(2)
    input = torch.randn(2, 2, 6, 7, generator=g, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor(
        [[0, 1.3, 0.7, 9.1, 10.4], [1, 3.3, 2.2, 12.9, 8.8], [1, -2.0, -1.0, 4.0, 3.0]],
        dtype=torch.float64,
    )
    assert torch.autograd.gradcheck(
        lambda x: roi_align(x, rois, (3, 2), 0.5, sampling_ratio, aligned), (input,)
    )


def test_module_matches_function_and_repr():
    g = torch.Generator().manual_seed(3)
    input = torch.randn(1, 3, 16, 16, generator=g)
    rois = make_rois(5, 1, 64, g)
    layer = RoIAlign(output_size=(4, 4), spatial_scale=0.25, sampling_ratio=2, aligned=True)
    torch.testing.assert_close(layer(input, rois), roi_align(input, rois, 4, 0.25, 2, True))
    assert "output_size=(4, 4)" in repr(layer)


def test_cpu_autocast_runs_in_float32():
    g = torch.Generator().manual_seed(4)
    input = torch.randn(1, 3, 16, 16, generator=g)
    rois = make_rois(6, 1, 64, g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = roi_align(input.bfloat16(), rois, 5, 0.25, 2, True)
    assert out.dtype == torch.float32
    expected = roi_align(input.bfloat16().float(), rois, 5, 0.25, 2, True)
    torch.testing.assert_close(out, expected)


def test_opcheck_and_compile():
    g = torch.Generator().manual_seed(5)
    input = torch.randn(2, 3, 12, 12, generator=g, requires_grad=True)
    rois = make_rois(7, 2, 48, g)
    torch.library.opcheck(
        torch.ops.mmdet_like.roi_align.default, (input, rois, 0.25, 4, 4, 2, True)
    )
    compiled = torch.compile(
        lambda x, r: roi_align(x, r, 4, 0.25, 2, True).square().sum(),
        backend="aot_eager",
        fullgraph=True,
    )
    loss = compiled(input, rois)
    loss.backward()
    expected_in = input.detach().clone().requires_grad_(True)
    roi_align(expected_in, rois, 4, 0.25, 2, True).square().sum().backward()
    torch.testing.assert_close(input.grad, expected_in.grad)


def test_bad_arguments_raise_clear_errors():
    input = torch.randn(2, 3, 8, 8)
    with pytest.raises(RuntimeError, match=r"rois must be \(K, 5\)"):
        roi_align(input, torch.zeros(3, 4), 7)
    with pytest.raises(RuntimeError, match=r"input must be \(N, C, H, W\)"):
        roi_align(input[0], torch.zeros(3, 5), 7)
    with pytest.raises(RuntimeError, match="not a batch index of the input"):
        roi_align(input, torch.tensor([[2.0, 0, 0, 4, 4]]), 7)
    with pytest.raises(RuntimeError, match="output_size must be positive"):
        roi_align(input, torch.zeros(1, 5), 0)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("aligned", [True, False])
def test_cuda_matches_torchvision(dtype, aligned):
    g = torch.Generator().manual_seed(6)
    input = torch.randn(2, 8, 25, 30, generator=g)
    rois = make_rois(50, 2, 100, g)
    tol = {torch.float32: 1e-5, torch.float64: 1e-7, torch.float16: 1e-2, torch.bfloat16: 5e-2}[
        dtype
    ]
    for memory_format in (torch.contiguous_format, torch.channels_last):
        ours_in = (
            input.cuda().to(dtype).contiguous(memory_format=memory_format).requires_grad_(True)
        )
        ref_in = input.cuda().float().requires_grad_(True)
        ours = roi_align(ours_in, rois.cuda(), 7, 0.25, 0, aligned)
        ref = reference(ref_in, rois.cuda(), 7, 0.25, 0, aligned)
        assert ours.dtype == dtype
        torch.testing.assert_close(ours.float(), ref, atol=tol, rtol=tol)
        grad = torch.randn(ref.shape, generator=g).cuda()
        ours.backward(grad.to(dtype))
        ref.backward(grad)
        torch.testing.assert_close(ours_in.grad.float(), ref_in.grad, atol=tol * 10, rtol=tol)


@pytest.mark.cuda
def test_cuda_matches_cpu_and_gradcheck():
    g = torch.Generator().manual_seed(7)
    input = torch.randn(2, 4, 9, 11, generator=g, dtype=torch.float64)
    rois = make_rois(12, 2, 40, g, dtype=torch.float64)
    cpu = roi_align(input, rois, 3, 0.25, 0, True)
    cuda = roi_align(input.cuda(), rois.cuda(), 3, 0.25, 0, True)
    torch.testing.assert_close(cuda.cpu(), cpu)
    x = input.cuda().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: roi_align(t, rois.cuda(), 3, 0.25, 2, True), (x,))
