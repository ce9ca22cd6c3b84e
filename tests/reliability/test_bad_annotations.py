"""Bad annotation files: each gets the project's own error (or a warning where training can
go on), naming the file, the record (image / annotation id or list index), the field and the
fix, and nothing else.

Decided (docs/datasets.md, "Checks"): wrong types, missing keys, duplicate ids, unknown
image / category ids, malformed masks (odd polygon coordinates, RLE of the wrong size or
pixel count) and empty image lists raise :class:`DatasetError`. Geometry that can be
repaired is repaired with one :class:`DatasetWarning` per file (an error with
``strict=True``): boxes outside the image are clipped; boxes with a non-positive size, a
non-finite value or nothing inside the image are dropped; polygons with fewer than 3
points or far outside the image are dropped (and the annotation with them when none is
left).
"""

import os
import pickle
import re

import cv2
import numpy as np
import pytest

from mmdet_like.datasets import (
    CocoDataset,
    CustomDataset,
    DatasetError,
    DatasetWarning,
    VOCDataset,
    build_dataset,
)
from mmdet_like.datasets.errors import ImageReadError
from tests.reliability.annotation_data import coco_dict, rect_poly, write_images, write_json


def build_coco(ann_file, img_dir, **kwargs):
    kwargs.setdefault("pipeline", [])
    kwargs.setdefault("min_size", None)
    return CocoDataset(ann_file=str(ann_file), img_prefix=str(img_dir), **kwargs)


def assert_names(message, *fragments):
    """Every fragment (a regex) occurs in the message, and so does a fix."""
    for fragment in fragments:
        assert re.search(fragment, message), f"{fragment!r} not in:\n{message}"
    assert "Fix" in message, message


def _set(path, value):
    """A mutation setting ``data[path[0]][path[1]]... = value``."""

    def mutate(data):
        target = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


def _pop(path):
    def mutate(data):
        target = data
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return mutate


def _rle_of(index, **changes):
    def mutate(data):
        data["annotations"][index]["segmentation"].update(changes)

    return mutate


def _uncompressed_rle_bad_total(data):
    counts = data["annotations"][2]["segmentation"]["counts"]
    counts[-1] += 5  # 5 pixels more than the 48x64 image has


def _duplicate_image_id(data):
    data["images"][1]["id"] = 10


def _duplicate_annotation_id(data):
    data["annotations"][3]["id"] = 1


def _no_id_bad_bbox(data):
    del data["annotations"][4]["id"]
    data["annotations"][4]["bbox"] = "2 40 12 12"


