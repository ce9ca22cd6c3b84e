"""Mask head (Mask R-CNN): a small FCN on RoI features, its targets and the mask paste."""

import math

import torch
import torch.nn.functional as F
from torch import nn

from mmdet_like.models.layers import build_norm_layer
from mmdet_like.ops import roi_align
from mmdet_like.registry import HEADS, LOSSES, build_from_cfg

# Largest float32 buffer (bytes) one paste chunk may use: (masks, H, W) of the window.
PASTE_CHUNK_BYTES = 1 << 26


def mask_targets(sampling_results, gt_masks, mask_size, aligned=True, binarize=True):
    """Mask targets of the positive RoIs of a batch, by RoIAlign of the gt masks.

    Each positive's gt mask (image ``i``, gt ``pos_assigned_gt_inds``) is cropped at the
    positive box and resampled to ``mask_size`` with one ``roi_align`` call per image
    (``aligned``, like detectron2 and mmdetection), then thresholded at 0.5 (``binarize``).
    torchvision's Mask R-CNN uses ``aligned=False, binarize=False``: soft targets of an
    unaligned RoIAlign.

    Args:
        sampling_results: one :class:`SamplingResult` per image.
        gt_masks: one mask structure per image (``.to_tensor(dtype, device)`` -> (G, H, W)),
            or (G, H, W) tensors.
        mask_size: (h, w) of the targets.
        aligned: RoIAlign with the half-pixel shift (boxes on pixel centres).
        binarize: threshold the resampled masks at 0.5 (else soft targets in [0, 1]).

    Returns:
        (P, h, w) float targets (in {0, 1} with ``binarize``), P the positives of all images
        in order.
    """
    targets = []
    for res, masks in zip(sampling_results, gt_masks):
        pos_boxes = res.pos_bboxes
        if pos_boxes.size(0) == 0:
            continue
        if isinstance(masks, torch.Tensor):
            masks = masks.to(dtype=pos_boxes.dtype, device=pos_boxes.device)
        else:
            masks = masks.to_tensor(dtype=pos_boxes.dtype, device=pos_boxes.device)
        rois = torch.cat([res.pos_assigned_gt_inds[:, None].to(pos_boxes.dtype), pos_boxes], 1)
        crops = roi_align(masks[:, None], rois, mask_size, 1.0, 0, aligned)[:, 0]
        targets.append((crops >= 0.5).to(pos_boxes.dtype) if binarize else crops)
    if not targets:
        return sampling_results[0].pos_bboxes.new_zeros((0, *mask_size))
    return torch.cat(targets)


