"""Training speed and memory: our detector against torchvision's or transformers', in one run.

    python tools/benchmark_train.py
        [--model maskrcnn|keypoint_rcnn|retinanet|fcos|detr|deformable_detr]
        [--device cpu|cuda]
        [--iters 3] [--warmup 1] [--rounds 1] [--config CONFIG ...] [--amp]
        [--out docs/benchmarks.md]

``--model``: Mask R-CNN, Keypoint R-CNN, RetinaNet or FCOS, all R50-FPN, against
torchvision's (``maskrcnn_resnet50_fpn``, ``keypointrcnn_resnet50_fpn``,
``retinanet_resnet50_fpn``, ``fcos_resnet50_fpn``); DETR or Deformable DETR R-50 against
transformers' (``DetrForObjectDetection``, ``DeformableDetrForObjectDetection``).

Each model trains in a fresh child process (so that its peak memory is its own) on the same 2
images of 800 x 1216 with 5 boxes (and masks, Mask R-CNN) each, from the same random weights
(see ``mmdet_like/benchmarking/equal_work.py`` and ``transformers_pair.py`` for what makes
the work equal). A training iteration is the forward pass with the losses, the backward pass
and an SGD step (DETR and Deformable DETR: after clipping the gradients to norm 0.1 on both
sides, as their configs train; unclipped, the random Deformable DETR diverges within a few
steps). Reported: seconds per iteration (best of the timed iterations, and their
median), images per second, and the peak memory of the process (host RSS on the CPU, the
allocator's peak on a GPU). With ``--rounds`` above 1 the sides alternate and the best round
counts. ``--config`` may be given several times: each config is one row against the same
reference figures. For the transformers pairs the run stops unless both sides train the same
number of parameters, which the table's first line gives.
"""

import os
import sys

import torch

from mmdet_like.benchmarking import (
    MODELS,
    build_pair,
    check_equal_trainable,
    current_rss_mb,
    emit_result,
    machine_line,
    make_inputs,
    our_batch,
    parse_benchmark_args,
    peak_memory_mb,
    prepare_child,
    reference_label,
    reference_library,
    reference_training_loss,
    row_label,
    run_rounds,
    section_marker,
    summarise,
    time_calls,
    write_section,
)
from mmdet_like.engine.runner import parse_losses
from mmdet_like.errors import run_tool


def child(args):
    device = torch.device(args.device)
    prepare_child(args)
    torch.manual_seed(0)
    model, _ = build_pair(args.side, args.config, device, model=args.model,
                          weights=args.weights)  # fmt: skip
    masks = MODELS[args.model]["masks"]
    keypoints = MODELS[args.model].get("keypoints", False)
    model.train()
    samples = make_inputs()
    if args.side == "reference":
        losses = reference_training_loss(args.model, model, samples, device)
    else:
        batch = our_batch(samples, device, masks=masks, keypoints=keypoints)

        def losses():
            return parse_losses(model(**batch))[0]

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=1e-3, momentum=0.9, weight_decay=1e-4)
    scaler = torch.amp.GradScaler(device.type, enabled=args.amp)
    max_norm = MODELS[args.model].get("grad_clip")

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.float16, enabled=args.amp):
            loss = losses()
        scaler.scale(loss).backward()
        if max_norm is not None:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, max_norm)
        scaler.step(optimizer)
        scaler.update()

    baseline = current_rss_mb() if device.type == "cpu" else None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = time_calls(step, device, args.iters, args.warmup)
    emit_result(
        dict(
            times=times,
            peak_mb=peak_memory_mb(device),
            baseline_mb=baseline,
            trainable=sum(p.numel() for p in params),
            machine=machine_line(device, reference=reference_library(args.model)),
        )
    )


def render(rows, device, args):
    amp = " AMP (float16)" if args.amp else ""
    library = reference_library(args.model)
    trainable = ""
    if library == "transformers":  # equal on both sides (main checks)
        trainable = f" Trainable parameters: {rows[0]['tv']['trainable']:,} on both sides."
    lines = [
        f"Device: {rows[0]['tv']['machine']}.{amp} Batch of 2 images of 800 x 1216, "
        f"{args.iters} timed iterations after {args.warmup} warm-up, best of {args.rounds} "
        f"round(s); each side in its own process.{trainable}",
        "",
        "| model | s/iter (best) | s/iter (median) | images/s | peak memory (MiB) "
        f"| ours / {library} time | ours / {library} memory |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    tv = rows[0]["tv"]
    lines.append(
        f"| {reference_label(args.model)} | {tv['best']:.2f} | {tv['median']:.2f} "
        f"| {2 / tv['best']:.2f} | {tv['peak_mb']:.0f} | 1.00x | 1.00x |"
    )
    for row in rows:
        ours = row["ours"]
        lines.append(
            f"| {row_label(row['config'], args.model)} | {ours['best']:.2f} | {ours['median']:.2f} "
            f"| {2 / ours['best']:.2f} | {ours['peak_mb']:.0f} "
            f"| {ours['best'] / tv['best']:.2f}x | {ours['peak_mb'] / tv['peak_mb']:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def main():
    args = parse_benchmark_args(__doc__.splitlines()[0], default_iters=3)
    if args.child:
        return child(args)
    tv_runs, our_runs = run_rounds(os.path.abspath(__file__), args)
    if reference_library(args.model) == "transformers":
        check_equal_trainable(
            tv_runs[0], [(key, run) for key, runs in our_runs.items() for run in runs], args.model
        )
    tv = dict(summarise(tv_runs), trainable=tv_runs[0]["trainable"])
    rows = [dict(config=key, tv=tv, ours=summarise(runs)) for key, runs in our_runs.items()]
    table = render(rows, torch.device(args.device), args)
    print(table)
    if args.out:
        write_section(args.out, section_marker("benchmark_train", args), table)


if __name__ == "__main__":
    sys.exit(run_tool(main))
