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

    def forward(self, img, img_metas, return_loss=True, **kwargs):
        if return_loss:
            return self.forward_train(pad_images(img, self.size_divisor), img_metas, **kwargs)
        return self.forward_test(img, img_metas, **kwargs)

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
