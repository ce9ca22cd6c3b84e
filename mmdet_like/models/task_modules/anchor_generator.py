"""Anchors for every location of a feature-map pyramid (a prior generator of anchor heads)."""

import math
from collections import OrderedDict

import torch

from mmdet_like.registry import PRIOR_GENERATORS


@PRIOR_GENERATORS.register()
class AnchorGenerator:
    """Square base anchors per level, scaled and reshaped, repeated over each feature map.

    Args:
        strides: feature stride of each level (int, or ``(stride_w, stride_h)``).
        ratios: height / width ratios.
        scales: anchor size as multiples of the level's base size (a list for every level,
            or one list per level, e.g. torchvision's RetinaNet sizes (32, 40, 50),
            (64, 80, 101), ... truncated to integers); or give ``octave_base_scale`` and
            ``scales_per_octave`` (RetinaNet style).
        base_sizes: base size per level (default: the strides).
        sizes: instead of ``scales`` / ``base_sizes`` (detectron2's form): absolute anchor
            sizes in pixels, one list per level (``[[32], [64], [128], [256], [512]]``) or
            one list for every level; each size gives anchors of area ``size ** 2`` at every
            ratio. Anchor centres use the strides.
        scale_major: base anchors ordered scale-major (all ratios of scale 0 first) or not.
        center_offset: anchor centres at ``(offset * stride)`` within each cell (0 or 0.5).
        cache_size: most (size, level, device, dtype) entries kept; the least recently used
            is dropped first (multi-scale training sees many feature sizes).
        round_base_anchors: round the base anchors' corners to integers (torchvision's
            ``AnchorGenerator`` does; with ``center_offset=0`` only).

    Anchors for a feature size are computed once and cached per (size, level, device, dtype);
    the cached tensors are returned as is, so callers must not modify them in place.
    """

    def __init__(
        self,
        strides,
        ratios,
        scales=None,
        base_sizes=None,
        scale_major=True,
        octave_base_scale=None,
        scales_per_octave=None,
        center_offset=0.0,
        cache_size=128,
        round_base_anchors=False,
        sizes=None,
    ):
        self.strides = [(s, s) if isinstance(s, (int, float)) else tuple(s) for s in strides]
        if sizes is not None:
            given = [
                name
                for name, value in [
                    ("scales", scales),
                    ("base_sizes", base_sizes),
                    ("octave_base_scale", octave_base_scale),
                    ("scales_per_octave", scales_per_octave),
                ]
                if value is not None
            ]
            if given:
                raise ValueError(
                    f"AnchorGenerator: sizes (absolute anchor sizes) cannot be combined with "
                    f"{', '.join(given)}; give either sizes or scales (with base_sizes) / "
                    "octave_base_scale + scales_per_octave"
                )
        self.base_sizes = (
            list(base_sizes) if base_sizes is not None else [min(s) for s in self.strides]
        )
        if len(self.base_sizes) != len(self.strides):
            raise ValueError("AnchorGenerator: base_sizes and strides must have the same length")
        if sizes is None and (scales is None) == (octave_base_scale is None):
            raise ValueError(
                "AnchorGenerator: give one of sizes, scales or octave_base_scale + "
                "scales_per_octave"
            )
        if sizes is None and scales is None:
            if scales_per_octave is None:
                raise ValueError("AnchorGenerator: octave_base_scale needs scales_per_octave")
            scales = [
                octave_base_scale * 2 ** (i / scales_per_octave) for i in range(scales_per_octave)
            ]
        if not 0.0 <= center_offset <= 1.0:
            raise ValueError(
                f"AnchorGenerator: center_offset must be in [0, 1], got {center_offset}"
            )
        self.ratios = torch.tensor(ratios, dtype=torch.float32)
        self.level_sizes = None
        if sizes is not None:
            self.level_sizes = self._per_level("sizes", sizes)
            if any(level.numel() == 0 or (level <= 0).any() for level in self.level_sizes):
                raise ValueError(
                    f"AnchorGenerator: every level needs at least one size and sizes must be "
                    f"positive, got {sizes}"
                )
            self.level_scales = [
                level / base for level, base in zip(self.level_sizes, self.base_sizes)
            ]
        else:
            self.level_scales = self._per_level("scales", scales)
        self.scale_major = scale_major
        self.center_offset = center_offset
        self.round_base_anchors = round_base_anchors
        self.base_anchors = [
            self._base_anchors(size, level_scales)
            if self.level_sizes is None
            else self._base_anchors(1.0, self.level_sizes[level], center_size=size)
            for level, (size, level_scales) in enumerate(zip(self.base_sizes, self.level_scales))
        ]
        self.cache_size = cache_size
        self._cache = OrderedDict()

    @property
    def num_levels(self):
        return len(self.strides)

    @property
    def num_base_anchors(self):
        """Anchors per location, for each level."""
        return [anchors.size(0) for anchors in self.base_anchors]

    @property
    def num_base_priors(self):
        """Priors (anchors) per location, for each level: the prior generators' common name."""
        return self.num_base_anchors

    def _per_level(self, name, values):
        """One list for every level, or one list per level -> L (n_l,) float tensors."""
        per_level = len(values) > 0 and isinstance(values[0], (list, tuple))
        if per_level and len(values) != len(self.strides):
            raise ValueError(
                f"AnchorGenerator: {len(values)} lists of {name} for {len(self.strides)} levels "
                f"(strides {self.strides}); give one list per level or one list for all"
            )
        return [
            torch.tensor(values[level] if per_level else values, dtype=torch.float32)
            for level in range(len(self.strides))
        ]

    def _base_anchors(self, base_size, scales, center_size=None):
        """(A, 4) anchors of sides ``base_size * scales`` (at every ratio) centred at
        ``center_offset * center_size`` (default ``base_size``); A = #scales * #ratios."""
        h_ratios = self.ratios.sqrt()
        w_ratios = 1.0 / h_ratios
        if self.scale_major:
            ws = (base_size * w_ratios[:, None] * scales[None, :]).reshape(-1)
            hs = (base_size * h_ratios[:, None] * scales[None, :]).reshape(-1)
        else:
            ws = (base_size * scales[:, None] * w_ratios[None, :]).reshape(-1)
            hs = (base_size * scales[:, None] * h_ratios[None, :]).reshape(-1)
        center = self.center_offset * (base_size if center_size is None else center_size)
        anchors = torch.stack(
            [center - 0.5 * ws, center - 0.5 * hs, center + 0.5 * ws, center + 0.5 * hs], dim=-1
        )
        return anchors.round() if self.round_base_anchors else anchors

    def single_level_grid_priors(self, featmap_size, level, dtype=torch.float32, device="cpu"):
        """Anchors of one level: (H * W * A, 4), location-major (the A anchors of a cell are
        consecutive), rows in (y, x) raster order."""
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        tracing = torch.compiler.is_compiling()  # torch.export: symbolic sizes, no cache
        key = None if tracing else (tuple(int(s) for s in featmap_size), level, device, dtype)
        cached = None if tracing else self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        feat_h, feat_w = featmap_size
        stride_w, stride_h = self.strides[level]
        shift_x = torch.arange(feat_w, device=device, dtype=torch.float32) * stride_w
        shift_y = torch.arange(feat_h, device=device, dtype=torch.float32) * stride_h
        yy, xx = torch.meshgrid(shift_y, shift_x, indexing="ij")
        shifts = torch.stack([xx, yy, xx, yy], dim=-1).reshape(-1, 1, 4)
        base = self.base_anchors[level].to(device)
        anchors = (shifts + base[None]).reshape(-1, 4).to(dtype)
        if tracing:
            return anchors
        self._cache[key] = anchors
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return anchors

    def grid_priors(self, featmap_sizes, dtype=torch.float32, device="cpu"):
        """List over levels of (H_l * W_l * A_l, 4) anchors for ``featmap_sizes`` [(H, W), ...]."""
        if len(featmap_sizes) != self.num_levels:
            raise ValueError(
                f"AnchorGenerator: {len(featmap_sizes)} feature maps for {self.num_levels} levels"
            )
        return [
            self.single_level_grid_priors(size, level, dtype, device)
            for level, size in enumerate(featmap_sizes)
        ]

    def valid_flags(self, featmap_sizes, pad_shape, device="cpu"):
        """List over levels of (H_l * W_l * A_l,) bools: the anchor's cell lies inside the
        un-padded part ``pad_shape = (h, w)`` of the feature map's image."""
        flags = []
        for level, (feat_h, feat_w) in enumerate(featmap_sizes):
            stride_w, stride_h = self.strides[level]
            valid_h = min(int(math.ceil(pad_shape[0] / stride_h)), feat_h)
            valid_w = min(int(math.ceil(pad_shape[1] / stride_w)), feat_w)
            valid_y = torch.arange(feat_h, device=device) < valid_h
            valid_x = torch.arange(feat_w, device=device) < valid_w
            valid = (valid_y[:, None] & valid_x[None, :]).reshape(-1, 1)
            flags.append(valid.expand(-1, self.num_base_anchors[level]).reshape(-1))
        return flags

    def __repr__(self):
        sizes = None if self.level_sizes is None else [s.tolist() for s in self.level_sizes]
        return (
            f"AnchorGenerator(strides={self.strides}, ratios={self.ratios.tolist()}, "
            f"scales={[s.tolist() for s in self.level_scales]}, base_sizes={self.base_sizes}, "
            f"sizes={sizes}, "
            f"center_offset={self.center_offset}, round_base_anchors={self.round_base_anchors})"
        )
