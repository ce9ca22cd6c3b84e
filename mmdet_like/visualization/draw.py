"""Drawing detections and ground truth on images: the one place every tool, demo and API
draws with.

What is drawn: masks as a translucent fill of the class colour (``mask_alpha``, half by
default), boxes as rectangles, keypoints as dots joined by a skeleton, and a label
("``class 0.93``", or the class name alone for ground truth) in a filled rectangle of the
class colour, its text black or white, whichever reads better on that colour.

Sizes follow the image unless given (``side = (height + width) / 2``, in pixels):

* line ``thickness = max(1, round(0.004 * side))``: 1 px up to ~190 px images, 2 px at
  640 x 480, 4 px at 1333 x 800, 14 px at 4000 x 3000;
* ``font_scale = max(0.3, 0.0012 * side)`` (OpenCV's Hershey simplex: text about
  ``22 * font_scale`` px high): 0.3 on small images, 0.67 at 640 x 480, 1.28 at
  1333 x 800; the text's stroke is ``max(1, round(1.5 * font_scale))`` px.

Colours come from a palette, one colour per class (class ``k`` gets colour
``k mod len(palette)``, the same in every image and every run): a name of
:data:`PALETTE_NAMES` or a list of ``(R, G, B)`` tuples (0-255).
"""

import math
from dataclasses import dataclass

import cv2
import numpy as np
import pycocotools.mask as mask_utils

from mmdet_like.errors import ProjectError
from mmdet_like.structures import result_parts

# Ten well-separated colours (RGB): the project's colours since its first pictures.
DEFAULT_COLORS = (
    (220, 20, 60), (0, 130, 200), (60, 180, 75), (255, 225, 25), (145, 30, 180),
    (245, 130, 48), (70, 240, 240), (240, 50, 230), (210, 245, 60), (0, 128, 128),
)  # fmt: skip
RANDOM_COLORS = 256  # 'random': this many seeded colours, repeated beyond
PALETTE_NAMES = ("default", "tab10", "tab20", "random")
FONT = cv2.FONT_HERSHEY_SIMPLEX
LINE_PER_SIDE = 0.004  # thickness = max(1, round(LINE_PER_SIDE * side))
FONT_PER_SIDE = 0.0012  # font_scale = max(MIN_FONT_SCALE, FONT_PER_SIDE * side)
MIN_FONT_SCALE = 0.3


class DrawOptionError(ProjectError, ValueError):
    """A drawing option (thickness, font scale, palette) has a value it cannot take."""


def auto_thickness(height, width):
    """Box line width (px) for an image of ``height`` x ``width`` (see the module doc)."""
    return max(1, round(LINE_PER_SIDE * (height + width) / 2))


def auto_font_scale(height, width):
    """OpenCV font scale of the labels for an image of ``height`` x ``width``."""
    return max(MIN_FONT_SCALE, FONT_PER_SIDE * (height + width) / 2)


def _named_palette(name):
    if name == "default":
        return DEFAULT_COLORS
    if name in ("tab10", "tab20"):
        from matplotlib import colormaps  # a runtime requirement; imported when asked for

        return tuple(tuple(round(255 * c) for c in rgb[:3]) for rgb in colormaps[name].colors)
    # 'random': seeded, so class k has the same colour in every image and every run; not too
    # dark, so black box lines and labels stay visible
    rng = np.random.default_rng(0)
    return tuple(tuple(int(c) for c in rgb) for rgb in rng.integers(48, 256, (RANDOM_COLORS, 3)))


def palette_colors(palette="default", option="palette"):
    """The palette's colours as a tuple of RGB int tuples; :class:`DrawOptionError` (naming
    ``option``) for an unknown name or a colour that is not three integers in 0-255."""
    if palette is None:
        palette = "default"
    if isinstance(palette, str):
        if palette not in PALETTE_NAMES:
            raise DrawOptionError(
                f"{option} {palette!r}: no such palette; use one of {', '.join(PALETTE_NAMES)} "
                "or a list of R,G,B colours (0-255)"
            )
        return _named_palette(palette)
    colors = []
    try:
        entries = list(palette)
    except TypeError:
        entries = None
    for color in entries or [None]:
        try:
            rgb = tuple(color)
            valid = len(rgb) == 3 and all(
                float(c).is_integer() and 0 <= c <= 255 and not isinstance(c, bool) for c in rgb
            )
        except (TypeError, ValueError):
            valid = False
        if not valid:
            raise DrawOptionError(
                f"{option} {palette!r}: a palette is a name ({', '.join(PALETTE_NAMES)}) or a "
                f"non-empty list of (R, G, B) colours of integers 0-255, got {color!r}"
            )
        colors.append(tuple(int(c) for c in rgb))
    return tuple(colors)


