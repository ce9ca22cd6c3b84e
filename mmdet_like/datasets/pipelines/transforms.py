"""Geometric and photometric transforms on the results dict.

Each transform moves every image in ``img_fields`` and every geometric field together, so
boxes, masks and image stay consistent: the fields listed under each field kind's key
(``bbox_fields``: (n, 4) float32 ``[x1, y1, x2, y2]``; ``mask_fields``: mask structures),
each moved by its kind (:mod:`mmdet_like.datasets.pipelines.field_kinds`). Instances that a
crop removes are removed from ``gt_bboxes``, ``gt_labels`` and ``gt_masks`` alike.

Random draws use Python's ``random`` module, which the data loader seeds per worker.
"""

import math
import random

import mmcv
import numpy as np
import torch
import torch.nn.functional as F

from mmdet_like.datasets.pipelines.field_kinds import geometric_fields
from mmdet_like.registry import PIPELINES
from mmdet_like.structures.bbox import bbox_overlaps, flip_bboxes  # noqa: F401 (re-exported)

# keys that follow ``gt_bboxes`` / ``gt_bboxes_ignore`` when instances are dropped (and, for
# ``gt_bboxes``, every other per-instance ``gt_*`` field of a field kind: ``gt_keypoints``)
_COMPANIONS = {"gt_bboxes": ("gt_labels", "gt_masks"), "gt_bboxes_ignore": ("gt_labels_ignore",)}


def _companions(results, key):
    others = list(_COMPANIONS.get(key, ()))
    if key == "gt_bboxes":
        others += [
            k for k, _ in geometric_fields(results)
            if k.startswith("gt_") and k not in ("gt_bboxes", "gt_bboxes_ignore", *others)
        ]  # fmt: skip
    return others


def _keep(results, key, valid):
    results[key] = results[key][valid]
    for other in _companions(results, key):
        if other in results:
            results[other] = results[other][np.flatnonzero(valid)]


def _coin():
    return random.random() < 0.5


def scale_list(img_scale, owner):
    """``img_scale`` of ``owner`` (a transform's name) as a list of ``(long, short)`` pairs:
    one pair, or a list of pairs. Anything else is a ``TypeError`` that shows the value and
    the form it must have."""
    pairs = img_scale if isinstance(img_scale, list) else [img_scale]

    def is_pair(value):
        return (
            isinstance(value, (tuple, list))
            and len(value) == 2
            and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in value
            )
        )

    if not pairs or not all(is_pair(p) for p in pairs):
        raise TypeError(
            f"{owner}: img_scale must be a (long, short) pair of positive numbers or a list of "
            f"such pairs, e.g. img_scale=(1333, 800), got {img_scale!r} (a "
            f"{type(img_scale).__name__})"
        )
    return [tuple(p) for p in pairs]


RESIZE_BACKENDS = ("cv2", "torch", "transformers")


def transformers_resize_shape(height, width, short, long):
    """``(new_h, new_w)`` of a ``height`` x ``width`` image under transformers' rule for a
    ``shortest_edge`` / ``longest_edge`` size: the short side becomes ``short``, unless the
    long side would then exceed ``long`` (the short side then becomes ``round(long *
    short_side / long_side)``, from the unrounded value of which the long side is
    computed); the long side is truncated; an image whose short side is already the target
    keeps its size."""
    short_side, long_side = float(min(height, width)), float(max(height, width))
    raw = None
    if long_side / short_side * short > long:
        raw = long * short_side / long_side
        short = int(round(raw))
    if (height <= width and height == short) or (width <= height and width == short):
        return height, width
    base = raw if raw is not None else short
    if width < height:
        return int(base * height / width), short
    return short, int(base * width / height)


