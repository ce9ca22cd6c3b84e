"""Drawing detections and ground truth on images (:mod:`mmdet_like.visualization.draw`)."""

from mmdet_like.visualization.draw import (
    PALETTE_NAMES,
    DrawOptionError,
    DrawStyle,
    add_draw_arguments,
    auto_font_scale,
    auto_thickness,
    draw_box,
    draw_ground_truth,
    draw_instances,
    draw_keypoints,
    draw_label,
    draw_result,
    label_rectangle,
    palette_colors,
    result_instances,
    style_from_args,
)

__all__ = [
    "PALETTE_NAMES",
    "DrawOptionError",
    "DrawStyle",
    "add_draw_arguments",
    "auto_font_scale",
    "auto_thickness",
    "draw_box",
    "draw_ground_truth",
    "draw_instances",
    "draw_keypoints",
    "draw_label",
    "draw_result",
    "label_rectangle",
    "palette_colors",
    "result_instances",
    "style_from_args",
]
