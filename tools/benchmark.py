"""Inference speed and memory: our Mask R-CNN R50-FPN against torchvision's, in one run.

    python tools/benchmark.py [--device cpu|cuda] [--iters 3] [--warmup 1] [--rounds 1]
        [--config CONFIG ...] [--amp] [--out docs/benchmarks.md]

Each model runs in a fresh child process (so that its peak memory is its own) on the same
batch of 2 images of 800 x 1216, from the same random weights (see
``tools/benchmark_common.py`` for what makes the work equal), under ``torch.no_grad()``, from
the normalised batch to the final per-image results: boxes rescaled to the image, class-wise
NMS, masks pasted into the full image. Each child reports the number of detections per image;
the run stops if the two sides do not return the same numbers (unequal work). Reported:
seconds per image (best of the timed calls, and their median), images per second, and the
peak memory of the process (host RSS on the CPU, the allocator's peak on a GPU).
"""

import argparse
import os
import statistics
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchmark_common import (  # noqa: E402
    DEFAULT_CONFIG,
    NUM_IMAGES,
    build_pair,
    emit_result,
    machine_line,
    make_inputs,
    our_batch,
    peak_memory_mb,
    run_child,
    time_calls,
    torchvision_batch,
    write_section,
)


def child(args):
    device = torch.device(args.device)
    model, _ = build_pair(args.side, args.config, device)
    model.eval()
    samples = make_inputs()
    counts = []
    if args.side == "torchvision":
        images, _ = torchvision_batch(samples, device, train=False)

        def infer():
            outputs = model(images)
            counts[:] = [len(o["boxes"]) for o in outputs]
    else:
        batch = our_batch(samples, device, train=False)

        def infer():
            outputs = model(**batch, return_loss=False, rescale=True)
            counts[:] = [sum(len(per_class) for per_class in bboxes) for bboxes, _ in outputs]

    def call():
        with torch.no_grad(), torch.autocast(device.type, torch.float16, enabled=args.amp):
            infer()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = time_calls(call, device, args.iters, args.warmup)
    emit_result(
        dict(
            times=[t / NUM_IMAGES for t in times],
            detections=counts,
            peak_mb=peak_memory_mb(device),
            machine=machine_line(device),
        )
    )


def summarise(results):
    best = min(results, key=lambda r: min(r["times"]))
    return dict(
        best=min(best["times"]),
        median=statistics.median(best["times"]),
        peak_mb=min(r["peak_mb"] for r in results),
        detections=best["detections"],
        machine=best["machine"],
    )


def render(tv, rows, args):
    amp = " AMP (float16)." if args.amp else ""
    lines = [
        f"Device: {tv['machine']}.{amp} Batch of 2 images of 800 x 1216, {args.iters} timed "
        f"calls after {args.warmup} warm-up, best of {args.rounds} round(s); each side in its "
        f"own process; detections per image: {tv['detections']} on both sides.",
        "",
        "| model | s/img (best) | s/img (median) | images/s | peak memory (MiB) "
        "| ours / torchvision time | ours / torchvision memory |",
        "|---|---:|---:|---:|---:|---:|---:|",
        f"| torchvision maskrcnn_resnet50_fpn | {tv['best']:.2f} | {tv['median']:.2f} "
        f"| {1 / tv['best']:.2f} | {tv['peak_mb']:.0f} | 1.00x | 1.00x |",
    ]
    for config, ours in rows:
        lines.append(
            f"| ours, `{config}` | {ours['best']:.2f} | {ours['median']:.2f} "
            f"| {1 / ours['best']:.2f} | {ours['peak_mb']:.0f} "
            f"| {ours['best'] / tv['best']:.2f}x | {ours['peak_mb'] / tv['peak_mb']:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--config", action="append", help=f"our config (default {DEFAULT_CONFIG})")
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--amp", action="store_true", help="float16 autocast (GPU)")
    parser.add_argument("--out", help="markdown file to write the table into")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--side", choices=["ours", "torchvision"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.config = args.config[0] if args.config else DEFAULT_CONFIG
        return child(args)

    configs = args.config or [DEFAULT_CONFIG]
    common = ["--device", args.device, "--iters", str(args.iters), "--warmup", str(args.warmup)]
    common += ["--amp"] if args.amp else []
    script = os.path.abspath(__file__)
    tv_runs, our_runs = [], {c: [] for c in configs}
    for round_index in range(args.rounds):
        tv_runs.append(run_child(script, common + ["--side", "torchvision"]))
        print(f"round {round_index}: torchvision {tv_runs[-1]}", flush=True)
        for config in configs:
            result = run_child(script, common + ["--side", "ours", "--config", config])
            our_runs[config].append(result)
            print(f"round {round_index}: ours {config} {result}", flush=True)
    tv = summarise(tv_runs)
    rows = [(c, summarise(our_runs[c])) for c in configs]
    for config, ours in rows:
        if ours["detections"] != tv["detections"]:
            raise SystemExit(
                f"unequal work: {config} returned {ours['detections']} detections per image, "
                f"torchvision {tv['detections']}"
            )
    table = render(tv, rows, args)
    print(table)
    if args.out:
        write_section(args.out, f"benchmark {args.device}{' amp' if args.amp else ''}", table)


if __name__ == "__main__":
    main()
