"""Inference speed and memory: our detector against torchvision's or transformers', in one run.

    python tools/benchmark.py
        [--model maskrcnn|keypoint_rcnn|retinanet|fcos|detr|deformable_detr]
        [--device cpu|cuda]
        [--iters 3] [--warmup 1] [--rounds 1] [--config CONFIG ...] [--amp]
        [--out docs/benchmarks.md]

``--model``: Mask R-CNN, Keypoint R-CNN, RetinaNet or FCOS, all R50-FPN, against
torchvision's (``maskrcnn_resnet50_fpn``, ``keypointrcnn_resnet50_fpn``,
``retinanet_resnet50_fpn``, ``fcos_resnet50_fpn``); DETR or Deformable DETR R-50 against
transformers' (``DetrForObjectDetection``, ``DeformableDetrForObjectDetection``).

Each model runs in a fresh child process (so that its peak memory is its own) on the same batch
of 2 images of 800 x 1216, from the same random weights (see
``mmdet_like/benchmarking/equal_work.py`` and ``transformers_pair.py`` for what makes the
work equal), under ``torch.no_grad()``, from the normalised batch to the final per-image
results: boxes rescaled to the image, class-wise NMS, (Mask R-CNN) masks pasted into the
full image; the DETRs' post-processing (score threshold 0). Each child reports
the number of detections per image; the run stops if the two sides do not return the same
numbers (unequal work). Reported: seconds per image (best of the timed calls, and their
median), images per second, and the peak memory of the process (host RSS on the CPU, the
allocator's peak on a GPU).
"""

import os
import sys

import torch

from mmdet_like.benchmarking import (
    NUM_IMAGES,
    build_pair,
    check_equal_detections,
    emit_result,
    machine_line,
    make_inputs,
    our_batch,
    parse_benchmark_args,
    peak_memory_mb,
    prepare_child,
    reference_inference,
    reference_label,
    reference_library,
    row_label,
    run_rounds,
    section_marker,
    summarise,
    time_calls,
    write_section,
)
from mmdet_like.errors import run_tool


def child(args):
    device = torch.device(args.device)
    prepare_child(args)
    model, _ = build_pair(args.side, args.config, device, model=args.model,
                          weights=args.weights)  # fmt: skip
    model.eval()
    samples = make_inputs()
    counts = []
    if args.side == "reference":
        reference_call = reference_inference(args.model, model, samples, device)

        def infer():
            counts[:] = reference_call()
    else:
        batch = our_batch(samples, device, train=False)

        def infer():
            outputs = model(**batch, return_loss=False, rescale=True)
            counts[:] = [len(sample.pred_instances) for sample in outputs]

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
            machine=machine_line(device, reference=reference_library(args.model)),
        )
    )


def render(tv, rows, args):
    amp = " AMP (float16)." if args.amp else ""
    library = reference_library(args.model)
    lines = [
        f"Device: {tv['machine']}.{amp} Batch of 2 images of 800 x 1216, {args.iters} timed "
        f"calls after {args.warmup} warm-up, best of {args.rounds} round(s); each side in its "
        f"own process; detections per image: {tv['detections']} on both sides.",
        "",
        "| model | s/img (best) | s/img (median) | images/s | peak memory (MiB) "
        f"| ours / {library} time | ours / {library} memory |",
        "|---|---:|---:|---:|---:|---:|---:|",
        f"| {reference_label(args.model)} | {tv['best']:.2f} | {tv['median']:.2f} "
        f"| {1 / tv['best']:.2f} | {tv['peak_mb']:.0f} | 1.00x | 1.00x |",
    ]
    for key, ours in rows:
        lines.append(
            f"| {row_label(key, args.model)} | {ours['best']:.2f} | {ours['median']:.2f} "
            f"| {1 / ours['best']:.2f} | {ours['peak_mb']:.0f} "
            f"| {ours['best'] / tv['best']:.2f}x | {ours['peak_mb'] / tv['peak_mb']:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def main():
    args = parse_benchmark_args(__doc__.splitlines()[0], default_iters=3)
    if args.child:
        return child(args)
    tv_runs, our_runs = run_rounds(os.path.abspath(__file__), args)
    tv = summarise(tv_runs)
    rows = [(key, summarise(runs)) for key, runs in our_runs.items()]
    check_equal_detections(tv, rows, args.model)
    table = render(tv, rows, args)
    print(table)
    if args.out:
        write_section(args.out, section_marker("benchmark", args), table)


if __name__ == "__main__":
    sys.exit(run_tool(main))
