"""FLOPs and parameters of a detector, per module group, with ``torch.utils.flop_counter``.

    python tools/analysis_tools/get_flops.py CONFIG [--shape 800 1216] [--cfg-options K=V ...]

The model (random weights; no checkpoint is needed) runs one test-mode forward on a
(1, 3, H, W) image under :class:`torch.utils.flop_counter.FlopCounterMode`. FLOPs follow
its convention: a multiply-add is 2 FLOPs (a convolution costs
``2 * Cin/groups * Cout * kh * kw * Hout * Wout``). The compiled ops of ``mmdet_like.ops``
are not known to FlopCounterMode; formulas are registered for them here:

- ``roi_align``: ``8 * C * ph * pw * sum over RoIs of (samples per bin)``: every pooled
  value averages the bin's sampling points (``sampling_ratio ** 2``, or with
  ``sampling_ratio <= 0`` ``ceil(roi_h / ph) * ceil(roi_w / pw)`` of that RoI in feature
  pixels), each a bilinear interpolation of 4 weighted terms (a multiply-add each: 2 FLOPs).
- ``nms`` / ``soft_nms``: an upper bound, ``IOU_FLOPS * n * (n - 1) / 2`` for n boxes (every
  pair's IoU, about 12 FLOPs: 4 min/max, 3 subtractions and products for the
  intersection, the union and the ratio); the kernels stop early, so this over-counts.

The counts depend on the number of proposals, so on the weights (random here) and the
image; the backbone and neck counts do not.
"""

import argparse
import sys
from collections import OrderedDict

import torch
from torch.utils.flop_counter import FlopCounterMode, register_flop_formula

import mmdet_like.ops  # noqa: F401  (registers torch.ops.mmdet_like)
from mmdet_like.apis.tool_utils import ToolError, build_model, load_tool_config
from mmdet_like.engine import add_cfg_options_argument
from mmdet_like.errors import run_tool

IOU_FLOPS = 12
BILINEAR_FLOPS = 8  # 4 weighted terms, a multiply-add each


def roi_align_flops(rois, channels, pooled_height, pooled_width, spatial_scale, sampling_ratio):
    """FLOPs of one ``roi_align`` call (see the module docstring)."""
    if sampling_ratio > 0:
        samples = rois.shape[0] * sampling_ratio * sampling_ratio
    else:
        r = rois.detach().to("cpu", torch.float64)
        heights = ((r[:, 4] - r[:, 2]) * spatial_scale).clamp(min=1.0)
        widths = ((r[:, 3] - r[:, 1]) * spatial_scale).clamp(min=1.0)
        grid_h = torch.ceil(heights / pooled_height)
        grid_w = torch.ceil(widths / pooled_width)
        samples = int((grid_h * grid_w).sum().item())
    return BILINEAR_FLOPS * channels * pooled_height * pooled_width * int(samples)


def nms_flops(num_boxes):
    return IOU_FLOPS * num_boxes * (num_boxes - 1) // 2


_REGISTERED = False


def register_op_formulas():
    """Teach FlopCounterMode the cost of ``mmdet_like::roi_align``, ``nms`` and ``soft_nms``."""
    global _REGISTERED
    if _REGISTERED:
        return
    ops = torch.ops.mmdet_like

    @register_flop_formula(ops.roi_align, get_raw=True)
    def _roi_align(input, rois, spatial_scale, ph, pw, sampling_ratio, aligned, **kwargs):
        return roi_align_flops(rois, input.shape[1], ph, pw, spatial_scale, sampling_ratio)

    @register_flop_formula(ops.nms, get_raw=True)
    def _nms(boxes, *args, **kwargs):
        return nms_flops(boxes.shape[0])

    @register_flop_formula(ops.soft_nms, get_raw=True)
    def _soft_nms(boxes, *args, **kwargs):
        return nms_flops(boxes.shape[0])

    _REGISTERED = True


