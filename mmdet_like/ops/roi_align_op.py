"""RoIAlign (He et al., Mask R-CNN) backed by the compiled ``mmdet_like::roi_align`` op."""

import torch
from torch import nn

from mmdet_like.ops import _ext_loader  # noqa: F401  (registers torch.ops.mmdet_like)

_op = torch.ops.mmdet_like


def _pair(size):
    if isinstance(size, int):
        return size, size
    height, width = size
    return int(height), int(width)


def roi_align(input, rois, output_size, spatial_scale=1.0, sampling_ratio=0, aligned=True):
    """Bilinear RoI pooling.

    Args:
        input: (N, C, H, W) feature map, any memory layout (contiguous, channels_last, views).
        rois: (K, 5) boxes ``[batch_idx, x1, y1, x2, y2]`` in image coordinates.
        output_size: int or (height, width) of the pooled output.
        spatial_scale: feature-map size / image size, e.g. 1/4 for a stride-4 map.
        sampling_ratio: samples per bin side; ``<= 0`` picks ``ceil(bin size)`` per RoI.
        aligned: shift by half a pixel so boxes align with pixel centres (detectron2's
            ``ROIAlignV2``); False reproduces the legacy, unaligned behaviour.

    Returns:
        (K, C, output_height, output_width) tensor of the input's dtype.
    """
    height, width = _pair(output_size)
    return _op.roi_align(
        input, rois, float(spatial_scale), height, width, int(sampling_ratio), bool(aligned)
    )


@torch.library.register_fake("mmdet_like::roi_align")
def _roi_align_fake(
    input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned
):
    torch._check(input.dim() == 4, lambda: "roi_align: input must be (N, C, H, W)")
    torch._check(rois.dim() == 2 and rois.size(1) == 5, lambda: "roi_align: rois must be (K, 5)")
    return input.new_empty((rois.size(0), input.size(1), pooled_height, pooled_width))


@torch.library.register_fake("mmdet_like::_roi_align_backward")
def _roi_align_backward_fake(
    grad,
    rois,
    spatial_scale,
    pooled_height,
    pooled_width,
    batch_size,
    channels,
    height,
    width,
    sampling_ratio,
    aligned,
):
    return grad.new_empty((batch_size, channels, height, width))


def _setup_context(ctx, inputs, output):
    input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned = inputs
    ctx.save_for_backward(rois)
    ctx.input_shape = tuple(input.shape)
    ctx.params = (spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned)


def _backward(ctx, grad_output):
    (rois,) = ctx.saved_tensors
    spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned = ctx.params
    batch_size, channels, height, width = ctx.input_shape
    grad_input = _op._roi_align_backward(
        grad_output,
        rois,
        spatial_scale,
        pooled_height,
        pooled_width,
        batch_size,
        channels,
        height,
        width,
        sampling_ratio,
        aligned,
    )
    return grad_input, None, None, None, None, None, None


torch.library.register_autograd("mmdet_like::roi_align", _backward, setup_context=_setup_context)
# CPU autocast: run in float32 (the result stays float32, like other precision-sensitive ops).
# CUDA has half and bfloat16 kernels, so it runs in the dtype it is given.
torch.library.register_autocast("mmdet_like::roi_align", "cpu", torch.float32)


class RoIAlign(nn.Module):
    """Module form of :func:`roi_align`; ``forward(input (N, C, H, W), rois (K, 5))``."""

    def __init__(self, output_size, spatial_scale=1.0, sampling_ratio=0, aligned=True):
        super().__init__()
        self.output_size = _pair(output_size)
        self.spatial_scale = float(spatial_scale)
        self.sampling_ratio = int(sampling_ratio)
        self.aligned = bool(aligned)

    def forward(self, input, rois):
        return roi_align(
            input, rois, self.output_size, self.spatial_scale, self.sampling_ratio, self.aligned
        )

    def extra_repr(self):
        return (
            f"output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
            f"sampling_ratio={self.sampling_ratio}, aligned={self.aligned}"
        )
