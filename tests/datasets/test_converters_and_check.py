import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_voc_custom_wrappers import VOC_IMAGES, write_voc
from tiny_data import write_coco, write_image

from mmdet_like.datasets import CocoDataset

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "tools" / "dataset_converters"))

import check_dataset  # noqa: E402
from masks2coco import masks_to_coco  # noqa: E402
from via2coco import via_to_coco  # noqa: E402
from voc2coco import voc_to_coco  # noqa: E402


def test_via2coco(tmp_path):
    write_image(tmp_path / "a.jpg", 64, 48)
    write_image(tmp_path / "b.jpg", 40, 40)
    via = {
        "a.jpg123": dict(filename="a.jpg", regions=[
            dict(shape_attributes=dict(name="polygon", all_points_x=[4, 30, 30, 4],
                                       all_points_y=[6, 6, 20, 20]),
                 region_attributes=dict(name="scratch")),
            dict(shape_attributes=dict(name="rect", x=40, y=10, width=30, height=8),
                 region_attributes={}),
        ]),
        "b.jpg9": dict(filename="b.jpg", regions={}),
    }  # fmt: skip
    coco = via_to_coco(via, str(tmp_path), default_class="dent")
    assert [c["name"] for c in coco["categories"]] == ["dent", "scratch"]
    a, b = coco["annotations"]
    assert a["bbox"] == [4, 6, 26, 14] and a["category_id"] == 2 and a["area"] == 26 * 14
    assert b["bbox"] == [40, 10, 24, 8]  # clipped to the 64-wide image
    assert coco["images"][1] == dict(id=2, file_name="b.jpg", width=40, height=40)
    out = tmp_path / "coco.json"
    out.write_text(json.dumps(coco))
    ds = CocoDataset(str(out), pipeline=[], img_prefix=str(tmp_path), min_size=None)
    assert len(ds) == 1 and ds.CLASSES == ("dent", "scratch")
    with pytest.raises(ValueError, match="default-class"):
        via_to_coco(via, str(tmp_path))


def test_voc2coco_matches_voc_dataset(tmp_path):
    write_voc(tmp_path, VOC_IMAGES)
    coco, skipped = voc_to_coco(str(tmp_path), ["train"], ["RBC", "WBC", "Platelets"])
    assert skipped == []
    first = coco["annotations"][0]
    assert first["bbox"] == [0, 0, 20, 20] and first["iscrowd"] == 0
    assert coco["annotations"][1]["iscrowd"] == 1  # difficult
    # boxes, no box-shaped masks (a mask model would learn rectangles from them)
    assert not any("segmentation" in a for a in coco["annotations"])
    out = tmp_path / "coco.json"
    out.write_text(json.dumps(coco))
    ds = CocoDataset(str(out), pipeline=[], img_prefix=str(tmp_path / "JPEGImages"),
                     min_size=None)  # fmt: skip
    from mmdet_like.datasets import VOCDataset

    voc = VOCDataset(str(tmp_path / "ImageSets/Main/train.txt"), pipeline=[],
                     img_prefix=str(tmp_path), classes=("RBC", "WBC", "Platelets"))  # fmt: skip
    for i in range(len(voc)):
        for key in ("bboxes", "labels", "bboxes_ignore"):
            np.testing.assert_array_equal(ds.get_ann_info(i)[key], voc.get_ann_info(i)[key])


def test_masks2coco(tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "masks").mkdir()
    write_image(tmp_path / "imgs" / "x.jpg", 32, 24)
    label = np.zeros((24, 32), np.uint16)
    label[2:10, 3:12] = 1001  # class 1 ("cat"), instance 1
    label[12:20, 15:30] = 2001  # class 2 ("dog")
    cv2.imwrite(str(tmp_path / "masks" / "x.png"), label)
    coco = masks_to_coco(str(tmp_path / "imgs"), str(tmp_path / "masks"), ["cat", "dog"])
    boxes = sorted((a["category_id"], a["bbox"], a["area"]) for a in coco["annotations"])
    assert boxes == [(1, [3, 2, 9, 8], 72.0), (2, [15, 12, 15, 8], 120.0)]
    out = tmp_path / "coco.json"
    out.write_text(json.dumps(coco))
    ds = CocoDataset(str(out), img_prefix=str(tmp_path / "imgs"), min_size=None, pipeline=[
        dict(type="LoadImageFromFile"), dict(type="LoadAnnotations", with_mask=True)])  # fmt: skip
    data = ds[0]
    np.testing.assert_array_equal(data["gt_masks"].to_ndarray()[0], label == 1001)
    with pytest.raises(ValueError, match="class index"):
        masks_to_coco(str(tmp_path / "imgs"), str(tmp_path / "masks"), ["cat"])


def test_check_dataset_summary_and_errors(tmp_path, capsys):
    ann_file, img_dir = write_coco(tmp_path)
    cfg = tmp_path / "cfg.py"
    cfg.write_text(
        f"data = dict(train=dict(type='CocoDataset', ann_file={str(ann_file)!r}, "
        f"img_prefix={str(img_dir)!r}, pipeline=[dict(type='LoadImageFromFile')], min_size=None),"
        f" val=dict(type='CocoDataset', ann_file={str(ann_file)!r}, img_prefix='/nope', "
        "pipeline=[]))\n"
    )
    assert check_dataset.main([str(cfg)]) == 1
    out = capsys.readouterr().out
    assert "== train" in out and "| cat" in out and "images: 2" in out
    assert "ignored boxes: 1" in out and "/nope" in out
    # the project's own error as training prints it: its message and fix, not its cause
    assert "ERROR: CocoDataset: image folder '/nope' does not exist" in out
    assert "Fix: set img_prefix" in out and "FileNotFoundError" not in out
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "check_dataset.py"), str(cfg)],
                            capture_output=True, text=True, cwd=ROOT)  # fmt: skip
    assert result.returncode == 1 and "== val" in result.stdout
