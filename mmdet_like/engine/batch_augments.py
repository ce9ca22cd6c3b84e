"""Batch augmentations: transforms of a whole collated training batch, run in the training
process between the data loader and the model (mmdetection 3 runs them in its data
preprocessor, ``model.data_preprocessor.batch_augments``): ``BatchSyncRandomResize``.

Configured as ``data.batch_augments = [dict(type="BatchSyncRandomResize", ...)]``: the
training loader is wrapped in a :class:`BatchAugmentedLoader`, which moves each batch's
images to the training device and runs the augmentations on it there, before the runner
calls the model. Validation and test loaders are never wrapped.

A batch is the collate's dict: ``img`` (a (N, 3, H, W) tensor, or a list of N (3, H_i,
W_i) tensors), and either ``data_samples`` (N :class:`DetDataSample`, ``PackDetInputs``)
or ``img_metas`` with the ``gt_*`` lists (``Collect``).
"""

import random

import torch
import torch.nn.functional as F

from mmdet_like.engine.dist import broadcast_object, get_dist_info
from mmdet_like.registry import BATCH_AUGMENTS, build_from_cfg


def _stack(images, size_divisor):
    """A list of (3, H_i, W_i) images (or a (N, 3, H, W) tensor) -> (N, 3, H, W), padded at
    the bottom and right with zeros to the largest sides rounded up to ``size_divisor``
    (what the detector's own batching does)."""
    if isinstance(images, torch.Tensor) and images.dim() == 4:
        images = list(images)
    height = max(i.shape[-2] for i in images)
    width = max(i.shape[-1] for i in images)
    height = -(-height // size_divisor) * size_divisor
    width = -(-width // size_divisor) * size_divisor
    batch = images[0].new_zeros((len(images), images[0].shape[0], height, width))
    for i, image in enumerate(images):
        batch[i, :, : image.shape[-2], : image.shape[-1]] = image
    return batch


def _scaled_shape(shape, sy, sx):
    return (int(shape[0] * sy), int(shape[1] * sx), *tuple(shape)[2:])


def _scale_boxes(boxes, sx, sy):
    if boxes is None or len(boxes) == 0:
        return boxes
    factor = boxes.new_tensor([sx, sy, sx, sy])
    return boxes * factor


def _scale_masks(masks, sx, sy):
    if masks is None:
        return masks
    height, width = masks.shape
    return masks.resize((max(1, round(height * sy)), max(1, round(width * sx))))


def _scale_keypoints(keypoints, sx, sy):
    """(n, K, 3) keypoints with the labelled points' x, y scaled."""
    if keypoints is None or len(keypoints) == 0:
        return keypoints
    out = keypoints.clone()
    labelled = out[..., 2] > 0
    out[..., 0] = torch.where(labelled, out[..., 0] * sx, 0.0)
    out[..., 1] = torch.where(labelled, out[..., 1] * sy, 0.0)
    return out


@BATCH_AUGMENTS.register()
class BatchSyncRandomResize:
    """Multi-scale training by batch (YOLOX): every ``interval`` batches a new size is drawn
    and the following batches are resized to it, the same on every rank.

    A batch is padded into one (N, 3, H, W) tensor (sides rounded up to ``size_divisor``),
    then bilinearly resized (``align_corners=False``) to the current size ``(h, w)``; the
    first size is the first batch's own. Each sample's ``img_shape`` and ``pad_shape``
    become ``int(side * scale)``, ``batch_input_shape`` the new size, and its boxes, ignored
    boxes, proposals, masks (resized) and keypoints are scaled by ``w / W`` and ``h / H``.
    After every ``interval``-th batch, rank 0 draws ``k`` uniformly from the integers
    ``round(lo / size_divisor) .. round(hi / size_divisor)`` and the next size is
    ``(size_divisor * k, size_divisor * int(k * W / H))`` (the last batch's aspect ratio),
    broadcast to every rank.

    Args:
        random_size_range: ``(lo, hi)`` pixels of the drawn height.
        interval: batches between draws.
        size_divisor: multiple of the drawn sides and of the padding.
        seed: seed of rank 0's draws (its own generator: the global random streams are left
            alone); :func:`~mmdet_like.apis.train_detector` passes the run's seed.

    The count of batches starts at the loader's creation (mmdetection counts the run's
    iterations: after a resume the draws fall on other batches, sizes are random either
    way).
    """

    def __init__(self, random_size_range, interval=10, size_divisor=32, seed=0):
        ok = (
            isinstance(random_size_range, (tuple, list))
            and len(random_size_range) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in random_size_range)
            and 0 < random_size_range[0] <= random_size_range[1]
        )
        if not ok:
            raise ValueError(
                "BatchSyncRandomResize: random_size_range must be two integers (lo, hi) with "
                f"0 < lo <= hi (pixels of the drawn height), got {random_size_range!r}"
            )
        for name, value in (("interval", interval), ("size_divisor", size_divisor)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(
                    f"BatchSyncRandomResize: {name} must be an integer >= 1, got {value!r}"
                )
        low, high = (round(v / size_divisor) for v in random_size_range)
        if low < 1:
            raise ValueError(
                f"BatchSyncRandomResize: random_size_range={tuple(random_size_range)} is below "
                f"one size_divisor ({size_divisor}). Fix: a range of at least {size_divisor} px"
            )
        self.random_size_range = tuple(random_size_range)
        self.interval = interval
        self.size_divisor = size_divisor
        self._steps = (low, high)
        self._rng = random.Random(seed)
        self._input_size = None
        self._batches = 0

    @property
    def input_size(self):
        """The size ``(h, w)`` the next batch is resized to (``None`` before the first)."""
        return self._input_size

    def _draw(self, aspect_ratio):
        size = None
        if get_dist_info()[0] == 0:
            k = self._rng.randint(*self._steps)
            size = (self.size_divisor * k, self.size_divisor * max(1, int(aspect_ratio * k)))
        return tuple(broadcast_object(size))

    def __call__(self, batch):
        img = _stack(batch["img"], self.size_divisor)
        height, width = img.shape[-2:]
        if self._input_size is None:
            self._input_size = (height, width)
        sy, sx = self._input_size[0] / height, self._input_size[1] / width
        if sx != 1 or sy != 1:
            img = F.interpolate(img, size=self._input_size, mode="bilinear", align_corners=False)
            if batch.get("data_samples") is not None:
                for sample in batch["data_samples"]:
                    self._scale_sample(sample, sx, sy)
            elif batch.get("img_metas") is not None:
                self._scale_lists(batch, sx, sy)
        batch["img"] = img
        self._batches += 1
        if self._batches % self.interval == 0:
            self._input_size = self._draw(width / height)
        return batch

    def _scale_meta(self, meta, sx, sy):
        meta = dict(meta)
        meta["img_shape"] = _scaled_shape(meta["img_shape"], sy, sx)
        if "pad_shape" in meta:
            meta["pad_shape"] = _scaled_shape(meta["pad_shape"], sy, sx)
        meta["batch_input_shape"] = tuple(self._input_size)
        return meta

    def _scale_sample(self, sample, sx, sy):
        sample.metainfo = self._scale_meta(sample.metainfo, sx, sy)
        gt = sample.gt_instances
        if "bboxes" in gt:
            gt.bboxes = _scale_boxes(gt.bboxes, sx, sy)
        if "masks" in gt:
            gt.masks = _scale_masks(gt.masks, sx, sy)
        if "keypoints" in gt:
            gt.keypoints = _scale_keypoints(gt.keypoints, sx, sy)
        if sample.ignored_instances is not None and "bboxes" in sample.ignored_instances:
            sample.ignored_instances.bboxes = _scale_boxes(sample.ignored_instances.bboxes, sx, sy)
        if sample.proposals is not None and "bboxes" in sample.proposals:
            sample.proposals.bboxes = _scale_boxes(sample.proposals.bboxes, sx, sy)

    def _scale_lists(self, batch, sx, sy):
        batch["img_metas"] = [self._scale_meta(m, sx, sy) for m in batch["img_metas"]]
        for key in ("gt_bboxes", "gt_bboxes_ignore", "proposals"):
            if batch.get(key) is not None:
                batch[key] = [_scale_boxes(b, sx, sy) for b in batch[key]]
        if batch.get("gt_masks") is not None:
            batch["gt_masks"] = [_scale_masks(m, sx, sy) for m in batch["gt_masks"]]

    def __repr__(self):
        return (
            f"BatchSyncRandomResize(random_size_range={self.random_size_range}, interval="
            f"{self.interval}, size_divisor={self.size_divisor})"
        )


def build_batch_augments(cfgs, seed=None):
    """``data.batch_augments`` (a list of config dicts) -> the augmentations, each given the
    run's ``seed`` when it takes one."""
    if not isinstance(cfgs, (list, tuple)):
        raise TypeError(
            "data.batch_augments must be a list of dicts, e.g. "
            f"[dict(type='BatchSyncRandomResize', random_size_range=(480, 800))], got {cfgs!r}"
        )
    augments = []
    for cfg in cfgs:
        cfg = dict(cfg)
        if seed is not None and cfg.get("type") == "BatchSyncRandomResize":
            cfg.setdefault("seed", int(seed))
        augments.append(build_from_cfg(cfg, BATCH_AUGMENTS))
    return augments


def _to_device(images, device):
    if isinstance(images, torch.Tensor):
        return images.to(device, non_blocking=True)
    return [i.to(device, non_blocking=True) for i in images]


class BatchAugmentedLoader:
    """A training data loader whose batches go through ``augments`` (after their images are
    moved to ``device``, when given). Everything else (``len``, ``sampler``, ``dataset``,
    ``batch_size``, ...) is the loader's, read and written; the iterator passes on its own
    attributes too (the runner stops the loader's workers through it)."""

    _OWN = ("loader", "augments", "device")

    def __init__(self, loader, augments, device=None):
        object.__setattr__(self, "loader", loader)
        object.__setattr__(self, "augments", list(augments))
        object.__setattr__(self, "device", device)

    def __setattr__(self, name, value):
        # the loader's state (PipelineSwitchHook resets ``_iterator``) is the loader's
        if name in self._OWN:
            object.__setattr__(self, name, value)
        else:
            setattr(self.loader, name, value)

    def augment(self, batch):
        if self.device is not None:
            batch["img"] = _to_device(batch["img"], self.device)
        for augment in self.augments:
            batch = augment(batch)
        return batch

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        return _AugmentedIterator(iter(self.loader), self)

    def __getattr__(self, name):
        if name in self._OWN:
            raise AttributeError(name)
        return getattr(self.loader, name)


class _AugmentedIterator:
    def __init__(self, iterator, owner):
        self._iterator = iterator
        self._owner = owner

    def __iter__(self):
        return self

    def __next__(self):
        return self._owner.augment(next(self._iterator))

    def __getattr__(self, name):
        if name in ("_iterator", "_owner"):
            raise AttributeError(name)
        return getattr(self._iterator, name)
