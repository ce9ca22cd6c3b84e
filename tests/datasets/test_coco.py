import json

import numpy as np
import pytest
from tiny_data import coco_dict, write_coco

from mmdet_like.datasets import CocoDataset, DatasetError, DatasetWarning
from mmdet_like.registry import DATASETS, build_from_cfg


def build(ann_file, img_dir, **kwargs):
    """Built directly: ``build_from_cfg`` wraps a DatasetError (a ValueError) in BuildError."""
    kwargs.setdefault("pipeline", [])
    return CocoDataset(ann_file=str(ann_file), img_prefix=str(img_dir), **kwargs)


def test_registry_build_and_error_message(coco_files):
    ann_file, img_dir = coco_files
    cfg = dict(type="CocoDataset", ann_file=str(ann_file), img_prefix=str(img_dir), pipeline=[])
    assert len(build_from_cfg(cfg, DATASETS)) == 2  # the empty image is filtered
    with pytest.raises(Exception, match="no image left after filtering") as info:
        build_from_cfg(dict(cfg, min_size=1000), DATASETS)
    assert isinstance(info.value, DatasetError) or isinstance(info.value.__cause__, DatasetError)


def test_load_boxes_labels_crowd_and_masks(coco_files):
    ds = build(*coco_files, min_size=None)
    assert ds.CLASSES == ("cat", "dog", "bird")
    assert ds.cat_ids == [1, 3, 7]
    assert len(ds) == 2  # the empty 40x40 image is filtered out
    assert ds.img_ids.tolist() == [10, 20]
    ann = ds.get_ann_info(0)
    assert ann["bboxes"].dtype == np.float32 and ann["labels"].dtype == np.int64
    np.testing.assert_array_equal(ann["bboxes"], [[4, 6, 24, 16], [30, 20, 46, 40]])
    np.testing.assert_array_equal(ann["labels"], [0, 1])
    np.testing.assert_array_equal(ann["bboxes_ignore"], [[50, 2, 60, 12]])  # crowd
    assert len(ann["masks"]) == 2
    assert isinstance(ann["masks"][0], list) and isinstance(ann["masks"][1], dict)
    info = ds.get_img_info(1)
    assert info == dict(id=20, filename="b.png", width=48, height=64)
    assert ds.flag.dtype == np.uint8 and ds.flag.tolist() == [1, 0]
    np.testing.assert_array_equal(ds.get_cat_ids(1), [0, 2])


def test_compact_storage_has_no_list_of_dicts(coco_files):
    ds = build(*coco_files, min_size=None)
    table = ds.table
    assert isinstance(table.bboxes.data, np.ndarray) and table.bboxes.data.shape == (5, 4)
    assert isinstance(table.masks.buffer, np.ndarray) and table.masks.buffer.dtype == np.uint8
    assert not any(isinstance(v, (list, dict)) for v in vars(ds).values() if v is not ds.CLASSES
                   and not isinstance(v, (tuple, str)) and v is not ds.cat_ids
                   and v is not ds.cat2label)  # fmt: skip


def test_test_mode_keeps_every_image(coco_files):
    ds = build(*coco_files, test_mode=True)
    assert len(ds) == 3 and ds.img_ids.tolist() == [10, 20, 30]


def test_classes_subset_and_label_mapping_round_trip(coco_files):
    ds = build(*coco_files, classes=("bird", "cat"), min_size=None)
    assert ds.cat_ids == [7, 1]
    assert ds.cat2label == {7: 0, 1: 1}
    for label, cat_id in enumerate(ds.label2cat):
        assert ds.cat2label[int(cat_id)] == label
    ann0 = ds.get_ann_info(0)
    np.testing.assert_array_equal(ann0["labels"], [1])  # the dogs are gone
    assert len(ann0["bboxes_ignore"]) == 0
    np.testing.assert_array_equal(ds.get_ann_info(1)["labels"], [0, 1])


def test_filter_empty_gt_and_min_size(coco_files):
    assert len(build(*coco_files, filter_empty_gt=False, min_size=None)) == 3
    assert len(build(*coco_files, filter_empty_gt=False, min_size=45)) == 2
    assert build(*coco_files, filter_empty_gt=False, min_size=45).img_ids.tolist() == [10, 20]
    with pytest.raises(DatasetError, match="no image left after filtering"):
        build(*coco_files, min_size=100)