@PIPELINES.register()
class Resize:
    """Resize image, boxes and masks.

    Args:
        img_scale: one scale or a list. With ``keep_ratio`` a scale is a ``(long, short)``
            bound (the image is as large as fits both); else it is ``(w, h)``.
        multiscale_mode: ``"range"``: long and short edges drawn uniformly between the two
            given scales; ``"value"``: one of the scales drawn at random.
        ratio_range: ``(lo, hi)``: the single ``img_scale`` times a ratio drawn from it.
        keep_ratio: keep the aspect ratio.
        interpolation: mmcv interpolation name (``backend="cv2"``).
        backend: ``"cv2"`` (mmcv, sizes rounded to nearest); ``"torch"``: torchvision's
            detection transform, the image as float32 through ``F.interpolate`` (bilinear,
            ``align_corners=False``, no antialiasing), sizes ``floor(side * scale)`` with
            ``scale = min(long / long_side, short / short_side)`` (with ``keep_ratio``);
            ``"transformers"``: Hugging Face transformers' DETR-family image processors
            (their torchvision backend), the image as it is (uint8 stays uint8, rounded)
            through torchvision's antialiased bilinear ``resize``, sizes by their rule (with
            ``keep_ratio``: the short side becomes ``short``, unless the long side would
            then exceed ``long``, in which case it becomes ``round(long * short_side /
            long_side)``; the other side is truncated).
        override: draw this step's own scale even when an earlier step set
            ``results["scale"]`` (mmdetection's ``override=True``: the second resize of
            DETR's crop policy, after a first resize and a crop).

    Otherwise a ``results["scale"]`` set earlier (by :class:`MultiScaleFlipAug`) wins. Adds
    ``img_shape``, ``pad_shape``, ``scale_factor`` (float32 ``[w, h, w, h]``, of this step),
    ``keep_ratio``.
    """

    def __init__(
        self,
        img_scale=None,
        multiscale_mode="range",
        ratio_range=None,
        keep_ratio=True,
        interpolation="bilinear",
        backend="cv2",
        override=False,
    ):
        if backend not in RESIZE_BACKENDS:
            raise ValueError(f"Resize: backend must be one of {RESIZE_BACKENDS}, got {backend!r}")
        self.backend = backend
        self.override = override
        self.img_scale = None if img_scale is None else scale_list(img_scale, "Resize")
        if multiscale_mode not in ("range", "value"):
            raise ValueError(
                f"Resize: multiscale_mode must be 'range' or 'value', got {multiscale_mode!r}"
            )
        if ratio_range is not None and self.img_scale is not None and len(self.img_scale) != 1:
            raise ValueError("Resize: ratio_range needs exactly one img_scale")
        self.multiscale_mode = multiscale_mode
        self.ratio_range = ratio_range
        self.keep_ratio = keep_ratio
        self.interpolation = interpolation

    def _random_scale(self):
        scales = self.img_scale
        if self.ratio_range is not None:
            ratio = random.uniform(*self.ratio_range)
            return int(scales[0][0] * ratio), int(scales[0][1] * ratio)
        if len(scales) == 1:
            return scales[0]
        if self.multiscale_mode == "value":
            return scales[random.randrange(len(scales))]
        longs = [max(s) for s in scales]
        shorts = [min(s) for s in scales]
        long = random.randint(min(longs), max(longs))
        short = random.randint(min(shorts), max(shorts))
        return long, short

    def __call__(self, results):
        if "scale" not in results or self.override:
            if self.img_scale is None:
                raise ValueError(
                    "Resize: no img_scale given and no results['scale'] set"
                    if not self.override
                    else "Resize(override=True) needs its own img_scale"
                )
            results["scale"] = self._random_scale()
        scale = results["scale"]
        img = results["img"]
        h, w = img.shape[:2]
        for key in results.get("img_fields", ["img"]):
            if self.backend == "torch":
                out = self._torch_resize(results[key], scale)
            elif self.backend == "transformers":
                out = self._transformers_resize(results[key], scale)
            elif self.keep_ratio:
                out = mmcv.imrescale(results[key], scale, interpolation=self.interpolation)
            else:
                out = mmcv.imresize(results[key], scale, interpolation=self.interpolation)
            results[key] = out
        new_h, new_w = results["img"].shape[:2]
        scale_factor = np.array([new_w / w, new_h / h] * 2, dtype=np.float32)
        results["img_shape"] = results["img"].shape
        results["pad_shape"] = results["img"].shape
        results["scale_factor"] = scale_factor
        results["keep_ratio"] = self.keep_ratio
        for key, kind in geometric_fields(results):
            results[key] = kind.resize(results[key], scale_factor, (new_h, new_w), results)
        return results

    def _torch_resize(self, img, scale):
        """(H, W[, C]) image -> float32 image resized like torchvision's detection transform."""
        h, w = img.shape[:2]
        if self.keep_ratio:
            factor = min(max(scale) / max(h, w), min(scale) / min(h, w))
            size = (math.floor(h * factor), math.floor(w * factor))
        else:
            size = (int(scale[1]), int(scale[0]))
        tensor = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))
        chw = tensor[..., None] if tensor.dim() == 2 else tensor
        out = F.interpolate(
            chw.permute(2, 0, 1)[None], size=size, mode="bilinear", align_corners=False
        )[0].permute(1, 2, 0)
        return out.reshape(*size, *img.shape[2:]).numpy()

    def _transformers_resize(self, img, scale):
        """(H, W[, C]) image -> resized as transformers' DETR image processors do, in the
        image's own dtype."""
        from torchvision.transforms.v2 import functional as tvF

        h, w = img.shape[:2]
        size = (int(scale[1]), int(scale[0]))
        if self.keep_ratio:
            size = transformers_resize_shape(h, w, min(scale), max(scale))
        tensor = torch.from_numpy(np.ascontiguousarray(img))
        chw = (tensor[..., None] if tensor.dim() == 2 else tensor).permute(2, 0, 1)
        out = tvF.resize(
            chw.contiguous()[None], list(size), interpolation=tvF.InterpolationMode.BILINEAR,
            antialias=True,
        )[0].permute(1, 2, 0)  # fmt: skip
        return out.reshape(*size, *img.shape[2:]).numpy()

    def __repr__(self):
        return (
            f"Resize(img_scale={self.img_scale}, multiscale_mode={self.multiscale_mode!r}, "
            f"ratio_range={self.ratio_range}, keep_ratio={self.keep_ratio}, "
            f"backend={self.backend!r}, override={self.override})"
        )


