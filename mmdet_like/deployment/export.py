"""Export a detector to ONNX or a ``torch.export`` program, run the file, check it.

```python
from mmdet_like.apis import init_detector
from mmdet_like.deployment import export_detector, prepare_input, run_exported, to_instances

model = init_detector("configs/mask_rcnn_r50_fpn_1x.py", "latest.pth")
image, meta = prepare_input(model.cfg, "demo/demo.jpg")
export_detector(model, image, "mask_rcnn.onnx", dynamic=True)
outputs = run_exported("mask_rcnn.onnx", image)  # onnxruntime, no custom library
detections = to_instances(outputs, meta, model)  # boxes and masks in the original image
```

What the exported graph computes is :class:`~mmdet_like.deployment.exportable.ExportableDetector`
(one image; the detector's own inference code); the test pipeline before it
(:func:`prepare_input`) and the rescaling and mask pasting after it (:func:`to_instances`)
stay in Python.
"""

import copy
import functools
import importlib
import os
import os.path as osp
import tempfile

import numpy as np
import torch

from mmdet_like.apis.inference import _prepare
from mmdet_like.deployment.exportable import (
    ExportableDetector,
    coarsest_stride,
    image_meta,
    output_names,
)
from mmdet_like.errors import ProjectError
from mmdet_like.models.detectors.base import instances_from_dets
from mmdet_like.structures.instance_data import DetDataSample

FORMATS = ("onnx", "torch-export")
# Range of the dynamic image sides: at least 2 cells at the coarsest level (the model's
# coarsest stride + 1 px: 65 for an RPN on P2-P6, 129 for RetinaNet on P3-P7; torch.export
# specialises sizes of 1), at most DYNAMIC_MAX_SIDE (only memory grows).
DYNAMIC_MAX_SIDE = 8192
# --verify: how far the exported program may be from PyTorch. Both compute in float32 with
# different kernels (onnxruntime's, or the exported graph's decompositions, against those
# oneDNN and ATen pick for the CPU: AVX2, AVX-512, AMX; and the thread count), so boxes
# differ by rounding, which grows with the size of the coordinates and boxes: the box (and
# keypoint) bound is a fraction of the input image's longer side (box_tolerance_px).
# Measured on a converted torchvision Faster R-CNN R50-FPN with torchvision's random
# initialisation (less well conditioned than trained weights: the worst case seen), 100
# detections on a 512 x 512 photograph, on an AVX2 CPU under the default kernels,
# ATEN_CPU_CAPABILITY=default, ONEDNN_MAX_CPU_ISA=SSE41 and OMP_NUM_THREADS=1: onnxruntime
# against PyTorch up to 0.027 px (5.3e-5 of the side), scores 7.3e-5; PyTorch against itself
# (channels-last against NCHW, or one setting against another) up to 0.039 px (7.6e-5),
# scores 9.5e-5. A converted pretrained Faster R-CNN on an AVX-512/AMX CPU: 0.0029 px at
# 800 px (3.7e-6, issue 26). The random-weight demo and benchmark models: under 1e-7.
BOX_TOLERANCE = 2e-4  # of the longer side: 0.16 px at 800 px, 0.032 px at 160 px
SCORE_TOLERANCE = 5e-4
MASK_PIXEL_TOLERANCE = 1e-3  # fraction of the masks' pixels that may flip at the threshold


class DeploymentError(ProjectError, ValueError):
    """An export, run or verification that cannot be done as asked (the message says why)."""


# --------------------------------------------------------------------------- input


def _set_test_scale(steps, shape):
    """Test pipeline steps resizing to exactly ``shape`` (H, W): ``img_scale`` (W, H) on the
    resizing steps, ``keep_ratio=False``."""
    found = False
    for step in steps:
        if not isinstance(step, dict):
            continue
        if step.get("type") == "MultiScaleFlipAug":
            step["img_scale"] = (shape[1], shape[0])
            found = True
            _set_test_scale(step.get("transforms", []), shape)
        elif step.get("type") == "Resize":
            step["keep_ratio"] = False
            if "img_scale" in step:
                step["img_scale"] = (shape[1], shape[0])
            found = True
    return found


