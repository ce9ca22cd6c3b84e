"""The ops of mmdet_like without the compiled extension: plain functions with the signatures
and the semantics of the ``torch.ops.mmdet_like`` schemas (``ops/registration.cpp``).

``mmdet_like/ops/_ext_loader.py`` registers them as the kernels of ``torch.ops.mmdet_like``
when the compiled extension is not built, or when ``MMDET_LIKE_OPS_BACKEND=fallback``; the
tests call them directly, beside the compiled kernels in the same process.

- ``roi_align`` and its backward run torchvision's kernels, which take the same samples with
  the same bilinear weights as ours (``ops/roi_align/roi_align_common.h``, in the same order
  of operations) and differ only in the order they sum them (results agree to rounding).
  Around them, what ours does and torchvision's would not: half and bfloat16 run in float32
  (ours accumulates them in float32; torchvision's CPU kernel has no bfloat16 and sums half in
  half), the rois are converted to that type (torchvision requires the input's), a map
  without rows or columns pools to zero (torchvision would read outside it), an aligned RoI
  of no width or height with adaptive sampling pools to zero (torchvision's CPU kernel sizes
  a buffer by the product of two sample counts that can then have opposite signs), and on
  the CPU a batch index outside the input raises.
- ``ms_deform_attn`` is the plain-PyTorch ``grid_sample`` formulation of multi-scale
  deformable attention (:func:`ms_deform_attn_reference`, the reference of the tests), and
  its backward the analytic gradient through ``grid_sample``'s backward kernel
  (``aten::grid_sampler_2d_backward``). It reads ``spatial_shapes`` on the host (a CUDA
  input waits for the GPU). Half and bfloat16 run in float32, as ours.
- ``nms`` runs torchvision's nms on the boxes in the order of a stable descending sort of the
  scores, with the scores replaced by their ranks: ties keep the lower index first, whatever
  sort torchvision uses. torchvision compares the IoU with the threshold as ours does (in the
  box type against the double threshold on the CPU, against the float threshold on CUDA).
- ``soft_nms`` is plain numpy on the CPU tensors' memory: one vectorised step per selected
  box, with the arithmetic of ``ops/nms/soft_nms_cpu.cpp`` (IoU in the box type, thresholds
  compared in double).
- The CPU caching allocator (``ops/memory/``) has no fallback: enabling it returns False.
"""

import contextlib
import logging

import numpy as np
import torch
import torchvision  # noqa: F401  (registers torch.ops.torchvision)

logger = logging.getLogger("mmdet_like")

# float32 exactly holds the ranks 1 .. 2**24 that nms passes to torchvision as scores
_MAX_EXACT_FLOAT32_RANK = 1 << 24


def _type_name(dtype):
    """The name c10 gives a dtype in error messages ("Float", "Half", ...)."""
    return torch.empty(0, dtype=dtype).type().rsplit(".", 1)[-1].removesuffix("Tensor")


def _opmath(dtype):
    """The type ours computes in: float32 for half and bfloat16, else the type itself."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _without_autocast(device):
    """torchvision's ops have autocast kernels of their own; ours have none (roi_align's is
    registered in Python, above the kernel), so the kernels run in the types they are given."""
    if device.type in ("cpu", "cuda") and torch.is_autocast_enabled(device.type):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()


def build_info():
    """What ``mmdet_like._ext`` reports about its build; here: the running torch, and whether
    torchvision's CUDA kernels (the fallback's) exist."""
    version = ".".join(torch.__version__.split("+")[0].split(".")[:3])
    cuda = torch._C._dispatch_has_kernel_for_dispatch_key("torchvision::nms", "CUDA")
    return f"torch={version};cuda={int(cuda)}"


def parallel_regions_opened():
    """The fallback's kernels are torch's and torchvision's: it opens none of its own."""
    return 0


# ---------------------------------------------------------------------------------------
# roi_align


