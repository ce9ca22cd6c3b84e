"""Our compiled ops as standard ONNX operators, for ``torch.onnx.export(dynamo=True)``.

``mmdet_like::roi_align`` becomes one ``RoiAlign`` (opset 16: ``coordinate_transformation_mode``
``half_pixel`` is our ``aligned=True``, ``output_half_pixel`` our ``aligned=False``; both
average the ``sampling_ratio`` samples of a bin, ``0`` meaning ``ceil(bin size)``, and clamp
an unaligned RoI to at least 1 x 1 as we do). ``mmdet_like::nms`` becomes one
``NonMaxSuppression`` over a single class, its selected indices (descending score, as ours)
taken from the last column. Stock onnxruntime runs both: the exported file needs no custom
library. Soft-NMS has no ONNX operator (the exporter refuses it).
"""

import torch

ONNX_OPSET = 18  # RoiAlign's coordinate_transformation_mode needs 16


def translation_table():
    """``{torch op overload: onnxscript function}`` for ``custom_translation_table``."""
    from onnxscript import INT64
    from onnxscript import opset18 as op

    def roi_align(
        input, rois, spatial_scale: float, pooled_height: int, pooled_width: int,
        sampling_ratio: int, aligned: bool,
    ):  # fmt: skip
        # rois: (K, 5) [image, x1, y1, x2, y2] -> RoiAlign's (K, 4) boxes and (K,) image ids
        batch_indices = op.Cast(
            op.Reshape(op.Slice(rois, [0], [1], [1]), op.Constant(value_ints=[-1])),
            to=INT64.dtype,
        )
        boxes = op.Slice(rois, [1], [5], [1])
        return op.RoiAlign(
            input, boxes, batch_indices,
            coordinate_transformation_mode="half_pixel" if aligned else "output_half_pixel",
            mode="avg", output_height=pooled_height, output_width=pooled_width,
            sampling_ratio=max(int(sampling_ratio), 0), spatial_scale=spatial_scale,
        )  # fmt: skip

    def nms(boxes, scores, iou_threshold: float):
        # NonMaxSuppression: boxes (batch, N, 4), scores (batch, classes, N), at most
        # max_output_boxes_per_class per class (here N: every box may be kept)
        batched_boxes = op.Unsqueeze(boxes, op.Constant(value_ints=[0]))
        batched_scores = op.Unsqueeze(scores, op.Constant(value_ints=[0, 1]))
        max_per_class = op.Shape(boxes, start=0, end=1)
        threshold = op.Constant(value_floats=[iou_threshold])
        selected = op.NonMaxSuppression(batched_boxes, batched_scores, max_per_class, threshold)
        # selected: (M, 3) [batch, class, box] -> (M,) box indices
        return op.Reshape(op.Slice(selected, [2], [3], [1]), op.Constant(value_ints=[-1]))

    return {
        torch.ops.mmdet_like.roi_align.default: roi_align,
        torch.ops.mmdet_like.nms.default: nms,
    }
