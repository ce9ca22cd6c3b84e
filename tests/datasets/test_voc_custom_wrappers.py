import json
import pickle

import numpy as np
import pytest
from tiny_data import write_image

from mmdet_like.datasets import (
    ClassBalancedDataset,
    ConcatDataset,
    CustomDataset,
    DatasetError,
    RepeatDataset,
    VOCDataset,
)
from mmdet_like.registry import DATASETS, build_from_cfg

XML = """<annotation><filename>{name}.jpg</filename>
<size><width>{w}</width><height>{h}</height><depth>3</depth></size>{objs}</annotation>"""
OBJ = """<object><name>{cls}</name><difficult>{d}</difficult>
<bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox>
</object>"""


def write_voc(root, images):
    """images: {name: (w, h, [(cls, difficult, (xmin, ymin, xmax, ymax)), ...])}."""
    (root / "Annotations").mkdir(parents=True)
    (root / "ImageSets" / "Main").mkdir(parents=True)
    for i, (name, (w, h, objs)) in enumerate(images.items()):
        write_image(root / "JPEGImages" / f"{name}.jpg", w, h, seed=i)
        body = "".join(OBJ.format(cls=c, d=d, b=b) for c, d, b in objs)
        (root / "Annotations" / f"{name}.xml").write_text(
            XML.format(name=name, w=w, h=h, objs=body)
        )
    (root / "ImageSets" / "Main" / "train.txt").write_text("\n".join(images) + "\n")
    return root / "ImageSets" / "Main" / "train.txt"


VOC_IMAGES = {
    "img0": (64, 48, [("RBC", 0, (1, 1, 20, 20)), ("WBC", 1, (30, 10, 50, 40))]),
    "img1": (40, 60, [("Platelets", 0, (5, 5, 15, 15)), ("RBC", 0, (10, 20, 40, 60))]),
    "img2": (50, 50, [("WBC", 1, (2, 2, 10, 10))]),  # only difficult -> empty
}


def test_voc_load_with_difficult(tmp_path):
    ann_file = write_voc(tmp_path, VOC_IMAGES)
    ds = VOCDataset(str(ann_file), pipeline=[], img_prefix=str(tmp_path),
                    classes=("RBC", "WBC", "Platelets"))  # fmt: skip
    assert len(ds) == 2  # img2 has only a difficult box
    ann = ds.get_ann_info(0)
    np.testing.assert_array_equal(ann["bboxes"], [[0, 0, 20, 20]])  # 1-based -> continuous
    np.testing.assert_array_equal(ann["bboxes_ignore"], [[29, 9, 50, 40]])
    np.testing.assert_array_equal(ann["labels_ignore"], [1])
    np.testing.assert_array_equal(ds.get_ann_info(1)["labels"], [2, 0])
    assert ds.get_img_info(1)["filename"] == "JPEGImages/img1.jpg"
    assert ds.flag.tolist() == [1, 0]
    data = VOCDataset(str(ann_file), pipeline=[dict(type="LoadImageFromFile")],
                      img_prefix=str(tmp_path), classes=("RBC", "WBC", "Platelets"))[1]  # fmt: skip
    assert data["img"].shape == (60, 40, 3)


def test_voc_evaluate_perfect(tmp_path):
    ann_file = write_voc(tmp_path, VOC_IMAGES)
    ds = VOCDataset(str(ann_file), pipeline=[], img_prefix=str(tmp_path), test_mode=True,
                    classes=("RBC", "WBC", "Platelets"))  # fmt: skip
    results = []
    for i in range(len(ds)):
        ann = ds.get_ann_info(i)
        per_class = []
        for c in range(3):
            boxes = ann["bboxes"][ann["labels"] == c]
            per_class.append(np.hstack([boxes, np.ones((len(boxes), 1), np.float32)]))
        results.append(per_class)
    out = ds.evaluate(results, logger="silent")
    assert out["mAP"] == 1.0  # WBC has no non-difficult gt: left out of the mean


def test_voc_unknown_classes(tmp_path):
    ann_file = write_voc(tmp_path, VOC_IMAGES)
    with pytest.raises(DatasetError, match="none of the classes"):
        VOCDataset(str(ann_file), pipeline=[], img_prefix=str(tmp_path))


def test_voc_broken_xml(tmp_path):
    ann_file = write_voc(tmp_path, VOC_IMAGES)
    (tmp_path / "Annotations" / "img1.xml").write_text("<annotation><size>")
    with pytest.raises(DatasetError, match="img1.xml: broken xml"):
        VOCDataset(str(ann_file), pipeline=[], img_prefix=str(tmp_path), classes=("RBC",))