def prepare_input(cfg, image, shape=None):
    """The exported graph's input for ``image`` (a path or an (H, W, 3) BGR uint8 array):
    the config's test pipeline (resize, normalise; not padded: the graph pads), with its
    resize set to exactly ``shape`` (H, W) when given.

    Returns:
        (1, 3, h, w) float32 tensor and the image's meta (``ori_shape``, ``img_shape``,
        ``scale_factor``, ...) for :func:`to_instances`.
    """
    if shape is not None:
        cfg = copy.deepcopy(cfg)
        test = cfg.data.test[0] if isinstance(cfg.data.test, (list, tuple)) else cfg.data.test
        if not _set_test_scale(test.pipeline, shape):
            raise DeploymentError(
                "--shape: the test pipeline (data.test.pipeline) has no Resize or "
                "MultiScaleFlipAug step to set the size on"
            )
    if isinstance(image, str) and not osp.isfile(image):
        raise DeploymentError(f"image {image!r} does not exist; check the path")
    try:
        data = _prepare(image, cfg)
    except (OSError, TypeError, AttributeError) as exc:
        raise DeploymentError(f"image {image!r} could not be read: {exc}") from exc
    tensors, samples = data["img"], data["data_samples"]
    tensor = tensors[0] if isinstance(tensors, (list, tuple)) else tensors
    sample = samples[0] if isinstance(samples, (list, tuple)) else samples
    meta = dict(sample.metainfo)
    if meta.get("flip"):
        raise DeploymentError("the test pipeline flips the image; export needs flip=False")
    height, width = int(meta["img_shape"][0]), int(meta["img_shape"][1])
    return tensor[None, :, :height, :width].contiguous().float(), meta


# --------------------------------------------------------------------------- export


def dynamic_min_side(model):
    """The smallest image side a ``--dynamic`` export of ``model`` accepts."""
    return coarsest_stride(model) + 1


def _dynamic_shapes(dynamic, min_side):
    if not dynamic:
        return None
    height = torch.export.Dim("height", min=min_side, max=DYNAMIC_MAX_SIDE)
    width = torch.export.Dim("width", min=min_side, max=DYNAMIC_MAX_SIDE)
    return {"image": {2: height, 3: width}}


def export_program(model, image, dynamic=True):
    """``torch.export`` program of :class:`ExportableDetector` (``model`` on the CPU, in eval
    mode), traced on ``image`` (1, 3, H, W); ``dynamic``: any H, W in
    [:func:`dynamic_min_side`, ``DYNAMIC_MAX_SIDE``], else exactly the example's."""
    wrapper = ExportableDetector(model.cpu().eval())
    min_side = dynamic_min_side(model)
    if dynamic and min(image.shape[-2:]) < min_side:
        raise DeploymentError(
            f"--dynamic: the example image is {tuple(image.shape[-2:])}; both sides must be "
            f"at least {min_side} for this model (use a larger image or --shape)"
        )
    with torch.no_grad():
        return torch.export.export(
            wrapper, (image.cpu(),), dynamic_shapes=_dynamic_shapes(dynamic, min_side),
            strict=False,
        )  # fmt: skip


def export_detector(model, image, out, fmt="onnx", dynamic=True):
    """Export ``model`` for inputs like ``image`` to ``out`` (``fmt``: ``onnx`` or
    ``torch-export``, a ``.pt2`` file loaded with ``torch.export.load``); the file is
    written atomically. Returns the output names."""
    if fmt not in FORMATS:
        raise DeploymentError(f"format {fmt!r} is not one of {FORMATS}")
    return save_program(export_program(model, image, dynamic), model, image, out, fmt)


def save_program(program, model, image, out, fmt="onnx"):
    """Write ``program`` (:func:`export_program` of ``model`` on ``image``) to ``out`` as
    ``fmt`` (see :func:`export_detector`), atomically. One program serves both formats, so a
    caller wanting both traces the model once. Returns the output names."""
    if fmt not in FORMATS:
        raise DeploymentError(f"format {fmt!r} is not one of {FORMATS}")
    wrapper_outputs = output_names(model)
    folder = osp.dirname(osp.abspath(out))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".export-", suffix=osp.splitext(out)[1], dir=folder)
    os.close(fd)
    try:
        if fmt == "torch-export":
            torch.export.save(program, tmp)
        else:
            _save_onnx(program, image, tmp, wrapper_outputs)
        os.replace(tmp, out)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)
    return wrapper_outputs


