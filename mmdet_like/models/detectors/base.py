"""Detector base: the ``forward(img, img_metas, return_loss=True, **kwargs)`` contract.

Training: ``model(img=..., img_metas=..., gt_bboxes=..., gt_labels=..., ...)`` returns a dict
of losses (entries named ``*loss*`` are summed by the runner). Inference:
``model(img=..., img_metas=..., return_loss=False, rescale=True)`` returns a list with one
result per image.

``img`` is a (N, 3, H, W) tensor or a list of N (3, H_i, W_i) tensors; a list is padded
(bottom/right, zeros) into one batch whose sides are multiples of ``size_divisor``. For
inference ``MultiScaleFlipAug`` gives, per image, a list of augmentations (and of metas):
one unflipped augmentation runs as a plain batch; several (or a flipped one) go to the
detector's ``aug_test``, which merges them into results in the original image.
"""

import torch
import torch.nn.functional as F
from torch import nn

from mmdet_like.registry import BACKBONES, NECKS, build_from_cfg
from mmdet_like.structures.instances import detection_to_instances


def pad_images(img, size_divisor=32):
    """(N, 3, H, W) tensor or list of (3, H_i, W_i) -> (N, 3, H', W') padded bottom/right,
    ``H'`` and ``W'`` the largest sizes rounded up to a multiple of ``size_divisor``."""
    if isinstance(img, torch.Tensor) and img.dim() == 3:
        img = img[None]
    images = list(img) if not isinstance(img, torch.Tensor) else None
    if images is None:
        height, width = img.shape[-2:]
    else:
        height = max(i.shape[-2] for i in images)
        width = max(i.shape[-1] for i in images)
    div = max(int(size_divisor or 1), 1)
    height, width = -(-height // div) * div, -(-width // div) * div
    if images is None:
        if img.shape[-2:] == (height, width):
            return img
        return F.pad(img, (0, width - img.shape[-1], 0, height - img.shape[-2]))
    batch = images[0].new_zeros((len(images), images[0].shape[0], height, width))
    for i, image in enumerate(images):
        batch[i, :, : image.shape[-2], : image.shape[-1]] = image
    return batch


def samples_to_train_kwargs(data_samples):
    """Data samples -> the per-image lists of ``forward_train``: ``img_metas``,
    ``gt_bboxes``, ``gt_labels`` and, where every sample has them, ``gt_masks``,
    ``gt_bboxes_ignore`` (an empty (0, 4) for a sample without) and ``proposals``."""
    kwargs = dict(
        img_metas=[s.metainfo for s in data_samples],
        gt_bboxes=[s.gt_instances.bboxes for s in data_samples],
        gt_labels=[s.gt_instances.labels for s in data_samples],
    )
    if all("masks" in s.gt_instances for s in data_samples):
        kwargs["gt_masks"] = [s.gt_instances.masks for s in data_samples]
    if any("bboxes" in s.ignored_instances for s in data_samples):
        kwargs["gt_bboxes_ignore"] = [
            s.ignored_instances.get("bboxes", s.gt_instances.bboxes.new_zeros((0, 4)))
            for s in data_samples
        ]
    if all(s.proposals is not None for s in data_samples):
        kwargs["proposals"] = [
            torch.cat([p.bboxes, p.scores[:, None]], 1) if "scores" in p else p.bboxes
            for p in (s.proposals for s in data_samples)
        ]
    return kwargs


def _single_aug(value):
    """Unwrap per-image lists of one augmentation (``MultiScaleFlipAug`` output)."""
    if not isinstance(value, (list, tuple)) or not value:
        return value
    if not isinstance(value[0], (list, tuple)):
        return value
    return [v[0] for v in value]


def _is_augmented(img_metas):
    """Per-image lists of metas with several augmentations, or a flipped one."""
    if not img_metas or not isinstance(img_metas[0], (list, tuple)):
        return False
    return any(len(metas) != 1 or metas[0].get("flip") for metas in img_metas)


class BaseDetector(nn.Module):
    """Shared forward dispatch and image batching; subclasses implement ``extract_feat``,
    ``forward_train`` and ``simple_test``."""

    size_divisor = 32

    def _init_backbone_neck(self, backbone, neck=None, pretrained=None):
        """The backbone (``pretrained`` kept for :meth:`init_backbone_neck`, never loaded at
        build time) and the optional neck, from their configs."""
        self.backbone = build_from_cfg(backbone, BACKBONES)
        if pretrained is not None:
            self.backbone.pretrained = pretrained
        self.neck = None if neck is None else build_from_cfg(neck, NECKS)

    def init_backbone_neck(self):
        """Backbone weights (loading ``pretrained``), then the neck's initialisation."""
        self.backbone.init_weights()
        if self.neck is not None:
            self.neck.init_weights()

    def extract_feat(self, img):
        """(N, 3, H, W) -> tuple of pyramid features (the neck's, else the backbone's)."""
        x = self.backbone(img)
        return self.neck(x) if self.neck is not None else x

    def forward(self, img, img_metas=None, return_loss=True, data_samples=None, **kwargs):
        """``data_samples`` (one :class:`DetDataSample` per image, from ``PackDetInputs``)
        replace ``img_metas`` and the ``gt_*`` / ``proposals`` lists: training returns the
        losses, inference the samples with ``pred_instances`` set (:meth:`predict`)."""
        if data_samples is not None:
            if data_samples and isinstance(data_samples[0], (list, tuple)):  # MultiScaleFlipAug
                if any(len(augs) != 1 for augs in data_samples):
                    raise ValueError(
                        f"{type(self).__name__}: test-time augmentation with several "
                        "augmentations per image takes img_metas (Collect), not data samples "
                        "(PackDetInputs) yet"
                    )
                data_samples = [augs[0] for augs in data_samples]
            given = sorted(k for k in kwargs if k.startswith("gt_") or k == "proposals")
            if img_metas is not None or given:
                raise ValueError(
                    f"{type(self).__name__}: give data_samples or img_metas/gt_* lists, not "
                    f"both (got data_samples and {['img_metas'] if img_metas else []}{given})"
                )
            if return_loss:
                batch = pad_images(img, self.size_divisor)
                return self.forward_train(batch, **samples_to_train_kwargs(data_samples))
            return self.predict(img, data_samples, rescale=kwargs.get("rescale", False))
        if img_metas is None:
            raise ValueError(f"{type(self).__name__}: forward needs img_metas or data_samples")
        if return_loss:
            return self.forward_train(pad_images(img, self.size_divisor), img_metas, **kwargs)
        return self.forward_test(img, img_metas, **kwargs)

    @torch.no_grad()
    def predict(self, img, data_samples, rescale=False):
        """Inference on a batch of one augmentation per image: ``data_samples`` with
        ``pred_instances`` (``bboxes`` (n, 4), ``scores``, ``labels`` [, ``masks`` (n, H, W)
        bool]) set, in the original image when ``rescale``."""
        if not hasattr(self, "simple_test_instances"):
            raise ValueError(f"{type(self).__name__} has no typed results (simple_test_instances)")
        batch = pad_images(_single_aug(img), self.size_divisor)
        metas = [s.metainfo for s in data_samples]
        if batch.size(0) != len(metas):
            raise ValueError(f"{batch.size(0)} images but {len(metas)} data_samples")
        extra = {}
        if any(s.proposals is not None for s in data_samples):
            extra["proposals"] = [s.proposals.bboxes for s in data_samples]
        results = self.simple_test_instances(batch, metas, rescale=rescale, **extra)
        for sample, result in zip(data_samples, results):
            sample.pred_instances = detection_to_instances(result)
        return list(data_samples)

    def forward_test(self, img, img_metas, rescale=False, **kwargs):
        """Inference on one batch: list of N per-image results."""
        if _is_augmented(img_metas):
            if not rescale:
                raise ValueError(
                    f"{type(self).__name__}: test-time augmentation (several scales or flips) "
                    "merges results in the original image; call with rescale=True"
                )
            return self.aug_test(img, img_metas, **kwargs)
        img = _single_aug(img)
        img_metas = _single_aug(img_metas)
        if "proposals" in kwargs and kwargs["proposals"] is not None:
            kwargs["proposals"] = _single_aug(kwargs["proposals"])
        batch = pad_images(img, self.size_divisor)
        if batch.size(0) != len(img_metas):
            raise ValueError(f"{batch.size(0)} images but {len(img_metas)} img_metas")
        return self.simple_test(batch, img_metas, rescale=rescale, **kwargs)

    def aug_test(self, imgs, img_metas, **kwargs):
        """Test-time augmentation: ``imgs`` and ``img_metas`` hold, per image, a list of
        augmented (3, H_a, W_a) inputs and their metas; results are in the original image.
        Detectors that support it override this."""
        raise ValueError(
            f"{type(self).__name__}: test-time augmentation (several scales or flips per image) "
            "is not supported; use MultiScaleFlipAug with one img_scale and flip=False"
        )