def test_only_crowd_image_is_empty(tmp_path):
    data = coco_dict()
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] != 10 or a["iscrowd"]]
    ann_file, img_dir = write_coco(tmp_path, data)
    assert build(ann_file, img_dir, min_size=None).img_ids.tolist() == [20]


def test_missing_image_folder(coco_files):
    ann_file, img_dir = coco_files
    with pytest.raises(DatasetError, match="image folder .*nowhere.* does not exist"):
        build(ann_file, img_dir.parent / "nowhere")


def test_broken_json(tmp_path, coco_files):
    _, img_dir = coco_files
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [}')
    with pytest.raises(DatasetError, match=r"bad.json: broken JSON at line 1, column 13"):
        build(bad, img_dir)


def _with(tmp_path, mutate):
    data = coco_dict()
    mutate(data)
    return write_coco(tmp_path, data)


def test_bbox_outside_image_is_clipped_with_warning(tmp_path):
    def mutate(d):
        d["annotations"][0]["bbox"] = [50, 6, 30, 10]  # x2 = 80 > width 64

    files = _with(tmp_path, mutate)
    with pytest.warns(DatasetWarning) as record:
        ds = build(*files, min_size=None)
    message = str(record[0].message)
    assert "ann.json" in message and "image id 10" in message and "field 'bbox'" in message
    assert "annotation id 1" in message and "clipped" in message
    np.testing.assert_array_equal(ds.get_ann_info(0)["bboxes"][0], [50, 6, 64, 16])
    with pytest.raises(DatasetError, match=r"image id 10, annotation id 1, field 'bbox'"):
        build(*files, min_size=None, strict=True)


def test_bbox_non_positive_size_dropped_with_warning(tmp_path):
    def mutate(d):
        d["annotations"][3]["bbox"] = [8, 8, 0, 30]

    files = _with(tmp_path, mutate)
    with pytest.warns(DatasetWarning, match=r"image id 20, annotation id 4, field 'bbox'.*non-pos"):
        ds = build(*files, min_size=None)
    np.testing.assert_array_equal(ds.get_ann_info(1)["labels"], [0])
    with pytest.raises(DatasetError, match="non-positive size"):
        build(*files, strict=True)


def test_unknown_category_id(tmp_path):
    files = _with(tmp_path, lambda d: d["annotations"][1].update(category_id=99))
    with pytest.raises(DatasetError) as info:
        build(*files)
    msg = str(info.value)
    assert "ann.json" in msg and "image id 10" in msg and "'category_id'" in msg and "99" in msg


def test_unknown_image_id(tmp_path):
    files = _with(tmp_path, lambda d: d["annotations"][1].update(image_id=77))
    with pytest.raises(DatasetError, match="image id 77, annotation id 2, field 'image_id'"):
        build(*files)


def test_class_name_not_in_file(coco_files):
    with pytest.raises(DatasetError, match=r"'dgo' \(did you mean 'dog'\?\)") as info:
        build(*coco_files, classes=("cat", "dgo"))
    assert "ann.json" in str(info.value) and "'categories'" in str(info.value)


def test_missing_image_field(tmp_path):
    files = _with(tmp_path, lambda d: d["images"][1].pop("width"))
    with pytest.raises(DatasetError, match="image id 20, field 'width'"):
        build(*files)


def test_missing_top_level_key(tmp_path, coco_files):
    bad = tmp_path / "nocats.json"
    data = coco_dict()
    del data["categories"]
    bad.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match="field 'categories'"):
        build(bad, coco_files[1])


def test_dataset_error_is_value_error():
    assert issubclass(DatasetError, ValueError)


def test_getitem_runs_pipeline(coco_files):
    pipeline = [
        dict(type="LoadImageFromFile"),
        dict(type="LoadAnnotations", with_mask=True),
        dict(type="DefaultFormatBundle"),
        dict(type="Collect", keys=["img", "gt_bboxes", "gt_labels", "gt_masks"]),
    ]
    ds = build(*coco_files, pipeline=pipeline, min_size=None)
    data = ds[0]
    assert tuple(data["img"].shape) == (3, 48, 64)
    assert data["gt_masks"].to_ndarray().shape == (2, 48, 64)
    np.testing.assert_allclose(data["gt_masks"].get_bboxes(), data["gt_bboxes"].numpy())
    assert data["img_metas"]["ori_filename"] == "a.png"
    assert isinstance(ds, CocoDataset)
