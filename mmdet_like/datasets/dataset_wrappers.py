"""Dataset wrappers: ``ConcatDataset``, ``RepeatDataset``, ``ClassBalancedDataset``.

Each takes built datasets or dataset config dicts (built through the ``DATASETS``
registry) and exposes ``CLASSES``, ``flag`` and ``get_cat_ids`` like a dataset.
"""

import bisect
import math

import numpy as np

from mmdet_like.datasets.errors import DatasetError
from mmdet_like.registry import DATASETS, build_from_cfg


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
