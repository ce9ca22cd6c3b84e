"""Running and reporting a benchmark: each side in a fresh child process (its own peak
memory), timing with device synchronisation, peak memory, one summary per side, and the
markdown sections of docs/benchmarks.md."""

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import torch

from mmdet_like.benchmarking.equal_work import DEFAULT_MODEL, MODELS, ROOT, prepare_pair_weights
from mmdet_like.engine import ConfigError
from mmdet_like.engine.config import ConfigFileNotFoundError
from mmdet_like.errors import ProjectError

# detections an image when every model must return as many (test score threshold 0)
DETECTIONS_PER_IMAGE = 100


def machine_line(device, with_torchvision=True, reference=None):
    """The device and the library versions, for a table's first line: the reference
    side's library (``reference``: 'torchvision', or 'transformers' with timm, whose
    ResNet is its backbone) or, without it, torchvision's version with
    ``with_torchvision`` (the tables where it is the reference side)."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)"
    if reference is None:
        reference = "torchvision" if with_torchvision else None
    if reference is None:
        return f"{name}; torch {torch.__version__}"
    if reference == "transformers":
        import timm
        import transformers

        versions = f"transformers {transformers.__version__}, timm {timm.__version__}"
    elif reference == "torchvision":
        import torchvision  # the reference side's version, in every table

        versions = f"torchvision {torchvision.__version__}"
    else:
        raise ValueError(f"unknown reference library {reference!r}: torchvision or transformers")
    return f"{name}; torch {torch.__version__}, {versions}"


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_mb(device):
    """Peak memory of this process so far: CUDA allocator peak or host peak RSS (MiB)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def time_calls(fn, device, iters, warmup):
    """Run ``fn`` ``warmup`` times, then time ``iters`` calls; list of seconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return times


def run_child(script, args):
    """Run ``script --child ...`` in a fresh process (its own peak memory); its JSON result."""
    out = subprocess.run(
        [sys.executable, script, "--child", *args], capture_output=True, text=True, cwd=ROOT
    )
    if out.returncode != 0:
        raise RuntimeError(f"benchmark child {args} failed:\n{out.stdout}\n{out.stderr}")
    for line in reversed(out.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise RuntimeError(f"benchmark child {args} printed no result:\n{out.stdout}\n{out.stderr}")


def emit_result(result):
    print("RESULT " + json.dumps(result), flush=True)


def write_section(path, marker, text):
    """Replace (or append) the block between ``<!-- marker begin/end -->`` in ``path``."""
    begin, end = f"<!-- {marker} begin -->", f"<!-- {marker} end -->"
    block = f"{begin}\n{text.rstrip()}\n{end}"
    content = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    if begin in content and end in content:
        head, rest = content.split(begin, 1)
        content = head + block + rest.split(end, 1)[1]
    else:
        content = content.rstrip() + "\n\n" + block + "\n"
    with open(path, "w") as f:
        f.write(content)


def parse_benchmark_args(description, default_iters):
    """Arguments shared by the detector benchmarks (and their hidden ``--child`` mode)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        choices=sorted(MODELS),
        help=f"the detector pair (default {DEFAULT_MODEL}): ours against "
        + ", ".join(reference_label(m) for m in MODELS),
    )
    parser.add_argument(
        "--config",
        action="append",
        help="our config (default: the config of --model that computes what the reference "
        "computes, " + ", ".join(f"{k}: {m['config']}" for k, m in MODELS.items()) + ")",
    )
    parser.add_argument("--iters", type=int, default=default_iters)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--amp", action="store_true", help="float16 autocast (GPU)")
    parser.add_argument("--out", help="markdown file to write the table into")
    parser.add_argument(
        "--torchvision-cached",
        "--reference-cached",
        dest="torchvision_cached",
        action="store_true",
        help="add a row of the reference (torchvision's or transformers' model) run with our "
        "CPU caching allocator (which our side uses, as tools/train.py and tools/test.py do): "
        "how much of the gap is the allocator",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--side", choices=["ours", "reference"], help=argparse.SUPPRESS)
    parser.add_argument("--caching-allocator", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--weights", help=argparse.SUPPRESS)
    args = parser.parse_args()
    default_config = MODELS[args.model]["config"]
    if args.child:
        args.config = args.config[0] if args.config else default_config
    else:
        args.config = args.config or [default_config]
    return args


def reference_library(model):
    """The library of ``model``'s reference side (a key of ``MODELS``): 'torchvision' or
    'transformers'."""
    if model not in MODELS:
        raise ValueError(f"unknown benchmark model {model!r}; choose one of {sorted(MODELS)}")
    return MODELS[model]["reference"]


def reference_label(model):
    """The table label of the reference side of ``model`` (a key of ``MODELS``): the
    library and its builder or class, e.g. 'torchvision maskrcnn_resnet50_fpn',
    'transformers DetrForObjectDetection'."""
    library = reference_library(model)
    return f"{library} {MODELS[model][library]}"


def torchvision_label(model):
    """:func:`reference_label` (the name from when torchvision was every model's reference)."""
    return reference_label(model)


def section_marker(tool, args):
    """The docs/benchmarks.md block of one table: ``tool`` ('benchmark' or
    'benchmark_train'), the device, ``amp`` and the model (none for Mask R-CNN, whose blocks
    predate ``--model``)."""
    marker = f"{tool} {args.device}{' amp' if args.amp else ''}"
    return marker if args.model == DEFAULT_MODEL else f"{marker} {args.model}"


TORCHVISION_CACHED = "torchvision+caching-allocator"


def row_label(key, model=DEFAULT_MODEL):
    """The table label of a key of ``run_rounds``' second result."""
    if key == TORCHVISION_CACHED:
        return f"{reference_label(model)} + our CPU caching allocator"
    return f"ours, `{key}`"


def our_side_caches(device):
    """Whether our side runs with the CPU caching allocator: on the CPU, as the tools do
    (``MMDET_LIKE_CPU_CACHING_ALLOCATOR=0`` switches it off for both), where it exists (it
    is compiled code: not with the fallback ops)."""
    from mmdet_like.ops import cpu_caching_allocator_available, cpu_caching_allocator_switched_on

    on = device == "cpu" and cpu_caching_allocator_switched_on()
    return on and cpu_caching_allocator_available()


def prepare_child(args):
    """In a child: switch on the CPU caching allocator if the parent asked for it."""
    if args.caching_allocator:
        from mmdet_like.ops import enable_cpu_caching_allocator

        if not enable_cpu_caching_allocator():
            raise RuntimeError("the CPU caching allocator could not be installed")


def run_rounds(script, args):
    """``args.rounds`` rounds of child runs, the reference side (torchvision's or
    transformers' model: ``MODELS[args.model]['reference']``) then each of ``args.config``
    (then the reference with our CPU caching allocator if ``args.torchvision_cached``):
    ``(reference results, {config or TORCHVISION_CACHED: results})``.

    Where the pair's weights are made once for both sides (:func:`prepare_pair_weights`:
    the transformers models), they are written to a temporary folder first and each child
    loads them (``--weights``), so that our side's process never imports the reference's
    library."""
    model = getattr(args, "model", DEFAULT_MODEL)
    library = reference_library(model)
    common = ["--device", args.device, "--iters", str(args.iters), "--warmup", str(args.warmup)]
    common += ["--model", model]
    common += ["--amp"] if args.amp else []
    cache = ["--caching-allocator"] if our_side_caches(args.device) else []
    extra = {c: ["--side", "ours", "--config", c] + cache for c in args.config}
    if args.torchvision_cached:
        extra[TORCHVISION_CACHED] = ["--side", "reference", "--caching-allocator"]
    reference_runs, other_runs = [], {key: [] for key in extra}
    with tempfile.TemporaryDirectory(prefix="mmdet_like_benchmark_") as folder:
        weights = prepare_pair_weights(model, folder)
        common += ["--weights", weights] if weights else []
        for round_index in range(args.rounds):
            reference_runs.append(run_child(script, common + ["--side", "reference"]))
            print(f"round {round_index}: {library} {reference_runs[-1]}", flush=True)
            for key, side_args in extra.items():
                result = run_child(script, common + side_args)
                other_runs[key].append(result)
                print(f"round {round_index}: {key} {result}", flush=True)
    return reference_runs, other_runs


def summarise(results):
    """One side's rounds -> its fastest round, reported whole: that round's fastest and
    median time and its own peak memory (and, for inference, its detections per image).

    Time and memory come from the same round, so a summary never puts the fastest time of
    one round beside the lowest memory of another.
    """
    best = min(results, key=lambda r: min(r["times"]))
    summary = dict(
        best=min(best["times"]),
        median=statistics.median(best["times"]),
        peak_mb=best["peak_mb"],
        machine=best["machine"],
    )
    if "detections" in best:
        summary["detections"] = best["detections"]
    return summary


class UnequalWorkError(ProjectError, RuntimeError):
    """The two sides of a benchmark did not do the same work (their detections per image,
    or their trainable parameters, differ), so their times cannot be compared."""


def check_equal_detections(reference, rows, model):
    """Stop (:class:`UnequalWorkError`) unless every row's summary (``(key, summary)``)
    returned the reference summary's detections per image."""
    for key, ours in rows:
        if ours["detections"] != reference["detections"]:
            raise UnequalWorkError(
                f"unequal work: {key} returned {ours['detections']} detections per image, "
                f"{reference_label(model)} {reference['detections']}; both sides must return "
                "as many (score threshold 0 and max_per_img 100 in our config's test_cfg)"
            )


def check_equal_trainable(reference, rows, model):
    """Stop (:class:`UnequalWorkError`) unless every row's result (``(key, result)``)
    trains as many parameters as the reference's (the transformers pairs, whose trainable
    layers are the same on both sides by construction)."""
    for key, ours in rows:
        if ours["trainable"] != reference["trainable"]:
            raise UnequalWorkError(
                f"unequal work: {key} trains {ours['trainable']} parameters, "
                f"{reference_label(model)} {reference['trainable']}; freeze the same layers "
                "on both sides (our config's backbone.frozen_stages and norm_cfg)"
            )


def resolve_config(path):
    """``path`` as an absolute path: itself if absolute, else from the current folder if a
    file is there, else from the repository root."""
    if os.path.isabs(path):
        candidates = [path]
    else:
        candidates = list(dict.fromkeys([os.path.abspath(path), os.path.join(ROOT, path)]))
    for candidate in candidates:
        if os.path.isfile(candidate):
            return candidate
    raise ConfigFileNotFoundError(
        f"config {path!r} does not exist (looked for {' and '.join(candidates)}); give a "
        "config file, e.g. --config configs/cascade_mask_rcnn_r50_fpn_1x.py"
    )


def equal_detections_test_cfg(cfg, path):
    """Set the final stage's test score threshold to 0 and ``max_per_img`` to 100 (``rcnn``
    of a two-stage test config, each entry if it is a list; the test config itself for a
    single-stage one), so that every model returns 100 detections per image."""
    test_cfg = cfg.get("test_cfg") or cfg.model.get("test_cfg")
    if not test_cfg:
        raise ConfigError(f"{path}: no test_cfg, so its detections cannot be made equal")
    final = test_cfg.get("rcnn", test_cfg)
    for stage in final if isinstance(final, (list, tuple)) else [final]:
        if "score_thr" not in stage:
            raise ConfigError(
                f"{path}: test_cfg{'.rcnn' if 'rcnn' in test_cfg else ''} has no score_thr, "
                "so its detections cannot be made equal (a detector with boxes is needed)"
            )
        stage["score_thr"] = 0.0
        stage["max_per_img"] = DETECTIONS_PER_IMAGE
    return cfg
