"""Keypoint head (Keypoint R-CNN): heatmaps of K keypoints on each positive RoI, their
targets and loss, and the decode of heatmaps into image coordinates.

A keypoint's target on a RoI is one cell of the ``heatmap_size`` x ``heatmap_size`` grid
laid over the RoI (visible keypoints inside the RoI only); the loss is a softmax
cross-entropy over the cells of each keypoint's heatmap. At test time each heatmap is
resized (bicubic) to the detected box's size in pixels, and its highest cell gives the
keypoint (at the cell's centre) and its score (the logit there): the sub-cell refinement of
Detectron, detectron2 and torchvision.
"""

import torch
import torch.nn.functional as F
from torch import nn

from mmdet_like.registry import HEADS


def keypoint_heatmap_targets(keypoints, rois, heatmap_size):
    """The target cell of every keypoint on its RoI.

    Args:
        keypoints: (P, K, 3) ``x, y, visibility`` (image coordinates) of the gt matched to
            each positive RoI.
        rois: (P, 4) positive boxes ``[x1, y1, x2, y2]``.
        heatmap_size: cells per side of the heatmap.

    Returns:
        ``(cells, valid)``: (P, K) int64 linear cell index ``y * heatmap_size + x`` (0 where
        not valid) and (P, K) bool: labelled (visibility > 0) and inside the RoI. A keypoint
        exactly on the RoI's right or bottom edge goes to the last cell.
    """
    x1, y1, x2, y2 = (rois[:, i : i + 1] for i in range(4))
    scale_x = heatmap_size / (x2 - x1)
    scale_y = heatmap_size / (y2 - y1)
    x, y = keypoints[..., 0], keypoints[..., 1]
    cell_x = ((x - x1) * scale_x).floor().long()
    cell_y = ((y - y1) * scale_y).floor().long()
    cell_x = torch.where(x == x2, heatmap_size - 1, cell_x)
    cell_y = torch.where(y == y2, heatmap_size - 1, cell_y)
    inside = (cell_x >= 0) & (cell_y >= 0) & (cell_x < heatmap_size) & (cell_y < heatmap_size)
    valid = inside & (keypoints[..., 2] > 0)
    cells = torch.where(valid, cell_y * heatmap_size + cell_x, 0)
    return cells, valid


def heatmaps_to_keypoints(heatmaps, boxes):
    """Keypoints of heatmap logits on their boxes.

    Each (K, S, S) heatmap is resized (bicubic, ``align_corners=False``) to the box's size
    rounded up to whole pixels (at least 1), and each keypoint is the centre of its highest
    cell, scaled back to the box's true size.

    Args:
        heatmaps: (n, K, S, S) logits; boxes: (n, 4) in the image the keypoints go to.

    Returns:
        (n, K, 2) ``x, y`` and (n, K) scores (the resized logit at the keypoint).
    """
    n, k = heatmaps.shape[:2]
    points = heatmaps.new_zeros((n, k, 2))
    scores = heatmaps.new_zeros((n, k))
    if n == 0:
        return points, scores
    widths = (boxes[:, 2] - boxes[:, 0]).clamp(min=1)
    heights = (boxes[:, 3] - boxes[:, 1]).clamp(min=1)
    # the output size of each box's resize is a shape: one host read for the whole batch
    sizes = torch.stack([heights.ceil(), widths.ceil()], 1).long().tolist()
    keypoint_index = torch.arange(k, device=heatmaps.device)
    for i, (height, width) in enumerate(sizes):
        resized = F.interpolate(
            heatmaps[i : i + 1], size=(height, width), mode="bicubic", align_corners=False
        )[0]
        best = resized.reshape(k, -1).argmax(dim=1)
        cell_x, cell_y = best % width, best // width
        points[i, :, 0] = (cell_x.to(points.dtype) + 0.5) * (widths[i] / width) + boxes[i, 0]
        points[i, :, 1] = (cell_y.to(points.dtype) + 0.5) * (heights[i] / height) + boxes[i, 1]
        scores[i] = resized[keypoint_index, cell_y, cell_x]
    return points, scores


