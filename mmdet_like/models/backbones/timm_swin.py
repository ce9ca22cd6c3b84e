"""timm's Swin blocks with their window attention written so that ``torch.export`` keeps the
image size dynamic (imported by :class:`TimmBackbone` only where timm is installed).

timm's ``SwinTransformerBlock`` pads each map to whole windows (``(window - H % window) %
window`` rows), splits it into windows and back with ``view(-1, ...)``, builds the
shifted-window mask by assigning slices with negative bounds, and its ``WindowAttention``
views the mask as ``(1, windows, 1, N, N)``. Traced with a symbolic image size, every one of
these asks the shape solver a question about the window counts it cannot answer over the
whole size range: that a padded side is a multiple of the window and at least the side,
whether a count is 1. A dynamic export then fails ("Specializations unexpectedly required")
or runs for many minutes without ending.

:class:`ExportableSwinBlock` computes the same values (timm's operations, in timm's order, on
the same numbers) so that the solver is asked nothing it cannot answer:

- traced with a symbolic size, the window counts are sizes of their own
  (``ceil(side / window)`` read from a tensor, with the facts the rest needs, ``count >= 1``
  and ``side <= count * window < side + window``, as checks the program keeps);
- every reshape that merges or splits window counts goes through a flat view (a flat
  contiguous tensor splits into any shape without comparing sizes);
- the shifted-window mask is built from index comparisons (0 within a region, -100 between
  regions, as timm's), and the attention adds it to the relative position bias per window
  without timm's views.

In eager mode the counts are plain integers and the results are timm's.
"""

import torch
from timm.models.swin_transformer import SwinTransformerBlock
from torch.nn import functional as F

MASKED = -100.0  # timm's (and the Swin authors') value for pairs of different regions


def window_count(side, window):
    """``ceil(side / window)``; for a symbolic ``side`` (``torch.export``), a size of its own
    with the checks ``count >= 1``, ``count * window >= side`` and ``count * window < side +
    window`` (kept in the exported program), from which the tracer derives what it needs."""
    if not isinstance(side, torch.SymInt):
        return (side + window - 1) // window
    count = ((torch.scalar_tensor(side, dtype=torch.int64) + window - 1) // window).item()
    torch._check(count >= 1)
    torch._check(count * window >= side)
    torch._check(count * window < side + window)
    return count


def _flat_view(x, *shape):
    """``x`` as ``shape`` through a flat contiguous view: splitting a flat tensor compares no
    symbolic sizes with each other, which reshaping across window counts otherwise does."""
    return x.contiguous().view(-1).view(*shape)


def _regions(length, window, shift, device):
    """Region of each position (0, 1, 2) along one side of a padded map of ``length``, as
    timm numbers the slices ``[0, -window)``, ``[-window, -shift)``, ``[-shift, end)``;
    without a shift every position is in the last slice, as in timm."""
    index = torch.arange(length, device=device)
    if shift == 0:
        return torch.full_like(index, 2)
    return (index >= length - window).long() + (index >= length - shift).long()


def shifted_window_mask(rows, cols, window, shift, device, dtype):
    """(rows * cols, N, N) attention mask (N = window area) of a map padded to ``rows`` x
    ``cols`` windows and cyclically shifted by ``shift``: 0 between tokens of the same
    region, ``MASKED`` between tokens the shift brought together from different ones."""
    (win_h, win_w), (shift_h, shift_w) = window, shift
    along_h = _regions(rows * win_h, win_h, shift_h, device)
    along_w = _regions(cols * win_w, win_w, shift_w, device)
    region = along_h[:, None] * 3 + along_w[None, :]  # (rows * win_h, cols * win_w)
    region = region.view(rows, win_h, cols, win_w).permute(0, 2, 1, 3)
    region = _flat_view(region, rows * cols, win_h * win_w)
    different = region[:, None, :] != region[:, :, None]
    return torch.zeros(different.shape, device=device, dtype=dtype).masked_fill(different, MASKED)


def window_attention(attn, windows, mask, batch):
    """timm's ``WindowAttention.forward`` on ``windows`` (batch * nW, N, C), ``mask``
    (nW, N, N) or ``None``: the mask is repeated per image and added to the relative
    position bias (fused attention) or to the scores after it (timm's other path), as timm
    adds it."""
    count, tokens, channels = windows.shape
    heads = attn.num_heads
    qkv = attn.qkv(windows).reshape(count, tokens, 3, heads, channels // heads)
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
    bias = attn._get_rel_pos_bias()  # (1, heads, N, N)
    per_window = None if mask is None else mask.unsqueeze(1).repeat(batch, 1, 1, 1)
    if attn.fused_attn:
        attn_mask = bias if per_window is None else bias + per_window
        drop = attn.attn_drop.p if attn.training else 0.0
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=drop)
    else:
        scores = (q * attn.scale) @ k.transpose(-2, -1) + bias
        if per_window is not None:
            scores = scores + per_window
        x = attn.attn_drop(attn.softmax(scores)) @ v
    x = x.transpose(1, 2).reshape(count, tokens, channels)
    return attn.proj_drop(attn.proj(x))


class ExportableSwinBlock(SwinTransformerBlock):
    """timm's ``SwinTransformerBlock`` (same parameters and buffers, same values) with the
    window attention of the module docstring; :class:`TimmBackbone` sets it as the class of
    timm's Swin blocks."""

    def _attn(self, x):
        batch, height, width, channels = x.shape
        (win_h, win_w), (shift_h, shift_w) = self.window_size, self.shift_size
        shifted = shift_h or shift_w
        if shifted:
            x = torch.roll(x, shifts=(-shift_h, -shift_w), dims=(1, 2))
        rows, cols = window_count(height, win_h), window_count(width, win_w)
        # whole windows, padded after the shift as timm pads
        x = F.pad(x, (0, 0, 0, cols * win_w - width, 0, rows * win_h - height))
        windows = x.view(batch, rows, win_h, cols, win_w, channels).permute(0, 1, 3, 2, 4, 5)
        windows = _flat_view(windows, batch * rows * cols * win_h * win_w, channels)
        windows = windows.view(batch * rows * cols, win_h * win_w, channels)
        if not shifted:
            mask = None
        elif self.dynamic_mask:
            mask = shifted_window_mask(rows, cols, self.window_size, self.shift_size, x.device,
                                       x.dtype)  # fmt: skip
        else:
            mask = self.attn_mask  # timm's, for its fixed input size
        out = window_attention(self.attn, windows, mask, batch)
        # back to (batch, rows * win_h, cols * win_w, channels), through flat views
        out = _flat_view(out, batch * rows, cols * win_h * win_w * channels)
        out = out.view(batch * rows, cols, win_h, win_w, channels).permute(0, 2, 1, 3, 4)
        out = _flat_view(out, batch * rows * win_h, cols * win_w * channels)
        out = out.view(batch, rows * win_h, cols * win_w, channels)[:, :height, :width]
        if shifted:
            out = torch.roll(out, shifts=(shift_h, shift_w), dims=(1, 2))
        return out.contiguous()


def make_swin_blocks_exportable(model):
    """Give timm's Swin blocks in ``model`` the class :class:`ExportableSwinBlock` (in place;
    parameters, buffers and state-dict keys unchanged). Returns how many were changed."""
    changed = 0
    for module in model.modules():
        if type(module) is SwinTransformerBlock:
            module.__class__ = ExportableSwinBlock
            changed += 1
    return changed