def dummy_inputs(height, width):
    """One (1, 3, H, W) image and its data sample, as the test pipeline would pack them."""
    from mmdet_like.structures import DetDataSample

    generator = torch.Generator().manual_seed(0)
    img = torch.randn(3, height, width, generator=generator)
    sample = DetDataSample(
        metainfo=dict(
            filename="dummy.jpg", ori_filename="dummy.jpg", ori_shape=(height, width, 3),
            img_shape=(height, width, 3), pad_shape=(height, width, 3),
            scale_factor=torch.ones(4).numpy(), flip=False, flip_direction=None,
            batch_input_shape=(height, width),
        )
    )  # fmt: skip
    return img, sample


def count(model, height, width):
    """``(groups, total_flops, flops_by_op)``: ``groups`` maps each top-level child of the
    model (backbone, neck, rpn_head, roi_head, ...) to ``(flops, params)``; the RoI head's
    children are listed too (``roi_head.bbox_head``, ...), and what ran outside every child
    (``(outside these modules)``)."""
    register_op_formulas()
    img, sample = dummy_inputs(height, width)
    counter = FlopCounterMode(display=False, depth=None)
    with torch.no_grad(), counter:
        model(img=[[img]], data_samples=[[sample]], return_loss=False, rescale=False)
    per_module = counter.get_flop_counts()
    root = type(model).__name__

    def flops_of(name):
        """The module's count; for one whose forward() is not what runs (a RoI head's
        simple_test calls its parts), the sum over its outermost counted descendants."""
        key = f"{root}.{name}"
        if key in per_module:
            return sum(per_module[key].values())
        inner = [k for k in per_module if k.startswith(key + ".")]
        outer = [k for k in inner if not any(k.startswith(o + ".") for o in inner)]
        return sum(sum(per_module[k].values()) for k in outer)

    groups = OrderedDict()
    for name, child in model.named_children():
        params = sum(p.numel() for p in child.parameters())
        groups[name] = (flops_of(name), params)
        if name.endswith("roi_head"):
            for sub, grandchild in child.named_children():
                params = sum(p.numel() for p in grandchild.parameters())
                groups[f"{name}.{sub}"] = (flops_of(f"{name}.{sub}"), params)
    total = counter.get_total_flops()
    top = sum(f for name, (f, _) in groups.items() if "." not in name)
    groups["(outside these modules)"] = (total - top, 0)  # e.g. post-processing NMS
    by_op = {str(op): n for op, n in per_module.get("Global", {}).items()}
    return groups, total, by_op


def _human(n, unit):
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= scale:
            return f"{n / scale:.3f} {prefix}{unit}"
    return f"{n} {unit}"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", help="config file")
    parser.add_argument(
        "--shape", type=int, nargs="+", default=[800, 1216], help="input H W (or one size)"
    )
    add_cfg_options_argument(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if len(args.shape) not in (1, 2) or min(args.shape) <= 0:
        raise ToolError(f"--shape takes H W or one size > 0, got {args.shape}")
    height, width = args.shape * 2 if len(args.shape) == 1 else args.shape
    cfg = load_tool_config(args.config, args.cfg_options)
    torch.manual_seed(0)  # random weights, the same every run
    model = build_model(cfg)
    groups, total, by_op = count(model, height, width)
    params = sum(p.numel() for p in model.parameters())
    print(f"input shape: (1, 3, {height}, {width})")
    print(f"{'module':<28} {'FLOPs':>16} {'params':>12}")
    for name, (flops, n) in groups.items():
        print(f"{name:<28} {flops:>16d} {n:>12d}   ({_human(flops, 'FLOPs')}, {_human(n, '')})")
    print(f"{'total':<28} {total:>16d} {params:>12d}   ({_human(total, 'FLOPs')})")
    print("by op:")
    for op, n in sorted(by_op.items(), key=lambda kv: -kv[1]):
        print(f"  {op:<40} {n:>16d}")
    print(f"Total FLOPs: {total}")
    print(f"Total params: {params}")
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
