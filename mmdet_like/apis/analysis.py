"""What the analysis tools share: a config's test dataset, a ``results.pkl`` read with a
clear error, per-image boxes and ground truth, box IoU."""

import os.path as osp
import pickle

import numpy as np

from mmdet_like.errors import ProjectError
from mmdet_like.structures import result_parts


class AnalysisError(ProjectError, ValueError):
    """A file an analysis tool reads is missing or not what it should be."""


def check_file(path, what):
    """Raise :class:`AnalysisError` unless ``path`` is an existing file."""
    if not osp.isfile(path):
        raise AnalysisError(f"{what} {path!r} does not exist; check the path")


def load_test_dataset(config, cfg_options=None):
    """``(cfg, dataset)``: the config and its ``data.test`` dataset in test mode, built as
    ``tools/test.py`` builds it."""
    from mmdet_like.apis.config_check import check_config
    from mmdet_like.datasets import build_dataset
    from mmdet_like.engine import load_config

    cfg = load_config(config, cfg_options)
    check_config(cfg, config)
    if "test" not in cfg.get("data", {}):
        raise AnalysisError(f"{config}: no data.test in the config")
    cfg.data.test.test_mode = True
    return cfg, build_dataset(cfg.data.test, where="data.test")


def load_results(path, num_images=None):
    """The per-image results that ``tools/test.py --out`` wrote to ``path``.

    Raises :class:`AnalysisError` for a missing or unreadable file, one that holds no list,
    or (``num_images`` given) a list of another length than the dataset.
    """
    check_file(path, "results file")
    try:
        with open(path, "rb") as f:
            results = pickle.load(f)
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, ValueError) as exc:
        raise AnalysisError(
            f"{path}: cannot be read as a results pickle ({type(exc).__name__}: {exc}); write "
            "it with tools/test.py CONFIG CHECKPOINT --out results.pkl"
        ) from exc
    if not isinstance(results, list):
        raise AnalysisError(
            f"{path}: holds a {type(results).__name__}, not the list of per-image results "
            "that tools/test.py --out writes"
        )
    if num_images is not None and len(results) != num_images:
        raise AnalysisError(
            f"{path}: results of {len(results)} images, the config's test dataset has "
            f"{num_images}; use the config (and --cfg-options) the results were made with"
        )
    return results


def detections(result, num_classes, score_thr=0.0):
    """One image's detections of at least ``score_thr``: ``(boxes (n, 4), scores (n,),
    labels (n,))`` from its per-class result (boxes, or ``(boxes, masks, ...)``)."""
    per_class = result_parts(result)[0]
    if len(per_class) != num_classes:
        raise AnalysisError(
            f"a result has boxes for {len(per_class)} classes, the dataset has {num_classes}"
        )
    arrays = [np.asarray(b, dtype=np.float32).reshape(-1, 5) for b in per_class]
    dets = np.concatenate(arrays) if arrays else np.zeros((0, 5), np.float32)
    labels = np.concatenate([np.full(len(a), k, np.int64) for k, a in enumerate(arrays)])
    keep = dets[:, 4] >= score_thr
    return dets[keep, :4], dets[keep, 4], labels[keep]


def box_iou(a, b):
    """(n, m) IoU of boxes ``a`` (n, 4) and ``b`` (m, 4), ``[x1, y1, x2, y2]``."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)