def require_export_extra(module):
    """Import ``module`` (onnx, onnxruntime, onnxscript), or say which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise DeploymentError(
            f"ONNX export needs {module}, which is not installed: pip install "
            "'mmdet_like[export]' (or pip install -r requirements/export.txt)"
        ) from exc


def _save_onnx(program, image, path, output_names):
    require_export_extra("onnxscript")
    from mmdet_like.deployment.onnx_ops import ONNX_OPSET, translation_table

    onnx_program = torch.onnx.export(
        program, (image.cpu(),), input_names=["image"], output_names=output_names,
        custom_translation_table=translation_table(), opset_version=ONNX_OPSET, dynamo=True,
        external_data=False, verbose=False,
    )  # fmt: skip
    onnx_program.save(path, external_data=False)


# --------------------------------------------------------------------------- run


def run_exported(path, image):
    """Run an exported file (``.onnx`` with onnxruntime's CPU provider; else a
    ``torch.export`` ``.pt2``) on ``image`` (1, 3, H, W). Returns its outputs as numpy
    arrays: ``dets`` (n, 5), ``labels`` (n,)[, ``mask_probs`` (n, M, M)][,
    ``keypoint_heatmaps`` (n, K, S, S)]. The loaded file is kept for the next call on the
    same, unchanged file (see :func:`_load_exported`)."""
    if not osp.isfile(path):
        raise DeploymentError(f"exported file {path!r} does not exist")
    array = image.detach().cpu().float().numpy()
    loaded = _load_exported(*_file_key(path))
    if path.endswith(".onnx"):
        session = loaded
        expected = session.get_inputs()[0].shape  # ints where fixed, names where dynamic
        fixed = [(got, want) for got, want in zip(array.shape, expected) if isinstance(want, int)]
        if len(array.shape) != len(expected) or any(got != want for got, want in fixed):
            raise DeploymentError(
                f"{path}: takes an image of shape {expected}, got {list(array.shape)}; export "
                "with --dynamic for any size, or resize the image (--shape) to the file's size"
            )
        return session.run(None, {session.get_inputs()[0].name: array})
    with torch.no_grad():
        outputs = loaded(torch.from_numpy(array))
    return [o.numpy() for o in outputs]


def _file_key(path):
    """``path`` with what identifies its version: (absolute path, inode, mtime in ns, size);
    a file written again (atomically: a new inode) is another key."""
    stat = os.stat(path)
    return osp.abspath(path), stat.st_ino, stat.st_mtime_ns, stat.st_size


@functools.lru_cache(maxsize=2)
def _load_exported(path, inode, mtime_ns, size):
    """An onnxruntime session of an ``.onnx`` file, or the callable module of a ``.pt2``
    program, cached by file and version: loading is the slow part of a run (a dynamic-shape
    Faster R-CNN program takes 12 s in ``torch.export.load``, its run 0.05 s), and
    ``--verify`` runs a file on several inputs."""
    if path.endswith(".onnx"):
        return onnxruntime_session(path)
    return torch.export.load(path).module()


def onnxruntime_session(path):
    """An onnxruntime CPU session of ``path`` running on as many threads as PyTorch
    (``torch.get_num_threads()``), so that the two runtimes do equal work side by side and
    a session does not take the cores PyTorch was told to leave to others (onnxruntime's
    default is every physical core, busy-waiting between operators)."""
    onnxruntime = require_export_extra("onnxruntime")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def to_instances(outputs, meta, model=None, mask_thr=None):
    """Exported outputs -> :class:`InstanceData` in the original image: ``bboxes`` divided by
    the meta's ``scale_factor``, ``scores``, ``labels``; the model's further outputs decoded
    by the model (:meth:`~mmdet_like.models.detectors.base.BaseDetector.export_instances`):
    with ``mask_probs``, ``masks`` (n, H, W) bool pasted at the original size with its mask
    head (its ``paste_mode``; ``mask_thr`` defaults to ``test_cfg.rcnn.mask_thr_binary``);
    with ``keypoint_heatmaps``, ``keypoints`` (n, K, 2) and ``keypoint_scores`` (n, K)
    decoded by its keypoint head. ``model`` names the outputs (it is needed beyond dets and
    labels)."""
    names = output_names(model) if model is not None else ["dets", "labels"]
    if len(outputs) != len(names):
        raise DeploymentError(
            f"to_instances: {len(outputs)} outputs, but the model's export has {len(names)} "
            f"({', '.join(names)}); pass the model the file was exported from"
        )
    named = {name: torch.from_numpy(np.asarray(value)) for name, value in zip(names, outputs)}
    if model is None:
        return instances_from_dets(named["dets"], named["labels"], meta)
    return model.export_instances(named, meta, mask_thr)


# --------------------------------------------------------------------------- verify


@torch.no_grad()
def pytorch_instances(model, image):
    """The detector's own inference (:meth:`BaseDetector.predict`) on the (1, 3, H, W)
    input, in the input image's coordinates (masks at the input's size)."""
    height, width = int(image.shape[-2]), int(image.shape[-1])
    sample = DetDataSample(metainfo=image_meta(height, width))
    return model.predict(image, [sample], rescale=False)[0].pred_instances


def box_tolerance_px(image_shape):
    """How far (px) --verify lets exported boxes and keypoints be from PyTorch's in an image
    of ``image_shape`` ((H, W, ...)): ``BOX_TOLERANCE`` of its longer side."""
    return BOX_TOLERANCE * max(int(image_shape[0]), int(image_shape[1]))


def compare_detections(reference, exported, image_shape):
    """Match every exported detection to the reference's (same label, nearest box; order
    may differ where scores tie within float noise) and measure the differences.

    Args:
        reference, exported: :class:`InstanceData` in the same image (``bboxes``, ``scores``,
            ``labels`` [, ``masks``]).
        image_shape: (H, W, ...) of that image; it sets ``box_tolerance_px``.

    Returns:
        dict: ``reference`` / ``exported`` counts, ``matched``, ``max_box_diff_px``,
        ``max_score_diff``, ``box_tolerance_px`` (:func:`box_tolerance_px`), with keypoints
        ``max_keypoint_diff_px`` and, with masks, ``mask_pixels_differing`` (pixels in one
        mask and not the other, as a fraction of the pixels in either).
    """
    report = dict(reference=len(reference), exported=len(exported), matched=0,
                  max_box_diff_px=0.0, max_score_diff=0.0,
                  box_tolerance_px=box_tolerance_px(image_shape))  # fmt: skip
    ref_boxes, exp_boxes = reference.bboxes.float(), exported.bboxes.float()
    if len(reference) == 0 or len(exported) == 0:
        return report
    diff = (exp_boxes[:, None, :] - ref_boxes[None, :, :]).abs().amax(-1)  # (e, r)
    diff = diff.masked_fill(exported.labels[:, None] != reference.labels[None, :], float("inf"))
    unused = torch.ones(len(reference), dtype=torch.bool)
    pairs = []
    for i in range(len(exported)):  # a few hundred detections at most: greedy is enough
        candidates = diff[i].masked_fill(~unused, float("inf"))
        j = int(candidates.argmin())
        if torch.isfinite(candidates[j]):
            unused[j] = False
            pairs.append((i, j))
    if not pairs:
        return report
    exp_idx = torch.tensor([p[0] for p in pairs])
    ref_idx = torch.tensor([p[1] for p in pairs])
    report["matched"] = len(pairs)
    report["max_box_diff_px"] = float(diff[exp_idx, ref_idx].max())
    report["max_score_diff"] = float(
        (exported.scores[exp_idx].float() - reference.scores[ref_idx].float()).abs().max()
    )
    if "keypoints" in exported and "keypoints" in reference:
        report["max_keypoint_diff_px"] = float(
            (exported.keypoints[exp_idx] - reference.keypoints[ref_idx]).abs().max()
        )
    if "masks" in exported and "masks" in reference:
        exp_masks, ref_masks = exported.masks[exp_idx], reference.masks[ref_idx]
        union = (exp_masks | ref_masks).sum().clamp(min=1)
        report["mask_pixels_differing"] = float((exp_masks != ref_masks).sum() / union)
    return report


def verification_failures(report):
    """What a :func:`compare_detections` report says is wrong (an empty list: none)."""
    problems = []
    if report["exported"] != report["reference"]:
        problems.append(f"{report['exported']} detections against PyTorch's {report['reference']}")
    if report["matched"] != report["exported"]:
        problems.append(
            f"{report['exported'] - report['matched']} detections match none of PyTorch's"
        )
    tolerance = report["box_tolerance_px"]
    if report["max_box_diff_px"] > tolerance:
        problems.append(
            f"boxes differ by up to {report['max_box_diff_px']:.3g} px (> {tolerance:.3g}, "
            f"{BOX_TOLERANCE:g} of the image's longer side)"
        )
    if report["max_score_diff"] > SCORE_TOLERANCE:
        problems.append(
            f"scores differ by up to {report['max_score_diff']:.3g} (> {SCORE_TOLERANCE})"
        )
    if report.get("max_keypoint_diff_px", 0.0) > tolerance:
        problems.append(
            f"keypoints differ by up to {report['max_keypoint_diff_px']:.3g} px "
            f"(> {tolerance:.3g}, {BOX_TOLERANCE:g} of the image's longer side)"
        )
    if report.get("mask_pixels_differing", 0.0) > MASK_PIXEL_TOLERANCE:
        problems.append(
            f"{report['mask_pixels_differing']:.2%} of mask pixels differ "
            f"(> {MASK_PIXEL_TOLERANCE:.1%})"
        )
    return problems


def verify_exported(model, path, image):
    """Run the exported file and PyTorch on ``image`` (1, 3, H, W) and compare the
    detections (:func:`compare_detections`, masks pasted at the input's size). Returns the
    report; raises :class:`DeploymentError` listing what differs beyond the tolerances."""
    reference = pytorch_instances(model, image)
    outputs = run_exported(path, image)
    height, width = int(image.shape[-2]), int(image.shape[-1])
    exported = to_instances(outputs, image_meta(height, width), model)
    report = compare_detections(reference, exported, (height, width))
    problems = verification_failures(report)
    if problems:
        raise DeploymentError(
            f"{path}: the exported model differs from PyTorch: " + "; ".join(problems)
        )
    return report
