"""Sliced (tiled) inference for large images, the approach of SAHI (Akyon et al. 2022).

A detector run on a whole large image sees it shrunk to its test scale, where small objects
are a few pixels wide and are missed. Here the image is cut into overlapping tiles
(:func:`slice_windows`), each tile goes through the test pipeline and the model as a whole
image would (so it is seen at the model's scale), the detections are moved back into the
image, optionally joined by those of the whole image, and the duplicates that the overlaps
produce are merged (:func:`merge_detections`: class-wise NMS, or NMM, which merges each
group of matching boxes into their union).

```python
from mmdet_like.apis import inference_detector

result = inference_detector(model, "big.jpg", slice=dict(size=(640, 640), overlap=0.2))
```

``tools/test.py --slice-size H W`` evaluates a dataset this way (:class:`SlicedDetector`).
"""

import numpy as np
import pycocotools.mask as mask_utils
import torch
from torch import nn

from mmdet_like.apis.inference import _test_pipeline_steps, inference_detector_samples
from mmdet_like.datasets.pipelines import Compose
from mmdet_like.errors import ProjectError
from mmdet_like.ops import batched_nms
from mmdet_like.structures import DetDataSample, InstanceData, compact_prediction
from mmdet_like.structures.mask import bitmap_to_rle

MERGE_METHODS = ("nms", "nmm")
MATCH_METRICS = ("iou", "ios")
SLICE_DEFAULTS = dict(
    overlap=0.2, batch_size=1, full_image=False, merge="nms", match_metric="iou",
    match_threshold=0.5,
)  # fmt: skip
# full-image masks made at a time when they are returned as RLE (SlicedDetector)
RLE_MASK_CHUNK = 32


class SliceOptionsError(ProjectError, ValueError):
    """Sliced-inference options that cannot be used."""


def _pair(value, name, kind):
    values = tuple(value) if isinstance(value, (list, tuple)) else (value, value)
    if len(values) != 2:
        raise SliceOptionsError(f"slice {name}: give one {kind} or a pair (h, w), got {value!r}")
    return values


def check_slice_options(options):
    """``options`` (a dict: ``size`` and optionally the keys of ``SLICE_DEFAULTS``) checked and
    completed with the defaults; a :class:`SliceOptionsError` names a bad key or value."""
    options = dict(options or {})
    unknown = sorted(set(options) - {"size", *SLICE_DEFAULTS})
    if unknown:
        raise SliceOptionsError(
            f"slice: unknown option(s) {unknown}; the options are size, {', '.join(SLICE_DEFAULTS)}"
        )
    if options.get("size") is None:
        raise SliceOptionsError("slice: give the tile size, e.g. size=(640, 640)")
    out = {"size": options["size"], **SLICE_DEFAULTS, **options}  # size first
    sizes = _pair(out["size"], "size", "int")
    if not all(isinstance(s, (int, np.integer)) and s > 0 for s in sizes):
        raise SliceOptionsError(f"slice size: positive integers (h, w), got {out['size']!r}")
    overlaps = _pair(out["overlap"], "overlap", "ratio")
    if not all(isinstance(o, (int, float)) and 0 <= o < 1 for o in overlaps):
        raise SliceOptionsError(
            f"slice overlap: the share of a tile's side that overlaps its neighbour, in "
            f"[0, 1), got {out['overlap']!r}"
        )
    if not isinstance(out["batch_size"], (int, np.integer)) or out["batch_size"] < 1:
        raise SliceOptionsError(f"slice batch_size: a positive integer, got {out['batch_size']!r}")
    if out["merge"] not in MERGE_METHODS:
        raise SliceOptionsError(f"slice merge: one of {MERGE_METHODS}, got {out['merge']!r}")
    if out["match_metric"] not in MATCH_METRICS:
        raise SliceOptionsError(
            f"slice match_metric: one of {MATCH_METRICS}, got {out['match_metric']!r}"
        )
    threshold = out["match_threshold"]
    if not (isinstance(threshold, (int, float)) and 0 <= threshold <= 1):
        raise SliceOptionsError(f"slice match_threshold: in [0, 1], got {out['match_threshold']!r}")
    out["size"] = tuple(int(s) for s in sizes)
    out["overlap"] = tuple(float(o) for o in overlaps)
    out["batch_size"] = int(out["batch_size"])
    out["full_image"] = bool(out["full_image"])
    out["match_threshold"] = float(out["match_threshold"])
    return out