def _check_roi_align_args(input, rois, pooled_height, pooled_width, op):
    if input.dim() != 4:
        raise RuntimeError(f"{op}: input must be (N, C, H, W), got shape {list(input.shape)}")
    if rois.dim() != 2 or rois.size(1) != 5:
        raise RuntimeError(
            f"{op}: rois must be (K, 5) [batch_idx, x1, y1, x2, y2], got shape {list(rois.shape)}"
        )
    if pooled_height <= 0 or pooled_width <= 0:
        raise RuntimeError(
            f"{op}: output_size must be positive, got ({pooled_height}, {pooled_width})"
        )
    if not input.is_floating_point():
        raise RuntimeError(f"{op}: input must be a floating tensor, got {_type_name(input.dtype)}")
    if not rois.is_floating_point():
        raise RuntimeError(f"{op}: rois must be a floating tensor, got {_type_name(rois.dtype)}")
    if input.device != rois.device:
        raise RuntimeError(
            f"{op}: input is on {input.device} but rois are on {rois.device}; move both to "
            "the same device"
        )


def _prepare_rois(rois, dtype, batch_size, spatial_scale, sampling_ratio, aligned):
    """The rois in ``dtype``, checked and made safe for torchvision's kernels (see the module
    docstring)."""
    rois = rois.to(dtype)
    if rois.device.type == "cpu" and rois.size(0):
        batch = rois[:, 0].trunc()  # ours casts it to int64 (towards zero)
        bad = ~((batch >= 0) & (batch < batch_size))
        if bool(bad.any()):
            k = int(bad.nonzero()[0, 0])
            raise RuntimeError(
                f"roi_align: rois[{k}, 0] = {float(rois[k, 0]):g} is not a batch index of the "
                f"input (batch size {batch_size})"
            )
    if aligned and sampling_ratio <= 0:
        # ceil(size / bins) <= 0 samples per bin side: ours takes none; so does torchvision
        # for a RoI of exactly zero size, which such a RoI becomes here.
        scale = torch.tensor(spatial_scale, dtype=dtype)  # the kernels' T(spatial_scale)
        start = rois[:, 1:3] * scale - 0.5
        size = (rois[:, 3:5] * scale - 0.5) - start
        empty = (size <= 0).any(dim=1)
        rois = torch.cat([rois[:, :1], rois[:, 1:].masked_fill(empty[:, None], 0)], dim=1)
    return rois


def roi_align(input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned):
    """``mmdet_like::roi_align``: (K, C, pooled_height, pooled_width), the input's type."""
    _check_roi_align_args(input, rois, pooled_height, pooled_width, "roi_align")
    shape = (rois.size(0), input.size(1), pooled_height, pooled_width)
    if rois.size(0) == 0 or input.size(1) == 0:
        return input.new_empty(shape)
    if input.size(2) == 0 or input.size(3) == 0:
        return input.new_zeros(shape)
    work = _opmath(input.dtype)
    rois = _prepare_rois(rois, work, input.size(0), spatial_scale, sampling_ratio, aligned)
    with _without_autocast(input.device):
        output = torch.ops.torchvision.roi_align(
            input.to(work), rois, spatial_scale, pooled_height, pooled_width, sampling_ratio,
            aligned,
        )  # fmt: skip
    return output.to(input.dtype)


