"""Dataset wrappers: ``ConcatDataset``, ``RepeatDataset``, ``ClassBalancedDataset`` and
``MultiImageMixDataset``.

Each takes built datasets or dataset config dicts (built through the ``DATASETS``
registry) and exposes ``CLASSES``, ``flag`` and ``get_cat_ids`` like a dataset.
"""

import bisect
import collections.abc
import copy
import math

import numpy as np

from mmdet_like.datasets.errors import DatasetError
from mmdet_like.datasets.pipelines import Compose
from mmdet_like.registry import DATASETS, BuildError, build_from_cfg


def _build(dataset):
    return build_from_cfg(dataset, DATASETS) if isinstance(dataset, dict) else dataset


@DATASETS.register()
class ConcatDataset:
    """Datasets one after another; all must have the same ``CLASSES``."""

    def __init__(self, datasets):
        self.datasets = [_build(d) for d in datasets]
        if not self.datasets:
            raise DatasetError("ConcatDataset: datasets is empty")
        self.CLASSES = self.datasets[0].CLASSES
        for d in self.datasets[1:]:
            if tuple(d.CLASSES) != tuple(self.CLASSES):
                raise DatasetError(
                    f"ConcatDataset: classes differ: {self.CLASSES} vs {d.CLASSES}. Fix: give "
                    "every dataset the same classes=."
                )
        self.cumulative_sizes = np.cumsum([len(d) for d in self.datasets]).tolist()
        self.flag = np.concatenate([d.flag for d in self.datasets]).astype(np.uint8)

    def __len__(self):
        return self.cumulative_sizes[-1]

    def _locate(self, idx):
        if idx < 0:
            idx += len(self)
        if not 0 <= idx < len(self):
            raise IndexError(f"ConcatDataset: index {idx} out of range for length {len(self)}")
        d = bisect.bisect_right(self.cumulative_sizes, idx)
        return d, idx - (self.cumulative_sizes[d - 1] if d else 0)

    def __getitem__(self, idx):
        d, i = self._locate(idx)
        return self.datasets[d][i]

    def get_cat_ids(self, idx):
        d, i = self._locate(idx)
        return self.datasets[d].get_cat_ids(i)


@DATASETS.register()
class RepeatDataset:
    """``dataset`` repeated ``times`` times (fewer, longer epochs for small datasets)."""

    def __init__(self, dataset, times):
        self.dataset = _build(dataset)
        self.times = int(times)
        if self.times < 1:
            raise DatasetError(f"RepeatDataset: times must be >= 1, got {times}")
        self.CLASSES = self.dataset.CLASSES
        self.flag = np.tile(self.dataset.flag, self.times)
        self._ori_len = len(self.dataset)

    def __len__(self):
        return self.times * self._ori_len

    def __getitem__(self, idx):
        return self.dataset[idx % self._ori_len]

    def get_cat_ids(self, idx):
        return self.dataset.get_cat_ids(idx % self._ori_len)


def repeat_factors(dataset, oversample_thr, filter_empty_gt=True):
    """Per-image repeat factors (LVIS paper): ``r(I) = max_c max(1, sqrt(t / f(c)))`` with
    ``f(c)`` the fraction of images holding class ``c``.

    Returns:
        (n,) float64; images without boxes get 1 (or 0 when ``filter_empty_gt``).
    """
    n = len(dataset)
    cats = [set(int(c) for c in dataset.get_cat_ids(i)) for i in range(n)]
    counts = {}
    for cs in cats:
        for c in cs:
            counts[c] = counts.get(c, 0) + 1
    cat_factor = {c: max(1.0, math.sqrt(oversample_thr / (k / n))) for c, k in counts.items()}
    factors = np.ones(n, dtype=np.float64)
    for i, cs in enumerate(cats):
        if cs:
            factors[i] = max(cat_factor[c] for c in cs)
        elif filter_empty_gt:
            factors[i] = 0.0
    return factors


@DATASETS.register()
class ClassBalancedDataset:
    """Oversample images of rare classes: image ``i`` appears ``ceil(r(i))`` times, with
    ``r`` from :func:`repeat_factors`."""

    def __init__(self, dataset, oversample_thr, filter_empty_gt=True):
        self.dataset = _build(dataset)
        self.oversample_thr = oversample_thr
        self.CLASSES = self.dataset.CLASSES
        self.repeat_factors = repeat_factors(self.dataset, oversample_thr, filter_empty_gt)
        repeats = np.ceil(self.repeat_factors).astype(np.int64)
        self.repeat_indices = np.repeat(np.arange(len(self.dataset)), repeats)
        self.flag = np.asarray(self.dataset.flag)[self.repeat_indices].astype(np.uint8)

    def __len__(self):
        return len(self.repeat_indices)

    def __getitem__(self, idx):
        return self.dataset[int(self.repeat_indices[idx])]

    def get_cat_ids(self, idx):
        return self.dataset.get_cat_ids(int(self.repeat_indices[idx]))