def custom_infos():
    return [
        dict(filename="a.png", width=64, height=48,
             ann=dict(bboxes=[[1, 2, 30, 40]], labels=[1], bboxes_ignore=[[40, 2, 50, 12]],
                      labels_ignore=[0])),
        dict(filename="b.png", width=48, height=64, ann=dict(bboxes=[], labels=[])),
    ]  # fmt: skip


@pytest.mark.parametrize("fmt", ["json", "pkl"])
def test_custom_middle_format(tmp_path, fmt):
    infos = custom_infos()
    for info in infos:
        write_image(tmp_path / "imgs" / info["filename"], info["width"], info["height"])
    path = tmp_path / f"ann.{fmt}"
    if fmt == "json":
        path.write_text(json.dumps(infos))
    else:
        path.write_bytes(pickle.dumps(infos))
    ds = CustomDataset(str(path), pipeline=[], img_prefix=str(tmp_path / "imgs"),
                       classes=("x", "y"))  # fmt: skip
    assert len(ds) == 1 and ds.CLASSES == ("x", "y")
    ann = ds.get_ann_info(0)
    np.testing.assert_array_equal(ann["bboxes"], [[1, 2, 30, 40]])
    np.testing.assert_array_equal(ann["labels_ignore"], [0])
    assert len(CustomDataset(str(path), pipeline=[], img_prefix=str(tmp_path / "imgs"),
                             classes=("x", "y"), test_mode=True)) == 2  # fmt: skip


def test_custom_errors(tmp_path):
    infos = custom_infos()
    infos[0]["ann"]["labels"] = [5]
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(infos))
    with pytest.raises(DatasetError, match=r"ann.json, image id 0, field 'ann.labels'"):
        CustomDataset(str(path), pipeline=[], classes=("x", "y"))
    with pytest.raises(DatasetError, match="needs classes"):
        CustomDataset(str(path), pipeline=[])


def _toy(flags_labels):
    """A stand-in dataset: per image (flag, labels)."""

    class Toy:
        CLASSES = ("a", "b", "c")

        def __init__(self):
            self.flag = np.array([f for f, _ in flags_labels], np.uint8)

        def __len__(self):
            return len(flags_labels)

        def __getitem__(self, idx):
            return idx

        def get_cat_ids(self, idx):
            return np.array(flags_labels[idx][1], np.int64)

    return Toy()


def test_concat_and_repeat():
    a, b = _toy([(1, [0]), (0, [1])]), _toy([(1, [2])])
    cat = ConcatDataset([a, b])
    assert len(cat) == 3 and cat[2] == 0 and cat.flag.tolist() == [1, 0, 1]
    assert cat.get_cat_ids(2).tolist() == [2] and cat[-1] == 0
    with pytest.raises(IndexError):
        cat[3]
    rep = RepeatDataset(a, times=3)
    assert len(rep) == 6 and rep[5] == 1 and rep.flag.tolist() == [1, 0] * 3


def test_class_balanced_oversampling_factor():
    # class 0 in all 4 images, class 2 in one: f = 1 and 0.25
    ds = _toy([(0, [0]), (0, [0]), (0, [0]), (1, [0, 2])])
    cb = ClassBalancedDataset(ds, oversample_thr=1.0)
    np.testing.assert_allclose(cb.repeat_factors, [1, 1, 1, 2])  # sqrt(1 / 0.25) = 2
    assert len(cb) == 5 and [cb[i] for i in range(5)] == [0, 1, 2, 3, 3]
    cb = ClassBalancedDataset(ds, oversample_thr=0.5)  # sqrt(0.5 / 0.25) = 1.414 -> 2 copies
    assert len(cb) == 5 and cb.flag.tolist() == [0, 0, 0, 1, 1]
    empty = _toy([(0, [0]), (0, [])])
    # class 0 in 1 of 2 images: sqrt(1 / 0.5) = 1.414 -> 2 copies; the empty image 0 or 1
    assert ClassBalancedDataset(empty, 1.0).repeat_indices.tolist() == [0, 0]
    assert ClassBalancedDataset(empty, 1.0, filter_empty_gt=False).repeat_indices.tolist() == [
        0, 0, 1]  # fmt: skip


def test_wrappers_build_from_config(tmp_path):
    ann_file = write_voc(tmp_path, VOC_IMAGES)
    inner = dict(type="VOCDataset", ann_file=str(ann_file), img_prefix=str(tmp_path),
                 pipeline=[], classes=["RBC", "WBC", "Platelets"])  # fmt: skip
    rep = build_from_cfg(dict(type="RepeatDataset", times=2, dataset=inner), DATASETS)
    assert len(rep) == 4
    cat = build_from_cfg(dict(type="ConcatDataset", datasets=[inner, inner]), DATASETS)
    assert len(cat) == 4 and cat.CLASSES == ("RBC", "WBC", "Platelets")