# (case id, mutation, regexes the message must contain besides the file name)
COCO_ERRORS = [
    ("top-level list", lambda d: [d], [r"expected a COCO json object", r"\(list\)"]),
    ("missing annotations", _pop(["annotations"]), [r"field 'annotations': missing"]),
    ("images not a list", _set(["images"], {"id": 1}), [r"field 'images': it must be a list"]),
    ("image record str", _set(["images", 1], "b.png"), [r"images\[1\]: an image must be an"]),
    ("image missing width", _pop(["images", 1, "width"]), [r"image id 20, field 'width'"]),
    ("image id list", _set(["images", 0, "id"], [10]),
     [r"field 'id' \(images\[0\]\)", r"must be an integer, got \[10\] \(list\)"]),
    ("image id str", _set(["images", 0, "id"], "10"), [r"images\[0\]", r"'10' \(str\)"]),
    ("width str", _set(["images", 0, "width"], "64px"), [r"image id 10, field 'width'", "64px"]),
    ("width zero", _set(["images", 0, "width"], 0), [r"image id 10, field 'width'", "positive"]),
    ("height negative", _set(["images", 1, "height"], -64), [r"image id 20, field 'height'"]),
    ("height NaN", _set(["images", 1, "height"], float("nan")), [r"image id 20, field 'height'"]),
    ("file_name int", _set(["images", 2, "file_name"], 3), [r"image id 30, field 'file_name'"]),
    ("duplicate image id", _duplicate_image_id,
     [r"image id 10, field 'id'", r"used twice \(images\[0\] 'a.png' and images\[1\] 'b.png'\)"]),
    ("empty image list", _set(["images"], []), [r"field 'images': the list is empty"]),
    ("empty categories", _set(["categories"], []), [r"field 'categories': the list is empty"]),
    ("category id str", _set(["categories", 1, "id"], "3"),
     [r"categories\[1\]", r"category id must be an integer"]),
    ("category without name", _pop(["categories", 2, "name"]),
     [r"categories\[2\]", r"has no 'name'"]),
    ("duplicate category id", _set(["categories", 2, "id"], 3),
     [r"categories\[2\]", r"category id 3 is used twice \('dog' and 'bird'\)"]),
    ("annotation record list", _set(["annotations", 2], [1, 2]),
     [r"annotations\[2\]: an annotation must be an object"]),
    ("annotation without image_id", _pop(["annotations", 0, "image_id"]),
     [r"annotation id 1, field 'image_id': missing"]),
    ("image_id list", _set(["annotations", 0, "image_id"], [10]),
     [r"annotation id 1, field 'image_id'", r"got \[10\] \(list\)"]),
    ("unknown image id", _set(["annotations", 1, "image_id"], 77),
     [r"image id 77, annotation id 2, field 'image_id'", "no image with this id"]),
    ("unknown category id", _set(["annotations", 1, "category_id"], 99),
     [r"image id 10, annotation id 2, field 'category_id'", r"category id 99 is not in"]),
    ("category_id float", _set(["annotations", 1, "category_id"], 3.5),
     [r"annotation id 2, field 'category_id'", r"3\.5 \(float\)"]),
    ("bbox missing", _pop(["annotations", 3, "bbox"]),
     [r"image id 20, annotation id 4, field 'bbox': missing"]),
    ("bbox as string", _set(["annotations", 0, "bbox"], "4,6,20,10"),
     [r"image id 10, annotation id 1, field 'bbox'", r"expected \[x, y, w, h\], got '4,6,20,10'"]),
    ("bbox of 3 values", _set(["annotations", 0, "bbox"], [4, 6, 20]),
     [r"annotation id 1, field 'bbox'", r"\[4, 6, 20\] \(list\)"]),
    ("bbox value str", _set(["annotations", 0, "bbox"], [4, "6", 20, 10]),
     [r"annotation id 1, field 'bbox'", r"must be a number, got '6' \(str\)"]),
    ("bbox value null", _set(["annotations", 0, "bbox"], [4, None, 20, 10]),
     [r"annotation id 1, field 'bbox'", r"None"]),
    ("iscrowd str", _set(["annotations", 2, "iscrowd"], "yes"),
     [r"annotation id 3, field 'iscrowd'", r"must be 0 or 1"]),
    ("duplicate annotation id", _duplicate_annotation_id,
     [r"annotation id 1, field 'id'", r"used twice \(annotations\[0\] and annotations\[3\]\)"]),
    ("annotation without id", _no_id_bad_bbox,
     [r"image id 20, field 'bbox' \(annotations\[4\], no id\)"]),
    ("polygon odd coordinates", _set(["annotations", 0, "segmentation"], [[4, 6, 24, 6, 24]]),
     [r"annotation id 1, field 'segmentation'", r"5 coordinates; it needs x, y pairs"]),
    ("polygon not nested", _set(["annotations", 0, "segmentation"], rect_poly(4, 6, 24, 16)),
     [r"annotation id 1, field 'segmentation'", r"polygon 0 must be a list"]),
    ("polygon value str", _set(["annotations", 0, "segmentation"], [["4", 6, 24, 6, 24, 16]]),
     [r"annotation id 1, field 'segmentation'", r"'4' \(str\)"]),
    ("segmentation str", _set(["annotations", 0, "segmentation"], "mask.png"),
     [r"annotation id 1, field 'segmentation'", r"expected polygons"]),
    ("RLE of the wrong size", _rle_of(1, size=[64, 48]),
     [r"image id 10, annotation id 2, field 'segmentation'",
      r"RLE mask of size \[64, 48\] \(height, width\) does not match the image's \[48, 64\]"]),
    ("uncompressed RLE wrong total", _uncompressed_rle_bad_total,
     [r"annotation id 3, field 'segmentation'", r"cover 3077 pixels", r"has 3072"]),
    ("compressed RLE garbage", _rle_of(1, counts="not~rle data!"),
     [r"annotation id 2, field 'segmentation'", r"not a valid string"]),
    ("RLE without counts", _pop(["annotations", 1, "segmentation", "counts"]),
     [r"annotation id 2, field 'segmentation'", r"RLE mask has no 'counts'"]),
    ("RLE negative run", _rle_of(2, counts=[-5, 3077]),
     [r"annotation id 3, field 'segmentation'", r"non-negative"]),
]  # fmt: skip


