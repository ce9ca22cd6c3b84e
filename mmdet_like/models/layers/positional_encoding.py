"""Positional encodings of a feature map for transformer detectors (DETR and its family),
computed from the padding mask so that padded cells do not shift the positions of the
image's own cells.

Both take the (B, H, W) bool padding mask of the feature map (True on padding, as
``pad_images(..., return_mask=True)`` gives it, resized to the map) and return a
(B, 2 * num_feats, H, W) encoding: the first ``num_feats`` channels encode the row (y), the
last ``num_feats`` the column (x) for the sine encoding; the learned one puts the column's
embedding first, as DETR and mmdetection do.
"""

import math

import torch
from torch import nn

from mmdet_like.registry import POSITIONAL_ENCODINGS


@POSITIONAL_ENCODINGS.register()
class SinePositionalEncoding(nn.Module):
    """DETR's sine encoding of the cumulative row / column index of the unpadded cells.

    Args:
        num_feats: channels per axis (the encoding has ``2 * num_feats``); half the
            transformer's width.
        temperature: the wavelength base (10000).
        normalize: divide the cumulative index by the image's last one (its height or width
            in cells, from the mask), so positions run over ``(0, scale]``.
        scale: the range with ``normalize`` (``2 pi``).
        eps: added to the divisor with ``normalize``.
        offset: added to the cumulative index before normalising (0 for DETR; -0.5 for
            Deformable DETR and DINO, the cell centres).

    Channel ``2 k`` is ``sin(p / T ** (2 k / num_feats))``, ``2 k + 1`` the cosine of the
    same, for ``p`` the (normalised) row index in the first half and the column index in the
    second.
    """

    def __init__(self, num_feats, temperature=10000, normalize=False, scale=2 * math.pi,
                 eps=1e-6, offset=0.0):  # fmt: skip
        super().__init__()
        if normalize and not isinstance(scale, (int, float)):
            raise ValueError(f"SinePositionalEncoding: scale must be a number, got {scale!r}")
        self.num_feats = int(num_feats)
        self.temperature = temperature
        self.normalize = normalize
        self.scale = scale
        self.eps = eps
        self.offset = offset

    def forward(self, mask):
        """(B, H, W) bool padding mask -> (B, 2 * num_feats, H, W) float32 encoding."""
        not_mask = (~mask).to(torch.float32)
        y_embed = not_mask.cumsum(1)
        x_embed = not_mask.cumsum(2)
        if self.normalize:
            y_embed = (y_embed + self.offset) / (y_embed[:, -1:, :] + self.eps) * self.scale
            x_embed = (x_embed + self.offset) / (x_embed[:, :, -1:] + self.eps) * self.scale
        dim_t = torch.arange(self.num_feats, dtype=torch.float32, device=mask.device)
        dim_t = self.temperature ** (
            2 * torch.div(dim_t, 2, rounding_mode="floor") / self.num_feats
        )
        pos_x = x_embed[..., None] / dim_t
        pos_y = y_embed[..., None] / dim_t
        pos_x = torch.stack((pos_x[..., 0::2].sin(), pos_x[..., 1::2].cos()), dim=4).flatten(3)
        pos_y = torch.stack((pos_y[..., 0::2].sin(), pos_y[..., 1::2].cos()), dim=4).flatten(3)
        return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)

    def extra_repr(self):
        return (
            f"num_feats={self.num_feats}, temperature={self.temperature}, "
            f"normalize={self.normalize}, scale={self.scale}, eps={self.eps}, "
            f"offset={self.offset}"
        )


@POSITIONAL_ENCODINGS.register()
class LearnedPositionalEncoding(nn.Module):
    """An embedding per row and per column (DETR's learned variant): cell ``(i, j)`` gets
    ``[col_embed[j], row_embed[i]]``.

    Args:
        num_feats: channels per axis (the encoding has ``2 * num_feats``).
        row_num_embed, col_num_embed: the largest feature-map height and width (50: DETR's,
            a 1600 px side at stride 32).

    The mask only gives the batch size and the map's size: the cells' indices count from
    the top-left corner whether or not padded.
    """

    def __init__(self, num_feats, row_num_embed=50, col_num_embed=50):
        super().__init__()
        self.num_feats = int(num_feats)
        self.row_embed = nn.Embedding(row_num_embed, self.num_feats)
        self.col_embed = nn.Embedding(col_num_embed, self.num_feats)
        self.init_weights()

    def init_weights(self):
        """Uniform [0, 1) embeddings (DETR's)."""
        nn.init.uniform_(self.row_embed.weight)
        nn.init.uniform_(self.col_embed.weight)

    def forward(self, mask):
        """(B, H, W) bool padding mask -> (B, 2 * num_feats, H, W) encoding."""
        batch, height, width = mask.shape
        if height > self.row_embed.num_embeddings or width > self.col_embed.num_embeddings:
            raise ValueError(
                f"LearnedPositionalEncoding: a {height} x {width} feature map exceeds its "
                f"{self.row_embed.num_embeddings} x {self.col_embed.num_embeddings} embeddings; "
                "raise row_num_embed / col_num_embed or feed smaller images"
            )
        x_embed = self.col_embed(torch.arange(width, device=mask.device))
        y_embed = self.row_embed(torch.arange(height, device=mask.device))
        pos = torch.cat(
            (x_embed[None].expand(height, -1, -1), y_embed[:, None].expand(-1, width, -1)), dim=-1
        )
        return pos.permute(2, 0, 1)[None].expand(batch, -1, -1, -1)

    def extra_repr(self):
        return (
            f"num_feats={self.num_feats}, row_num_embed={self.row_embed.num_embeddings}, "
            f"col_num_embed={self.col_embed.num_embeddings}"
        )