@PIPELINES.register()
class RandomFlip:
    """Flip with probability ``flip_ratio`` in ``direction`` (``"horizontal"``,
    ``"vertical"``, ``"diagonal"``, or a list drawn from uniformly).

    A preset ``results["flip"]`` (and ``flip_direction``) wins. Adds ``flip`` and
    ``flip_direction``. Boxes flip within the image array as it is (put ``Pad`` after
    ``RandomFlip``, as usual, so the padding stays at the bottom/right).
    """

    DIRECTIONS = ("horizontal", "vertical", "diagonal")

    def __init__(self, flip_ratio=None, direction="horizontal"):
        directions = [direction] if isinstance(direction, str) else list(direction)
        bad = [d for d in directions if d not in self.DIRECTIONS]
        if bad:
            raise ValueError(f"RandomFlip: unknown direction(s) {bad}; use {self.DIRECTIONS}")
        if flip_ratio is not None and (
            not isinstance(flip_ratio, (int, float)) or isinstance(flip_ratio, bool)
        ):
            raise TypeError(
                f"RandomFlip: flip_ratio must be a number in [0, 1], got {flip_ratio!r} "
                f"(a {type(flip_ratio).__name__})"
            )
        if flip_ratio is not None and not 0 <= flip_ratio <= 1:
            raise ValueError(f"RandomFlip: flip_ratio must be in [0, 1], got {flip_ratio}")
        self.flip_ratio = flip_ratio
        self.directions = directions

    def __call__(self, results):
        if "flip" not in results:
            ratio = self.flip_ratio or 0.0
            results["flip"] = bool(random.random() < ratio)
        if "flip_direction" not in results or results["flip_direction"] is None:
            results["flip_direction"] = (
                self.directions[random.randrange(len(self.directions))] if results["flip"] else None
            )
        if results["flip"]:
            direction = results["flip_direction"]
            for key in results.get("img_fields", ["img"]):
                results[key] = mmcv.imflip(results[key], direction=direction)
            shape = results["img"].shape
            for key, kind in geometric_fields(results):
                results[key] = kind.flip(results[key], shape, direction, results)
        return results

    def __repr__(self):
        return f"RandomFlip(flip_ratio={self.flip_ratio}, direction={self.directions})"


PAD_VAL_KEYS = ("img", "masks", "seg")


def _pad_value(pad_val):
    """``pad_val`` of :class:`Pad` (a number, a per-channel sequence, or mmdetection's
    ``dict(img=..., masks=..., seg=...)``) -> the image's fill value."""
    if not isinstance(pad_val, dict):
        return pad_val
    unknown = sorted(set(pad_val) - set(PAD_VAL_KEYS))
    if unknown:
        raise ValueError(
            f"Pad: pad_val has unknown keys {unknown}; use dict(img=..., masks=0, seg=...) "
            f"(keys {PAD_VAL_KEYS}) or one number"
        )
    if pad_val.get("masks", 0) != 0:
        raise ValueError(
            f"Pad: pad_val['masks'] = {pad_val['masks']!r}: instance masks are padded with "
            "background (0). Fix: drop the masks key"
        )
    return pad_val.get("img", 0)