@pytest.mark.parametrize(
    "mutate, fragments", [c[1:] for c in COCO_ERRORS], ids=[c[0] for c in COCO_ERRORS]
)
def test_coco_bad_record_raises_dataset_error_naming_file_record_field(tmp_path, mutate, fragments):
    data = coco_dict()
    replaced = mutate(data)  # a mutation changes data in place or returns new data
    data = data if replaced is None else replaced
    ann_file = write_json(tmp_path / "ann.json", data)
    with pytest.raises(DatasetError) as info:
        build_coco(ann_file, tmp_path)
    assert type(info.value) is DatasetError
    assert_names(str(info.value), re.escape(str(ann_file)), *fragments)


@pytest.mark.parametrize(
    "content, fragment",
    [
        ('{"images": [{"id": 1, "file_name": "a.png", "wid', r"broken JSON at line 1, column \d+"),
        ("images:\n  - a.png\n", r"broken JSON at line 1, column 1"),
        ("", r"broken JSON at line 1, column 1"),
        (b"\x89PNG\r\n\x1a\n\xff\xd8\xff\x00", r"not a UTF-8 text file \(byte \d+ is b'\\x"),
        ("[" * 100_000, r"nested too deeply"),
    ],
    ids=["truncated", "yaml not json", "empty", "binary", "deep nesting"],
)
def test_unreadable_annotation_file(tmp_path, content, fragment):
    ann_file = tmp_path / "ann.json"
    if isinstance(content, bytes):
        ann_file.write_bytes(content)
    else:
        ann_file.write_text(content)
    for dataset in (CocoDataset, CustomDataset):  # both read the json the same way
        with pytest.raises(DatasetError) as info:
            dataset(str(ann_file), [], classes=("cat",), img_prefix=str(tmp_path))
        assert_names(str(info.value), re.escape(str(ann_file)), fragment)


def test_errors_pass_through_the_registry_unchanged(tmp_path):
    data = coco_dict()
    data["annotations"][0]["bbox"] = "4,6,20,10"
    ann_file = write_json(tmp_path / "ann.json", data)
    cfg = dict(type="CocoDataset", ann_file=str(ann_file), img_prefix=str(tmp_path), pipeline=[])
    with pytest.raises(DatasetError, match=r"annotation id 1, field 'bbox'"):
        build_dataset(cfg)


