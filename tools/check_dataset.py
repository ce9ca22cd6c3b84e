"""Check every split of a config's datasets and print a summary.

    python tools/check_dataset.py CONFIG

Builds ``cfg.data.train``, ``cfg.data.val`` and ``cfg.data.test`` (those present) through the
``DATASETS`` registry, without their pipelines, which runs every load-time check (missing
image folder, broken json, boxes outside the image, unknown category ids or class names,
nothing left after filtering). Prints per split: images, instances per class, ignored
boxes, image sizes, empty images and the repaired problems. Exit code 1 if a split fails.
"""

import argparse
import sys
import warnings

import numpy as np
from terminaltables import AsciiTable

import mmdet_like.datasets  # noqa: F401  (registers the datasets)
from mmdet_like.engine import load_config
from mmdet_like.errors import run_tool
from mmdet_like.registry import DATASETS, build_from_cfg


def _strip_pipelines(cfg):
    """A copy of a dataset config (wrappers included) with ``pipeline=[]``."""
    cfg = dict(cfg)
    if "pipeline" in cfg:
        cfg["pipeline"] = []
    if "dataset" in cfg:
        cfg["dataset"] = _strip_pipelines(cfg["dataset"])
    if "datasets" in cfg:
        cfg["datasets"] = [_strip_pipelines(d) for d in cfg["datasets"]]
    return cfg


def _leaves(dataset):
    """The annotation-holding datasets inside wrappers."""
    if hasattr(dataset, "table"):
        return [dataset]
    if hasattr(dataset, "datasets"):
        return [leaf for d in dataset.datasets for leaf in _leaves(d)]
    return _leaves(dataset.dataset)


def summarize(dataset):
    """Summary dict of a built dataset (through wrappers)."""
    classes = list(dataset.CLASSES)
    per_class = np.zeros(len(classes), dtype=np.int64)
    images = ignored = empty = 0
    widths, heights = [], []
    for leaf in _leaves(dataset):
        t = leaf.table
        images += len(t)
        keep = ~t.ignore.data
        per_class += np.bincount(t.labels.data[keep], minlength=len(classes))
        ignored += int((~keep).sum())
        owner = np.repeat(np.arange(len(t)), t.ignore.lengths())
        empty += int((np.bincount(owner[keep], minlength=len(t)) == 0).sum())
        widths.append(t.widths)
        heights.append(t.heights)
    w, h = np.concatenate(widths), np.concatenate(heights)
    return dict(
        length=len(dataset), images=images, classes=classes, per_class=per_class.tolist(),
        ignored=ignored, empty=empty,
        width=(int(w.min()), int(w.max())) if len(w) else (0, 0),
        height=(int(h.min()), int(h.max())) if len(h) else (0, 0),
    )  # fmt: skip


def check_split(name, cfg):
    """Build one split; print its summary. Returns True when it built."""
    print(f"== {name}: {cfg.get('type')} {cfg.get('ann_file', '')}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            dataset = build_from_cfg(_strip_pipelines(cfg), DATASETS)
        except Exception as exc:  # report every failing split, not only the first
            cause = exc.__cause__ or exc
            print(f"ERROR ({type(cause).__name__}): {cause}")
            return False
    s = summarize(dataset)
    rows = [["class", "instances"], *[[c, n] for c, n in zip(s["classes"], s["per_class"])]]
    print(AsciiTable(rows).table)
    print(f"images: {s['images']} (dataset length {s['length']}), ignored boxes: "
          f"{s['ignored']}, images without boxes: {s['empty']}")  # fmt: skip
    print(f"width: {s['width'][0]}..{s['width'][1]}, height: {s['height'][0]}..{s['height'][1]}")
    for w in caught:
        print(f"WARNING: {w.message}")
    return True


def main(argv=None):
    parser = argparse.ArgumentParser(description="Check a config's datasets")
    parser.add_argument("config")
    args = parser.parse_args(argv)
    cfg = load_config(args.config)
    ok = True
    for split in ("train", "val", "test"):
        if split in cfg.data:
            ok = check_split(split, dict(cfg.data[split])) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(run_tool(main))