@PIPELINES.register()
class Pad:
    """Pad the image (bottom and right) to ``size`` (h, w), to a multiple of
    ``size_divisor``, or to a square of its longer side (``pad_to_square``, YOLOX); masks are
    padded alike (with 0). Give exactly one of the three.

    ``pad_val``: the image's fill, one number, a per-channel tuple, or mmdetection's
    ``dict(img=..., seg=...)`` (``seg`` fills semantic maps, which this project does not
    load; ``masks`` may be given as 0). Adds ``pad_shape``, ``pad_fixed_size``,
    ``pad_size_divisor``. An image larger than ``size`` is an error (crop it first)."""

    def __init__(self, size=None, size_divisor=None, pad_val=0, pad_to_square=False):
        if sum([size is not None, size_divisor is not None, bool(pad_to_square)]) != 1:
            raise ValueError(
                "Pad: give exactly one of size=(h, w), size_divisor=N and pad_to_square=True, "
                f"got size={size!r}, size_divisor={size_divisor!r}, "
                f"pad_to_square={pad_to_square!r}"
            )
        if size_divisor is not None and (
            not isinstance(size_divisor, int) or isinstance(size_divisor, bool) or size_divisor < 1
        ):
            raise TypeError(f"Pad: size_divisor must be an integer >= 1, got {size_divisor!r}")
        if size is not None and (
            len(size) != 2 or not all(isinstance(v, int) and v > 0 for v in size)
        ):
            raise ValueError(f"Pad: size must be two positive integers (h, w), got {size!r}")
        self.size, self.size_divisor, self.pad_val = size, size_divisor, pad_val
        self.pad_to_square = bool(pad_to_square)
        self._img_pad_val = _pad_value(pad_val)

    def __call__(self, results):
        size = self.size
        if self.pad_to_square:
            side = max(results["img"].shape[:2])
            size = (side, side)
        for key in results.get("img_fields", ["img"]):
            pad_val = self._img_pad_val
            if isinstance(pad_val, (int, float)) and pad_val and results[key].ndim == 3:
                pad_val = (pad_val,) * results[key].shape[2]  # cv2 fills channel 0 only else
            if size is not None:
                h, w = results[key].shape[:2]
                if h > size[0] or w > size[1]:
                    raise ValueError(
                        f"Pad: results[{key!r}] is {h}x{w}, larger than size={tuple(size)} "
                        "(h, w). Fix: crop or resize to at most that size before the Pad "
                        "(RandomCrop with the same crop_size, as LSJ does)"
                    )
                padded = mmcv.impad(results[key], shape=tuple(size), pad_val=pad_val)
            else:
                padded = mmcv.impad_to_multiple(results[key], self.size_divisor, pad_val)
            results[key] = padded
        results["pad_shape"] = results["img"].shape
        results["pad_fixed_size"] = size
        results["pad_size_divisor"] = self.size_divisor
        for key, kind in geometric_fields(results):
            results[key] = kind.pad(results[key], results["pad_shape"], results)
        return results

    def __repr__(self):
        return (
            f"Pad(size={self.size}, size_divisor={self.size_divisor}, pad_val={self.pad_val}, "
            f"pad_to_square={self.pad_to_square})"
        )


@PIPELINES.register()
class Normalize:
    """``(img - mean) / std`` (after BGR->RGB with ``to_rgb``); float32 out. Adds
    ``img_norm_cfg``.

    ``value_scale`` (e.g. 255): compute ``(img / s - mean / s) / (std / s)`` in float32
    instead, torchvision's order of operations on 0..1 images (bit-identical inputs for its
    detection models; the result differs from the default only by rounding).
    """

    def __init__(self, mean, std, to_rgb=True, value_scale=None):
        self.mean = np.array(mean, dtype=np.float32)
        self.std = np.array(std, dtype=np.float32)
        self.to_rgb = to_rgb
        self.value_scale = value_scale
        self._mean64, self._std64 = np.array(mean, np.float64), np.array(std, np.float64)

    def _scaled(self, img):
        scale = float(self.value_scale)
        mean = (self._mean64 / scale).astype(np.float32)
        std = (self._std64 / scale).astype(np.float32)
        img = img[..., ::-1] if self.to_rgb else img
        img = img.astype(np.float32) / np.float32(scale)
        return np.ascontiguousarray((img - mean) / std, dtype=np.float32)

    def __call__(self, results):
        for key in results.get("img_fields", ["img"]):
            if self.value_scale is not None:
                results[key] = self._scaled(results[key])
                continue
            results[key] = mmcv.imnormalize(
                results[key].astype(np.float32), self.mean, self.std, self.to_rgb
            )
        results["img_norm_cfg"] = dict(mean=self.mean, std=self.std, to_rgb=self.to_rgb)
        return results

    def __repr__(self):
        return (
            f"Normalize(mean={self.mean.tolist()}, std={self.std.tolist()}, to_rgb={self.to_rgb}, "
            f"value_scale={self.value_scale})"
        )