@HEADS.register()
class KeypointRCNNHead(nn.Module):
    """``num_convs`` 3x3 convs of ``conv_out_channels`` (each with a ReLU), a 4x4 stride-2
    transposed conv to K channels, and a bilinear upsampling by ``upsample_scale``:
    (P, in_channels, S, S) RoI features -> (P, K, 2 S * upsample_scale, ...) heatmap logits
    (14 -> 56 with the defaults).

    Args:
        num_keypoints: K.
        in_channels, num_convs, conv_out_channels: the convs.
        roi_feat_size: S, the pooled size the head is fed.
        upsample_scale: factor of the bilinear upsampling after the transposed conv.
        loss_weight: factor of the loss.
        loss_normalizer: ``"visible"``: the loss summed over the keypoints with a target
            and divided by their number in the batch (detectron2's default, torchvision's
            behaviour); a number ``c``: divided by ``c`` times the number of images instead
            (detectron2's constant normaliser, e.g. ``K * 512 * 0.25``).
    """

    def __init__(
        self,
        num_keypoints=17,
        in_channels=256,
        num_convs=8,
        conv_out_channels=512,
        roi_feat_size=14,
        upsample_scale=2,
        loss_weight=1.0,
        loss_normalizer="visible",
    ):
        super().__init__()
        if loss_normalizer != "visible" and not (
            isinstance(loss_normalizer, (int, float)) and loss_normalizer > 0
        ):
            raise ValueError(
                "KeypointRCNNHead: loss_normalizer must be 'visible' or a positive number, "
                f"got {loss_normalizer!r}"
            )
        self.num_keypoints = num_keypoints
        self.loss_weight = loss_weight
        self.loss_normalizer = loss_normalizer
        self.upsample_scale = upsample_scale
        self.heatmap_size = roi_feat_size * 2 * upsample_scale
        layers, channels = [], in_channels
        for _ in range(num_convs):
            layers += [nn.Conv2d(channels, conv_out_channels, 3, padding=1), nn.ReLU(inplace=True)]
            channels = conv_out_channels
        self.convs = nn.Sequential(*layers)
        self.deconv = nn.ConvTranspose2d(channels, num_keypoints, 4, stride=2, padding=1)
        self.init_weights()

    def init_weights(self):
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.deconv(self.convs(x))
        return F.interpolate(
            x, scale_factor=self.upsample_scale, mode="bilinear", align_corners=False,
            recompute_scale_factor=False,
        )  # fmt: skip

    def get_targets(self, sampling_results, gt_keypoints):
        """Targets of the positives of a batch.

        Args:
            sampling_results: one :class:`SamplingResult` per image.
            gt_keypoints: per image (G_i, K, 3) keypoints of its gts.

        Returns:
            ``(cells, valid)``, each (P, K) (:func:`keypoint_heatmap_targets`), P the
            positives of all images in order.
        """
        matched = [
            kps.to(res.pos_bboxes)[res.pos_assigned_gt_inds]
            for res, kps in zip(sampling_results, gt_keypoints)
        ]
        keypoints = torch.cat(matched) if matched else None
        boxes = torch.cat([res.pos_bboxes for res in sampling_results])
        if keypoints is None or boxes.numel() == 0:
            empty = boxes.new_zeros((0, self.num_keypoints))
            return empty.long(), empty.bool()
        return keypoint_heatmap_targets(keypoints, boxes, self.heatmap_size)

    def loss(self, heatmaps, cells, valid, num_images=1):
        """``dict(loss_keypoint)``: softmax cross-entropy of each valid keypoint's heatmap
        (P, K, S, S) against its target cell, normalised as ``loss_normalizer`` says. No
        valid keypoint: 0 (with a gradient path through ``heatmaps``)."""
        p, k, height, width = heatmaps.shape
        logits = heatmaps.reshape(p * k, height * width)
        per_keypoint = F.cross_entropy(logits, cells.reshape(-1), reduction="none")
        weights = valid.reshape(-1).to(per_keypoint.dtype)
        total = (per_keypoint * weights).sum()
        if self.loss_normalizer == "visible":
            normalizer = weights.sum().clamp(min=1)
        else:
            normalizer = float(self.loss_normalizer) * num_images
        return dict(loss_keypoint=self.loss_weight * total / normalizer)

    def get_keypoints(self, heatmaps, boxes):
        """(n, K, 2) keypoints and (n, K) scores of the heatmaps of n detections
        (:func:`heatmaps_to_keypoints`); ``boxes`` in the image the keypoints go to."""
        return heatmaps_to_keypoints(heatmaps, boxes)
