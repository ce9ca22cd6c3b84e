"""mmdet_like.visualization.draw: sizes from the image unless given, labels on a filled
rectangle, translucent masks, palettes one colour per class, checked options. Drawn on
small synthetic images (no model)."""

import argparse

import numpy as np
import pytest

from mmdet_like.apis import show_result
from mmdet_like.visualization import (
    DrawOptionError,
    DrawStyle,
    add_draw_arguments,
    auto_font_scale,
    auto_thickness,
    draw_ground_truth,
    draw_instances,
    draw_result,
    label_rectangle,
    palette_colors,
    style_from_args,
)
from mmdet_like.visualization.draw import text_color

GREY = 128


def _blank(height, width):
    return np.full((height, width, 3), GREY, np.uint8)


def _stroke_width(drawn, row, start, stop):
    """Pixels changed on ``row`` between columns ``start`` and ``stop`` (one box edge)."""
    return int((drawn[row, start:stop] != GREY).any(axis=1).sum())


def _one_box(size, box, style=None, label=None):
    """A ``size`` x ``size`` grey image with one box (class 0) drawn, no label text."""
    return draw_instances(_blank(size, size), [box], None if label is None else [label],
                          style=style or DrawStyle())  # fmt: skip


def test_line_width_and_font_grow_with_the_image():
    assert auto_thickness(128, 128) == 1
    assert auto_thickness(480, 640) == 2
    assert auto_thickness(800, 1333) == 4
    assert auto_thickness(3000, 4000) == 14
    assert auto_font_scale(128, 128) == pytest.approx(0.3)  # the floor
    assert auto_font_scale(480, 640) == pytest.approx(0.672)
    assert auto_font_scale(3000, 4000) > auto_font_scale(800, 1333) > auto_font_scale(480, 640)
    # on drawings: the left edge of a box at the same relative place, and its label's height
    small = _one_box(128, (32, 32, 96, 96))
    large = _one_box(1280, (320, 320, 960, 960))
    assert _stroke_width(small, 64, 20, 44) == 1
    assert _stroke_width(large, 640, 300, 340) == 5  # auto_thickness(1280, 1280)
    small_label = label_rectangle(
        "circle 0.93", 32, 32, small.shape, *DrawStyle().sizes(128, 128)[1:]
    )
    large_label = label_rectangle(
        "circle 0.93", 320, 320, large.shape, *DrawStyle().sizes(1280, 1280)[1:]
    )
    assert large_label[3] - large_label[1] > 3 * (small_label[3] - small_label[1])


def test_explicit_thickness_and_font_scale_are_honoured():
    style = DrawStyle.of(thickness=5, font_scale=1.2)
    assert style.sizes(64, 64)[:2] == style.sizes(4000, 4000)[:2] == (5, 1.2)
    drawn = _one_box(128, (32, 40, 96, 100), style)
    assert _stroke_width(drawn, 70, 20, 44) == 5
    for thickness in (2, 3, 4, 6):  # exactly that many pixels (OpenCV's rectangle: 3, 5, 5, 7)
        drawn = _one_box(128, (32, 40, 96, 100), DrawStyle.of(thickness=thickness))
        assert _stroke_width(drawn, 70, 20, 44) == thickness
        assert int((drawn[20:60, 64] != GREY).any(axis=1).sum()) == thickness  # top edge
    thin = _one_box(1280, (320, 320, 960, 960), DrawStyle.of(thickness=1))
    assert _stroke_width(thin, 640, 300, 340) == 1
    # the label's rectangle is as tall as the font asks, whatever the image
    small = draw_instances(_blank(200, 200), [(20, 100, 120, 180)], [0], [0.93],
                           style=DrawStyle.of(font_scale=0.4))  # fmt: skip
    big = draw_instances(_blank(200, 200), [(20, 100, 120, 180)], [0], [0.93],
                         style=DrawStyle.of(font_scale=1.2))  # fmt: skip
    fill = DrawStyle().color(0)
    rows_small = np.all(small[:100, 20] == fill, axis=1).sum()
    rows_big = np.all(big[:100, 20] == fill, axis=1).sum()
    assert rows_big > 2.5 * rows_small > 0