@PIPELINES.register()
class PhotoMetricDistortion:
    """Random brightness, contrast (before or after), saturation, hue and channel swap,
    each applied with probability 1/2, on a float32 BGR image. Boxes are untouched."""

    def __init__(
        self,
        brightness_delta=32,
        contrast_range=(0.5, 1.5),
        saturation_range=(0.5, 1.5),
        hue_delta=18,
    ):
        self.brightness_delta = brightness_delta
        self.contrast_lower, self.contrast_upper = contrast_range
        self.saturation_lower, self.saturation_upper = saturation_range
        self.hue_delta = hue_delta

    def __call__(self, results):
        img = results["img"].astype(np.float32)
        if _coin():
            img += random.uniform(-self.brightness_delta, self.brightness_delta)
        contrast_first = _coin()
        if contrast_first and _coin():
            img *= random.uniform(self.contrast_lower, self.contrast_upper)
        do_saturation, do_hue = _coin(), _coin()
        if do_saturation or do_hue:
            img = mmcv.bgr2hsv(np.clip(img, 0, 255).astype(np.float32))
            if do_saturation:
                img[..., 1] *= random.uniform(self.saturation_lower, self.saturation_upper)
            if do_hue:
                img[..., 0] += random.uniform(-self.hue_delta, self.hue_delta)
                img[..., 0] %= 360
            img = mmcv.hsv2bgr(img)
        if not contrast_first and _coin():
            img *= random.uniform(self.contrast_lower, self.contrast_upper)
        if _coin():
            img = img[..., random.sample(range(3), 3)]
        results["img"] = np.ascontiguousarray(img, dtype=np.float32)
        return results

    def __repr__(self):
        return (
            f"PhotoMetricDistortion(brightness_delta={self.brightness_delta}, contrast_range="
            f"({self.contrast_lower}, {self.contrast_upper}), saturation_range=("
            f"{self.saturation_lower}, {self.saturation_upper}), hue_delta={self.hue_delta})"
        )


def _crop_instances(results, x1, y1, x2, y2):
    """Crop every image/box/mask field to the integer window; drop boxes left without area
    (with their labels and masks).

    Returns:
        (n,) bool validity of the ``gt_bboxes`` before the crop, or ``None`` if absent.
    """
    for key in results.get("img_fields", ["img"]):
        results[key] = results[key][y1:y2, x1:x2].copy()
    shape = results["img"].shape
    results["img_shape"] = shape
    results["pad_shape"] = shape
    window = (x1, y1, x2, y2)
    validity = {}
    for key, kind in geometric_fields(results):
        results[key], valid = kind.crop(results[key], window, shape, results)
        if valid is not None and key != "proposals":
            validity[key] = valid
    for key, valid in validity.items():  # after every field is cropped: drop with companions
        _keep(results, key, valid)
    return validity.get("gt_bboxes")


CROP_TYPES = ("absolute", "absolute_range", "relative", "relative_range")


