"""Training and inference time and peak memory of our detector variants against a reference
config of ours, in one run.

    python tools/benchmark_variants.py [--reference CONFIG] [--config CONFIG ...]
        [--mode train|infer|both] [--device cpu|cuda]
        [--iters 3] [--warmup 1] [--rounds 1] [--out docs/benchmarks.md]

The reference (default ``configs/mask_rcnn_r50_fpn_1x.py``) is the first row; each
``--config`` adds a row, e.g. ``configs/mask_rcnn_r50_caffe_c4_1x.py``,
``configs/cascade_mask_rcnn_r50_fpn_1x.py``, ``configs/gn/mask_rcnn_r50_fpn_gn-all_2x.py``.
A relative path is read from the current folder, or else from the repository root.

Each config runs in a fresh child process per round (so that its peak memory is its own), the
configs one after the other in every round; with ``--rounds`` above 1 the best round of each
counts. Every model is built from its config with ``pretrained=None`` and random weights under
one seed (its batch norms given random scales, shifts and variances, as
``mmdet_like/benchmarking/equal_work.py`` gives torchvision's frozen ones), the classes of its
config, and runs on the same inputs: ``make_inputs``' 2 images of 800 x 1216 with 5 boxes and
masks each, normalised as ``our_batch`` does for every config.

- Training (``--mode train``): an iteration is the forward pass with the losses, the backward
  pass and an SGD step, as ``tools/benchmark_train.py`` times it. Reported per iteration.
- Inference (``--mode infer``): under ``torch.no_grad()`` from the normalised batch to the
  final per-image results (boxes rescaled, class-wise NMS, masks pasted into the image), with
  the test score threshold set to 0 and ``max_per_img`` to 100, so that every model returns
  100 detections per image whatever its random scores. Each child reports its detections per
  image; the run stops if any differ from the reference's (unequal work). Reported per image.

Reported per config: the time (best of the timed calls, and their median), images per second,
the peak memory of the process (host RSS on the CPU, the allocator's peak on a GPU) and both
as ratios to the reference. On the CPU every child runs with our caching allocator, as
``tools/train.py`` and ``tools/test.py`` do (``MMDET_LIKE_CPU_CACHING_ALLOCATOR=0``: off).
``--out`` writes each table into its block ``benchmark_variants DEVICE MODE`` of the file.
"""

import argparse
import os
import sys

import torch
from torch.nn.modules.batchnorm import _BatchNorm

from mmdet_like.benchmarking import (
    DETECTIONS_PER_IMAGE,
    emit_result,
    equal_detections_test_cfg,
    machine_line,
    make_inputs,
    our_batch,
    our_side_caches,
    peak_memory_mb,
    prepare_child,
    randomise_norm_statistics,
    resolve_config,
    run_child,
    summarise,
    time_calls,
    write_section,
)
from mmdet_like.engine import ConfigError, load_config
from mmdet_like.engine.runner import parse_losses
from mmdet_like.errors import ProjectError, run_tool
from mmdet_like.models import build_detector

REFERENCE = "configs/mask_rcnn_r50_fpn_1x.py"
MODES = ("train", "infer")
SEED = 0


class BenchmarkError(ProjectError, RuntimeError):
    """The benchmark cannot run as asked (no such device, unequal work)."""


class UnequalWorkError(BenchmarkError):
    """Two configs returned different numbers of detections: their inference work differs."""


