"""tools/analysis_tools/coco_error_analysis.py and mmdet_like/evaluation/error_analysis.py
on a tiny COCO file written here: detections crafted so that each curve's AP is known.

The tool runs in this process as its ``__main__`` block runs it (``call_tool``), and once in
a subprocess, where the process (one error line, exit status 1, no traceback) is the point."""

import json

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from mmdet_like.evaluation.error_analysis import (
    AREA_NAMES,
    CURVES,
    ErrorAnalysisError,
    analyze_errors,
)
from tests.engine.cli_utils import ROOT, call_tool, run_python

TOOL = ROOT / "tools" / "analysis_tools" / "coco_error_analysis.py"
SIZE = 100
CATEGORIES = [
    dict(id=1, name="cat", supercategory="animal"),
    dict(id=2, name="dog", supercategory="animal"),
    dict(id=3, name="car", supercategory="vehicle"),
    dict(id=4, name="truck", supercategory="vehicle"),  # no ground truth
]
# (image, category, [x, y, w, h]); cat's second box is small (900 px), the rest medium
GT = [(1, 1, [5, 5, 40, 40]), (1, 2, [55, 55, 40, 40]), (2, 1, [10, 10, 30, 30]),
      (3, 3, [30, 30, 40, 40])]  # fmt: skip


def _polygon(box):
    x, y, w, h = box
    return [[x, y, x + w, y, x + w, y + h, x, y + h]]


@pytest.fixture
def ann_file(tmp_path):
    images = [dict(id=i, file_name=f"{i}.png", height=SIZE, width=SIZE) for i in (1, 2, 3, 4)]
    anns = [dict(id=n, image_id=img, category_id=cat, bbox=box, area=box[2] * box[3],
                 iscrowd=0, segmentation=_polygon(box))
            for n, (img, cat, box) in enumerate(GT, 1)]  # fmt: skip
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(dict(images=images, annotations=anns, categories=CATEGORIES)))
    return path


def _det(img, cat, box, score, segm=False):
    det = dict(image_id=img, category_id=cat, bbox=[float(v) for v in box], score=score)
    if segm:
        rle = mask_utils.merge(mask_utils.frPyObjects(_polygon(box), SIZE, SIZE))
        det["segmentation"] = dict(size=rle["size"], counts=rle["counts"].decode())
    return det


def _shifted(box, iou):
    """``box`` moved right so that its IoU with itself is ``iou``."""
    x, y, w, h = box
    return [x + w * (1 - iou) / (1 + iou), y, w, h]


def _write(path, dets):
    path.write_text(json.dumps(dets))
    return path


def _aps(summary, area="all"):
    overall = summary["overall"][area]
    per_class = {c["name"]: c["ap"][area] for c in summary["classes"]}
    return overall, per_class


