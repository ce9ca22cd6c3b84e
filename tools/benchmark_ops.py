"""Time mmdet_like's compiled ops against their fallback and torchvision.ops in the same run.

    python tools/benchmark_ops.py [--device cpu|cuda] [--repeat 5] [--out docs/benchmarks.md]
        [--contend N] [--quick] [--no-fallback]

Prints a table of the best of the repeated times (the least disturbed by other load), the
ratio ours / torchvision (below 1.0: we are faster) and the ratio ours / fallback (what the
compiled ops buy over the PyTorch/torchvision fallback that runs where the extension is not
built, mmdet_like/ops/fallback.py; it is called directly, as its kernels are registered),
and, with --out, writes it into that markdown file between markers of its own (other
sections of the file are kept). Before timing, the results are checked to be equal work:
roi_align outputs and gradients agree, nms keeps the same boxes, soft_nms (which torchvision
does not have) keeps the same boxes with the same scores in the fallback, ms_deform_attn
(which torchvision does not have either; its fallback is the plain-PyTorch grid_sample
formulation of Deformable DETR) gives the same output and gradients.

``--contend N`` starts N busy single-threaded processes (a numpy matrix-product loop, like a
training run's data-loader workers) before timing and stops them after: on a machine with
few cores, OpenMP threads that wait for a core make every parallel region expensive, and
the table shows what each op costs then. ``--quick`` leaves out the largest inputs.
"""

import argparse
import os
import platform
import subprocess
import sys

import torch
import torchvision

from mmdet_like.benchmarking import time_calls, write_section
from mmdet_like.errors import ProjectError, run_tool
from mmdet_like.ops import backend, fallback, ms_deform_attn, nms, roi_align, soft_nms

IMAGE_HEIGHT, IMAGE_WIDTH = 800, 1216


def best_time(fn, device, repeat, warmup=1):
    """The fastest of ``repeat`` timed calls after ``warmup`` untimed ones (seconds)."""
    return min(time_calls(fn, device, repeat, warmup))


def make_rois(num, generator, device):
    """RoIs of 16 to 512 pixels inside an 800 x 1216 image, spread over 2 images."""
    size = torch.rand(num, 2, generator=generator) * 496 + 16
    x1 = torch.rand(num, generator=generator) * (IMAGE_WIDTH - size[:, 0])
    y1 = torch.rand(num, generator=generator) * (IMAGE_HEIGHT - size[:, 1])
    batch = torch.randint(0, 2, (num,), generator=generator).float()
    rois = torch.stack([batch, x1, y1, x1 + size[:, 0], y1 + size[:, 1]], dim=1)
    return rois.to(device)


def make_proposals(num, generator, device):
    """RPN-like proposals: jittered copies of 100 objects, plus 20% spread over the image."""
    num_objects = 100
    centre = torch.rand(num_objects, 2, generator=generator) * torch.tensor(
        [IMAGE_WIDTH, IMAGE_HEIGHT]
    )
    size = torch.rand(num_objects, 2, generator=generator) * 300 + 20
    pick = torch.randint(0, num_objects, (num,), generator=generator)
    jitter = 1 + torch.randn(num, 2, generator=generator) * 0.15
    c = centre[pick] + torch.randn(num, 2, generator=generator) * size[pick] * 0.1
    wh = size[pick] * jitter.clamp(min=0.2)
    spread = torch.rand(num, generator=generator) < 0.2
    c[spread] = torch.rand(int(spread.sum()), 2, generator=generator) * torch.tensor(
        [IMAGE_WIDTH, IMAGE_HEIGHT]
    )
    boxes = torch.cat([c - wh / 2, c + wh / 2], dim=1)
    scores = torch.rand(num, generator=generator)
    return boxes.to(device), scores.to(device)


BUSY_LOOP = (
    "import numpy as np\n"
    "a = np.random.default_rng(0).random((192, 192))\n"
    "while True:\n"
    "    a = (a @ a) / 192.0\n"
)