@PIPELINES.register()
class RandomCrop:
    """Crop a random window (a side larger than the image is the image's).

    Args:
        crop_size: by ``crop_type``: ``"absolute"`` (default) ``(h, w)`` in pixels;
            ``"absolute_range"`` ``(lo, hi)`` pixels, the height and the width each drawn
            uniformly from the integers ``[min(lo, side), min(hi, side)]`` (DETR's
            ``RandomSizeCrop(384, 600)``); ``"relative"`` ``(h, w)`` fractions of the
            image's sides; ``"relative_range"`` ``(h_lo, w_lo)`` fractions, each side's
            fraction drawn uniformly from ``[lo, 1]`` (mmdetection's crop types).
        allow_negative_crop: keep a crop that leaves no box.
        recompute_bbox: after the crop, set each ``gt_bboxes`` box to the tight box of its
            cropped ``gt_masks`` mask (mmdetection's option; LSJ uses it): a box then
            covers what is left of its object, not the clipped box. An instance whose mask
            left the crop gets a zero box (follow with ``FilterAnnotations``).

    Boxes are shifted and clipped; instances left without area are dropped with their
    labels and masks. Returns ``None`` (the dataset tries another image) when no
    ``gt_bboxes`` remain, unless ``allow_negative_crop``.
    """

    def __init__(
        self, crop_size, crop_type="absolute", allow_negative_crop=False, recompute_bbox=False
    ):
        if crop_type not in CROP_TYPES:
            raise ValueError(
                f"RandomCrop: crop_type must be one of {CROP_TYPES}, got {crop_type!r}"
            )
        if len(crop_size) != 2 or crop_size[0] <= 0 or crop_size[1] <= 0:
            raise ValueError(f"RandomCrop: crop_size must be two positive numbers, got {crop_size}")
        if crop_type == "absolute_range" and crop_size[0] > crop_size[1]:
            raise ValueError(
                f"RandomCrop: crop_type='absolute_range' takes crop_size=(lo, hi) with lo <= hi, "
                f"got {crop_size}"
            )
        if crop_type.startswith("relative") and max(crop_size) > 1:
            raise ValueError(
                f"RandomCrop: crop_type={crop_type!r} takes fractions in (0, 1], got {crop_size}"
            )
        self.crop_size = tuple(crop_size)
        self.crop_type = crop_type
        self.allow_negative_crop = allow_negative_crop
        self.recompute_bbox = recompute_bbox

    def _crop_shape(self, h, w):
        """The window's ``(height, width)`` for an ``h`` x ``w`` image."""
        if self.crop_type == "absolute":
            return min(self.crop_size[0], h), min(self.crop_size[1], w)
        if self.crop_type == "absolute_range":
            lo, hi = self.crop_size
            return (random.randint(min(lo, h), min(hi, h)), random.randint(min(lo, w), min(hi, w)))
        if self.crop_type == "relative":
            fh, fw = self.crop_size
        else:
            fh, fw = (lo + random.random() * (1 - lo) for lo in self.crop_size)
        return max(1, min(h, int(h * fh + 0.5))), max(1, min(w, int(w * fw + 0.5)))

    def __call__(self, results):
        h, w = results["img"].shape[:2]
        ch, cw = self._crop_shape(h, w)
        y1 = random.randint(0, h - ch)
        x1 = random.randint(0, w - cw)
        valid = _crop_instances(results, x1, y1, x1 + cw, y1 + ch)
        if valid is not None and not valid.any() and not self.allow_negative_crop:
            return None
        if self.recompute_bbox:
            if "gt_masks" not in results:
                raise KeyError(
                    "RandomCrop(recompute_bbox=True): the results have no gt_masks to take "
                    "the boxes from. Fix: LoadAnnotations(with_mask=True), or "
                    "recompute_bbox=False"
                )
            if "gt_bboxes" in results:
                results["gt_bboxes"] = results["gt_masks"].get_bboxes().astype(np.float32)
        return results

    def __repr__(self):
        return (
            f"RandomCrop(crop_size={self.crop_size}, crop_type={self.crop_type!r}, "
            f"allow_negative_crop={self.allow_negative_crop}, "
            f"recompute_bbox={self.recompute_bbox})"
        )


@PIPELINES.register()
class Expand:
    """With probability ``prob``, place the image at a random spot of a canvas ``ratio``
    times larger (``ratio`` from ``ratio_range``) filled with ``mean`` (SSD zoom-out)."""

    def __init__(self, mean=(0, 0, 0), to_rgb=True, ratio_range=(1, 4), prob=0.5):
        self.mean = list(mean)[::-1] if to_rgb else list(mean)
        self.to_rgb = to_rgb
        self.min_ratio, self.max_ratio = ratio_range
        self.prob = prob

    def __call__(self, results):
        if random.random() >= self.prob:
            return results
        img = results["img"]
        h, w, c = img.shape
        ratio = random.uniform(self.min_ratio, self.max_ratio)
        eh, ew = int(h * ratio), int(w * ratio)
        top, left = int(random.uniform(0, eh - h)), int(random.uniform(0, ew - w))
        canvas = np.empty((eh, ew, c), dtype=img.dtype)
        canvas[...] = np.array(self.mean, dtype=img.dtype)
        canvas[top : top + h, left : left + w] = img
        results["img"] = canvas
        results["img_shape"] = canvas.shape
        results["pad_shape"] = canvas.shape
        for key, kind in geometric_fields(results):
            results[key] = kind.expand(results[key], (eh, ew), top, left, results)
        return results

    def __repr__(self):
        return (
            f"Expand(mean={self.mean}, to_rgb={self.to_rgb}, ratio_range=({self.min_ratio}, "
            f"{self.max_ratio}), prob={self.prob})"
        )


