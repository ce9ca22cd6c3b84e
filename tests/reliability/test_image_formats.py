"""Image formats through ``LoadImageFromFile`` (default ``color_type="color"``).

Decided (docs, ``LoadImageFromFile``): every format gives an (H, W, 3) uint8 BGR image
(float32 with ``to_float32``): grayscale is replicated to 3 channels, 16-bit is scaled to
8 bits (``value // 256``), CMYK JPEGs are converted to BGR, alpha is dropped, and the EXIF
orientation is applied (as mmcv / OpenCV do with ``"color"``; PIL's ``exif_transpose`` is
the reference here). The annotation's width/height describe the image as displayed (after
the EXIF rotation); an image whose size differs from its annotation raises
:class:`DatasetError` naming the file, the image id and both sizes (with a hint when they
are swapped, the EXIF case). VOC files without ``<size>`` take the size as displayed.
"""

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from mmdet_like.datasets import CocoDataset, DatasetError, VOCDataset
from mmdet_like.registry import PIPELINES, build_from_cfg
from tests.reliability.annotation_data import write_json

H, W = 30, 40  # stored size of every test image


def load(path, width=None, height=None, img_id=7, **kwargs):
    info = dict(id=img_id, filename=path.name)
    if width is not None:
        info.update(width=width, height=height)
    step = build_from_cfg(dict(type="LoadImageFromFile", **kwargs), PIPELINES)
    return step(dict(img_prefix=str(path.parent), img_info=info))