def roi_align_backward(
    grad, rois, spatial_scale, pooled_height, pooled_width, batch_size, channels, height, width,
    sampling_ratio, aligned,
):  # fmt: skip
    """``mmdet_like::_roi_align_backward``: the gradient of the (N, C, H, W) input, summed in
    float32 for half and bfloat16 gradients; the gradient's type."""
    if not (
        grad.dim() == 4
        and grad.size(0) == rois.size(0)
        and grad.size(1) == channels
        and grad.size(2) == pooled_height
        and grad.size(3) == pooled_width
    ):
        raise RuntimeError(
            f"_roi_align_backward: grad must be (K, C, ph, pw) = ({rois.size(0)}, {channels}, "
            f"{pooled_height}, {pooled_width}), got {list(grad.shape)}"
        )
    if grad.numel() == 0 or height == 0 or width == 0:
        return grad.new_zeros((batch_size, channels, height, width))
    work = _opmath(grad.dtype)
    rois = _prepare_rois(rois, work, batch_size, spatial_scale, sampling_ratio, aligned)
    with _without_autocast(grad.device):
        grad_input = torch.ops.torchvision._roi_align_backward(
            grad.to(work), rois, spatial_scale, pooled_height, pooled_width, batch_size,
            channels, height, width, sampling_ratio, aligned,
        )  # fmt: skip
    return grad_input.to(grad.dtype)


# ---------------------------------------------------------------------------------------
# ms_deform_attn


def check_ms_deform_attn_args(
    value, spatial_shapes, level_start_index, sampling_locations, attention_weights, op
):
    """The shape, dtype and device checks of ``ops/ms_deform_attn/ms_deform_attn_common.h``
    (same messages). With ``torch._check``, so that fake tensors with symbolic sizes (the
    fake kernel) take them too."""
    torch._check(
        value.dim() == 4,
        lambda: (
            f"{op}: value must be (bs, num_keys, num_heads, dim_per_head), got shape "
            f"{list(value.shape)}"
        ),
    )
    torch._check(
        spatial_shapes.dim() == 2 and spatial_shapes.size(1) == 2,
        lambda: (
            f"{op}: spatial_shapes must be (num_levels, 2) [h, w], got shape "
            f"{list(spatial_shapes.shape)}"
        ),
    )
    bs, heads, levels = value.size(0), value.size(2), spatial_shapes.size(0)
    torch._check(
        levels > 0,
        lambda: (
            f"{op}: spatial_shapes must hold at least one level, got shape "
            f"{list(spatial_shapes.shape)}"
        ),
    )
    torch._check(
        level_start_index.dim() == 1 and level_start_index.size(0) == levels,
        lambda: (
            f"{op}: level_start_index must be (num_levels,) = ({levels},), got shape "
            f"{list(level_start_index.shape)}"
        ),
    )
    loc = sampling_locations
    torch._check(
        loc.dim() == 6
        and loc.size(0) == bs
        and loc.size(2) == heads
        and loc.size(3) == levels
        and loc.size(5) == 2,
        lambda: (
            f"{op}: sampling_locations must be (bs, num_queries, num_heads, num_levels, "
            f"num_points, 2) with bs = {bs}, num_heads = {heads} (from value) and num_levels = "
            f"{levels} (from spatial_shapes), got shape {list(loc.shape)}"
        ),
    )
    expected = (bs, loc.size(1), heads, levels, loc.size(4))
    torch._check(
        attention_weights.dim() == 5
        and all(a == e for a, e in zip(attention_weights.shape, expected)),
        lambda: (
            f"{op}: attention_weights must be (bs, num_queries, num_heads, num_levels, "
            f"num_points) = ({', '.join(str(e) for e in expected)}), got shape "
            f"{list(attention_weights.shape)}"
        ),
    )
    for name, t in (("spatial_shapes", spatial_shapes), ("level_start_index", level_start_index)):
        torch._check(
            t.dtype == torch.long,
            lambda name=name, t=t: f"{op}: {name} must be int64 (long), got {_type_name(t.dtype)}",
        )
    torch._check(
        value.is_floating_point()
        and sampling_locations.dtype == value.dtype
        and attention_weights.dtype == value.dtype,
        lambda: (
            f"{op}: value, sampling_locations and attention_weights must have one floating "
            f"dtype, got {_type_name(value.dtype)}, {_type_name(sampling_locations.dtype)} and "
            f"{_type_name(attention_weights.dtype)}; convert them to one (e.g. with .float())"
        ),
    )
    others = (
        ("spatial_shapes", spatial_shapes),
        ("level_start_index", level_start_index),
        ("sampling_locations", sampling_locations),
        ("attention_weights", attention_weights),
    )
    for name, t in others:
        torch._check(
            t.device == value.device,
            lambda name=name, t=t: (
                f"{op}: value is on {value.device} but {name} is on "
                f"{t.device}; move all five tensors to the same device"
            ),
        )