# (case id, mutation, regexes of the warning, what is left of image 10: boxes, labels)
COCO_REPAIRS = [
    ("negative width", _set(["annotations", 0, "bbox"], [24, 6, -20, 10]),
     [r"image id 10, annotation id 1, field 'bbox'", r"non-positive size \(width -20"],
     [[30, 20, 46, 40]], [1]),
    ("zero height", _set(["annotations", 0, "bbox"], [4, 6, 20, 0]),
     [r"image id 10, annotation id 1, field 'bbox'", r"non-positive size"],
     [[30, 20, 46, 40]], [1]),
    ("outside the image", _set(["annotations", 0, "bbox"], [70, 50, 10, 10]),
     [r"annotation id 1, field 'bbox'", r"lies outside the 64x48 image; dropped"],
     [[30, 20, 46, 40]], [1]),
    ("partly outside", _set(["annotations", 0, "bbox"], [-4, -6, 20, 10]),
     [r"annotation id 1, field 'bbox'", r"extends outside the 64x48 image; clipped to "
      r"\[0\.0, 0\.0, 16\.0, 4\.0\]"],
     [[0, 0, 16, 4], [30, 20, 46, 40]], [0, 1]),
    ("NaN", _set(["annotations", 0, "bbox"], [4, float("nan"), 20, 10]),
     [r"annotation id 1, field 'bbox'", r"non-finite value; dropped"],
     [[30, 20, 46, 40]], [1]),
    ("huge", _set(["annotations", 0, "bbox"], [4, 6, 10**400, 10]),
     [r"annotation id 1, field 'bbox'", r"non-finite value; dropped"],
     [[30, 20, 46, 40]], [1]),
    ("polygon of 2 points", _set(["annotations", 0, "segmentation"], [[4, 6, 24, 16]]),
     [r"annotation id 1, field 'segmentation'", r"polygon 0 has 2 point\(s\), fewer than 3",
      r"no valid polygon left; annotation dropped"],
     [[30, 20, 46, 40]], [1]),
    ("polygon far outside", _set(["annotations", 0, "segmentation"], [[4, 6, 1e9, 6, 24, 16]]),
     [r"annotation id 1, field 'segmentation'", r"polygon 0 has a point far outside"],
     [[30, 20, 46, 40]], [1]),
]  # fmt: skip


@pytest.mark.parametrize(
    "mutate, fragments, boxes, labels",
    [c[1:] for c in COCO_REPAIRS],
    ids=[c[0] for c in COCO_REPAIRS],
)
def test_coco_repairable_box_warns_and_strict_raises(tmp_path, mutate, fragments, boxes, labels):
    data = coco_dict()
    mutate(data)
    ann_file = write_json(tmp_path / "ann.json", data)
    with pytest.warns(DatasetWarning) as record:
        ds = build_coco(ann_file, tmp_path)
    messages = [str(w.message) for w in record if issubclass(w.category, DatasetWarning)]
    assert len(messages) == 1  # one warning per file
    assert_names(messages[0], re.escape(str(ann_file)), *fragments)
    ann = ds.get_ann_info(0)
    np.testing.assert_array_equal(ann["bboxes"], np.asarray(boxes, np.float32))
    np.testing.assert_array_equal(ann["labels"], labels)
    assert len(ann["masks"]) == len(boxes)
    with pytest.raises(DatasetError) as info:
        build_coco(ann_file, tmp_path, strict=True)
    assert_names(str(info.value), re.escape(str(ann_file)), fragments[0], r"strict=True")


def test_image_missing_on_disk_names_file_and_image_id(tmp_path):
    data = coco_dict()
    write_images(tmp_path / "images", data)
    os.remove(tmp_path / "images" / "b.png")
    ann_file = write_json(tmp_path / "ann.json", data)
    ds = build_coco(ann_file, tmp_path / "images", pipeline=[dict(type="LoadImageFromFile")])
    assert ds[0]["img"].shape == (48, 64, 3)
    with pytest.raises(ImageReadError) as info:  # a DatasetError
        ds[1]
    assert isinstance(info.value, DatasetError)
    path = re.escape(str(tmp_path / "images" / "b.png"))
    assert_names(str(info.value), path, r"image id 20, field 'filename'", "cannot read")


def test_missing_image_folder_and_annotation_file(tmp_path):
    ann_file = write_json(tmp_path / "ann.json", coco_dict())
    with pytest.raises(DatasetError, match=r"image folder .*nowhere.* does not exist.*Fix"):
        build_coco(ann_file, tmp_path / "nowhere")
    with pytest.raises(DatasetError, match=r"missing.json: annotation file not found. Fix"):
        build_coco(tmp_path / "missing.json", tmp_path)