@DATASETS.register()
class MultiImageMixDataset:
    """A dataset whose pipeline may combine several of its images (``Mosaic``, ``MixUp``,
    ``CopyPaste``): mmdetection's wrapper.

    ``dataset[i]`` (its own pipeline: loading, and whatever should happen to every image
    before mixing) gives the results dict that ``pipeline`` runs on. Before each step that
    has ``get_indexes(dataset)``, the step is asked which images it wants; those are read
    through the wrapped dataset and handed to it as ``results["mix_results"]`` (removed
    after the step).

    Args:
        dataset: the wrapped dataset (or its config); its pipeline should stop before
            formatting (no ``PackDetInputs``).
        pipeline: the transforms run on its results, ending with ``PackDetInputs`` (a
            :class:`Compose` in ``self.pipeline``; assign another to switch pipelines).
        dynamic_scale: ``(w, h)`` set as ``results["scale"]`` before every step (a later
            ``Resize`` uses it); ``update_dynamic_scale`` changes it.
        skip_type_keys: names of steps to skip (``update_skip_type_keys``, e.g. to turn off
            Mosaic and MixUp for the last epochs).
        max_refetch: tries of a step that returns ``None`` (a crop that left no box; each
            try on a fresh copy of its input) before it is an error.

    ``flag`` (the aspect groups), ``CLASSES`` and every other attribute (``get_cat_ids``,
    ``get_ann_info``, ``keypoint_meta``, ...) are the wrapped dataset's.
    """

    def __init__(self, dataset, pipeline, dynamic_scale=None, skip_type_keys=None,
                 max_refetch=15):  # fmt: skip
        self.dataset = _build(dataset)
        if not isinstance(max_refetch, int) or isinstance(max_refetch, bool) or max_refetch < 1:
            raise DatasetError(
                f"MultiImageMixDataset: max_refetch must be an integer >= 1, got {max_refetch!r}"
            )
        self.max_refetch = max_refetch
        # a plain attribute: replacing it (PipelineSwitchHook) replaces the steps
        self.pipeline = self._compose(pipeline)
        self._skip_type_keys = None
        if skip_type_keys is not None:
            self.update_skip_type_keys(skip_type_keys)
        self._dynamic_scale = None
        if dynamic_scale is not None:
            self.update_dynamic_scale(dynamic_scale)
        self.CLASSES = getattr(self.dataset, "CLASSES", None)
        if hasattr(self.dataset, "flag"):
            self.flag = self.dataset.flag

    @staticmethod
    def _compose(pipeline):
        if isinstance(pipeline, Compose):
            return pipeline
        if not isinstance(pipeline, (list, tuple)):
            raise DatasetError(
                "MultiImageMixDataset: pipeline must be a list of transform configs, got "
                f"{type(pipeline).__name__}"
            )
        try:
            return Compose(pipeline)
        except BuildError as exc:
            raise BuildError(f"MultiImageMixDataset.pipeline: {exc}") from exc

    def step_names(self):
        """The pipeline's steps by type name (what ``skip_type_keys`` names)."""
        self.pipeline = self._compose(self.pipeline)
        return [type(t).__name__ for t in self.pipeline.transforms]

    def update_skip_type_keys(self, skip_type_keys):
        """Skip the steps whose type names are in ``skip_type_keys`` from now on."""
        if not isinstance(skip_type_keys, (list, tuple)) or not all(
            isinstance(k, str) for k in skip_type_keys
        ):
            raise DatasetError(
                "MultiImageMixDataset: skip_type_keys must be a list of transform type names, "
                f"e.g. ['Mosaic', 'MixUp'], got {skip_type_keys!r}"
            )
        names = self.step_names()
        unknown = sorted(set(skip_type_keys) - set(names))
        if unknown:
            raise DatasetError(
                f"MultiImageMixDataset: skip_type_keys {unknown} name no step of the pipeline "
                f"({names})"
            )
        self._skip_type_keys = tuple(skip_type_keys)

    def update_dynamic_scale(self, dynamic_scale):
        """Set ``results["scale"]`` to ``dynamic_scale`` (a ``(w, h)`` pair) before each step."""
        if not (isinstance(dynamic_scale, (tuple, list)) and len(dynamic_scale) == 2):
            raise DatasetError(
                f"MultiImageMixDataset: dynamic_scale must be a (w, h) pair, got {dynamic_scale!r}"
            )
        self._dynamic_scale = tuple(dynamic_scale)

    def __len__(self):
        return len(self.dataset)

    def _load(self, index):
        results = self.dataset[index]
        if results is None:
            raise DatasetError(
                f"MultiImageMixDataset: the wrapped dataset gave None for image {index}. Fix: "
                "check its pipeline (it should load, not drop, images)"
            )
        return copy.deepcopy(results)

    def __getitem__(self, idx):
        results = self._load(idx)
        names = self.step_names()
        for transform, name in zip(self.pipeline.transforms, names):
            if self._skip_type_keys is not None and name in self._skip_type_keys:
                continue
            if hasattr(transform, "get_indexes"):
                indexes = transform.get_indexes(self.dataset)
                if not isinstance(indexes, collections.abc.Sequence):
                    indexes = [indexes]
                results["mix_results"] = [self._load(i) for i in indexes]
            if self._dynamic_scale is not None:
                results["scale"] = self._dynamic_scale
            for _ in range(self.max_refetch):
                updated = transform(copy.deepcopy(results))
                if updated is not None:
                    results = updated
                    break
            else:
                raise DatasetError(
                    f"MultiImageMixDataset: step {name} returned None {self.max_refetch} times "
                    f"for image {idx} (e.g. a crop that keeps no box). Fix: allow such results "
                    "in that step (allow_negative_crop=True, FilterAnnotations(keep_empty="
                    "False)) or raise max_refetch"
                )
            if isinstance(results, dict):
                results.pop("mix_results", None)
        return results

    def get_cat_ids(self, idx):
        return self.dataset.get_cat_ids(idx)

    def __getattr__(self, name):
        if name in ("dataset", "pipeline"):  # not set yet (unpickling)
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __repr__(self):
        return (
            f"MultiImageMixDataset(dataset={type(self.dataset).__name__} of {len(self)}, "
            f"pipeline={self.step_names()}, skip_type_keys={self._skip_type_keys})"
        )