def _ms_deform_attn_levels(spatial_shapes, level_start_index, num_keys, op):
    """[(h, w), ...] of the levels, checked as ``check_levels`` of the compiled op does."""
    shapes = [tuple(hw) for hw in spatial_shapes.tolist()]
    starts = level_start_index.tolist()
    total = 0
    for level, ((h, w), start) in enumerate(zip(shapes, starts)):
        if h < 1 or w < 1:
            raise RuntimeError(
                f"{op}: spatial_shapes[{level}] = ({h}, {w}): every level must be at least 1 x 1"
            )
        if start != total:
            raise RuntimeError(
                f"{op}: level_start_index[{level}] = {start} but the levels before it hold "
                f"{total} keys; level_start_index must be the running sum of h * w, starting at 0"
            )
        total += h * w
    if total != num_keys:
        raise RuntimeError(
            f"{op}: value has {num_keys} keys but spatial_shapes sum to {total} (h * w over the "
            f"levels); value must be (bs, {total}, num_heads, dim_per_head)"
        )
    return shapes


def _level_maps(value, shapes):
    """value (bs, num_keys, heads, dim) as one (bs * heads, dim, h, w) map per level."""
    bs, _, heads, dim = value.shape
    maps = value.split([h * w for h, w in shapes], dim=1)
    return [m.permute(0, 2, 3, 1).reshape(bs * heads, dim, h, w) for m, (h, w) in zip(maps, shapes)]


def _level_grids(sampling_locations):
    """(bs, queries, heads, levels, points, 2) locations in [0, 1] as grid_sample's grids in
    [-1, 1]: one (bs * heads, queries, points, 2) per level."""
    bs, queries, heads, levels, points, _ = sampling_locations.shape
    grids = 2 * sampling_locations - 1
    grids = grids.transpose(1, 2).reshape(bs * heads, queries, levels, points, 2)
    return grids.unbind(2)


def ms_deform_attn_reference(value, spatial_shapes, sampling_locations, attention_weights):
    """Multi-scale deformable attention in plain PyTorch (differentiable): each level of
    ``value`` sampled with ``grid_sample`` (bilinear, zero padding, ``align_corners=False``)
    at its sampling locations, weighted by the attention weights and summed over levels and
    points.

    Args:
        value: (bs, num_keys, num_heads, dim_per_head), the levels one after the other.
        spatial_shapes: (num_levels, 2) [h, w] tensor, or a sequence of (h, w) pairs.
        sampling_locations: (bs, num_queries, num_heads, num_levels, num_points, 2), (x, y)
            in [0, 1] of each level.
        attention_weights: (bs, num_queries, num_heads, num_levels, num_points).

    Returns:
        (bs, num_queries, num_heads * dim_per_head).
    """
    if isinstance(spatial_shapes, torch.Tensor):
        shapes = [(int(h), int(w)) for h, w in spatial_shapes.tolist()]
    else:  # ints, or sizes kept symbolic under torch.export (int() would fix them)
        shapes = [(h, w) for h, w in spatial_shapes]
    bs, queries, heads, levels, points, _ = sampling_locations.shape
    dim = value.size(3)
    weights = attention_weights.transpose(1, 2).reshape(bs * heads, 1, queries, levels, points)
    output = None
    for level, (value_l, grid_l) in enumerate(
        zip(_level_maps(value, shapes), _level_grids(sampling_locations))
    ):
        sampled = torch.nn.functional.grid_sample(
            value_l, grid_l, mode="bilinear", padding_mode="zeros", align_corners=False
        )  # (bs * heads, dim, queries, points)
        term = (sampled * weights[..., level, :]).sum(-1)
        output = term if output is None else output + term
    # (bs * heads, dim, queries) -> (bs, queries, heads * dim)
    return output.view(bs, heads * dim, queries).transpose(1, 2)


