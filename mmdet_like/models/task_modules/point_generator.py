"""Points for every location of a feature-map pyramid (the prior generator of anchor-free
heads, e.g. FCOS)."""

import math

import torch

from mmdet_like.registry import PRIOR_GENERATORS


@PRIOR_GENERATORS.register()
class MlvlPointGenerator:
    """One point per feature-map cell of each level, at ``((x + offset) * stride_w, (y +
    offset) * stride_h)`` for cell ``(y, x)`` (mmdetection's ``MlvlPointGenerator``).

    Args:
        strides: stride of each level (int, or ``(stride_w, stride_h)``).
        offset: where in its cell a point lies, in strides (0.5: the cell's centre,
            mmdetection's FCOS; 0: its top-left corner, torchvision's).

    A level's points are in (y, x) raster order, the order of
    :func:`~mmdet_like.models.dense_heads.base_dense_head.flatten_levels`.
    """

    def __init__(self, strides, offset=0.5):
        self.strides = [(s, s) if isinstance(s, (int, float)) else tuple(s) for s in strides]
        if not 0.0 <= offset <= 1.0:
            raise ValueError(f"MlvlPointGenerator: offset must be in [0, 1], got {offset}")
        self.offset = offset

    @property
    def num_levels(self):
        return len(self.strides)

    @property
    def num_base_priors(self):
        """Priors (points) per location, for each level: 1."""
        return [1] * self.num_levels

    def single_level_grid_priors(
        self, featmap_size, level, dtype=torch.float32, device="cpu", with_stride=False
    ):
        """Points of one level: (H * W, 2) ``(x, y)``, or with ``with_stride`` (H * W, 4)
        ``(x, y, stride_w, stride_h)``."""
        feat_h, feat_w = featmap_size
        stride_w, stride_h = self.strides[level]
        xs = (torch.arange(feat_w, device=device, dtype=torch.float32) + self.offset) * stride_w
        ys = (torch.arange(feat_h, device=device, dtype=torch.float32) + self.offset) * stride_h
        yy, xx = torch.meshgrid(ys.to(dtype), xs.to(dtype), indexing="ij")
        columns = [xx.reshape(-1), yy.reshape(-1)]
        if with_stride:
            count = columns[0].shape[0]
            columns.append(torch.full((count,), float(stride_w), dtype=dtype, device=device))
            columns.append(torch.full((count,), float(stride_h), dtype=dtype, device=device))
        return torch.stack(columns, dim=-1)

    def grid_priors(self, featmap_sizes, dtype=torch.float32, device="cpu", with_stride=False):
        """List over levels of (H_l * W_l, 2) points (``(H_l * W_l, 4)`` with ``with_stride``)
        for ``featmap_sizes`` [(H, W), ...]."""
        if len(featmap_sizes) != self.num_levels:
            raise ValueError(
                f"MlvlPointGenerator: {len(featmap_sizes)} feature maps for {self.num_levels} "
                f"levels (strides {self.strides})"
            )
        return [
            self.single_level_grid_priors(size, level, dtype, device, with_stride)
            for level, size in enumerate(featmap_sizes)
        ]

    def valid_flags(self, featmap_sizes, pad_shape, device="cpu"):
        """List over levels of (H_l * W_l,) bools: the point's cell lies inside the
        un-padded part ``pad_shape = (h, w)`` of the feature map's image."""
        flags = []
        for (feat_h, feat_w), (stride_w, stride_h) in zip(featmap_sizes, self.strides):
            valid_h = min(int(math.ceil(pad_shape[0] / stride_h)), feat_h)
            valid_w = min(int(math.ceil(pad_shape[1] / stride_w)), feat_w)
            valid_y = torch.arange(feat_h, device=device) < valid_h
            valid_x = torch.arange(feat_w, device=device) < valid_w
            flags.append((valid_y[:, None] & valid_x[None, :]).reshape(-1))
        return flags

    def __repr__(self):
        return f"MlvlPointGenerator(strides={self.strides}, offset={self.offset})"