def pattern_rgb():
    """A 30x40 RGB image with different content in each quadrant (orientation visible)."""
    img = np.zeros((H, W, 3), np.uint8)
    img[: H // 2, : W // 2] = (255, 0, 0)
    img[: H // 2, W // 2 :] = (0, 255, 0)
    img[H // 2 :, : W // 2] = (0, 0, 255)
    img[H // 2 :, W // 2 :] = (255, 255, 255)
    return img


def assert_bgr_uint8(results, shape):
    img = results["img"]
    assert img.dtype == np.uint8 and img.shape == shape
    assert results["img_shape"] == shape and results["ori_shape"] == shape


def test_grayscale_png_and_jpeg_become_three_equal_channels(tmp_path):
    gray = np.random.default_rng(0).integers(0, 256, (H, W), dtype=np.uint8)
    Image.fromarray(gray, mode="L").save(tmp_path / "g.png")
    Image.fromarray(gray, mode="L").save(tmp_path / "g.jpg", quality=95)
    out = load(tmp_path / "g.png", W, H)
    assert_bgr_uint8(out, (H, W, 3))
    for channel in range(3):
        np.testing.assert_array_equal(out["img"][..., channel], gray)
    jpg = load(tmp_path / "g.jpg", W, H)["img"]
    assert jpg.shape == (H, W, 3)
    assert (jpg[..., 0] == jpg[..., 1]).all() and (jpg[..., 1] == jpg[..., 2]).all()
    floats = load(tmp_path / "g.png", W, H, to_float32=True)["img"]
    assert floats.dtype == np.float32 and floats.shape == (H, W, 3)
    np.testing.assert_array_equal(floats[..., 0], gray.astype(np.float32))


def test_16_bit_png_is_scaled_to_8_bits(tmp_path):
    values = np.linspace(0, 65535, H * W).astype(np.uint16).reshape(H, W)
    Image.fromarray(values).save(tmp_path / "gray16.png")  # PIL mode I;16
    color16 = np.stack([values, 65535 - values, values // 2], axis=-1)  # BGR
    cv2.imwrite(str(tmp_path / "color16.png"), color16)
    gray = load(tmp_path / "gray16.png", W, H)
    assert_bgr_uint8(gray, (H, W, 3))
    for channel in range(3):
        np.testing.assert_array_equal(gray["img"][..., channel], values >> 8)
    color = load(tmp_path / "color16.png", W, H)
    assert_bgr_uint8(color, (H, W, 3))
    np.testing.assert_array_equal(color["img"], (color16 >> 8).astype(np.uint8))


def test_cmyk_jpeg_is_converted_to_bgr(tmp_path):
    rgb = pattern_rgb()
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    assert Image.open(tmp_path / "cmyk.jpg").mode == "CMYK"
    out = load(tmp_path / "cmyk.jpg", W, H)
    assert_bgr_uint8(out, (H, W, 3))
    # the colours survive (JPEG is lossy: compare quadrant centres with a tolerance)
    expected_bgr = rgb[..., ::-1].astype(int)
    for y, x in ((7, 10), (7, 30), (22, 10), (22, 30)):
        assert np.abs(out["img"][y, x].astype(int) - expected_bgr[y, x]).max() <= 12


def test_rgba_and_palette_png_become_bgr(tmp_path):
    rgb = pattern_rgb()
    rgba = np.dstack([rgb, np.full((H, W), 255, np.uint8)])
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(rgb).convert("P").save(tmp_path / "palette.png")
    for name in ("rgba.png", "palette.png"):
        out = load(tmp_path / name, W, H)
        assert_bgr_uint8(out, (H, W, 3))
        np.testing.assert_array_equal(out["img"], rgb[..., ::-1])


def save_with_orientation(path, rgb, orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation  # the EXIF Orientation tag
    Image.fromarray(rgb).save(path, quality=95, exif=exif.tobytes())


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_exif_orientation_is_applied(tmp_path, orientation):
    rgb = pattern_rgb()
    path = tmp_path / "exif.jpg"
    save_with_orientation(path, rgb, orientation)
    reference = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
    dh, dw = reference.shape[:2]  # displayed size: 40x30 for orientations 6 and 8
    assert (dh, dw) == ((W, H) if orientation in (6, 8) else (H, W))
    out = load(path, dw, dh)
    assert_bgr_uint8(out, (dh, dw, 3))
    diff = np.abs(out["img"][..., ::-1].astype(int) - reference.astype(int))
    assert np.median(diff) <= 2 and diff.max() <= 40  # same orientation (JPEG noise only)


def test_size_mismatch_with_the_annotation_is_a_clear_error(tmp_path):
    path = tmp_path / "exif.jpg"
    save_with_orientation(path, pattern_rgb(), 6)  # displayed 30 wide, 40 high
    with pytest.raises(DatasetError) as info:
        load(path, width=W, height=H, img_id=12)  # the stored (unrotated) size
    message = str(info.value)
    assert str(path) in message and "image id 12" in message and "field 'width/height'" in message
    assert "the image is 30x40" in message and "the annotation says 40x30" in message
    assert "swapped" in message and "EXIF orientation" in message and "Fix" in message

    Image.fromarray(pattern_rgb()).save(tmp_path / "plain.png")
    with pytest.raises(DatasetError) as info:
        load(tmp_path / "plain.png", width=64, height=48, img_id=3)
    message = str(info.value)
    assert "plain.png, image id 3" in message and "the image is 40x30" in message
    assert "the annotation says 64x48" in message and "swapped" not in message
    # without a size in img_info (e.g. inference on a file) nothing is compared
    assert load(tmp_path / "plain.png")["img"].shape == (H, W, 3)


def test_coco_dataset_with_exif_image_annotated_as_displayed(tmp_path):
    save_with_orientation(tmp_path / "rot.jpg", pattern_rgb(), 6)
    Image.fromarray(np.zeros((16, 16), np.uint16)).save(tmp_path / "depth.png")
    data = dict(
        images=[dict(id=1, file_name="rot.jpg", width=H, height=W),
                dict(id=2, file_name="depth.png", width=16, height=16),
                dict(id=3, file_name="rot.jpg", width=W, height=H)],  # wrong: stored size
        annotations=[dict(id=1, image_id=1, category_id=1, bbox=[2, 3, 20, 30]),
                     dict(id=2, image_id=2, category_id=1, bbox=[1, 1, 8, 8]),
                     dict(id=3, image_id=3, category_id=1, bbox=[2, 3, 20, 20])],
        categories=[dict(id=1, name="thing")],
    )  # fmt: skip
    ann_file = write_json(tmp_path / "ann.json", data)
    pipeline = [dict(type="LoadImageFromFile"), dict(type="LoadAnnotations")]
    ds = CocoDataset(str(ann_file), pipeline, img_prefix=str(tmp_path), min_size=None)
    first = ds[0]
    assert first["img"].shape == (W, H, 3) and first["img"].dtype == np.uint8
    np.testing.assert_array_equal(first["gt_bboxes"], [[2, 3, 22, 33]])
    assert ds[1]["img"].shape == (16, 16, 3)
    with pytest.raises(DatasetError, match=r"rot.jpg, image id 3, field 'width/height'.*EXIF"):
        ds[2]


def test_voc_without_size_reads_the_displayed_size(tmp_path):
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "JPEGImages").mkdir()
    (tmp_path / "ImageSets" / "Main").mkdir(parents=True)
    save_with_orientation(tmp_path / "JPEGImages" / "img0.jpg", pattern_rgb(), 6)
    (tmp_path / "Annotations" / "img0.xml").write_text(
        "<annotation><filename>img0.jpg</filename><object><name>RBC</name>"
        "<bndbox><xmin>2</xmin><ymin>3</ymin><xmax>20</xmax><ymax>35</ymax></bndbox>"
        "</object></annotation>"
    )
    split = tmp_path / "ImageSets" / "Main" / "train.txt"
    split.write_text("img0\n")
    ds = VOCDataset(
        str(split), [dict(type="LoadImageFromFile")], img_prefix=str(tmp_path),
        classes=("RBC",), min_size=None,
    )  # fmt: skip
    assert ds.get_img_info(0)["width"] == H and ds.get_img_info(0)["height"] == W
    assert ds[0]["img"].shape == (W, H, 3)