def ms_deform_attn(value, spatial_shapes, level_start_index, sampling_locations,
                   attention_weights):  # fmt: skip
    """``mmdet_like::ms_deform_attn``: (bs, num_queries, num_heads * dim_per_head), value's
    dtype, contiguous."""
    op = "ms_deform_attn"
    check_ms_deform_attn_args(value, spatial_shapes, level_start_index, sampling_locations,
                              attention_weights, op)  # fmt: skip
    bs, num_keys, heads, dim = value.shape
    shapes = _ms_deform_attn_levels(spatial_shapes, level_start_index, num_keys, op)
    queries = sampling_locations.size(1)
    if bs * queries * heads * dim == 0:
        return value.new_empty((bs, queries, heads * dim))
    work = _opmath(value.dtype)
    with _without_autocast(value.device), torch.no_grad():
        output = ms_deform_attn_reference(
            value.to(work), shapes, sampling_locations.to(work), attention_weights.to(work)
        )
    return output.to(value.dtype).contiguous()


def ms_deform_attn_backward(value, spatial_shapes, level_start_index, sampling_locations,
                            attention_weights, grad_output):  # fmt: skip
    """``mmdet_like::_ms_deform_attn_backward``: the gradients of value, sampling_locations
    and attention_weights (computed in float32 for half and bfloat16; their dtypes)."""
    op = "_ms_deform_attn_backward"
    check_ms_deform_attn_args(value, spatial_shapes, level_start_index, sampling_locations,
                              attention_weights, op)  # fmt: skip
    bs, num_keys, heads, dim = value.shape
    queries = sampling_locations.size(1)
    expected = (bs, queries, heads * dim)
    if grad_output.dim() != 3 or tuple(grad_output.shape) != expected:
        raise RuntimeError(
            f"{op}: grad_output must be (bs, num_queries, num_heads * dim_per_head) = "
            f"({', '.join(str(e) for e in expected)}), got shape {list(grad_output.shape)}"
        )
    if grad_output.dtype != value.dtype:
        raise RuntimeError(
            f"{op}: grad_output must have the dtype of value ({_type_name(value.dtype)}), got "
            f"{_type_name(grad_output.dtype)}"
        )
    shapes = _ms_deform_attn_levels(spatial_shapes, level_start_index, num_keys, op)
    if attention_weights.numel() == 0 or dim == 0:
        return (torch.zeros_like(value), torch.zeros_like(sampling_locations),
                torch.zeros_like(attention_weights))  # fmt: skip
    work = _opmath(value.dtype)
    levels, points = sampling_locations.size(3), sampling_locations.size(4)
    with _without_autocast(value.device), torch.no_grad():
        weights = attention_weights.to(work).transpose(1, 2)
        weights = weights.reshape(bs * heads, 1, queries, levels, points)
        # (bs, queries, heads * dim) -> (bs * heads, dim, queries, 1)
        grad = grad_output.to(work).reshape(bs, queries, heads, dim).permute(0, 2, 3, 1)
        grad = grad.reshape(bs * heads, dim, queries, 1)
        grad_maps, grad_grids, grad_weights = [], [], []
        for level, (value_l, grid_l) in enumerate(
            zip(_level_maps(value.to(work), shapes), _level_grids(sampling_locations.to(work)))
        ):
            weight_l = weights[..., level, :]  # (bs * heads, 1, queries, points)
            sampled = torch.nn.functional.grid_sample(
                value_l, grid_l, mode="bilinear", padding_mode="zeros", align_corners=False
            )
            grad_weights.append((grad * sampled).sum(1))  # (bs * heads, queries, points)
            grad_map, grad_grid = torch.ops.aten.grid_sampler_2d_backward(
                grad * weight_l, value_l, grid_l, 0, 0, False, [True, True]
            )  # bilinear, zeros, align_corners=False
            grad_maps.append(grad_map.reshape(bs, heads, dim, -1).permute(0, 3, 1, 2))
            grad_grids.append(2 * grad_grid)  # grid = 2 * location - 1
        grad_value = torch.cat(grad_maps, dim=1)
        grad_loc = torch.stack(grad_grids, dim=2).view(bs, heads, queries, levels, points, 2)
        grad_attn = torch.stack(grad_weights, dim=2).view(bs, heads, queries, levels, points)
    return (
        grad_value.to(value.dtype).contiguous(),
        grad_loc.transpose(1, 2).to(value.dtype).contiguous(),
        grad_attn.transpose(1, 2).to(value.dtype).contiguous(),
    )


