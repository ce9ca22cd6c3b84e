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
            if not isinstance(img, torch.Tensor):  # already formatted (a bundle before)
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


def _gt_instance_keys(results):
    """The results keys that become ``gt_instances`` fields: ``gt_bboxes``, ``gt_labels``,
    ``gt_masks`` and every ``gt_*`` field listed under a registered field kind, in that
    order (crowd boxes, ``gt_bboxes_ignore``, go to ``ignored_instances``)."""
    from mmdet_like.datasets.pipelines.field_kinds import geometric_fields

    keys = [k for k in ("gt_bboxes", "gt_labels", "gt_masks") if k in results]
    for key, _ in geometric_fields(results):
        if key.startswith("gt_") and key != "gt_bboxes_ignore" and key not in keys:
            keys.append(key)
    return keys


@PIPELINES.register()
class PackDetInputs:
    """The last step of a pipeline that gives the model one :class:`DetDataSample` per image.

    ``img`` becomes a (3, H, W) float32 tensor; ``meta_keys`` go to the sample's
    ``metainfo``; ``gt_labels`` and every geometric ``gt_<name>`` field (``gt_bboxes``,
    ``gt_masks``, and the fields of any kind registered in ``FIELD_KINDS``, e.g.
    ``gt_keypoints``) to ``gt_instances.<name>`` (arrays as tensors, mask structures as they
    are); ``gt_bboxes_ignore`` to ``ignored_instances`` (``bboxes``), ``proposals`` to
    ``proposals`` (``bboxes`` and, with 5 columns, ``scores``). Fields the results lack are
    left out.

    Returns:
        ``dict(img=(3, H, W) tensor, data_samples=DetDataSample)``: the detectors' data-sample
        contract (``model(img=..., data_samples=[...])``).
    """

    def __init__(self, meta_keys=DEFAULT_META_KEYS):
        self.meta_keys = tuple(meta_keys)
        self._bundle = DefaultFormatBundle()

    def __call__(self, results):
        from mmdet_like.structures import DetDataSample, InstanceData

        results = self._bundle(results)
        if "img" not in results:
            raise KeyError("PackDetInputs: results have no 'img'; load an image first")
        missing = [k for k in self.meta_keys if k not in results]
        if missing:
            raise KeyError(
                f"PackDetInputs: results have no {missing} (have {sorted(results)}). Fix: add "
                "the transform that sets them or drop them from meta_keys."
            )
        gt = InstanceData()
        for key in _gt_instance_keys(results):
            value = results[key]
            gt_name = key[len("gt_") :]
            setattr(gt, gt_name, to_tensor(value) if isinstance(value, np.ndarray) else value)
        ignored = InstanceData()
        if "gt_bboxes_ignore" in results:
            ignored.bboxes = results["gt_bboxes_ignore"]
        proposals = None
        if "proposals" in results:
            boxes = results["proposals"].reshape(-1, results["proposals"].shape[-1])
            proposals = InstanceData(bboxes=boxes[:, :4])
            if boxes.shape[1] == 5:
                proposals.scores = boxes[:, 4]
        sample = DetDataSample(
            metainfo={k: results[k] for k in self.meta_keys}, gt_instances=gt,
            ignored_instances=ignored, proposals=proposals,
        )  # fmt: skip
        return {"img": results["img"], "data_samples": sample}

    def __repr__(self):
        return f"PackDetInputs(meta_keys={self.meta_keys})"