def parse_palette_argument(values, option="--palette"):
    """The colours of ``--palette`` values: one palette name (``tab20``) or colours
    ``R,G,B R,G,B ...``."""
    values = [values] if isinstance(values, str) else list(values)
    if len(values) == 1 and "," not in values[0]:
        return palette_colors(values[0], option)
    colors = []
    for value in values:
        try:
            color = tuple(int(c) for c in value.split(","))
        except ValueError:
            color = ()
        if len(color) != 3 or not all(0 <= c <= 255 for c in color):
            raise DrawOptionError(
                f"{option} {value}: a colour is R,G,B (three integers 0-255, e.g. 255,128,0); "
                f"or name a palette: {', '.join(PALETTE_NAMES)}"
            )
        colors.append(color)
    return tuple(colors)


def _number(value):
    if isinstance(value, bool):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def check_thickness(value, option="thickness"):
    """``value`` as a line width in px (an integer >= 1), or None (from the image size)."""
    if value is None:
        return None
    number = _number(value)
    if not (math.isfinite(number) and number.is_integer() and number >= 1):
        raise DrawOptionError(
            f"{option} {value}: must be a whole number of pixels, at least 1 (or leave it "
            "out to derive it from the image size)"
        )
    return int(number)


def check_font_scale(value, option="font_scale"):
    """``value`` as an OpenCV font scale (a finite number > 0), or None (from the size)."""
    if value is None:
        return None
    number = _number(value)
    if not (math.isfinite(number) and number > 0):
        raise DrawOptionError(
            f"{option} {value}: must be a number above 0 (0.5 draws text about 11 px high; "
            "or leave it out to derive it from the image size)"
        )
    return number


@dataclass(frozen=True)
class DrawStyle:
    """Checked drawing options: ``thickness`` / ``font_scale`` None (from each image's
    size) or fixed, ``colors`` the palette's RGB colours, ``mask_alpha`` the mask fill's
    opacity."""

    thickness: int | None = None
    font_scale: float | None = None
    colors: tuple = DEFAULT_COLORS
    mask_alpha: float = 0.5

    @classmethod
    def of(cls, thickness=None, font_scale=None, palette="default", mask_alpha=0.5, cli=False):
        """A style from raw options, each checked; errors name the option (its command-line
        spelling, ``--font-scale``, when ``cli``)."""
        names = ("--thickness", "--font-scale", "--palette") if cli else (
            "thickness", "font_scale", "palette")  # fmt: skip
        if cli and palette is not None:
            colors = parse_palette_argument(palette, names[2])
        else:
            colors = palette_colors(palette, names[2])
        if not 0 <= _number(mask_alpha) <= 1:
            raise DrawOptionError(f"mask_alpha {mask_alpha!r}: must be between 0 and 1")
        return cls(
            check_thickness(thickness, names[0]),
            check_font_scale(font_scale, names[1]),
            colors,
            float(mask_alpha),
        )

    def sizes(self, height, width):
        """``(line thickness, font scale, text stroke)`` for a ``height`` x ``width``
        image."""
        thickness = self.thickness or auto_thickness(height, width)
        font_scale = self.font_scale or auto_font_scale(height, width)
        return thickness, font_scale, max(1, round(1.5 * font_scale))

    def color(self, label):
        """BGR colour (for OpenCV) of class ``label``."""
        r, g, b = self.colors[int(label) % len(self.colors)]
        return b, g, r


def add_draw_arguments(parser):
    """``--thickness``, ``--font-scale`` and ``--palette`` on a tool's parser; read them
    back with :func:`style_from_args`."""
    group = parser.add_argument_group("drawing")
    group.add_argument(
        "--thickness", default=None,
        help="box line width in pixels (default: from the image size, 1 px on 128 px images, "
        "2 px at 640 x 480, 4 px at 1333 x 800)",
    )  # fmt: skip
    group.add_argument(
        "--font-scale", default=None,
        help="label font scale (OpenCV; default: from the image size, 0.3 on small images, "
        "0.67 at 640 x 480)",
    )  # fmt: skip
    group.add_argument(
        "--palette", nargs="+", default=None, metavar="NAME_OR_R,G,B",
        help=f"class colours: {', '.join(PALETTE_NAMES)} (default: default), or colours "
        "R,G,B R,G,B ... (0-255), class k taking colour k mod their number",
    )  # fmt: skip
    return parser


def style_from_args(args):
    """The :class:`DrawStyle` of a tool's :func:`add_draw_arguments` options (checked;
    errors name the command-line option)."""
    return DrawStyle.of(args.thickness, args.font_scale, args.palette, cli=True)


def _resolve_style(style, thickness, font_scale, palette, mask_alpha=0.5):
    if style is not None:
        if not isinstance(style, DrawStyle):
            raise DrawOptionError(f"style {style!r}: must be a DrawStyle (DrawStyle.of(...))")
        return style
    return DrawStyle.of(thickness, font_scale, palette, mask_alpha)


