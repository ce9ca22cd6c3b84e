"""Check a config and every split of its datasets, and print a summary.

    python tools/check_dataset.py CONFIG [--quick] [--cfg-options KEY=VALUE ...]

First the config itself (every key read, the types of values; what training checks at
start-up). Then ``cfg.data.train``, ``cfg.data.val`` and ``cfg.data.test`` (those present)
are built through the ``DATASETS`` registry with their pipelines, which runs every
load-time check (missing image folder, broken json, boxes outside the image, unknown
category ids or class names, nothing left after filtering, a transform that cannot be
built), and checked against the model (its class counts) and the evaluation (the metrics
can run on the val split). Every image file is decoded as the pipeline's
``LoadImageFromFile`` reads it, in threads (one a core) with a progress bar: missing,
unreadable, empty, truncated, undecodable files, files that are not images and images of
another size than their annotation's are each reported with the file and the fix
(``--quick``: 100 images a split, drawn at random). Prints per split: images, instances per
class, ignored boxes, image sizes, empty images and the repaired problems; errors as the
training would print them. Exit code 1 if anything fails.
"""

import argparse
import random
import sys
import warnings

import numpy as np
from terminaltables import AsciiTable

import mmdet_like  # noqa: F401  (registers every built-in)
from mmdet_like.apis.config_check import check_config
from mmdet_like.apis.startup_check import check_class_counts, check_evaluator
from mmdet_like.datasets.image_check import problems_report
from mmdet_like.engine import add_cfg_options_argument, load_config
from mmdet_like.errors import ProjectError, run_tool
from mmdet_like.evaluation import build_evaluator
from mmdet_like.registry import DATASETS, build_from_cfg

QUICK_IMAGES = 100  # images checked per split with --quick


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
        length=len(dataset),
        images=images,
        classes=classes,
        per_class=per_class.tolist(),
        ignored=ignored,
        empty=empty,
        width=(int(w.min()), int(w.max())) if len(w) else (0, 0),
        height=(int(h.min()), int(h.max())) if len(h) else (0, 0),
    )


def _error_line(exc):
    """The project's own errors as their message says them; anything else with its type."""
    if isinstance(exc, ProjectError):
        return f"ERROR: {exc}"
    return f"ERROR ({type(exc).__name__}): {exc}"


def image_problems(dataset, quick, seed=0, progress=None):
    """``(checked, problems)``: the image files of ``dataset`` (every one, or
    :data:`QUICK_IMAGES` drawn at random per leaf dataset with ``quick``) decoded as its
    pipeline reads them and compared with their annotated sizes
    (``CustomDataset.check_image_files``), and the ``ImageProblem`` of each that cannot be
    used."""
    checked, problems = 0, []
    rng = random.Random(seed)
    for leaf in _leaves(dataset):
        indices = range(len(leaf.table))
        if quick and len(indices) > QUICK_IMAGES:
            indices = sorted(rng.sample(indices, QUICK_IMAGES))
        checked += len(indices)
        problems += leaf.check_image_files(indices, progress=progress)
    return checked, problems


def without_image_check(cfg):
    """A dataset config with ``check_images`` off (in wrapped datasets too): this tool
    checks the images itself, after the summary."""
    cfg = dict(cfg)
    if cfg.get("check_images"):
        cfg["check_images"] = False
    if isinstance(cfg.get("dataset"), dict):
        cfg["dataset"] = without_image_check(cfg["dataset"])
    if isinstance(cfg.get("datasets"), (list, tuple)):
        cfg["datasets"] = [without_image_check(d) for d in cfg["datasets"]]
    return cfg


def check_split(name, cfg, full_cfg, quick=False):
    """Build one split and check it against the model and the evaluation; print its
    summary. Returns True when every check passed."""
    print(f"== {name}: {cfg.get('type')} {cfg.get('ann_file', '')}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            dataset = build_from_cfg(without_image_check(cfg), DATASETS)
        except Exception as exc:  # report every failing split, not only the first
            print(_error_line(exc))
            return False
    ok = True
    try:
        if full_cfg.get("model") is not None:
            check_class_counts(full_cfg.model, dataset, name)
        evaluation = full_cfg.get("evaluation") or {}
        if name == "val" and evaluation.get("metric") and hasattr(dataset, "ground_truth"):
            check_evaluator(
                build_evaluator(evaluation["metric"], strict=False), dataset.ground_truth(), name
            )
    except ProjectError as exc:
        print(_error_line(exc))
        ok = False
    s = summarize(dataset)
    rows = [["class", "instances"], *[[c, n] for c, n in zip(s["classes"], s["per_class"])]]
    print(AsciiTable(rows).table)
    print(
        f"images: {s['images']} (dataset length {s['length']}), ignored boxes: "
        f"{s['ignored']}, images without boxes: {s['empty']}"
    )
    print(f"width: {s['width'][0]}..{s['width'][1]}, height: {s['height'][0]}..{s['height'][1]}")
    for w in caught:
        print(f"WARNING: {w.message}")
    checked, problems = image_problems(dataset, quick, progress=f"{name}: decoding images")
    sampled = " (a random sample: --quick)" if quick and checked < s["images"] else ""
    if problems:
        report = "\n".join(problems_report(problems, checked, note=f" checked{sampled}"))
        print(
            f"ERROR: {report}\nFix each file as its line says, or take it out of the annotations."
        )
        ok = False
    else:
        print(f"image files: all {checked} checked{sampled} decode whole, at their annotated sizes")
    return ok


def main(argv=None):
    parser = argparse.ArgumentParser(description="Check a config and its datasets")
    parser.add_argument("config")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"decode {QUICK_IMAGES} image files a split (drawn at random), not all",
    )
    add_cfg_options_argument(parser)
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    for note in check_config(cfg, args.config):
        print(f"note: {note}")
    ok = True
    for split in ("train", "val", "test"):
        if split in cfg.data:
            ok = check_split(split, dict(cfg.data[split]), cfg, args.quick) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(run_tool(main))