def paste_masks(masks, boxes, img_h, img_w, chunk_bytes=PASTE_CHUNK_BYTES, threshold=None):
    """Paste RoI mask probabilities into the full image by bilinear resampling.

    Every image pixel centre ``(x + 0.5, y + 0.5)`` inside a box samples the box's mask at
    the matching position (what ``grid_sample`` does with ``align_corners=False``, border
    values replicated up to the box edge); outside the box it is 0. Bilinear sampling on a
    box's axes is separable, so each mask is resampled as ``Wy @ mask @ Wx.T`` with small
    (rows, M) and (columns, M) weight matrices instead of a per-pixel sampling grid. Masks go
    in chunks of at most ``chunk_bytes`` of output, each chunk restricted to the window that
    holds its boxes; with ``threshold`` each chunk is binarised before it is written, so the
    only full-image buffer is the boolean result.

    Args:
        masks: (n, M, M) probabilities; boxes: (n, 4) in image coordinates.
        img_h, img_w: output size.
        threshold: None for probabilities, else the binarisation threshold (``>=``).

    Returns:
        (n, img_h, img_w) float probabilities (bool with ``threshold``) on the masks' device.
    """
    n = masks.size(0)
    out = _pasted_output(masks, img_h, img_w, threshold)
    if n == 0:
        return out
    boxes = boxes.to(masks.dtype)
    # chunks of masks with nearby boxes share a window: sort by box position
    order = torch.argsort(boxes[:, 0] + boxes[:, 1] * img_w)
    per_chunk = max(1, chunk_bytes // max(1, img_h * img_w * 4))
    bounds = boxes.detach().cpu()
    for start in range(0, n, per_chunk):
        inds = order[start : start + per_chunk]
        chunk_bounds = bounds[inds.cpu()]
        x0 = max(int(math.floor(chunk_bounds[:, 0].min().item())) - 1, 0)
        y0 = max(int(math.floor(chunk_bounds[:, 1].min().item())) - 1, 0)
        x1 = min(int(math.ceil(chunk_bounds[:, 2].max().item())) + 1, img_w)
        y1 = min(int(math.ceil(chunk_bounds[:, 3].max().item())) + 1, img_h)
        if x1 <= x0 or y1 <= y0:
            continue
        pasted = _paste_window(masks[inds], boxes[inds], x0, y0, x1, y1)
        out[inds, y0:y1, x0:x1] = pasted if threshold is None else pasted >= threshold
    return out


def paste_masks_torchvision(masks, boxes, img_h, img_w, padding=1, threshold=None):
    """Paste RoI mask probabilities the way torchvision's Mask R-CNN does.

    Each (M, M) mask gets a border of ``padding`` zero pixels; its box is enlarged about its
    centre by the same ratio ``(M + 2 * padding) / M`` and truncated to integer corners
    ``(x0, y0, x1, y1)``; the padded mask is resized (bilinear, ``align_corners=False``) to
    ``(y1 - y0 + 1, x1 - x0 + 1)`` pixels (at least 1) and written at ``(x0, y0)``, clipped
    to the image. Pixels outside are 0.

    Args:
        masks: (n, M, M) probabilities; boxes: (n, 4) in image coordinates.
        img_h, img_w: output size.
        threshold: None for probabilities, else the binarisation threshold (``>=``), applied
            mask by mask so that no full-image float buffer is made.

    Returns:
        (n, img_h, img_w) float probabilities (bool with ``threshold``) on the masks' device.
    """
    n, size = masks.size(0), masks.size(-1)
    out = _pasted_output(masks, img_h, img_w, threshold)
    if n == 0:
        return out
    ratio = (size + 2 * padding) / size
    padded = F.pad(masks, (padding,) * 4)
    boxes = boxes.to(masks.dtype)
    half_w = (boxes[:, 2] - boxes[:, 0]) * 0.5 * ratio
    half_h = (boxes[:, 3] - boxes[:, 1]) * 0.5 * ratio
    centre_x = (boxes[:, 2] + boxes[:, 0]) * 0.5
    centre_y = (boxes[:, 3] + boxes[:, 1]) * 0.5
    corners = torch.stack(
        [centre_x - half_w, centre_y - half_h, centre_x + half_w, centre_y + half_h], 1
    )
    for i, (x0, y0, x1, y1) in enumerate(corners.to(torch.int64).tolist()):
        width, height = max(x1 - x0 + 1, 1), max(y1 - y0 + 1, 1)
        resized = F.interpolate(
            padded[i][None, None], size=(height, width), mode="bilinear", align_corners=False
        )[0, 0]
        left, top = max(x0, 0), max(y0, 0)
        right, bottom = min(x1 + 1, img_w), min(y1 + 1, img_h)
        if right <= left or bottom <= top:
            continue
        window = resized[top - y0 : bottom - y0, left - x0 : right - x0]
        out[i, top:bottom, left:right] = window if threshold is None else window >= threshold
    return out


PASTE_MODES = {"grid_sample": paste_masks, "torchvision": paste_masks_torchvision}


def _pasted_output(masks, img_h, img_w, threshold):
    """The (n, img_h, img_w) result of a paste before any mask is written: probability 0
    everywhere (float), or ``0 >= threshold`` (bool) with a threshold."""
    shape = (masks.size(0), img_h, img_w)
    if threshold is None:
        return masks.new_zeros(shape)
    return torch.full(shape, 0.0 >= threshold, dtype=torch.bool, device=masks.device)


def _axis_weights(centres, lo, hi, size):
    """Bilinear weights of one axis: (L,) pixel centres, (k, 1) box extents -> (k, L, size).

    Row ``l`` of mask ``i`` holds the weights with which that pixel samples the ``size``
    mask cells: ``grid_sample``'s ``align_corners=False`` mapping, positions clamped to the
    border cells, and all zero where the pixel lies outside the box.
    """
    normalised = (centres[None] - lo) / (hi - lo).clamp(min=1e-6) * 2 - 1  # (k, L)
    position = (((normalised + 1) * size - 1) / 2).clamp(0, size - 1)
    low = position.floor()
    upper_weight = position - low
    inside = (normalised.abs() <= 1).to(position.dtype)
    low = low.long()
    high = (low + 1).clamp(max=size - 1)  # weight 0 where low is the last cell
    weights = position.new_zeros((*position.shape, size))
    weights.scatter_add_(2, low[..., None], ((1 - upper_weight) * inside)[..., None])
    weights.scatter_add_(2, high[..., None], (upper_weight * inside)[..., None])
    return weights


def _paste_window(masks, boxes, x0, y0, x1, y1):
    """(k, M, M) masks, (k, 4) boxes -> (k, y1 - y0, x1 - x0) pasted in that window."""
    xs = torch.arange(x0, x1, device=masks.device, dtype=masks.dtype) + 0.5
    ys = torch.arange(y0, y1, device=masks.device, dtype=masks.dtype) + 0.5
    row_weights = _axis_weights(ys, boxes[:, 1:2], boxes[:, 3:4], masks.size(1))  # (k, H, M)
    col_weights = _axis_weights(xs, boxes[:, 0:1], boxes[:, 2:3], masks.size(2))  # (k, W, M)
    return torch.bmm(torch.bmm(row_weights, masks), col_weights.transpose(1, 2))


@HEADS.register()
class FCNMaskHead(nn.Module):
    """``num_convs`` 3x3 convs, a 2x deconv and a 1x1 mask predictor.

    Args:
        num_convs, roi_feat_size, in_channels, conv_kernel_size, conv_out_channels: the FCN.
        num_classes: object classes; one mask per class unless ``class_agnostic``.
        upsample_ratio: stride of the deconv (masks are ``roi_feat_size * upsample_ratio``).
        norm_cfg: norm after each conv (before its ReLU; the conv then has no bias), e.g.
            ``dict(type="GN", num_groups=32)``. ``num_convs=0`` (the C4 models' head) feeds
            the RoI features straight into the deconv.
        loss_mask: ``CrossEntropyLoss(use_mask=True)`` config.
        paste_mode: how test masks go into the image: ``"grid_sample"`` (:func:`paste_masks`)
            or ``"torchvision"`` (:func:`paste_masks_torchvision`, torchvision's behaviour).

    Module names: ``convs`` (Sequential conv[, norm], ReLU per conv: ``convs.0``,
    ``convs.2``, ... without a norm), ``upsample``, ``conv_logits``.

    forward: (P, in_channels, S, S) -> (P, num_classes or 1, S * r, S * r) logits.
    """

    def __init__(
        self,
        num_convs=4,
        roi_feat_size=14,
        in_channels=256,
        conv_kernel_size=3,
        conv_out_channels=256,
        num_classes=80,
        class_agnostic=False,
        upsample_ratio=2,
        loss_mask=None,
        paste_mode="grid_sample",
        norm_cfg=None,
    ):
        super().__init__()
        if isinstance(num_convs, bool) or not isinstance(num_convs, int) or num_convs < 0:
            raise ValueError(f"FCNMaskHead: num_convs must be an integer >= 0, got {num_convs!r}")
        if norm_cfg is not None and num_convs == 0:
            raise ValueError(
                "FCNMaskHead: norm_cfg normalises the convs but num_convs=0; "
                "set num_convs > 0 or drop norm_cfg"
            )
        self.norm_cfg = norm_cfg
        if paste_mode not in PASTE_MODES:
            raise ValueError(
                f"FCNMaskHead: paste_mode must be one of {sorted(PASTE_MODES)}, got {paste_mode!r}"
            )
        self.paste_mode = paste_mode
        self.roi_feat_size = roi_feat_size
        self.num_classes = num_classes
        self.class_agnostic = class_agnostic
        self.upsample_ratio = upsample_ratio
        self.mask_size = (roi_feat_size * upsample_ratio,) * 2
        loss_mask = loss_mask or dict(type="CrossEntropyLoss", use_mask=True, loss_weight=1.0)
        self.loss_mask = build_from_cfg(loss_mask, LOSSES)
        layers = []
        channels = in_channels
        for _ in range(num_convs):
            layers.append(
                nn.Conv2d(
                    channels,
                    conv_out_channels,
                    conv_kernel_size,
                    padding=conv_kernel_size // 2,
                    bias=norm_cfg is None,
                )
            )
            if norm_cfg is not None:
                layers.append(build_norm_layer(norm_cfg, conv_out_channels))
            layers.append(nn.ReLU(inplace=True))
            channels = conv_out_channels
        self.convs = nn.Sequential(*layers)
        self.upsample = nn.ConvTranspose2d(
            channels, conv_out_channels, upsample_ratio, stride=upsample_ratio
        )
        self.relu = nn.ReLU(inplace=True)
        self.conv_logits = nn.Conv2d(conv_out_channels, 1 if class_agnostic else num_classes, 1)
        self.init_weights()

    def init_weights(self):
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.relu(self.upsample(self.convs(x)))
        return self.conv_logits(x)

    def get_targets(self, sampling_results, gt_masks, rcnn_train_cfg=None):
        """(P, M, M) targets of the positives (see :func:`mask_targets`); ``train_cfg.rcnn``
        keys: ``mask_size``, ``mask_target_aligned`` (default True) and
        ``mask_target_binarize`` (default True)."""
        cfg = rcnn_train_cfg or {}
        size = cfg.get("mask_size", self.mask_size)
        size = (size, size) if isinstance(size, int) else tuple(size)
        return mask_targets(
            sampling_results,
            gt_masks,
            size,
            aligned=cfg.get("mask_target_aligned", True),
            binarize=cfg.get("mask_target_binarize", True),
        )

    def loss(self, mask_pred, mask_targets, labels):
        """``dict(loss_mask=...)``: per-pixel sigmoid CE in each positive's class channel."""
        if mask_pred.size(0) == 0:
            return dict(loss_mask=mask_pred.sum() * 0)
        if self.class_agnostic:
            labels = torch.zeros_like(labels)
        return dict(loss_mask=self.loss_mask(mask_pred, mask_targets, mask_label=labels))

    @torch.no_grad()
    def get_seg_masks(self, mask_pred, det_bboxes, det_labels, img_h, img_w, mask_thr=0.5):
        """Full-image binary masks of one image's detections.

        Args:
            mask_pred: (n, num_classes or 1, M, M) logits.
            det_bboxes: (n, 4+) boxes in the output image's coordinates.
            det_labels: (n,) classes.
            img_h, img_w: output size (the original image when rescaling).
            mask_thr: probability threshold.

        Returns:
            (n, img_h, img_w) bool tensor on the model's device.
        """
        probs = self.mask_probs(mask_pred, det_labels)
        return self.paste_probs(probs, det_bboxes, img_h, img_w, mask_thr)

    def mask_probs(self, mask_pred, labels):
        """(n, num_classes or 1, M, M) logits, (n,) classes -> (n, M, M) float32
        probabilities of each detection's class."""
        n = mask_pred.size(0)
        channel = torch.zeros_like(labels) if self.class_agnostic else labels
        return mask_pred[torch.arange(n, device=mask_pred.device), channel].sigmoid().float()

    def paste_probs(self, probs, boxes, img_h, img_w, mask_thr):
        """(n, M, M) probabilities in (n, 4+) boxes -> (n, img_h, img_w) bool masks, pasted
        the way ``paste_mode`` says."""
        if probs.size(0) == 0:
            return torch.zeros((0, img_h, img_w), dtype=torch.bool, device=probs.device)
        paste = PASTE_MODES[self.paste_mode]
        return paste(probs, boxes[:, :4].float(), img_h, img_w, threshold=mask_thr)