def _decode_mask(mask):
    if isinstance(mask, dict):
        return mask_utils.decode(mask).astype(bool)
    return np.asarray(mask, dtype=bool)


def text_color(fill_bgr):
    """Black or white, whichever contrasts more with the BGR ``fill_bgr`` (its luma)."""
    b, g, r = fill_bgr
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b >= 140 else (255, 255, 255)


def label_rectangle(text, x, y, img_shape, font_scale, text_thickness):
    """``(left, top, right, bottom)`` (inclusive) of the filled rectangle of ``text`` for
    a box whose top-left corner is ``(x, y)``: just above the box, or just inside its top
    when there is no room above; moved left to stay in the image when it would overflow."""
    (tw, th), baseline = cv2.getTextSize(text, FONT, font_scale, text_thickness)
    pad = max(1, round(2 * font_scale))
    width, height = tw + 2 * pad, th + baseline + 2 * pad
    img_h, img_w = img_shape[:2]
    left = int(max(0, min(x, img_w - width)))
    top = y - height if y - height >= 0 else y
    top = int(max(0, min(top, img_h - height)))
    return left, top, left + width - 1, top + height - 1


def draw_label(img, text, x, y, fill_bgr, font_scale, text_thickness):
    """``text`` in a filled rectangle of ``fill_bgr`` at a box's top-left ``(x, y)`` (see
    :func:`label_rectangle`), on ``img`` in place; returns the rectangle."""
    rect = label_rectangle(text, x, y, img.shape, font_scale, text_thickness)
    left, top, right, bottom = rect
    cv2.rectangle(img, (left, top), (right, bottom), fill_bgr, -1)
    (_, th), baseline = cv2.getTextSize(text, FONT, font_scale, text_thickness)
    pad = max(1, round(2 * font_scale))
    cv2.putText(img, text, (left + pad, top + pad + th), FONT, font_scale,
                text_color(fill_bgr), text_thickness, cv2.LINE_AA)  # fmt: skip
    return rect


def draw_box(img, corners, color, thickness):
    """The outline of the box ``(x1, y1, x2, y2)`` (integer pixels) on ``img`` in place, its
    lines exactly ``thickness`` px wide, centred on the box's edges (OpenCV's own
    ``rectangle`` draws 3 px for 2, 5 px for 3 and for 4)."""
    x1, y1, x2, y2 = corners
    before, after = (thickness - 1) // 2, thickness // 2  # px on either side of an edge
    outer = (x1 - before, y1 - before, x2 + after, y2 + after)
    bands = (
        (outer[0], outer[1], outer[2], y1 + after),  # top
        (outer[0], y2 - before, outer[2], outer[3]),  # bottom
        (outer[0], outer[1], x1 + after, outer[3]),  # left
        (x2 - before, outer[1], outer[2], outer[3]),  # right
    )
    for left, top, right, bottom in bands:
        cv2.rectangle(img, (left, top), (right, bottom), color, -1)
    return img


def draw_keypoints(img, points, skeleton=(), color=(0, 255, 255), radius=2, thickness=1,
                   score_thr=None):  # fmt: skip
    """One instance's keypoints ((K, 2) or (K, 3) ``x, y[, score or visibility]``) as dots
    joined by the ``skeleton``'s lines (0-based index pairs), on ``img`` in place. With
    ``score_thr``, points whose third value is not above it (and their lines) are left
    out."""
    points = np.asarray(points, dtype=np.float64)
    points = points.reshape(-1, points.shape[-1])
    shown = np.ones(len(points), bool)
    if score_thr is not None and points.shape[1] > 2:
        shown = points[:, 2] > score_thr
    centres = [(round(float(x)), round(float(y))) for x, y in points[:, :2]]
    for a, b in skeleton:
        if shown[a] and shown[b]:
            cv2.line(img, centres[a], centres[b], color, thickness, cv2.LINE_AA)
    for centre, visible in zip(centres, shown):
        if visible:
            cv2.circle(img, centre, radius, color, -1, cv2.LINE_AA)
    return img