def _drop_pretrained(node):
    """``pretrained=None`` everywhere in a model config (backbone, shared head, ...)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "pretrained":
                node[key] = None
            else:
                _drop_pretrained(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            _drop_pretrained(value)


def load_variant(path, mode):
    """The config at ``path`` (absolute) as this benchmark runs it."""
    cfg = load_config(path, warn_unknown_keys=False)
    if "model" not in cfg:
        raise ConfigError(f"{path}: no model in the config")
    _drop_pretrained(cfg.model)
    if mode == "infer":
        equal_detections_test_cfg(cfg, path)
    return cfg


def build_variant(path, mode, device, seed=SEED):
    """Our detector of the config at ``path`` with random weights under ``seed`` (batch norms
    with random statistics), in train or eval mode for ``mode``, on ``device``."""
    cfg = load_variant(path, mode)
    torch.manual_seed(seed)
    model = build_detector(cfg.model, cfg.get("train_cfg"), cfg.get("test_cfg"))
    if hasattr(model, "init_weights"):
        model.init_weights()
    with torch.no_grad():
        randomise_norm_statistics(model, seed, _BatchNorm)
    model.to(device)
    return model.train() if mode == "train" else model.eval()


def measure(path, mode, device, iters, warmup):
    """Time ``iters`` training iterations or inference calls of the config at ``path`` after
    ``warmup``; the result a child reports (times per iteration, or per image)."""
    model = build_variant(path, mode, device)
    samples = make_inputs()
    masks = bool(getattr(model, "with_mask", False))
    batch = our_batch(samples, device, train=mode == "train", masks=masks)
    counts = []
    if mode == "train":
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.SGD(params, lr=1e-3, momentum=0.9, weight_decay=1e-4)

        def call():
            optimizer.zero_grad(set_to_none=True)
            parse_losses(model(**batch))[0].backward()
            optimizer.step()
    else:

        def call():
            with torch.no_grad():
                outputs = model(**batch, return_loss=False, rescale=True)
            counts[:] = [len(sample.pred_instances) for sample in outputs]

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = time_calls(call, device, iters, warmup)
    per = 1 if mode == "train" else len(samples)
    result = dict(
        times=[t / per for t in times],
        peak_mb=peak_memory_mb(device),
        machine=machine_line(device, with_torchvision=False),
        images=len(samples),
        image_size=list(samples[0]["image"].shape[:2]),
        boxes=[len(s["boxes"]) for s in samples],
        masks=masks,
    )
    if mode == "infer":
        result["detections"] = counts
    return result


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 2)[2],
    )
    parser.add_argument(
        "--reference",
        default=REFERENCE,
        help=f"the config the others are compared with, the first row (default {REFERENCE})",
    )
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        help="a config to compare with the reference, one row each (repeatable)",
    )
    parser.add_argument("--mode", default="both", choices=[*MODES, "both"])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--iters", type=int, default=3, help="timed iterations (or calls)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed ones before them")
    parser.add_argument("--rounds", type=int, default=1, help="child runs per config")
    parser.add_argument("--out", help="markdown file to write the tables into")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--caching-allocator", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in ("iters", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.warmup < 0:
        parser.error("--warmup must be at least 0")
    return args


def variants(args):
    """``[(label, absolute path)]``: the reference first, then each ``--config`` once."""
    rows, seen = [], set()
    for label in [args.reference, *args.config]:
        path = resolve_config(label)
        if path not in seen:
            seen.add(path)
            rows.append((label, path))
    return rows


def run_mode(script, args, configs, mode):
    """``args.rounds`` rounds, each config in its own child process in every round:
    ``{label: [result per round]}``."""
    common = ["--mode", mode, "--device", args.device]
    common += ["--iters", str(args.iters), "--warmup", str(args.warmup)]
    common += ["--caching-allocator"] if our_side_caches(args.device) else []
    runs = {label: [] for label, _ in configs}
    for round_index in range(args.rounds):
        for label, path in configs:
            result = run_child(script, common + ["--config", path])
            runs[label].append(result)
            print(f"{mode} round {round_index}: {label} {result}", flush=True)
    return runs


def check_equal_detections(runs):
    """Stop unless every run of every config returned the reference's detections per image
    (the reference: the first key of ``runs``)."""
    reference, *_ = runs
    expected = runs[reference][0]["detections"]
    for label, results in runs.items():
        for round_index, result in enumerate(results):
            if result["detections"] != expected:
                raise UnequalWorkError(
                    f"unequal work: {label} returned {result['detections']} detections per "
                    f"image in round {round_index}, {reference} {expected}; every model should "
                    f"return {DETECTIONS_PER_IMAGE} (test score threshold 0)"
                )
    return expected


def render(runs, mode, args):
    """The markdown table of one mode: the reference's row first, ratios to it."""
    summaries = {label: summarise(results) for label, results in runs.items()}
    reference = next(iter(summaries.values()))
    first = next(iter(runs.values()))[0]
    height, width = first["image_size"]
    boxes = first["boxes"][0] if len(set(first["boxes"])) == 1 else first["boxes"]
    what = "boxes and masks" if first["masks"] else "boxes"
    if mode == "train":
        unit, timed = "s/iter", "iterations (forward, losses, backward, SGD step)"
        per_second = first["images"]
    else:
        unit, timed = "s/img", "calls"
        per_second = 1
    cache = "; our CPU caching allocator" if our_side_caches(args.device) else ""
    header = (
        f"Device: {reference['machine']}{cache}. Batch of {first['images']} images of "
        f"{height} x {width} with {boxes} {what} each, {args.iters} timed {timed} after "
        f"{args.warmup} warm-up, best of {args.rounds} round(s); each config in its own "
        f"process, random weights (seed {SEED})."
    )
    if mode == "infer":
        header += (
            f" Test score threshold 0, at most {DETECTIONS_PER_IMAGE} detections per image: "
            f"{reference['detections']} for every config."
        )
    lines = [
        header,
        "",
        f"| config | {unit} (best) | {unit} (median) | images/s | peak memory (MiB) "
        "| time / reference | memory / reference |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, row in summaries.items():
        lines.append(
            f"| `{label}` | {row['best']:.2f} | {row['median']:.2f} "
            f"| {per_second / row['best']:.2f} | {row['peak_mb']:.0f} "
            f"| {row['best'] / reference['best']:.2f}x "
            f"| {row['peak_mb'] / reference['peak_mb']:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def child(args):
    device = torch.device(args.device)
    prepare_child(args)
    emit_result(measure(args.config[0], args.mode, device, args.iters, args.warmup))


def main(argv=None):
    args = parse_args(argv)
    if args.child:
        return child(args)
    configs = variants(args)
    modes = MODES if args.mode == "both" else (args.mode,)
    for mode in modes:  # every config loads, before any child runs
        for _, path in configs:
            load_variant(path, mode)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise BenchmarkError("--device cuda: no CUDA device is available here; use --device cpu")
    tables = {}
    for mode in modes:
        runs = run_mode(os.path.abspath(__file__), args, configs, mode)
        if mode == "infer":
            check_equal_detections(runs)
        tables[mode] = render(runs, mode, args)
        print(tables[mode], flush=True)
        if args.out:
            write_section(args.out, f"benchmark_variants {args.device} {mode}", tables[mode])
    return tables


if __name__ == "__main__":
    sys.exit(run_tool(main))