def _assert_picture(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (640, 480), path
    img = cv2.imread(str(path))
    assert img is not None and img.shape == (480, 640, 3) and img.std() > 5, path  # not blank


def _run(*args, cwd, expect_ok=True):
    """The tool run in this process; its output (a failing run's without a traceback)."""
    status, out = call_tool(TOOL, *args, cwd=cwd)
    assert (status == 0) == expect_ok, out
    return out


def test_perfect_detections_give_every_curve_ap_1_in_bbox_and_segm_through_the_cli(
    ann_file, tmp_path
):
    dets = [_det(img, cat, box, 0.9, segm=True) for img, cat, box in GT]
    res = _write(tmp_path / "r.segm.json", dets)
    out = _run(res, tmp_path / "out", "--ann", ann_file, "--types", "bbox", "segm",
               "--extraplots", cwd=tmp_path)  # fmt: skip
    assert "Traceback" not in out and "Loading and preparing" not in out  # pycocotools quiet
    assert f"pictures and summary.json written to {tmp_path / 'out'}/segm" in out
    assert "all            3   1.000   1.000   1.000   1.000   1.000   1.000   1.000" in out
    assert "large          0     n/a" in out
    for iou_type in ("bbox", "segm"):
        folder = tmp_path / "out" / iou_type
        summary = json.loads((folder / "summary.json").read_text())
        assert summary["curves"] == list(CURVES) and summary["iou_type"] == iou_type
        overall, per_class = _aps(summary)
        assert overall == pytest.approx(dict.fromkeys(CURVES, 1.0))
        assert per_class["truck"] == dict.fromkeys(CURVES)  # no ground truth: None
        for name in ("cat", "dog", "car"):
            assert per_class[name] == pytest.approx(dict.fromkeys(CURVES, 1.0))
        assert summary["categories_with_gt"] == dict(all=3, small=1, medium=3, large=0)
        assert [c["num_gt"] for c in summary["classes"]] == [2, 1, 1, 0]
        assert [c["num_dets"] for c in summary["classes"]] == [2, 1, 1, 0]
        # a picture per category and area range with ground truth, and the mean's
        drawn = dict(allclass="all small medium", cat="all small medium", dog="all medium",
                     car="all medium")  # fmt: skip
        expected = {f"{iou_type}-{n}-{a}.png" for n, areas in drawn.items() for a in areas.split()}
        expected |= {f"{iou_type}-{n}-bars.png" for n in drawn}  # none for truck
        assert {p.name for p in folder.glob("*.png")} == expected
        for png in folder.glob("*.png"):
            _assert_picture(png)


def test_each_curve_forgives_its_kind_of_error(ann_file, tmp_path):
    cat_a, dog, cat_b, car = (box for _, _, box in GT)
    dets = [
        _det(1, 1, cat_a, 0.8),  # found
        _det(2, 1, cat_b, 0.7),  # found
        _det(1, 1, dog, 0.95),  # a dog called a cat: same supercategory (Sim forgives)
        _det(3, 1, car, 0.85),  # a car called a cat: another supercategory (Oth forgives)
        # the dog is missed (FN forgives)
        _det(3, 3, _shifted(car, 0.6), 0.9),  # the car at IoU 0.6 (C50 finds it)
        _det(4, 3, [10, 10, 40, 40], 0.99),  # a car in an empty image (BG forgives)
        _det(4, 4, [50, 50, 20, 20], 0.5),  # a truck: no truck ground truth at all
    ]
    res = _write(tmp_path / "r.bbox.json", dets)
    summary = analyze_errors(str(res), str(ann_file), str(tmp_path / "out"), progress=False)
    overall, per_class = _aps(summary["bbox"])
    # cat: FP .95, FP .85, TP .8, TP .7 -> precision 1/2 at every recall; without the dog
    # confusion 2/3; without both confusions 1
    expected = dict(
        cat=[0.5, 0.5, 0.5, 2 / 3, 1, 1, 1],
        dog=[0, 0, 0, 0, 0, 0, 1],
        car=[0, 0.5, 0.5, 0.5, 0.5, 1, 1],  # FP .99 then the car (at IoU 0.6)
    )
    for name, aps in expected.items():
        assert [per_class[name][c] for c in CURVES] == pytest.approx(aps), name
    assert per_class["truck"] == dict.fromkeys(CURVES)
    mean = np.mean(list(expected.values()), axis=0)  # 1/6, 1/3, 1/3, 7/18, 1/2, 2/3, 1
    assert [overall[c] for c in CURVES] == pytest.approx(mean)

    # C75 and C50 are COCOeval's AP at those IoUs, run directly
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = COCO(str(ann_file))
    ev = COCOeval(gt, gt.loadRes(str(res)), "bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    assert overall["C50"] == pytest.approx(ev.stats[1]) and overall["C75"] == pytest.approx(
        ev.stats[2]
    )
    assert ev.stats[1] == pytest.approx(1 / 3) and ev.stats[2] == pytest.approx(1 / 6)
    # the small range holds cat's second box alone, found; no large ground truth
    small, small_per_class = _aps(summary["bbox"], "small")
    assert small == pytest.approx(dict.fromkeys(CURVES, 1.0))
    assert small_per_class["dog"] == dict.fromkeys(CURVES)
    assert summary["bbox"]["overall"]["large"] == dict.fromkeys(CURVES)
    saved = json.loads((tmp_path / "out" / "bbox" / "summary.json").read_text())
    assert saved["overall"] == summary["bbox"]["overall"]  # json keeps floats exactly
    assert saved["areas"]["small"] == [0, 1024]
    for png in (tmp_path / "out" / "bbox").glob("*.png"):
        _assert_picture(png)
    assert not list((tmp_path / "out" / "bbox").glob("*-large.png"))


def test_shifted_boxes_lose_c75_only_and_no_detections_lose_all_but_fn(ann_file, tmp_path):
    dets = [_det(img, cat, _shifted(box, 0.6), 0.9) for img, cat, box in GT]
    res = _write(tmp_path / "r.json", dets)
    overall, per_class = _aps(analyze_errors(str(res), str(ann_file), str(tmp_path / "a"),
                                             progress=False)["bbox"])  # fmt: skip
    assert overall == pytest.approx(dict(dict.fromkeys(CURVES, 1.0), C75=0.0))

    res = _write(tmp_path / "empty.json", [])
    overall, _ = _aps(analyze_errors(str(res), str(ann_file), str(tmp_path / "b"),
                                     progress=False)["bbox"])  # fmt: skip
    assert overall == pytest.approx(dict(dict.fromkeys(CURVES[:-1], 0.0), FN=1.0))
    assert (tmp_path / "b" / "bbox" / "bbox-allclass-all.png").is_file()


def test_bad_inputs_are_one_line_errors(ann_file, tmp_path):
    good = _write(tmp_path / "r.json", [_det(1, 1, GT[0][2], 0.9)])
    out = _run(tmp_path / "missing.json", tmp_path / "o", "--ann", ann_file, cwd=tmp_path,
               expect_ok=False)  # fmt: skip
    assert "coco_error_analysis.py: error: results file" in out and "does not exist" in out
    assert "Traceback" not in out
    out = _run(ann_file, tmp_path / "o", "--ann", ann_file, cwd=tmp_path, expect_ok=False)
    assert "not a list of detections" in out and "looks like an annotation file" in out
    bad_cat = _write(tmp_path / "c.json", [_det(1, 7, GT[0][2], 0.9)])
    out = _run(bad_cat, tmp_path / "o", "--ann", ann_file, cwd=tmp_path, expect_ok=False)
    assert "category ids [7] that the annotation file does not have" in out
    assert "Traceback" not in out and not (tmp_path / "o").exists()
    # the script as a process: status 1, the error on one line, no traceback
    out = run_python([TOOL, tmp_path / "missing.json", tmp_path / "o", "--ann", ann_file],
                     tmp_path, expect_rc=1)  # fmt: skip
    errors = [line for line in out.splitlines() if ": error: " in line]
    assert len(errors) == 1 and errors[0].startswith("coco_error_analysis.py: error: results file")
    assert "does not exist" in errors[0], out

    def error(res, ann=ann_file, **kwargs):
        with pytest.raises(ErrorAnalysisError) as info:
            analyze_errors(str(res), str(ann), str(tmp_path / "o"), progress=False, **kwargs)
        return str(info.value)

    assert "annotation file" in error(good, tmp_path / "nope.json")
    assert "not a COCO annotation file" in error(good, good)
    (tmp_path / "text.json").write_text("not json")
    assert "not a JSON file" in error(tmp_path / "text.json")
    assert "image ids [9]" in error(_write(tmp_path / "i.json", [_det(9, 1, [0, 0, 5, 5], 1)]))
    assert "detection 0 is not a dict with image_id, category_id, score, bbox" in error(
        _write(tmp_path / "k.json", [dict(image_id=1, category_id=1, bbox=[0, 0, 5, 5])])
    )
    assert "has bbox [0.0, 0.0, -5.0, 5.0], not [x, y, w, h]" in error(
        _write(tmp_path / "b.json", [_det(1, 1, [0, 0, -5, 5], 0.5)])
    )
    assert "give the .segm.json" in error(good, types=("segm",))
    assert "three increasing" in error(good, areas=(100, 50, 1000))
    assert set(AREA_NAMES) == {"all", "small", "medium", "large"}
