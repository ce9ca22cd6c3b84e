"""Sampled-anchor training: a dense head's outputs at a few cells, with a reproducible
backward pass.

A head whose loss reaches only the sampled anchors (a few hundred an image) need not run its
dense backward pass: it can run once over whole feature maps without autograd, then again
with autograd at the sampled anchors' cells only (``RPNHead.predict_at``). These are the
gather and scatter of that second run.
"""

import torch


def add_at_cells(values, image, row, col, feature_shape, fixed_order):
    """A (N, C, H, W) tensor of zeros plus ``values`` at cells (repeated cells add up).

    Args:
        values: (*index shape, C); image, row, col: integer tensors broadcasting to the
            index shape; feature_shape: (N, C, H, W).
        fixed_order: add with ``index_add_`` (the same order in every run; the CPU's choice)
            rather than ``index_put_(accumulate=True)`` (parallel atomic adds; deterministic
            on a GPU under ``torch.use_deterministic_algorithms``).
    """
    num_images, channels, height, width = feature_shape
    values = values.reshape(-1, channels)
    image, row, col = (t.expand(row.shape).reshape(-1) for t in (image, row, col))
    if fixed_order:
        out = values.new_zeros(num_images * height * width, channels)
        out.index_add_(0, (image * height + row) * width + col, values)
        return out.view(num_images, height, width, channels).permute(0, 3, 1, 2).contiguous()
    out = values.new_zeros(feature_shape)
    out.permute(0, 2, 3, 1).index_put_((image, row, col), values, accumulate=True)
    return out


class _GatherCells(torch.autograd.Function):
    """``x[image, :, row, col]``: (N, C, H, W) features at cells -> (*index shape, C).

    Its backward pass (:func:`add_at_cells`) adds the gradients of repeated cells in a fixed
    order on the CPU, where autograd's own backward of indexing adds them with parallel atomic
    adds in an order that changes from run to run: training stays reproducible.
    """

    @staticmethod
    def forward(ctx, x, image, row, col):
        ctx.save_for_backward(image, row, col)
        ctx.feature_shape = x.shape
        return x[image, :, row, col]

    @staticmethod
    def backward(ctx, grad):
        image, row, col = ctx.saved_tensors
        fixed_order = grad.device.type == "cpu"
        grad_x = add_at_cells(grad, image, row, col, ctx.feature_shape, fixed_order)
        return grad_x, None, None, None


def gather_cells(x, image, row, col):
    """(N, C, H, W) features at cells -> (*index shape, C), with a reproducible backward pass
    (:class:`_GatherCells`); image, row, col broadcast to the index shape."""
    return _GatherCells.apply(x, image, row, col)
