"""Fuzzing the COCO loader with hypothesis.

Generated files: valid COCO files (1-3 images, 1-3 categories, boxes partly outside the
images, polygon / compressed RLE / uncompressed RLE masks, crowd regions, sometimes a
category with keypoint names and a skeleton and keypoints on its annotations), then 0-3 random
mutations anywhere in the tree (a key removed, a value replaced by any JSON value or by a
weird number: NaN, inf, huge, negative, a list wrapped around it, a record duplicated so ids
repeat, a list cut short, an RLE string replaced by random RLE characters) and sometimes the
text cut off.

Property: ``CocoDataset`` either loads, and then every stored box is finite, has a positive
size and lies inside its image, every label indexes ``CLASSES`` and every mask decodes to
its image's size, every keypoint array is (n, K, 3) with finite values and visibilities
0, 1 or 2; or it raises the project's :class:`DatasetError` naming the file and the
record. Any other exception (or a crash in pycocotools) fails the test. The only warnings
while loading are :class:`DatasetWarning`.

Deterministic (``derandomize=True``), 200 examples, a few seconds.
"""

import copy
import json
import re
import warnings

import numpy as np
import pycocotools.mask as mask_utils
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmdet_like.datasets import CocoDataset, DatasetError, DatasetWarning
from mmdet_like.structures.mask import polygons_to_bitmap, rle_to_bitmap

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# What a DatasetError must point at besides the file: a record or a place in the file.
RECORD = re.compile(
    r"image id -?\d+|annotation id -?\d+|images\[\d+\]|annotations\[\d+\]|categories\[\d+\]"
    r"|field '\w+'|line \d+, column \d+|COCO json object|not a UTF-8 text file|nested too deeply"
)

JSON_SCALARS = (
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=4)
)
ANY_JSON = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
WEIRD_NUMBERS = (
    st.sampled_from(
        [
            float("nan"),
            float("inf"),
            -float("inf"),
            0,
            -0.0,
            -1,
            0.5,
            1e-300,
            1e308,
            -1e308,
            2**31,
            2**63,
            10**30,
            10**400,
        ]
    )  # fmt: skip
    | st.floats()
    | st.integers()
)
RLE_TEXT = st.text(alphabet=[chr(c) for c in range(48, 112)], max_size=12)


@st.composite
def valid_coco(draw):
    """A valid COCO dict (boxes may extend outside their image: that is repaired)."""
    n_images = draw(st.integers(1, 3))
    ids = draw(st.lists(st.integers(-5, 10**6), min_size=n_images, max_size=n_images, unique=True))
    images = [
        dict(id=i, file_name=f"{k}.png", width=draw(st.integers(1, 40)),
             height=draw(st.integers(1, 40)))
        for k, i in enumerate(ids)
    ]  # fmt: skip
    cat_ids = draw(st.lists(st.integers(0, 100), min_size=1, max_size=3, unique=True))
    categories = [dict(id=c, name=f"class{c}") for c in cat_ids]
    num_keypoints = draw(st.sampled_from([0, 0, 1, 3]))
    if num_keypoints:
        names = ["left_a", "right_a", "b"][:num_keypoints]
        skeleton = [[1, 2]] if num_keypoints > 1 else []
        categories[0].update(keypoints=names, skeleton=skeleton)
    annotations = []
    for k in range(draw(st.integers(0, 5))):
        img = draw(st.sampled_from(images))
        w, h = img["width"], img["height"]
        x, y = draw(st.floats(-4, w)), draw(st.floats(-4, h))
        bw, bh = draw(st.floats(-1, w + 4)), draw(st.floats(-1, h + 4))
        kind = draw(st.sampled_from(["none", "polygon", "rle", "rle_list"]))
        if kind == "polygon":
            x1, y1 = max(x, 0), max(y, 0)
            x2, y2 = min(x + max(bw, 1), w), min(y + max(bh, 1), h)
            segm = [[x1, y1, x2, y1, x2, y2, x1, y2]]
        elif kind == "none":
            segm = []
        else:
            rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
            mask = np.asfortranarray(rng.integers(0, 2, (h, w), dtype=np.uint8))
            if kind == "rle":
                segm = mask_utils.encode(mask)
                segm = {"size": [h, w], "counts": segm["counts"].decode("ascii")}
            else:
                flat = mask.flatten(order="F")
                bounds = np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]])
                counts = np.diff(bounds).tolist()
                segm = {"size": [h, w], "counts": [0, *counts] if flat[0] else counts}
        annotation = dict(
            id=k + 1, image_id=img["id"], category_id=draw(st.sampled_from(cat_ids)),
            bbox=[x, y, bw, bh], area=1.0, iscrowd=draw(st.sampled_from([0, 0, 1])),
            segmentation=segm,
        )  # fmt: skip
        if num_keypoints and annotation["category_id"] == cat_ids[0]:
            points = []
            for _ in range(num_keypoints):
                v = draw(st.sampled_from([0, 1, 2]))
                points += [draw(st.floats(0, w)), draw(st.floats(0, h)), v] if v else [0, 0, 0]
            annotation.update(keypoints=points, num_keypoints=sum(p > 0 for p in points[2::3]))
        annotations.append(annotation)
    return dict(images=images, annotations=annotations, categories=categories)