# ---------------------------------------------------------------- custom middle format


def _custom():
    return [
        {"filename": "a.png", "width": 64, "height": 48,
         "ann": {"bboxes": [[4, 6, 24, 16]], "labels": [0]}},
        {"filename": "b.png", "width": 48, "height": 64,
         "ann": {"bboxes": [[8, 8, 32, 38]], "labels": [1],
                 "bboxes_ignore": [[1, 1, 5, 5]], "labels_ignore": [0]}},
    ]  # fmt: skip


CUSTOM_ERRORS = [
    ("top-level dict", lambda d: {"images": d}, [r"expected a list of images", r"\(dict\)"]),
    ("empty list", lambda d: [], [r"the list of images is empty"]),
    ("item str", _set([1], "b.png"), [r"image id 1: an image must be an object"]),
    ("missing height", _pop([0, "height"]), [r"image id 0, field 'height': missing"]),
    ("width str", _set([1, "width"], "48"), [r"image id 1, field 'width'", r"'48' \(str\)"]),
    ("filename null", _set([0, "filename"], None), [r"image id 0, field 'filename'"]),
    ("ann list", _set([0, "ann"], [[4, 6, 24, 16]]), [r"image id 0, field 'ann'"]),
    ("bboxes str", _set([0, "ann", "bboxes"], "4 6 24 16"),
     [r"image id 0, field 'ann.bboxes'", r"only numbers"]),
    ("ragged bboxes", _set([0, "ann", "bboxes"], [[4, 6, 24, 16], [1, 2]]),
     [r"image id 0, field 'ann.bboxes'", r"regular array"]),
    ("box of 3", _set([0, "ann", "bboxes"], [[4, 6, 24]]),
     [r"image id 0, field 'ann.bboxes'", r"expected \(n, 4\) boxes and n labels"]),
    ("label float", _set([1, "ann", "labels"], [0.5]),
     [r"image id 1, field 'ann.labels'", r"whole numbers"]),
    ("label out of range", _set([1, "ann", "labels_ignore"], [7]),
     [r"image id 1, field 'ann.labels_ignore'", r"label 7 is not in \[0, 2\)"]),
]  # fmt: skip


@pytest.mark.parametrize(
    "mutate, fragments", [c[1:] for c in CUSTOM_ERRORS], ids=[c[0] for c in CUSTOM_ERRORS]
)
def test_custom_bad_record(tmp_path, mutate, fragments):
    data = _custom()
    replaced = mutate(data)  # a mutation changes data in place or returns new data
    data = data if replaced is None else replaced
    ann_file = write_json(tmp_path / "ann.json", data)
    with pytest.raises(DatasetError) as info:
        CustomDataset(str(ann_file), [], classes=("a", "b"), img_prefix=str(tmp_path))
    assert_names(str(info.value), re.escape(str(ann_file)), *fragments)


