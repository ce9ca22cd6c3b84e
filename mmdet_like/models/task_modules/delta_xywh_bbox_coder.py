"""Box regression targets as normalised centre shifts and log size ratios."""

import math

import torch

from mmdet_like.registry import BBOX_CODERS


@BBOX_CODERS.register()
class DeltaXYWHBBoxCoder:
    """Encode boxes as ``(dx, dy, dw, dh)`` relative to reference boxes, and decode back.

    ``dx = (gx - px) / pw``, ``dw = log(gw / pw)``, then normalised by ``(delta - means) / stds``.

    Args:
        target_means, target_stds: per-coordinate normalisation of the deltas.
        clip_border: clip decoded boxes to ``max_shape`` when it is given.
        wh_ratio_clip: ``|dw|, |dh|`` are clamped to ``|log(wh_ratio_clip)|`` when decoding.
        symmetric_clip: clamp ``dw, dh`` from both sides; ``False`` clamps only from above
            (boxes may shrink without limit), as torchvision's ``BoxCoder`` does.
    """

    def __init__(
        self,
        target_means=(0.0, 0.0, 0.0, 0.0),
        target_stds=(1.0, 1.0, 1.0, 1.0),
        clip_border=True,
        wh_ratio_clip=16 / 1000,
        symmetric_clip=True,
    ):
        if len(target_means) != 4 or len(target_stds) != 4:
            raise ValueError("DeltaXYWHBBoxCoder: target_means and target_stds need 4 values")
        self.means = tuple(float(m) for m in target_means)
        self.stds = tuple(float(s) for s in target_stds)
        self.clip_border = clip_border
        self.max_ratio = abs(math.log(wh_ratio_clip))
        self.symmetric_clip = symmetric_clip

    def encode(self, bboxes, gt_bboxes):
        """(..., 4) reference boxes and (..., 4) targets -> (..., 4) normalised deltas."""
        if bboxes.shape != gt_bboxes.shape:
            raise ValueError(
                f"DeltaXYWHBBoxCoder.encode: shapes differ, {tuple(bboxes.shape)} vs "
                f"{tuple(gt_bboxes.shape)}"
            )
        # at least float32 (half-precision boxes are encoded in float32), float64 kept
        dtype = torch.promote_types(
            torch.promote_types(bboxes.dtype, gt_bboxes.dtype), torch.float32
        )
        bboxes, gt_bboxes = bboxes.to(dtype), gt_bboxes.to(dtype)
        pw = bboxes[..., 2] - bboxes[..., 0]
        ph = bboxes[..., 3] - bboxes[..., 1]
        px = (bboxes[..., 0] + bboxes[..., 2]) * 0.5
        py = (bboxes[..., 1] + bboxes[..., 3]) * 0.5
        gw = gt_bboxes[..., 2] - gt_bboxes[..., 0]
        gh = gt_bboxes[..., 3] - gt_bboxes[..., 1]
        gx = (gt_bboxes[..., 0] + gt_bboxes[..., 2]) * 0.5
        gy = (gt_bboxes[..., 1] + gt_bboxes[..., 3]) * 0.5
        deltas = torch.stack(
            [(gx - px) / pw, (gy - py) / ph, torch.log(gw / pw), torch.log(gh / ph)], dim=-1
        )
        means = deltas.new_tensor(self.means)
        stds = deltas.new_tensor(self.stds)
        return (deltas - means) / stds

    def decode(self, bboxes, deltas, max_shape=None):
        """Apply deltas to reference boxes.

        Args:
            bboxes: (..., 4) reference boxes.
            deltas: (..., 4 * K) deltas (K boxes per reference, e.g. one per class).
            max_shape: ``(h, w)`` to clip to (when ``clip_border``).

        Returns:
            (..., 4 * K) boxes.
        """
        if deltas.size(-1) % 4 != 0:
            raise ValueError(f"DeltaXYWHBBoxCoder.decode: last dim {deltas.size(-1)} not 4 * K")
        shape = deltas.shape
        deltas = deltas.reshape(*shape[:-1], -1, 4)
        means = deltas.new_tensor(self.means)
        stds = deltas.new_tensor(self.stds)
        deltas = deltas * stds + means
        dx, dy = deltas[..., 0], deltas[..., 1]
        low = -self.max_ratio if self.symmetric_clip else None
        dw = deltas[..., 2].clamp(low, self.max_ratio)
        dh = deltas[..., 3].clamp(low, self.max_ratio)
        bboxes = bboxes.to(deltas.dtype)[..., None, :]
        pw = bboxes[..., 2] - bboxes[..., 0]
        ph = bboxes[..., 3] - bboxes[..., 1]
        px = (bboxes[..., 0] + bboxes[..., 2]) * 0.5
        py = (bboxes[..., 1] + bboxes[..., 3]) * 0.5
        gx = px + pw * dx
        gy = py + ph * dy
        gw = pw * dw.exp()
        gh = ph * dh.exp()
        x1, y1 = gx - gw * 0.5, gy - gh * 0.5
        x2, y2 = gx + gw * 0.5, gy + gh * 0.5
        if self.clip_border and max_shape is not None:
            height, width = max_shape[0], max_shape[1]
            x1, x2 = x1.clamp(0, width), x2.clamp(0, width)
            y1, y2 = y1.clamp(0, height), y2.clamp(0, height)
        return torch.stack([x1, y1, x2, y2], dim=-1).reshape(shape)