# ---------------------------------------------------------------------------------------
# nms


def _check_nms_args(boxes, scores, op):
    if boxes.dim() != 2 or boxes.size(1) != 4:
        raise RuntimeError(
            f"{op}: boxes must be (N, 4) [x1, y1, x2, y2], got shape {list(boxes.shape)}"
        )
    if scores.dim() != 1 or scores.size(0) != boxes.size(0):
        raise RuntimeError(
            f"{op}: scores must be (N,) with N = {boxes.size(0)} boxes, got shape "
            f"{list(scores.shape)}"
        )
    if not (boxes.is_floating_point() and scores.is_floating_point()):
        raise RuntimeError(
            f"{op}: boxes and scores must be floating tensors, got {_type_name(boxes.dtype)} "
            f"and {_type_name(scores.dtype)}"
        )
    if boxes.device != scores.device:
        raise RuntimeError(
            f"{op}: boxes are on {boxes.device} but scores are on {scores.device}; move both "
            "to the same device"
        )


def nms(boxes, scores, iou_threshold):
    """``mmdet_like::nms``: int64 indices of the kept boxes, in descending score order (ties:
    the lower index first). Half and bfloat16 boxes are compared in float32."""
    _check_nms_args(boxes, scores, "nms")
    num = boxes.size(0)
    if num == 0:
        return torch.empty((0,), dtype=torch.long, device=boxes.device)
    work = _opmath(boxes.dtype)
    # the CPU kernel sorts the scores converted to the boxes' type, the CUDA kernel as given
    key = scores.to(work) if boxes.device.type == "cpu" else scores
    order = key.sort(descending=True, stable=True).indices
    # index_select, not boxes[order]: on the CPU that indexing opens a parallel region, which
    # costs milliseconds where other processes keep the cores busy
    sorted_boxes = boxes.to(work).index_select(0, order)
    if work == torch.float32 and num > _MAX_EXACT_FLOAT32_RANK:
        # ranks would tie; equal scores may then come in torchvision's order
        ranks = key.index_select(0, order).to(work)
    else:
        ranks = torch.arange(num, 0, -1, dtype=work, device=boxes.device)
    with _without_autocast(boxes.device):
        kept = torch.ops.torchvision.nms(sorted_boxes, ranks, iou_threshold)
    return order.index_select(0, kept)