@PIPELINES.register()
class MinIoURandomCrop:
    """SSD crop: draw a minimum IoU from ``(1, *min_ious)`` (1 keeps the image), then up to
    50 windows (sides >= ``min_crop_size`` of the image, aspect 0.5..2) until one overlaps
    every gt box by at least that IoU and holds some box centres; boxes whose centre is
    outside are dropped with their labels and masks."""

    def __init__(self, min_ious=(0.1, 0.3, 0.5, 0.7, 0.9), min_crop_size=0.3, max_trials=50):
        self.min_ious = tuple(min_ious)
        self.min_crop_size = min_crop_size
        self.max_trials = max_trials

    def __call__(self, results):
        img, boxes = results["img"], results["gt_bboxes"]
        h, w = img.shape[:2]
        modes = (1, *self.min_ious)
        for _ in range(100):
            min_iou = modes[random.randrange(len(modes))]
            if min_iou == 1 or len(boxes) == 0:
                return results
            for _ in range(self.max_trials):
                nw = random.uniform(self.min_crop_size * w, w)
                nh = random.uniform(self.min_crop_size * h, h)
                if not 0.5 <= nh / nw <= 2:
                    continue
                left, top = random.uniform(0, w - nw), random.uniform(0, h - nh)
                patch = np.array([left, top, left + nw, top + nh]).astype(int)
                if patch[2] <= patch[0] or patch[3] <= patch[1]:
                    continue
                if bbox_overlaps(patch[None].astype(np.float32), boxes).min() < min_iou:
                    continue
                centers = (boxes[:, :2] + boxes[:, 2:]) / 2
                inside = (
                    (centers[:, 0] > patch[0])
                    & (centers[:, 1] > patch[1])
                    & (centers[:, 0] < patch[2])
                    & (centers[:, 1] < patch[3])
                )
                if not inside.any():
                    continue
                _keep(results, "gt_bboxes", inside)
                _crop_instances(results, *patch.tolist())
                return results
        return results

    def __repr__(self):
        return f"MinIoURandomCrop(min_ious={self.min_ious}, min_crop_size={self.min_crop_size})"


def _range_pair(value, owner, name, low=0.0):
    """``value`` as a ``(lo, hi)`` pair of numbers with ``low < lo <= hi``, else a
    ``ValueError`` naming ``owner``'s argument ``name``."""
    ok = (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        and low < value[0] <= value[1]
    )
    if not ok:
        raise ValueError(
            f"{owner}: {name} must be a (lo, hi) pair of numbers with {low} < lo <= hi, got "
            f"{value!r}"
        )
    return float(value[0]), float(value[1])


