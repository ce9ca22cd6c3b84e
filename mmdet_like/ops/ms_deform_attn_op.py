"""Multi-scale deformable attention (Zhu et al., Deformable DETR) backed by the compiled
``mmdet_like::ms_deform_attn`` op (or its ``grid_sample`` fallback, see ``_ext_loader``)."""

import torch

from mmdet_like.ops import _ext_loader  # noqa: F401  (registers torch.ops.mmdet_like)
from mmdet_like.ops.fallback import check_ms_deform_attn_args, ms_deform_attn_reference

_op = torch.ops.mmdet_like

__all__ = ["ms_deform_attn", "ms_deform_attn_reference"]


def ms_deform_attn(value, spatial_shapes, level_start_index, sampling_locations,
                   attention_weights):  # fmt: skip
    """Multi-scale deformable attention: for every query and head, the sum over levels and
    points of ``attention_weights`` times ``value`` sampled bilinearly at
    ``sampling_locations`` (zero outside the maps; a location (x, y) of a w x h level is the
    pixel (x * w - 0.5, y * h - 0.5), ``grid_sample``'s ``align_corners=False``).

    Args:
        value: (bs, num_keys, num_heads, dim_per_head), the flattened levels one after the
            other (num_keys = sum of h * w).
        spatial_shapes: (num_levels, 2) int64 [h, w] of each level.
        level_start_index: (num_levels,) int64, the first key of each level (0, h0 * w0, ...).
        sampling_locations: (bs, num_queries, num_heads, num_levels, num_points, 2), (x, y)
            in [0, 1] of each level.
        attention_weights: (bs, num_queries, num_heads, num_levels, num_points).

    Returns:
        (bs, num_queries, num_heads * dim_per_head), value's dtype.

    value, sampling_locations and attention_weights share one floating dtype; all five
    tensors one device. Under autocast (CPU or CUDA) the op runs in float32.
    """
    return _op.ms_deform_attn(
        value, spatial_shapes, level_start_index, sampling_locations, attention_weights
    )


@torch.library.register_fake("mmdet_like::ms_deform_attn")
def _ms_deform_attn_fake(value, spatial_shapes, level_start_index, sampling_locations,
                         attention_weights):  # fmt: skip
    check_ms_deform_attn_args(value, spatial_shapes, level_start_index, sampling_locations,
                              attention_weights, "ms_deform_attn")  # fmt: skip
    bs, _, heads, dim = value.shape
    return value.new_empty((bs, sampling_locations.size(1), heads * dim))


@torch.library.register_fake("mmdet_like::_ms_deform_attn_backward")
def _ms_deform_attn_backward_fake(value, spatial_shapes, level_start_index, sampling_locations,
                                  attention_weights, grad_output):  # fmt: skip
    check_ms_deform_attn_args(value, spatial_shapes, level_start_index, sampling_locations,
                              attention_weights, "_ms_deform_attn_backward")  # fmt: skip
    return (
        torch.empty_like(value, memory_format=torch.contiguous_format),
        torch.empty_like(sampling_locations, memory_format=torch.contiguous_format),
        torch.empty_like(attention_weights, memory_format=torch.contiguous_format),
    )


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _backward(ctx, grad_output):
    value, spatial_shapes, level_start_index, sampling_locations, attention_weights = (
        ctx.saved_tensors
    )
    grad_value, grad_loc, grad_attn = _op._ms_deform_attn_backward(
        value, spatial_shapes, level_start_index, sampling_locations, attention_weights,
        grad_output,
    )  # fmt: skip
    needs = ctx.needs_input_grad
    return (
        grad_value if needs[0] else None,
        None,
        None,
        grad_loc if needs[3] else None,
        grad_attn if needs[4] else None,
    )


torch.library.register_autograd(
    "mmdet_like::ms_deform_attn", _backward, setup_context=_setup_context
)
# Under autocast the op runs in float32 on both devices (as mmcv's and Deformable DETR's
# kernels are used under mixed precision): the attention weights and fractional sampling
# locations lose too much in half precision. The CUDA kernels also take half and bfloat16
# directly (outside autocast).
torch.library.register_autocast("mmdet_like::ms_deform_attn", "cpu", torch.float32)
torch.library.register_autocast("mmdet_like::ms_deform_attn", "cuda", torch.float32)