def test_label_sits_on_a_filled_rectangle_of_the_class_colour():
    style = DrawStyle.of(thickness=2, font_scale=0.6)
    img = _blank(160, 240)
    drawn = draw_result(img, [np.array([[40, 80, 200, 150, 0.93]], np.float32)], ["circle"],
                        style=style)  # fmt: skip
    thickness, font_scale, text_thickness = style.sizes(160, 240)
    left, top, right, bottom = label_rectangle("circle 0.93", 40, 80, img.shape, font_scale,
                                               text_thickness)  # fmt: skip
    assert bottom < 80 and right > 40  # just above the box
    fill = np.array(style.color(0), np.uint8)  # crimson: white text on it
    assert text_color(tuple(int(c) for c in fill)) == (255, 255, 255)
    inside = drawn[top : bottom + 1, left : right + 1]
    is_fill = np.all(inside == fill, axis=2)
    is_text = np.all(inside == 255, axis=2)
    assert is_fill.mean() > 0.5  # a filled rectangle...
    assert is_text.sum() > 20  # ...with the text in white on it
    assert not np.any(np.all(inside == GREY, axis=2))  # no background shows through
    # around it (above the box's top edge), the image is untouched
    assert np.all(drawn[:top] == GREY)
    assert np.all(drawn[top : bottom - 2, right + 1 :] == GREY)


def test_where_detections_overlap_the_most_confident_is_drawn_on_top():
    """Duplicates of one object (a star found as star 0.79, triangle 0.46, rectangle 0.42,
    as a weakly trained model gives) share a corner: the label left readable is the
    confident one's, whatever the order of the classes."""
    style = DrawStyle.of(thickness=2, font_scale=0.6)
    box = [40, 80, 200, 150]
    per_class = [np.zeros((0, 5), np.float32) for _ in range(4)]
    for label, score in ((1, 0.42), (2, 0.79), (3, 0.46)):
        per_class[label] = np.array([[*box, score]], np.float32)
    drawn = draw_result(_blank(160, 240), per_class, ["circle", "rectangle", "star", "tri"],
                        style=style)  # fmt: skip
    _, font_scale, text_thickness = style.sizes(160, 240)
    left, top, right, bottom = label_rectangle("star 0.79", 40, 80, (160, 240, 3), font_scale,
                                               text_thickness)  # fmt: skip
    inside = drawn[top : bottom + 1, left : right + 1]
    counts = {k: int(np.all(inside == style.color(k), axis=2).sum()) for k in (1, 2, 3)}
    assert counts[2] > 5 * max(counts[1], counts[3]), counts
    # the box edge too: the star's colour on the shared top edge
    assert tuple(drawn[81, 120]) == style.color(2)


def test_label_goes_inside_the_box_at_the_top_and_stays_in_the_image():
    text_args = (0.5, 1)
    left, top, right, bottom = label_rectangle("star 0.50", 230, 0, (100, 240, 3), *text_args)
    assert top == 0 and right == 239 and left < 230  # moved left, inside the top edge


def test_text_colour_reads_on_its_fill():
    assert text_color((25, 225, 255)) == (0, 0, 0)  # on yellow (BGR): black
    assert text_color((128, 0, 0)) == (255, 255, 255)  # on navy: white
    style = DrawStyle.of(palette=[(255, 255, 0)], font_scale=0.6)
    drawn = draw_instances(_blank(120, 200), [(20, 60, 150, 110)], [0], [0.5], style=style)
    rect = label_rectangle("0 0.50", 20, 60, drawn.shape, *style.sizes(120, 200)[1:])
    inside = drawn[rect[1] : rect[3] + 1, rect[0] : rect[2] + 1]
    assert np.all(inside == 0, axis=2).sum() > 10  # black text on the yellow


def test_masks_are_filled_translucent_in_the_class_colour():
    img = _blank(64, 64)
    mask = np.zeros((64, 64), bool)
    mask[20:40, 20:40] = True
    result = ([np.zeros((0, 5), np.float32), np.array([[10, 10, 50, 50, 0.9]], np.float32)],
              [[], [mask]])  # fmt: skip
    drawn = draw_result(img, result, score_thr=0.5, palette="tab20")
    color = np.asarray(DrawStyle.of(palette="tab20").color(1), np.float32)
    blend = (0.5 * GREY + 0.5 * color).astype(np.uint8)
    assert np.all(drawn[25:35, 25:35] == blend)
    assert np.all(drawn[52:] == GREY)  # below the box: untouched