class _WritesMarker:
    """Unpickling this calls ``open(marker, "w")``: code run by loading the file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_custom_pickle_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "MARKER"
    data = _custom()
    data[0]["ann"]["extra"] = _WritesMarker(str(marker))
    ann_file = tmp_path / "ann.pkl"
    ann_file.write_bytes(pickle.dumps(data))
    with pytest.raises(DatasetError) as info:
        CustomDataset(str(ann_file), [], classes=("a", "b"), img_prefix=str(tmp_path))
    assert_names(str(info.value), re.escape(str(ann_file)), r"refused", r"io\.open")
    assert not marker.exists()  # the code did not run
    # a plain pickle with numpy arrays loads
    data = _custom()
    data[1]["ann"]["bboxes"] = np.asarray(data[1]["ann"]["bboxes"], np.float32)
    data[1]["ann"]["labels"] = np.asarray([1], np.int64)
    ann_file.write_bytes(pickle.dumps(data))
    ds = CustomDataset(str(ann_file), [], classes=("a", "b"), img_prefix=str(tmp_path))
    np.testing.assert_array_equal(ds.get_ann_info(1)["bboxes"], [[8, 8, 32, 38]])
    # a truncated one is a clear error too
    ann_file.write_bytes(pickle.dumps(data)[:40])
    with pytest.raises(DatasetError, match=r"ann.pkl: not a readable pickle.*truncated"):
        CustomDataset(str(ann_file), [], classes=("a", "b"), img_prefix=str(tmp_path))


def test_proposal_pickle_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "MARKER"
    ann_file = write_json(tmp_path / "ann.json", _custom())
    proposals = tmp_path / "proposals.pkl"
    proposals.write_bytes(pickle.dumps([np.zeros((2, 4)), _WritesMarker(str(marker))]))
    with pytest.raises(DatasetError, match=r"proposals.pkl: refused to load this pickle"):
        CustomDataset(str(ann_file), [], classes=("a", "b"), img_prefix=str(tmp_path),
                      proposal_file=str(proposals))  # fmt: skip
    assert not marker.exists()
    proposals.write_bytes(pickle.dumps([np.zeros((2, 4)), np.zeros((3, 3))]))
    with pytest.raises(DatasetError, match=r"proposals\[1\].*got shape \(3, 3\)"):
        CustomDataset(str(ann_file), [], classes=("a", "b"), img_prefix=str(tmp_path),
                      proposal_file=str(proposals))  # fmt: skip


# ---------------------------------------------------------------- VOC

XML = """<annotation><filename>{name}.jpg</filename>{size}
<object><name>RBC</name><difficult>{difficult}</difficult>
<bndbox><xmin>2</xmin><ymin>3</ymin><xmax>20</xmax><ymax>30</ymax></bndbox></object>
</annotation>"""


def write_voc(root, size="<size><width>64</width><height>48</height></size>", difficult="0"):
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    (root / "JPEGImages").mkdir(exist_ok=True)
    (root / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(root / "JPEGImages" / "img0.jpg"), np.zeros((48, 64, 3), np.uint8))
    (root / "Annotations" / "img0.xml").write_text(
        XML.format(name="img0", size=size, difficult=difficult)
    )
    split = root / "ImageSets" / "Main" / "train.txt"
    split.write_text("img0\n")
    return split


def build_voc(split, root):
    return VOCDataset(str(split), [], img_prefix=str(root), classes=("RBC", "WBC"))


@pytest.mark.parametrize(
    "kwargs, fragments",
    [
        (
            dict(size="<size><width>sixty</width><height>48</height></size>"),
            [r"img0.xml, field 'size'", r"'sixty'"],
        ),
        (
            dict(size="<size><width>0</width><height>48</height></size>"),
            [r"img0.xml, field 'size.width'", r"positive whole number"],
        ),
        (dict(difficult="maybe"), [r"img0.xml, field 'difficult'", r"must be 0 or 1"]),
    ],
    ids=["width text", "width zero", "difficult text"],
)
def test_voc_bad_xml_values(tmp_path, kwargs, fragments):
    split = write_voc(tmp_path, **kwargs)
    with pytest.raises(DatasetError) as info:
        build_voc(split, tmp_path)
    assert_names(str(info.value), *fragments)


def test_voc_broken_missing_and_empty(tmp_path):
    split = write_voc(tmp_path)
    (tmp_path / "Annotations" / "img0.xml").write_text("<annotation><size>")
    with pytest.raises(DatasetError, match=r"img0.xml: broken xml .*Fix"):
        build_voc(split, tmp_path)
    os.remove(tmp_path / "Annotations" / "img0.xml")
    with pytest.raises(DatasetError, match=r"img0.xml: annotation xml not found. Fix"):
        build_voc(split, tmp_path)
    split.write_text("\n\n")
    with pytest.raises(DatasetError, match=r"train.txt: the image-set list is empty. Fix"):
        build_voc(split, tmp_path)
