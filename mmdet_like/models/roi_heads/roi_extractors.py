"""RoI feature extraction from a feature pyramid: each RoI pooled from one level by its size."""

import torch
from torch import nn

from mmdet_like.models.utils.symbolic import is_zero_count
from mmdet_like.ops import RoIAlign
from mmdet_like.registry import ROI_EXTRACTORS, ROI_LAYERS, build_from_cfg

ROI_LAYERS.register()(RoIAlign)


def map_roi_levels(rois, num_levels, finest_scale=56):
    """Pyramid level of each RoI by its scale (FPN paper, mmdetection's rule).

    ``scale = sqrt(w * h)``; level ``floor(log2(scale / finest_scale + 1e-6))`` clamped to
    ``[0, num_levels - 1]``: scale < 112 -> 0, [112, 224) -> 1, [224, 448) -> 2, >= 448 -> 3.

    Args:
        rois: (K, 5) ``[image_index, x1, y1, x2, y2]``.

    Returns:
        (K,) int64 levels.
    """
    scale = torch.sqrt((rois[:, 3] - rois[:, 1]) * (rois[:, 4] - rois[:, 2]))
    levels = torch.floor(torch.log2(scale / finest_scale + 1e-6))
    return levels.clamp(min=0, max=num_levels - 1).long()


@ROI_EXTRACTORS.register()
class SingleRoIExtractor(nn.Module):
    """Pool each RoI from the single pyramid level that matches its scale.

    Args:
        roi_layer: RoI op config from ``ROI_LAYERS``, e.g.
            ``dict(type="RoIAlign", output_size=7, sampling_ratio=0, aligned=True)``.
        out_channels: channels of the features (and of the output).
        featmap_strides: stride of each input level, finest first.
        finest_scale: RoIs smaller than ``2 * finest_scale`` go to the finest level.

    forward(feats: tuple of L (N, C, H_l, W_l), rois: (K, 5)) -> (K, C, S, S), one RoI op
    call per level over all the RoIs of that level.
    """

    def __init__(self, roi_layer, out_channels, featmap_strides, finest_scale=56):
        super().__init__()
        self.out_channels = out_channels
        self.featmap_strides = list(featmap_strides)
        self.finest_scale = finest_scale
        self.roi_layers = nn.ModuleList(
            build_from_cfg(dict(roi_layer, spatial_scale=1.0 / s), ROI_LAYERS)
            for s in self.featmap_strides
        )
        output_size = roi_layer.get("output_size", 7)
        self.output_size = (
            (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
        )

    @property
    def num_inputs(self):
        return len(self.featmap_strides)

    def forward(self, feats, rois):
        num_levels = self.num_inputs
        if len(feats) < num_levels:
            raise ValueError(
                f"SingleRoIExtractor: {num_levels} strides configured, got {len(feats)} levels"
            )
        out = feats[0].new_zeros((rois.size(0), self.out_channels, *self.output_size))
        if is_zero_count(rois.size(0)):  # traced: no branch on the RoI count
            return out
        rois = rois.to(feats[0].dtype)
        if num_levels == 1:
            return self.roi_layers[0](feats[0], rois)
        levels = map_roi_levels(rois, num_levels, self.finest_scale)
        for level in range(num_levels):
            # a level without RoIs costs an empty op call, no Python branch on counts
            inds = torch.nonzero(levels == level, as_tuple=True)[0]
            pooled = self.roi_layers[level](feats[level], rois[inds])
            out = out.index_put((inds,), pooled)
        return out