@PIPELINES.register()
class RandomResize(Resize):
    """mmcv's ``RandomResize`` (mmdetection 3's large-scale jitter): a scale drawn per image,
    then a :class:`Resize` to it (always: an earlier ``results["scale"]`` does not win).

    Args:
        scale: with ``ratio_range``, one ``(w, h)`` pair, multiplied by a ratio drawn
            uniformly from ``ratio_range`` (each side truncated to an integer); without it,
            two pairs, each side drawn uniformly from the integers between the pairs' values
            at that position.
        ratio_range: ``(lo, hi)``, ``0 < lo <= hi``.
        keep_ratio: as :class:`Resize` (the drawn scale is then a (long, short) bound; False
            by default, as mmcv's).
        interpolation, backend: as :class:`Resize`.
    """

    def __init__(
        self, scale, ratio_range=None, keep_ratio=False, interpolation="bilinear", backend="cv2"
    ):
        if isinstance(scale, int) and not isinstance(scale, bool):
            scale = (scale, scale)
        elif isinstance(scale, (tuple, list)) and all(isinstance(s, (tuple, list)) for s in scale):
            scale = list(scale)  # ((w, h), (w, h)) as mmcv also takes it
        elif isinstance(scale, list):
            scale = tuple(scale)
        pairs = scale_list(scale, "RandomResize")
        if ratio_range is None and len(pairs) != 2:
            raise ValueError(
                "RandomResize: without ratio_range, scale must be two (w, h) pairs to draw "
                f"between, e.g. scale=[(1333, 640), (1333, 800)], got {scale!r}; or give one "
                "pair and ratio_range=(lo, hi)"
            )
        if ratio_range is not None:
            ratio_range = _range_pair(ratio_range, "RandomResize", "ratio_range")
        super().__init__(
            img_scale=pairs, ratio_range=ratio_range, keep_ratio=keep_ratio,
            interpolation=interpolation, backend=backend, override=True,
        )  # fmt: skip
        self.scale = pairs

    def _random_scale(self):
        if self.ratio_range is not None:
            return super()._random_scale()
        (a0, a1), (b0, b1) = self.scale
        return (
            random.randint(int(min(a0, b0)), int(max(a0, b0))),
            random.randint(int(min(a1, b1)), int(max(a1, b1))),
        )

    def __repr__(self):
        return (
            f"RandomResize(scale={self.scale}, ratio_range={self.ratio_range}, "
            f"keep_ratio={self.keep_ratio}, backend={self.backend!r})"
        )


@PIPELINES.register()
class FilterAnnotations:
    """Drop the instances whose box or mask is too small (mmdetection's
    ``FilterAnnotations``), with their labels, masks and keypoints.

    Args:
        min_gt_bbox_wh: ``(w, h)``: with ``by_box``, keep boxes wider than ``w`` and taller
            than ``h`` (strictly).
        min_gt_mask_area: with ``by_mask``, keep masks of at least this many pixels.
        by_box, by_mask: which tests apply (at least one).
        keep_empty: when every instance fails, return ``None`` (the dataset tries another
            image) -- mmdetection's name and meaning; False keeps the image with no
            instances.

    An image that has no ``gt_bboxes`` to begin with passes unchanged.
    """

    def __init__(
        self, min_gt_bbox_wh=(1.0, 1.0), min_gt_mask_area=1, by_box=True, by_mask=False,
        keep_empty=True,
    ):  # fmt: skip
        if not (by_box or by_mask):
            raise ValueError(
                "FilterAnnotations: by_box and by_mask are both False, so nothing would be "
                "tested. Fix: by_box=True (boxes), by_mask=True (masks) or both"
            )
        if len(min_gt_bbox_wh) != 2 or min(min_gt_bbox_wh) < 0:
            raise ValueError(
                "FilterAnnotations: min_gt_bbox_wh must be two non-negative numbers (w, h), "
                f"got {min_gt_bbox_wh!r}"
            )
        self.min_gt_bbox_wh = tuple(float(v) for v in min_gt_bbox_wh)
        self.min_gt_mask_area = min_gt_mask_area
        self.by_box, self.by_mask, self.keep_empty = by_box, by_mask, keep_empty

    def __call__(self, results):
        if "gt_bboxes" not in results:
            raise KeyError(
                "FilterAnnotations: the results have no gt_bboxes. Fix: put it after "
                "LoadAnnotations(with_bbox=True)"
            )
        boxes = results["gt_bboxes"]
        if len(boxes) == 0:
            return results
        keep = np.ones(len(boxes), dtype=bool)
        if self.by_box:
            keep &= (boxes[:, 2] - boxes[:, 0] > self.min_gt_bbox_wh[0]) & (
                boxes[:, 3] - boxes[:, 1] > self.min_gt_bbox_wh[1]
            )
        if self.by_mask:
            if "gt_masks" not in results:
                raise KeyError(
                    "FilterAnnotations(by_mask=True): the results have no gt_masks. Fix: "
                    "LoadAnnotations(with_mask=True), or by_mask=False"
                )
            keep &= results["gt_masks"].areas >= self.min_gt_mask_area
        if not keep.any() and self.keep_empty:
            return None
        _keep(results, "gt_bboxes", keep)
        return results

    def __repr__(self):
        return (
            f"FilterAnnotations(min_gt_bbox_wh={self.min_gt_bbox_wh}, min_gt_mask_area="
            f"{self.min_gt_mask_area}, by_box={self.by_box}, by_mask={self.by_mask}, "
            f"keep_empty={self.keep_empty})"
        )