def _paths(obj, prefix=()):
    """Every place in the tree; an RLE's ``counts`` list counts as one place (it has
    hundreds of entries, which would otherwise draw most of the mutations)."""
    yield prefix
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key == "counts" and isinstance(value, list):
                yield (*prefix, key)
                if value:
                    yield (*prefix, key, len(value) // 2)
                continue
            yield from _paths(value, (*prefix, key))
    elif isinstance(obj, list):
        for index, value in enumerate(obj):
            yield from _paths(value, (*prefix, index))


def mutate(data, draw):
    """One random change somewhere in ``data``; returns the (possibly new) root."""
    path = draw(st.sampled_from(list(_paths(data))))
    op = draw(st.sampled_from(["delete", "any", "number", "wrap", "duplicate", "cut", "rle_text"]))
    if not path:  # the root itself
        return [data] if op == "wrap" else draw(ANY_JSON)
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    key, value = path[-1], parent[path[-1]]
    if op == "delete":
        del parent[key]
    elif op == "any":
        parent[key] = draw(ANY_JSON)
    elif op == "number":
        parent[key] = draw(WEIRD_NUMBERS)
    elif op == "wrap":
        parent[key] = [value]
    elif op == "duplicate" and isinstance(parent, list):
        parent.append(copy.deepcopy(value))  # repeats an image / annotation / category id
    elif op == "cut" and isinstance(value, list):
        parent[key] = value[: draw(st.integers(0, len(value)))]
    else:  # rle_text (or an op that does not apply here): random RLE-alphabet text
        parent[key] = draw(RLE_TEXT)
    return data


@st.composite
def coco_text(draw):
    """JSON text of a valid or mutated COCO file, sometimes cut off."""
    data = draw(valid_coco())
    for _ in range(draw(st.integers(0, 3))):
        data = mutate(data, draw)
    text = json.dumps(data)
    if draw(st.sampled_from([False] * 9 + [True])):  # one file in ten is cut off
        text = text[: draw(st.integers(0, len(text)))]
    return text


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def check_loaded(ds):
    """The guarantees of a dataset that loaded."""
    assert len(ds) > 0
    for i in range(len(ds)):
        info, ann = ds.get_img_info(i), ds.get_ann_info(i)
        w, h = info["width"], info["height"]
        assert 1 <= w and 1 <= h
        for boxes, labels in ((ann["bboxes"], ann["labels"]),
                              (ann["bboxes_ignore"], ann["labels_ignore"])):  # fmt: skip
            assert boxes.dtype == np.float32 and boxes.shape == (len(labels), 4)
            assert np.isfinite(boxes).all()
            assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
            assert (boxes[:, :2] >= 0).all()
            assert (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
            assert ((labels >= 0) & (labels < len(ds.CLASSES))).all()
        if ds.keypoint_meta is not None:
            points = ann["keypoints"]
            assert points.shape == (len(ann["bboxes"]), ds.keypoint_meta.num_keypoints, 3)
            assert points.dtype == np.float32 and np.isfinite(points).all()
            assert np.isin(points[..., 2], (0, 1, 2)).all()
        for mask in ann.get("masks", []):
            if isinstance(mask, dict):
                bitmap = rle_to_bitmap(mask)
            else:
                assert all(len(p) >= 6 and len(p) % 2 == 0 for p in mask)
                bitmap = polygons_to_bitmap(mask, h, w)
            assert bitmap.shape == (h, w)


@SETTINGS
@given(text=coco_text())
def test_coco_loader_fuzz(workdir, text):
    ann_file = workdir / "ann.json"
    ann_file.write_text(text)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ds = CocoDataset(str(ann_file), [], img_prefix=str(workdir), test_mode=True)
        except DatasetError as exc:
            message = str(exc)
            assert str(ann_file) in message, message
            assert RECORD.search(message), message
            return
    others = [w for w in caught if not issubclass(w.category, DatasetWarning)]
    assert not others, [str(w.message) for w in others]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # pycocotools on numpy 2
        check_loaded(ds)


@SETTINGS
@given(data=valid_coco())
def test_valid_files_always_load(workdir, data):
    """The generator's unmutated files load (so the property above is not vacuous)."""
    ann_file = workdir / "valid.json"
    ann_file.write_text(json.dumps(data))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DatasetWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        ds = CocoDataset(str(ann_file), [], img_prefix=str(workdir), test_mode=True)
        check_loaded(ds)
    assert len(ds) == len(data["images"])
    assert ds.CLASSES == tuple(f"class{c}" for c in sorted(c["id"] for c in data["categories"]))
