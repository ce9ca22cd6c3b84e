"""Testing entry points: a model's results on a whole data loader (one process, or
several gathered in dataset order), with optional drawing of the detections.

The loop is the engine's (:func:`mmdet_like.engine.single_process_inference`, also run by
the evaluation hooks); here masks are compressed to RLE as they come (``(H, W)`` boolean
masks of every detection would not fit in memory for a large dataset) and images can be
drawn on the way (by :mod:`mmdet_like.visualization`).
"""

import os
import os.path as osp

import cv2

import mmdet_like.models  # noqa: F401 (registers the detectors build_detector looks up)
from mmdet_like.engine.dist import get_dist_info
from mmdet_like.engine.hooks.evaluation import multi_process_inference, single_process_inference
from mmdet_like.structures import (
    DetDataSample,
    compact_prediction,
    encode_mask_results,
    to_legacy_result,
)
from mmdet_like.visualization import DrawStyle, draw_result


def _first_aug(value):
    return value[0] if isinstance(value, list | tuple) else value


def _skeleton_of(dataset):
    """The skeleton of a dataset's keypoint set (0-based pairs), or ``()``."""
    meta = getattr(dataset, "keypoint_meta", None)
    return () if meta is None else meta.skeleton


def _show_callback(class_names, show, out_dir, score_thr, skeleton=(), style=None):
    """``on_batch`` callback drawing every image of the batch (window and/or files)."""

    def on_batch(data_batch, outputs):
        for meta, result in zip(_batch_metas(data_batch), outputs):
            meta = _first_aug(meta)
            img = cv2.imread(meta["filename"], cv2.IMREAD_COLOR)
            if img is None:
                raise FileNotFoundError(f"cannot read {meta['filename']} to draw its results")
            drawn = draw_result(img, result, class_names, score_thr, skeleton=skeleton, style=style)
            if out_dir:
                name = meta.get("ori_filename") or osp.basename(meta["filename"])
                path = osp.join(out_dir, name)
                os.makedirs(osp.dirname(path) or ".", exist_ok=True)
                if not cv2.imwrite(path, drawn):
                    raise OSError(f"cannot write {path}")
            if show:
                try:
                    cv2.imshow("detections", drawn)
                    cv2.waitKey(0)
                except cv2.error as exc:
                    raise RuntimeError(
                        f"--show needs a display ({exc}); use --show-dir DIR to save the "
                        "drawn images instead"
                    ) from exc
        return outputs

    return on_batch


def _pipeline(*steps):
    steps = [s for s in steps if s is not None]

    def on_batch(data_batch, outputs):
        for step in steps:
            outputs = step(data_batch, outputs)
        return outputs

    return on_batch


def _encode_callback(data_batch, outputs):
    return [encode_mask_results(r) for r in outputs]


def _batch_metas(data_batch):
    if "img_metas" in data_batch:
        return data_batch["img_metas"]
    return [_first_aug(s).metainfo for s in data_batch["data_samples"]]


def _per_class_callback(model):
    """``on_batch`` step turning predicted data samples into mmdetection's per-image results
    (per-class lists with RLE masks, or proposal arrays: the format of ``results.pkl`` and
    ``show_result``; the metrics read them back as ``pred_instances``)."""
    num_classes = getattr(getattr(model, "module", model), "num_classes", None)

    def on_batch(data_batch, outputs):
        return [
            to_legacy_result(compact_prediction(o), num_classes)
            if isinstance(o, DetDataSample) else o
            for o in outputs
        ]  # fmt: skip

    return on_batch


def single_gpu_test(model, data_loader, show=False, out_dir=None, show_score_thr=0.3,
                    draw_style=None):  # fmt: skip
    """Results of ``model`` for every image of ``data_loader.dataset``, in order.

    Masks are returned as RLE dicts. ``show`` opens a window per image; ``out_dir`` saves
    the drawn detections there (under each image's file name); ``show_score_thr`` is the
    lowest score drawn; ``draw_style`` (a :class:`~mmdet_like.visualization.DrawStyle`:
    thickness, font scale, palette) how (default: sizes from each image, default palette).
    """
    draw = None
    if show or out_dir:
        if draw_style is not None and not isinstance(draw_style, DrawStyle):
            raise TypeError(f"draw_style must be a DrawStyle, got {type(draw_style).__name__}")
        class_names = getattr(data_loader.dataset, "CLASSES", None)
        draw = _show_callback(
            class_names, show, out_dir, show_score_thr, _skeleton_of(data_loader.dataset),
            draw_style,
        )  # fmt: skip
    return single_process_inference(
        model, data_loader, show_progress=True,
        on_batch=_pipeline(_per_class_callback(model), draw, _encode_callback),
    )  # fmt: skip


def multi_gpu_test(model, data_loader, tmpdir=None, gpu_collect=False):
    """Each rank of the process group tests its share (``data_loader`` built with
    ``dist=True, shuffle=False``); rank 0 gets every result in dataset order (masks as
    RLE), the other ranks ``None``.

    ``gpu_collect=True`` gathers through ``all_gather_object`` (NCCL or gloo); otherwise
    every rank pickles its part into ``tmpdir`` (shared by all ranks; a temporary directory
    when ``None``). A progress bar shows on rank 0.
    """
    rank, _ = get_dist_info()
    return multi_process_inference(
        model,
        data_loader,
        show_progress=rank == 0,
        on_batch=_pipeline(_per_class_callback(model), _encode_callback),
        tmpdir=tmpdir,
        gpu_collect=gpu_collect,
        all_ranks=False,
    )