def _window_starts(length, size, overlap):
    """Starts of the tiles along one side: every ``size - round(overlap * size)`` pixels, the
    last one moved back so that it ends at the border; one at 0 when the side is short."""
    if length <= size:
        return torch.zeros(1, dtype=torch.long)
    step = max(size - int(round(overlap * size)), 1)
    count = -(-(length - size) // step) + 1
    return (torch.arange(count) * step).clamp(max=length - size)


def slice_windows(height, width, size, overlap=0.2):
    """The tiles of a ``height`` x ``width`` image.

    Args:
        size: tile size, ``(h, w)`` or one int for both.
        overlap: share of a tile's side overlapping its neighbour's, in [0, 1) (``(h, w)``
            or one ratio for both); the last tile of a row (column) is shifted back inside
            the image, overlapping its neighbour more.

    Returns:
        (N, 4) int64 ``[x1, y1, x2, y2]`` windows (x2, y2 exclusive), row by row. Every
        window is ``size`` large, or the whole side where the image is smaller.
    """
    size_h, size_w = _pair(size, "size", "int")
    overlap_h, overlap_w = _pair(overlap, "overlap", "ratio")
    if height < 1 or width < 1:
        raise SliceOptionsError(f"slice_windows: an empty image ({height}x{width})")
    ys = _window_starts(int(height), int(size_h), float(overlap_h))
    xs = _window_starts(int(width), int(size_w), float(overlap_w))
    y1, x1 = torch.meshgrid(ys, xs, indexing="ij")
    tile_h, tile_w = min(int(size_h), int(height)), min(int(size_w), int(width))
    return torch.stack([x1, y1, x1 + tile_w, y1 + tile_h], dim=-1).reshape(-1, 4)


def match_scores(box, boxes, metric="iou"):
    """(N,) overlaps of one ``[x1, y1, x2, y2]`` box with (N, 4) boxes: IoU, or IoS
    (intersection over the smaller of the two areas)."""
    lt = torch.maximum(box[:2], boxes[:, :2])
    rb = torch.minimum(box[2:], boxes[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=1)
    area = (box[2:] - box[:2]).clamp(min=0).prod()
    areas = (boxes[:, 2:] - boxes[:, :2]).clamp(min=0).prod(dim=1)
    if metric == "iou":
        denominator = area + areas - inter
    elif metric == "ios":
        denominator = torch.minimum(areas, area)
    else:
        raise SliceOptionsError(f"match metric: one of {MATCH_METRICS}, got {metric!r}")
    return inter / denominator.clamp(min=torch.finfo(boxes.dtype).eps)


def _greedy_groups(bboxes, scores, labels, metric, threshold):
    """Greedy grouping in descending score: the best box not yet grouped leads a group of
    every ungrouped box of its class matching it above ``threshold``. Returns the (K,)
    leaders (descending score) and, per box, the index of its leader."""
    order = torch.argsort(scores, descending=True, stable=True)
    boxes, classes = bboxes[order], labels[order]
    leader = torch.empty_like(order)
    free = torch.ones_like(order, dtype=torch.bool)
    leaders = []
    # one step per group (the greedy merge is sequential); each step is a tensor operation
    position = 0
    while position < len(order):
        members = free & (classes == classes[position])
        members &= match_scores(boxes[position], boxes, metric) > threshold
        members[position] = True
        leader[members] = position
        free &= ~members
        leaders.append(position)
        rest = torch.nonzero(free[position + 1 :])
        if len(rest) == 0:
            break
        position += 1 + int(rest[0])
    leaders = order[torch.tensor(leaders, dtype=torch.long, device=order.device)]
    leader_of = torch.empty_like(order)
    leader_of[order] = order[leader]
    return leaders, leader_of


def merge_detections(bboxes, scores, labels, method="nms", match_metric="iou",
                     match_threshold=0.5):  # fmt: skip
    """Merge the duplicate detections of overlapping tiles, class by class.

    ``"nms"``: of boxes of one class matching above ``match_threshold`` the best is kept
    (with IoU: :func:`mmdet_like.ops.batched_nms`). ``"nmm"`` (non-maximum merging): in
    descending score, each box not yet merged absorbs every unmerged box of its class that
    matches it above the threshold; the group's box is their union, its score the best
    one's.

    Args:
        bboxes: (N, 4); scores: (N,); labels: (N,) int64 classes.
        method: ``"nms"`` or ``"nmm"``.
        match_metric: ``"iou"`` or ``"ios"`` (intersection over the smaller area).

    Returns:
        ``(merged_bboxes, kept, group)``: (K, 4) boxes; (K,) indices of the detection each
        one stems from (its best, whose score and label it keeps), in descending score; (N,)
        the row of the output each detection went into (-1: suppressed by NMS).
    """
    if method not in MERGE_METHODS:
        raise SliceOptionsError(f"merge method: one of {MERGE_METHODS}, got {method!r}")
    if match_metric not in MATCH_METRICS:
        raise SliceOptionsError(f"match metric: one of {MATCH_METRICS}, got {match_metric!r}")
    num = len(bboxes)
    if method == "nms" and match_metric == "iou":
        kept = batched_nms(bboxes, scores, labels, match_threshold)
        leader_of = None
    else:
        kept, leader_of = _greedy_groups(bboxes, scores, labels, match_metric, match_threshold)
    row_of_kept = torch.full((num,), -1, dtype=torch.long, device=bboxes.device)
    row_of_kept[kept] = torch.arange(len(kept), device=bboxes.device)
    if method == "nms":
        return bboxes[kept], kept, row_of_kept
    group = row_of_kept[leader_of]
    index = group[:, None].expand(-1, 2)
    lt = bboxes.new_zeros((len(kept), 2)).scatter_reduce(
        0, index, bboxes[:, :2], "amin", include_self=False
    )
    rb = bboxes.new_zeros((len(kept), 2)).scatter_reduce(
        0, index, bboxes[:, 2:], "amax", include_self=False
    )
    return torch.cat([lt, rb], dim=1), kept, group


def _paste_masks(rles, window_of, windows, group, rows, height, width):
    """(len(rows), height, width) bool masks: output row r is the union of the window masks
    (RLE, in their window's coordinates) of the detections merged into it."""
    out = torch.zeros((len(rows), height, width), dtype=torch.bool)
    members = torch.nonzero((group >= rows.start) & (group < rows.stop)).flatten()
    for window in torch.unique(window_of[members]).tolist():
        selected = members[window_of[members] == window]
        x1, y1, x2, y2 = windows[window].tolist()
        decoded = mask_utils.decode([rles[i] for i in selected.tolist()])  # (h, w, n)
        if decoded.shape[:2] != (y2 - y1, x2 - x1):
            raise ValueError(
                f"sliced inference: a mask of {decoded.shape[1]}x{decoded.shape[0]} for a tile "
                f"of {x2 - x1}x{y2 - y1}; the model must return masks of the whole tile"
            )
        masks = torch.from_numpy(decoded).permute(2, 0, 1).bool()
        out[:, y1:y2, x1:x2].index_add_(0, group[selected] - rows.start, masks)
    return out


def _in_image(prediction, window, index):
    """One window's predictions moved into image coordinates, masks as RLE, and the window's
    ``index`` per detection."""
    x1, y1 = window[0], window[1]
    moved = InstanceData()
    for name, value in prediction.items():
        if name == "bboxes":
            value = value + value.new_tensor([x1, y1, x1, y1])
        elif name == "keypoints":
            value = value + value.new_tensor([x1, y1])
        elif name == "masks" and isinstance(value, torch.Tensor):
            value = [bitmap_to_rle(m, str_counts=False) for m in value.cpu().numpy()]
        setattr(moved, name, value)
    moved.window_index = torch.full((len(prediction),), index, dtype=torch.long)
    return moved


def merge_sliced_predictions(predictions, windows, image_shape, merge="nms", match_metric="iou",
                             match_threshold=0.5, rle_masks=False):  # fmt: skip
    """The predictions of the windows of one image, merged in the image.

    Args:
        predictions: one :class:`InstanceData` per window, in its coordinates (``bboxes``,
            ``scores`` [, ``labels``, ``masks`` of the window's size as an (n, h, w) bool
            tensor or n RLE dicts, ``keypoints`` (n, K, 2), other per-instance fields]).
        windows: (N, 4) ``[x1, y1, x2, y2]`` of the windows in the image.
        image_shape: ``(height, width)`` of the image.
        merge, match_metric, match_threshold: as :func:`merge_detections` (proposals, without
            ``labels``, are merged as one class).
        rle_masks: return the masks as RLE dicts (made a few at a time) instead of an
            (n, height, width) bool tensor.

    Returns:
        :class:`InstanceData` in the image, in descending score: merged ``bboxes``; the
        fields of each group's best detection (``scores``, ``labels``, keypoints, ...); the
        union of the group's ``masks`` (NMS: the kept detection's own).
    """
    if len(predictions) != len(windows):
        raise ValueError(f"{len(predictions)} predictions for {len(windows)} windows")
    windows = torch.as_tensor(windows, dtype=torch.long).cpu()
    height, width = int(image_shape[0]), int(image_shape[1])
    moved = [
        _in_image(p.to("cpu"), w, i) for i, (p, w) in enumerate(zip(predictions, windows.tolist()))
    ]
    detections = InstanceData.cat(moved)
    labels = detections.get("labels")
    if labels is None:
        labels = torch.zeros(len(detections), dtype=torch.long)
    bboxes, kept, group = merge_detections(
        detections.bboxes.float(), detections.scores.float(), labels.long(), merge,
        match_metric, match_threshold,
    )  # fmt: skip
    merged = detections[kept]
    merged.bboxes = bboxes.to(detections.bboxes.dtype)
    if "masks" in merged:
        rles, window_of = detections.masks, detections.window_index
        if rle_masks:
            masks = []
            for start in range(0, len(kept), RLE_MASK_CHUNK):
                rows = range(start, min(start + RLE_MASK_CHUNK, len(kept)))
                block = _paste_masks(rles, window_of, windows, group, rows, height, width)
                masks.extend(bitmap_to_rle(m, str_counts=False) for m in block.numpy())
        else:
            rows = range(len(kept))
            masks = _paste_masks(rles, window_of, windows, group, rows, height, width)
        merged.masks = masks
    del merged.window_index
    return merged


def read_image(cfg, path):
    """The image at ``path`` as the first step of the config's test pipeline reads it (its
    ``LoadImageFromFile`` options), or as ``LoadImageFromFile()`` does."""
    first = _test_pipeline_steps(cfg)[0]
    if not (isinstance(first, dict) and first.get("type") == "LoadImageFromFile"):
        first = dict(type="LoadImageFromFile")
    return Compose([first])(dict(img_info=dict(filename=str(path)), img_prefix=None))["img"]


@torch.no_grad()
def sliced_inference_samples(model, img, size, overlap=0.2, batch_size=1, full_image=False,
                             merge="nms", match_metric="iou", match_threshold=0.5,
                             rle_masks=False):  # fmt: skip
    """Sliced inference on one image (a path or an (H, W, 3) BGR array).

    Args:
        model: a detector from :func:`~mmdet_like.apis.init_detector` (``model.cfg``'s test
            pipeline prepares every tile as :func:`~mmdet_like.apis.inference_detector`
            prepares an image).
        size, overlap: the tiles (:func:`slice_windows`).
        batch_size: tiles run through the model at a time.
        full_image: the whole image runs too and its detections join the tiles' (SAHI's
            standard prediction: large objects that no tile holds whole).
        merge, match_metric, match_threshold: how duplicates are merged
            (:func:`merge_detections`).
        rle_masks: masks as RLE dicts (for evaluation) instead of an (n, H, W) bool tensor.

    Returns:
        a :class:`DetDataSample` (meta: ``filename``, ``ori_shape``, ``img_shape``,
        ``slice_windows``) with ``pred_instances`` in the image, as
        :func:`~mmdet_like.apis.inference_detector_samples` returns.
    """
    options = check_slice_options(
        dict(size=size, overlap=overlap, batch_size=batch_size, full_image=full_image,
             merge=merge, match_metric=match_metric, match_threshold=match_threshold)
    )  # fmt: skip
    filename = None
    if isinstance(img, np.ndarray):
        image = img
    else:
        filename = str(img)
        image = read_image(model.cfg, filename)
    height, width = image.shape[:2]
    windows = slice_windows(height, width, options["size"], options["overlap"])
    predictions = []
    for start in range(0, len(windows), options["batch_size"]):
        tiles = [
            np.ascontiguousarray(image[y1:y2, x1:x2])
            for x1, y1, x2, y2 in windows[start : start + options["batch_size"]].tolist()
        ]
        samples = inference_detector_samples(model, tiles, batch_size=len(tiles))
        # on the CPU, masks as RLE: a large image's tiles' masks would not fit otherwise
        predictions.extend(compact_prediction(s).pred_instances for s in samples)
    if options["full_image"]:
        sample = inference_detector_samples(model, [image])[0]
        predictions.append(compact_prediction(sample).pred_instances)
        windows = torch.cat([windows, windows.new_tensor([[0, 0, width, height]])])
    pred = merge_sliced_predictions(
        predictions, windows, (height, width), options["merge"], options["match_metric"],
        options["match_threshold"], rle_masks=rle_masks,
    )  # fmt: skip
    meta = dict(filename=filename, ori_filename=filename, ori_shape=image.shape,
                img_shape=image.shape, slice_windows=len(windows))  # fmt: skip
    return DetDataSample(metainfo=meta, pred_instances=pred)


class SlicedDetector(nn.Module):
    """A detector evaluated with sliced inference (``tools/test.py --slice-size``): the test
    loops call it as they call a detector, ``model(return_loss=False, rescale=True,
    **batch)``; it reads each image of the batch again from its meta's ``filename`` (the
    batch's resized image is not used) and returns, per image, the data sample with the
    merged ``pred_instances`` of :func:`sliced_inference_samples` (masks as RLE).

    Args:
        detector: the detector; ``detector.cfg`` is the config whose test pipeline
            prepares the tiles.
        **options: :func:`sliced_inference_samples`'s ``size``, ``overlap``, ...
    """

    def __init__(self, detector, **options):
        super().__init__()
        if getattr(detector, "cfg", None) is None:
            raise ValueError(
                "SlicedDetector: set detector.cfg to the config (its test pipeline prepares "
                "the tiles), as init_detector does"
            )
        self.detector = detector
        self.options = check_slice_options(options)

    @property
    def num_classes(self):
        return getattr(self.detector, "num_classes", None)

    @property
    def CLASSES(self):  # noqa: N802 (the detectors' attribute)
        return getattr(self.detector, "CLASSES", None)

    def forward(self, img=None, img_metas=None, return_loss=True, data_samples=None,
                rescale=False, **kwargs):  # fmt: skip
        given = sorted(k for k, v in kwargs.items() if v is not None)
        if given:
            raise TypeError(f"SlicedDetector: cannot slice the inputs {given} with the images")
        if return_loss or not rescale:
            raise ValueError(
                "SlicedDetector is for inference in the original images: call it with "
                "return_loss=False, rescale=True"
            )
        if data_samples is not None:
            metas = [_first(s).metainfo for s in data_samples]
        elif img_metas is not None:
            metas = [_first(m) for m in img_metas]
        else:
            raise ValueError("SlicedDetector: forward needs data_samples (or img_metas)")
        out = []
        for meta in metas:
            if not meta.get("filename"):
                raise ValueError(
                    "SlicedDetector: the image meta has no filename; sliced testing reads "
                    "each image again from its file (a test pipeline starting with "
                    "LoadImageFromFile)"
                )
            sample = sliced_inference_samples(
                self.detector, meta["filename"], rle_masks=True, **self.options
            )
            out.append(DetDataSample(metainfo=meta, pred_instances=sample.pred_instances))
        return out


def _first(value):
    return value[0] if isinstance(value, (list, tuple)) else value