def soft_nms(boxes, scores, iou_threshold, sigma, min_score, method):
    """``mmdet_like::soft_nms`` (CPU): ``(dets (M, 5) [x1, y1, x2, y2, decayed score],
    keep (M,) int64)`` in selection order; method 0 hard, 1 linear, 2 gaussian."""
    _check_nms_args(boxes, scores, "soft_nms")
    if not 0 <= method <= 2:
        raise RuntimeError(
            f"soft_nms: method must be 0 (hard), 1 (linear) or 2 (gaussian), got {method}"
        )
    if method == 2 and not sigma > 0:
        raise RuntimeError(f"soft_nms: sigma must be positive, got {sigma:g}")
    if boxes.dtype != scores.dtype:
        raise RuntimeError(
            "soft_nms: boxes and scores must have the same dtype, got "
            f"{_type_name(boxes.dtype)} and {_type_name(scores.dtype)}"
        )
    if boxes.dtype not in (torch.float32, torch.float64):
        raise RuntimeError(f"\"soft_nms_cpu\" not implemented for '{_type_name(boxes.dtype)}'")
    # numpy: a step is some twenty small array operations, a few microseconds each in numpy
    # against ten times that in torch; IEEE arithmetic in the same type, so the same results
    box = boxes.detach().numpy()
    score = scores.detach().numpy()
    # candidates in descending score order (stable: ties select the earlier input box)
    order = scores.detach().sort(descending=True, stable=True).indices.numpy()
    alive = order[score[order].astype(np.float64) >= min_score]  # input indices in play
    # per candidate: x1, y1, x2, y2, area, decayed score (in the boxes' type)
    data = np.empty((len(alive), 6), dtype=box.dtype)
    data[:, :4] = box[alive]
    data[:, 4] = (data[:, 2] - data[:, 0]) * (data[:, 3] - data[:, 1])
    data[:, 5] = score[alive]
    keep, kept_scores = [], []
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        while len(alive):
            best = int(data[:, 5].argmax())  # the first of equal maxima, as the kernel's >
            bx1, by1, bx2, by2, best_area, best_score = data[best]
            keep.append(int(alive[best]))
            kept_scores.append(best_score)
            # the IoU with each candidate, as nms_detail::box_iou computes it
            w = np.maximum(np.minimum(data[:, 2], bx2) - np.maximum(data[:, 0], bx1), 0)
            h = np.maximum(np.minimum(data[:, 3], by2) - np.maximum(data[:, 1], by1), 0)
            inter = w * h
            iou = inter / ((best_area + data[:, 4]) - inter)
            if method == 0:
                decayed = data[:, 5] * (~(iou.astype(np.float64) > iou_threshold))
            elif method == 1:
                over = iou.astype(np.float64) > iou_threshold
                decayed = data[:, 5] * np.where(over, 1 - iou, np.ones_like(iou))
            else:
                iou64 = iou.astype(np.float64)
                decayed = data[:, 5] * np.exp(-iou64 * iou64 / sigma).astype(data.dtype)
            survive = decayed.astype(np.float64) >= min_score
            survive[best] = False  # the selected box leaves the candidates
            data[:, 5] = decayed
            alive, data = alive[survive], data[survive]
    kept = torch.tensor(keep, dtype=torch.long)
    dets = torch.cat([boxes.detach()[kept], torch.tensor(np.array(kept_scores, dtype=box.dtype)
                      ).reshape(-1, 1)], dim=1)  # fmt: skip
    return dets, kept


# ---------------------------------------------------------------------------------------
# the CPU caching allocator (compiled only)

_allocator_notice_given = False


def enable_cpu_caching_allocator(min_block_bytes):
    """Not available without the compiled extension: returns False (and says so once)."""
    global _allocator_notice_given
    if min_block_bytes <= 0:
        raise RuntimeError(f"min_block_bytes must be positive, got {min_block_bytes}")
    if not _allocator_notice_given:
        _allocator_notice_given = True
        logger.info(
            "mmdet_like.ops: the CPU caching allocator is part of the compiled extension; "
            "with the fallback ops torch's default CPU allocator stays in place"
        )
    return False


def disable_cpu_caching_allocator():
    return True  # the default allocator is in place


def cpu_caching_allocator_enabled():
    return False


def cpu_caching_allocator_stats():
    return [0, 0, 0, 0, 0, 0]


def cpu_caching_allocator_release():
    return None
