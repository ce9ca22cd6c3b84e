"""Formatting: numpy results -> tensors, and ``Collect`` of the keys a model needs."""

import numpy as np
import torch

from mmdet_like.registry import PIPELINES

DEFAULT_META_KEYS = (
    "filename", "ori_filename", "ori_shape", "img_shape", "pad_shape", "scale_factor",
    "flip", "flip_direction", "img_norm_cfg",
)  # fmt: skip


def to_tensor(data):
    """numpy array / tensor / int / float / sequence -> tensor."""
    if isinstance(data, torch.Tensor):
        return data
    if isinstance(data, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(data))
    if isinstance(data, int):
        return torch.LongTensor([data])
    if isinstance(data, float):
        return torch.FloatTensor([data])
    return torch.as_tensor(data)


def image_to_tensor(img):
    """(H, W[, C]) numpy image -> (C, H, W) float32 tensor."""
    if img.ndim == 2:
        img = img[..., None]
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float()


@PIPELINES.register()
class ImageToTensor:
    """``keys`` images -> (C, H, W) float32 tensors (for test pipelines)."""

    def __init__(self, keys=("img",)):
        self.keys = tuple(keys)

    def __call__(self, results):
        for key in self.keys:
            results[key] = image_to_tensor(results[key])
        return results

    def __repr__(self):
        return f"ImageToTensor(keys={self.keys})"


@PIPELINES.register()
class DefaultFormatBundle:
    """``img`` -> (3, H, W) float32 tensor; ``proposals``, ``gt_bboxes``,
    ``gt_bboxes_ignore`` -> float32 tensors; ``gt_labels`` -> int64 tensor. ``gt_masks``
    stays a mask structure (``BitmapMasks``/``PolygonMasks``; call ``.to_tensor()`` for an
    (n, H, W) uint8 tensor). Missing ``pad_shape``/``scale_factor``/``flip``/``img_norm_cfg`` get
    identity defaults so ``Collect`` always finds them."""

    def __call__(self, results):
        if "img" in results:
            img = results["img"]
            results.setdefault("pad_shape", img.shape)
            results.setdefault("scale_factor", np.ones(4, dtype=np.float32))
            results.setdefault("flip", False)
            results.setdefault("flip_direction", None)
            channels = 1 if img.ndim == 2 else img.shape[2]
            results.setdefault(
                "img_norm_cfg",
                dict(
                    mean=np.zeros(channels, np.float32),
                    std=np.ones(channels, np.float32),
                    to_rgb=False,
                ),
            )
            results["img"] = image_to_tensor(img)
        for key in ("proposals", "gt_bboxes", "gt_bboxes_ignore"):
            if key in results:
                results[key] = to_tensor(np.asarray(results[key], dtype=np.float32))
        if "gt_labels" in results:
            results["gt_labels"] = to_tensor(np.asarray(results["gt_labels"], dtype=np.int64))
        return results

    def __repr__(self):
        return "DefaultFormatBundle()"


@PIPELINES.register()
class Collect:
    """Keep ``keys`` and gather ``meta_keys`` into ``img_metas``.

    Returns:
        ``dict(img=..., img_metas=dict(filename=..., ...), gt_bboxes=..., ...)``.
    """

    def __init__(self, keys, meta_keys=DEFAULT_META_KEYS):
        self.keys = tuple(keys)
        self.meta_keys = tuple(meta_keys)

    def __call__(self, results):
        missing = [k for k in (*self.keys, *self.meta_keys) if k not in results]
        if missing:
            raise KeyError(
                f"Collect: results have no {missing} (have {sorted(results)}). Fix: add the "
                "transform that sets them (LoadAnnotations for gt_*, Resize for scale_factor, "
                "Normalize for img_norm_cfg, RandomFlip for flip) or drop them from keys."
            )
        data = {"img_metas": {k: results[k] for k in self.meta_keys}}
        for key in self.keys:
            data[key] = results[key]
        return data

    def __repr__(self):
        return f"Collect(keys={self.keys}, meta_keys={self.meta_keys})"