def start_busy_processes(num):
    """``num`` single-threaded busy processes (numpy matrix products), to be stopped with
    :func:`stop_busy_processes`."""
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return [subprocess.Popen([sys.executable, "-c", BUSY_LOOP], env=env) for _ in range(num)]


def stop_busy_processes(procs):
    for proc in procs:
        proc.kill()
    for proc in procs:
        proc.wait()


def bench_roi_align(device, repeat, generator, quick=False, with_fallback=True):
    rows = []
    # small: a mask-head-sized call of a few RoIs, where a parallel region costs the most
    feature = torch.randn(2, 256, 50, 76, generator=generator).to(device)
    small_rois = make_rois(16, generator, device)
    small_rois[:, 1:] /= 4  # inside a 200 x 304 image
    name = "roi_align 16 rois (200 x 304 image), sampling_ratio=2"
    rows += _roi_align_rows(feature, small_rois, 2, device, repeat, generator, name, with_fallback)
    feature = torch.randn(2, 256, IMAGE_HEIGHT // 4, IMAGE_WIDTH // 4, generator=generator)
    feature = feature.to(device)
    for num_rois in (512,) if quick else (512, 2000):
        rois = make_rois(num_rois, generator, device)
        for sampling_ratio in (2,) if quick else (0, 2):
            name = f"roi_align {num_rois} rois, sampling_ratio={sampling_ratio}"
            rows += _roi_align_rows(
                feature, rois, sampling_ratio, device, repeat, generator, name, with_fallback
            )
    return rows


def _roi_align_rows(feature, rois, sampling_ratio, device, repeat, generator, name,
                    with_fallback=True):  # fmt: skip
    """Forward, and forward+backward, rows of one roi_align case (outputs checked equal):
    ``(name, ours, fallback or None, torchvision)`` seconds."""
    rows = []
    num_rois = rois.size(0)
    grad = torch.randn(num_rois, feature.size(1), 7, 7, generator=generator).to(device)
    args = (7, 0.25, sampling_ratio, True)
    op_args = (0.25, 7, 7, sampling_ratio, True)  # the op's own argument order
    backward_args = (0.25, 7, 7, *feature.shape, sampling_ratio, True)
    ours_in = feature.clone().requires_grad_(True)
    ref_in = feature.clone().requires_grad_(True)

    def ours_fwd_bwd(x=ours_in, r=rois, g=grad, a=args):
        x.grad = None
        roi_align(x, r, *a).backward(g)

    def ref_fwd_bwd(x=ref_in, r=rois, g=grad, a=args):
        x.grad = None
        torchvision.ops.roi_align(x, r, *a).backward(g)

    def fallback_fwd_bwd(x=feature, r=rois, g=grad):
        # the fallback's forward and backward kernels, as autograd calls them
        fallback.roi_align(x, r, *op_args)
        return fallback.roi_align_backward(g, r, *backward_args)

    ours_fwd_bwd()
    ref_fwd_bwd()
    torch.testing.assert_close(ours_in.grad, ref_in.grad, atol=1e-4, rtol=1e-4)
    t_fallback_f = t_fallback = None
    if with_fallback:
        torch.testing.assert_close(fallback_fwd_bwd(), ours_in.grad, atol=1e-4, rtol=1e-4)
    with torch.no_grad():
        t_ours_f = best_time(lambda a=args, r=rois: roi_align(feature, r, *a), device, repeat)
        if with_fallback:
            t_fallback_f = best_time(
                lambda r=rois: fallback.roi_align(feature, r, *op_args), device, repeat
            )
        t_ref_f = best_time(
            lambda a=args, r=rois: torchvision.ops.roi_align(feature, r, *a), device, repeat
        )
        if with_fallback:
            t_fallback = best_time(fallback_fwd_bwd, device, repeat)
    t_ours = best_time(ours_fwd_bwd, device, repeat)
    t_ref = best_time(ref_fwd_bwd, device, repeat)
    rows.append((name + ", forward", t_ours_f, t_fallback_f, t_ref_f))
    rows.append((name + ", forward+backward", t_ours, t_fallback, t_ref))
    return rows


# Deformable DETR on an 800 x 1216 image: 4 levels at strides 8 to 64 (ceil division, as a
# ResNet's stages), 8 heads of 32 channels, 4 points per level
MSDA_LEVELS = [(-(-IMAGE_HEIGHT // s), -(-IMAGE_WIDTH // s)) for s in (8, 16, 32, 64)]
MSDA_HEADS, MSDA_DIM, MSDA_POINTS = 8, 32, 4


def make_ms_deform_attn_inputs(batch, num_queries, generator, device):
    """Inputs of one deformable attention layer: value of the 4 levels; sampling locations
    around reference points (the keys' own positions in the encoder, num_queries = num_keys;
    random points for the decoder's queries), a few pixels away as the trained offsets;
    attention weights a softmax over levels x points."""
    shapes = torch.tensor(MSDA_LEVELS, dtype=torch.long)
    sizes = shapes.prod(1)
    starts = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])
    num_keys = int(sizes.sum())
    levels, heads, points = len(MSDA_LEVELS), MSDA_HEADS, MSDA_POINTS
    value = torch.randn(batch, num_keys, heads, MSDA_DIM, generator=generator)
    if num_queries == num_keys:  # encoder: each key's pixel centre in [0, 1]
        centres = []
        for h, w in MSDA_LEVELS:
            y, x = torch.meshgrid(
                (torch.arange(h) + 0.5) / h, (torch.arange(w) + 0.5) / w, indexing="ij"
            )
            centres.append(torch.stack([x, y], dim=-1).reshape(-1, 2))
        reference = torch.cat(centres).expand(batch, -1, -1)
    else:
        reference = torch.rand(batch, num_queries, 2, generator=generator)
    wh = shapes.flip(1).float()  # (levels, 2) [w, h]
    offsets = torch.randn(batch, num_queries, heads, levels, points, 2, generator=generator) * 2
    locations = reference[:, :, None, None, None, :] + offsets / wh[:, None, :]
    logits = torch.randn(batch, num_queries, heads, levels * points, generator=generator)
    weights = logits.softmax(-1).view(batch, num_queries, heads, levels, points)
    return [t.to(device) for t in (value, shapes, starts, locations, weights)]


def bench_ms_deform_attn(device, repeat, generator, quick=False, with_fallback=True):
    """Forward, and forward+backward, rows of ms_deform_attn against its fallback, the
    plain-PyTorch grid_sample formulation (torchvision has none): Deformable DETR's decoder
    (300 queries) and encoder (every key a query), 2 images."""
    rows = []
    num_keys = sum(h * w for h, w in MSDA_LEVELS)
    for num_queries, part in ((300, "decoder"), (num_keys, "encoder")):
        inputs = make_ms_deform_attn_inputs(2, num_queries, generator, device)
        value, shapes, starts, locations, weights = inputs
        grad = torch.randn(2, num_queries, MSDA_HEADS * MSDA_DIM, generator=generator)
        grad = grad.to(device)
        leaves = [t.clone().requires_grad_(True) for t in (value, locations, weights)]

        def ours_fwd_bwd(v=leaves[0], loc=leaves[1], w=leaves[2], s=shapes, st=starts, g=grad):
            for t in (v, loc, w):
                t.grad = None
            ms_deform_attn(v, s, st, loc, w).backward(g)

        def fallback_fwd_bwd(inputs=inputs, g=grad):
            # the fallback's forward and backward kernels, as autograd calls them
            fallback.ms_deform_attn(*inputs)
            return fallback.ms_deform_attn_backward(*inputs, g)

        ours_fwd_bwd()
        # equal within float32 rounding, relative to each result's largest value (the
        # gradients of the locations are in pixels of the larger maps: thousands). Bilinear
        # sampling has a kink at integer pixel coordinates, where the two sides' roundings
        # may pick different cells (the encoder's points at pixel centres plus offsets hit
        # a few): locations within 1e-3 px of one are left out of their gradient's comparison.
        pairs = [(ms_deform_attn(*inputs), fallback.ms_deform_attn(*inputs))]
        pairs += [(leaf.grad, theirs) for leaf, theirs in zip(leaves, fallback_fwd_bwd())]
        pixel = locations * shapes.flip(1).to(locations)[:, None, :] - 0.5
        smooth = (pixel - pixel.round()).abs() > 1e-3
        pairs[2] = (pairs[2][0] * smooth, pairs[2][1] * smooth)
        for ours, theirs in pairs:
            scale = theirs.abs().max().item()
            diff = (ours - theirs).abs().max().item()
            assert diff <= 1e-4 * scale, f"ms_deform_attn {part}: {diff:.3g} > 1e-4 x {scale:.3g}"
        name = (
            f"ms_deform_attn {part}: {num_queries} queries, {num_keys} keys, 2 images, "
            f"{MSDA_HEADS} heads x {MSDA_DIM}, 4 levels x {MSDA_POINTS} points"
        )
        with torch.no_grad():
            t_ours_f = best_time(lambda a=inputs: ms_deform_attn(*a), device, repeat)
            t_fallback_f = t_fallback = None
            if with_fallback:
                t_fallback_f = best_time(
                    lambda a=inputs: fallback.ms_deform_attn(*a), device, repeat
                )
                t_fallback = best_time(fallback_fwd_bwd, device, repeat)
        t_ours = best_time(ours_fwd_bwd, device, repeat)
        rows.append((name + ", forward", t_ours_f, t_fallback_f, None))
        rows.append((name + ", forward+backward", t_ours, t_fallback, None))
    return rows


def bench_nms(device, repeat, generator, quick=False, with_fallback=True):
    rows = []
    for num in (1_000, 2_000, 5_000) if quick else (1_000, 2_000, 5_000, 20_000):
        boxes, scores = make_proposals(num, generator, device)
        for iou in (0.7, 0.5):
            ours = nms(boxes, scores, iou)
            ref = torchvision.ops.nms(boxes, scores, iou)
            assert torch.equal(ours, ref), "nms results differ from torchvision"
            t_ours = best_time(lambda b=boxes, s=scores, i=iou: nms(b, s, i), device, repeat)
            t_fallback = None
            if with_fallback:
                assert torch.equal(fallback.nms(boxes, scores, iou), ours), "fallback nms differs"
                t_fallback = best_time(
                    lambda b=boxes, s=scores, i=iou: fallback.nms(b, s, i), device, repeat
                )
            t_ref = best_time(
                lambda b=boxes, s=scores, i=iou: torchvision.ops.nms(b, s, i), device, repeat
            )
            name = f"nms {num} boxes, IoU {iou} (keeps {len(ours)})"
            rows.append((name, t_ours, t_fallback, t_ref))
    return rows


def bench_soft_nms(device, repeat, generator, quick=False):
    """soft_nms against its fallback (torchvision has none): per-class candidates of a
    detector's last step, many overlapping (linear and gaussian decay, min_score 1e-3)."""
    rows = []
    for num in (300, 1_000) if quick else (300, 1_000, 3_000):
        boxes, scores = make_proposals(num, generator, device)
        for method, code in (("linear", 1), ("gaussian", 2)):
            args = (0.3, 0.5, 1e-3, code)
            ours_dets, ours_keep = soft_nms(boxes, scores, 0.3, 0.5, 1e-3, method)
            dets, keep = fallback.soft_nms(boxes.cpu(), scores.cpu(), *args)
            assert torch.equal(keep, ours_keep.cpu()), "fallback soft_nms differs"
            torch.testing.assert_close(dets, ours_dets.cpu(), rtol=1e-6, atol=0)
            t_ours = best_time(
                lambda b=boxes, s=scores, m=method: soft_nms(b, s, 0.3, 0.5, 1e-3, m),
                device, repeat,
            )  # fmt: skip
            t_fallback = best_time(
                lambda b=boxes, s=scores, a=args: fallback.soft_nms(b.cpu(), s.cpu(), *a),
                device, repeat,
            )  # fmt: skip
            name = f"soft_nms {num} boxes, {method} (keeps {len(keep)})"
            rows.append((name, t_ours, t_fallback, None))
    return rows


def cpu_model():
    """The CPU's model name (what ``lscpu`` prints), or the architecture where unknown."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_description(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_model()}, {platform.machine()}, {torch.get_num_threads()} threads"


def _ms(seconds):
    return "–" if seconds is None else f"{seconds * 1e3:.2f}"


def _ratio(ours, other):
    return "–" if other is None else f"{ours / other:.2f}x"


def render(rows, device, contend=0):
    load = (
        f" Timed beside {contend} busy single-threaded process(es) (`--contend {contend}`)."
        if contend
        else ""
    )
    header = (
        f"Device: {device.type} ({machine_description(device)}); torch {torch.__version__}, "
        f"torchvision {torchvision.__version__}. Best of repeated runs, all sides in the same "
        f"process.{load}\n\n"
        "| op | ours (ms) | fallback (ms) | torchvision (ms) | ours / torchvision "
        "| ours / fallback |\n|---|---:|---:|---:|---:|---:|\n"
    )
    body = "".join(
        f"| {name} | {_ms(ours)} | {_ms(fb)} | {_ms(ref)} | {_ratio(ours, ref)} "
        f"| {_ratio(ours, fb)} |\n"
        for name, ours, fb, ref in rows
    )
    return header + body


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", help="markdown file to write the table into")
    parser.add_argument(
        "--only",
        choices=["roi_align", "ms_deform_attn", "nms", "soft_nms"],
        help="run one group only",
    )
    parser.add_argument(
        "--contend", type=int, default=0, metavar="N",
        help="time beside N busy single-threaded processes",
    )  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="leave out the largest inputs")
    parser.add_argument(
        "--no-fallback", action="store_true", help="leave out the fallback's column (slow)"
    )
    args = parser.parse_args()
    if backend() != "compiled":
        raise ProjectError(
            "benchmark_ops compares the compiled ops with their fallback, but this process "
            "runs the fallback (mmdet_like.ops.backend() is 'fallback'): build the extension "
            "(make install) and unset MMDET_LIKE_OPS_BACKEND"
        )
    with_fallback = not args.no_fallback
    device = torch.device(args.device)
    generator = torch.Generator().manual_seed(0)
    rows = []
    busy = start_busy_processes(args.contend)
    try:
        if args.only in (None, "roi_align"):
            rows += bench_roi_align(device, args.repeat, generator, args.quick, with_fallback)
        if args.only in (None, "ms_deform_attn"):
            rows += bench_ms_deform_attn(device, args.repeat, generator, args.quick,
                                         with_fallback)  # fmt: skip
        if args.only in (None, "nms"):
            rows += bench_nms(device, args.repeat, generator, args.quick, with_fallback)
        if args.only in (None, "soft_nms") and with_fallback:
            rows += bench_soft_nms(device, args.repeat, generator, args.quick)
    finally:
        stop_busy_processes(busy)
    table = render(rows, device, args.contend)
    print(table)
    if args.out:
        section = f"benchmark_ops {device.type}" + (
            f" contend {args.contend}" if args.contend else ""
        )
        write_section(args.out, section, table)
        print(f"written to {args.out}")


if __name__ == "__main__":
    sys.exit(run_tool(main))