def draw_instances(img, boxes, labels, scores=None, masks=None, keypoints=None,
                   class_names=None, skeleton=(), style=None, keypoint_thr=None,
                   show_labels=True):  # fmt: skip
    """A copy of BGR ``img`` with instances drawn: ``boxes`` (n, 4) x1 y1 x2 y2, ``labels``
    (n,) class indices (None: all class 0, no label text), ``scores`` (n,) or None (labels
    without a score, as for ground truth), ``masks`` n (H, W) boolean arrays or RLE dicts
    (None: no masks; one of another size than the image is skipped), ``keypoints``
    (n, K, 2|3) (points whose third value is not above ``keypoint_thr`` left out). Masks
    are filled first, then boxes and keypoints, then every label on top; within each, the
    instances in increasing score, so that where they overlap the most confident one is
    seen (its label is not hidden under a weaker duplicate's)."""
    style = style or DrawStyle()
    out = np.ascontiguousarray(img, dtype=np.uint8).copy()
    height, width = out.shape[:2]
    thickness, font_scale, text_thickness = style.sizes(height, width)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    count = len(boxes)
    has_labels = labels is not None
    labels = np.zeros(count, int) if labels is None else np.asarray(labels).astype(int)
    colors = [style.color(label) for label in labels]
    order = range(count) if scores is None else np.argsort(np.asarray(scores), kind="stable")
    if masks is not None:
        for i in order:
            mask = _decode_mask(masks[i])
            if mask.shape != out.shape[:2]:
                continue
            tint = np.asarray(colors[i], dtype=np.float32)
            alpha = style.mask_alpha
            out[mask] = ((1 - alpha) * out[mask] + alpha * tint).astype(np.uint8)
    corners = [tuple(round(float(v)) for v in box) for box in boxes]
    for i in order:
        draw_box(out, corners[i], colors[i], thickness)
        if keypoints is not None:
            draw_keypoints(out, keypoints[i], skeleton, colors[i], radius=thickness + 1,
                           thickness=thickness, score_thr=keypoint_thr)  # fmt: skip
    if show_labels and has_labels:
        for i in order:
            x1, y1 = corners[i][:2]
            label = int(labels[i])
            name = (
                class_names[label]
                if class_names is not None and 0 <= label < len(class_names) else str(label)
            )  # fmt: skip
            text = name if scores is None else f"{name} {float(scores[i]):.2f}"
            draw_label(out, text, x1, y1, colors[i], font_scale, text_thickness)
    return out


def result_instances(result, score_thr=0.3):
    """``(boxes, labels, scores, masks or None, keypoints or None)`` of one image's
    per-class result scoring at least ``score_thr``, or ``labels`` None for an (n, 5) array
    of proposals."""
    if isinstance(result, np.ndarray):
        proposals = result.reshape(-1, 5)
        keep = proposals[:, 4] >= score_thr
        return proposals[keep, :4], None, proposals[keep, 4], None, None
    per_class, segms, keypoints = result_parts(result)
    boxes, labels, scores, masks, points = [], [], [], [], []
    for label, class_boxes in enumerate(per_class):
        class_boxes = np.asarray(class_boxes).reshape(-1, 5)
        for j, box in enumerate(class_boxes):
            if float(box[4]) < score_thr:
                continue
            boxes.append(box[:4])
            labels.append(label)
            scores.append(float(box[4]))
            if segms is not None:
                masks.append(segms[label][j])
            if keypoints is not None:
                points.append(keypoints[label][j])
    return (
        np.asarray(boxes, np.float64).reshape(-1, 4),
        np.asarray(labels, int),
        np.asarray(scores, np.float64),
        masks if segms is not None else None,
        points if keypoints is not None else None,
    )


def draw_result(img, result, class_names=None, score_thr=0.3, thickness=None, font_scale=None,
                skeleton=(), palette="default", style=None):  # fmt: skip
    """A copy of BGR image ``img`` with the detections of ``result`` drawn on it.

    ``result``: per-class (n, 5) box arrays, optionally with per-class masks
    (``(bbox_results, segm_results)``, masks boolean arrays or RLE dicts) and keypoints
    (``(bbox_results, segm_results or None, keypoint_results)``, (n, K, 3) arrays: drawn as
    points joined by the ``skeleton``'s 0-based index pairs), or an (n, 5) array of proposals
    (drawn without labels). Detections scoring below ``score_thr`` are skipped. Labels read
    "``class 0.93``". ``thickness`` (px), ``font_scale`` and ``palette`` (a name of
    :data:`PALETTE_NAMES` or RGB tuples): see the module doc; None sizes from the image.
    A checked :class:`DrawStyle` may be passed as ``style`` instead.
    """
    style = _resolve_style(style, thickness, font_scale, palette)
    boxes, labels, scores, masks, keypoints = result_instances(result, score_thr)
    return draw_instances(img, boxes, labels, scores, masks, keypoints, class_names,
                          skeleton, style)  # fmt: skip


def draw_ground_truth(img, boxes, labels, class_names=None, masks=None, keypoints=None,
                      skeleton=(), style=None):  # fmt: skip
    """A copy of ``img`` with ground-truth instances drawn as :func:`draw_instances` does,
    their labels the class names alone; keypoints of visibility 0 are left out."""
    return draw_instances(img, boxes, labels, None, masks, keypoints, class_names, skeleton,
                          style or DrawStyle(), keypoint_thr=0)  # fmt: skip