def test_palette_gives_each_class_one_colour_in_every_drawing():
    boxes = [(10, 30, 50, 70), (70, 30, 110, 70), (130, 30, 170, 70)]
    style = DrawStyle.of(thickness=2, palette="tab20")
    first = draw_instances(_blank(100, 200), boxes, [3, 3, 5], style=style, show_labels=False)
    colour_at = [tuple(first[50, x1]) for x1, *_ in boxes]
    assert colour_at[0] == colour_at[1] != colour_at[2]
    again = draw_instances(_blank(100, 200), boxes[::-1], [5, 3, 3], style=style,
                           show_labels=False)  # fmt: skip
    assert tuple(again[50, 130]) == colour_at[2] and tuple(again[50, 10]) == colour_at[0]
    assert style.color(3) == style.color(23)  # 20 colours, repeated
    own = DrawStyle.of(palette=[(255, 0, 0), (0, 0, 255)])
    assert own.color(0) == (0, 0, 255) and own.color(1) == (255, 0, 0) == own.color(3)  # BGR
    assert palette_colors("random") == palette_colors("random")  # seeded: the same each run
    assert len(set(palette_colors("random")[:20])) == 20
    assert palette_colors("default")[0] == (220, 20, 60)


def test_ground_truth_labels_are_names_and_hidden_keypoints_are_left_out():
    style = DrawStyle.of(thickness=1, font_scale=0.4)
    points = np.array([[[30, 50, 2], [60, 50, 0], [45, 70, 1]]], np.float32)
    drawn = draw_ground_truth(_blank(100, 100), [(20, 40, 80, 90)], [0], ["circle"],
                              keypoints=points, style=style)  # fmt: skip
    assert np.all(drawn[50, 58:63] == GREY)  # visibility 0: not drawn
    assert not np.all(drawn[50, 28:33] == GREY) and not np.all(drawn[70, 43:48] == GREY)
    rect = label_rectangle("circle", 20, 40, drawn.shape, 0.4, 1)
    assert np.all(drawn[rect[1], rect[0] : rect[2]] == style.color(0))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"thickness": 0}, "thickness 0: must be a whole number of pixels, at least 1"),
        ({"thickness": 1.5}, "thickness 1.5: must be a whole number"),
        ({"font_scale": -1}, "font_scale -1: must be a number above 0"),
        ({"font_scale": float("nan")}, "font_scale nan: must be a number above 0"),
        ({"palette": "rainbow"}, "palette 'rainbow': no such palette; use one of default"),
        ({"palette": [(300, 0, 0)]}, "integers 0-255, got (300, 0, 0)"),
        ({"palette": []}, "a palette is a name"),
    ],
)
def test_bad_options_are_one_line_naming_the_option(options, message):
    with pytest.raises(DrawOptionError) as error:
        DrawStyle.of(**options)
    assert message in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(DrawOptionError, match=next(iter(options))):
        show_result(_blank(8, 8), [np.zeros((0, 5), np.float32)], **options)


def test_command_line_options():
    parser = add_draw_arguments(argparse.ArgumentParser())
    style = style_from_args(parser.parse_args(["--thickness", "3", "--font-scale", "0.8",
                                               "--palette", "255,0,0", "0,255,0"]))  # fmt: skip
    assert (style.thickness, style.font_scale) == (3, 0.8)
    assert style.colors == ((255, 0, 0), (0, 255, 0))
    assert style_from_args(parser.parse_args(["--palette", "tab10"])).colors == palette_colors(
        "tab10"
    )
    assert style_from_args(parser.parse_args([])) == DrawStyle()
    for argv, message in [
        (["--thickness", "thin"], "--thickness thin: must be a whole number"),
        (["--font-scale", "0"], "--font-scale 0: must be a number above 0"),
        (["--palette", "255,0"], "--palette 255,0: a colour is R,G,B"),
        (["--palette", "1,2,3", "0,0,256"], "--palette 0,0,256: a colour is R,G,B"),
        (["--palette", "red,0,0"], "--palette red,0,0: a colour is R,G,B"),
        (["--palette", "viridis"], "--palette 'viridis': no such palette"),
    ]:
        with pytest.raises(DrawOptionError) as error:
            style_from_args(parser.parse_args(argv))
        assert message in str(error.value), str(error.value)
