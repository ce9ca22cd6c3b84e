"""Annotation formats in: voc2coco.py (VOC and LabelImg layouts), yolo2coco.py,
labelme2coco.py, the mask check of dataset building, and the voc0712 / custom COCO configs.

Each converter runs in this process as its ``__main__`` block runs it (``call_tool``) on a
few tiny images and labels the test writes; the json it writes must hold exactly the boxes,
polygons, classes and image sizes written.
"""

import json
import math
import shutil
import warnings

import cv2
import numpy as np
import pytest
from PIL import Image
from tiny_data import write_image

from mmdet_like.apis.config_check import check_config
from mmdet_like.datasets import CocoDataset, DatasetError, VOCDataset, build_dataset
from mmdet_like.datasets.conversion import parse_split, split_at_random
from mmdet_like.datasets.errors import DatasetWarning
from mmdet_like.datasets.image_files import image_size
from mmdet_like.engine import load_config
from tests.engine.cli_utils import ROOT, call_tool, run_tool_here, tool_module

VOC2COCO = "dataset_converters/voc2coco.py"
YOLO2COCO = "dataset_converters/yolo2coco.py"
LABELME2COCO = "dataset_converters/labelme2coco.py"
MASK_PIPELINE = [dict(type="LoadImageFromFile"), dict(type="LoadAnnotations", with_mask=True)]


def read(path):
    return json.loads(path.read_text())


def voc_xml(filename, objects, size=None):
    """A Pascal VOC xml as LabelImg saves it; objects ``(name, (xmin, ymin, xmax, ymax),
    difficult)``, 1-based inclusive."""
    parts = ["<annotation><folder>images</folder>"]
    if filename is not None:
        parts.append(f"<filename>{filename}</filename>")
    if size is not None:
        parts.append(f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth>"
                     "</size>")  # fmt: skip
    for name, box, difficult in objects:
        parts.append(
            f"<object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated>"
            f"<difficult>{difficult}</difficult><bndbox><xmin>{box[0]}</xmin><ymin>{box[1]}"
            f"</ymin><xmax>{box[2]}</xmax><ymax>{box[3]}</ymax></bndbox></object>"
        )
    return "".join(parts) + "</annotation>"


# LabelImg layout: file -> (width, height, objects). The .png images keep their extension;
# c's xml names c.jpg, but the file is c.png (re-encoded after annotating).
LABELIMG = {
    "a.png": (48, 40, [("cat", (5, 6, 30, 25), 0)]),
    "b.jpg": (64, 32, [("dog", (1, 1, 64, 32), 0), ("cat", (40, 3, 60, 20), 1)]),
    "c.png": (40, 56, [("dog", (10, 20, 30, 50), 0)]),
    "d.jpg": (32, 32, [("cat", (2, 2, 12, 12), 0)]),
    "e.png": (56, 48, [("dog", (3, 4, 50, 40), 0)]),
}


def write_labelimg(root):
    """annotations/<stem>.xml and images/<file>, as LabelImg leaves them."""
    (root / "annotations").mkdir(parents=True)
    for i, (name, (w, h, objects)) in enumerate(LABELIMG.items()):
        write_image(root / "images" / name, w, h, seed=i)
        stem = name.rsplit(".", 1)[0]
        named = "c.jpg" if name == "c.png" else name
        (root / "annotations" / f"{stem}.xml").write_text(voc_xml(named, objects, (w, h)))
    write_image(root / "images" / "unlabelled.jpg", 32, 32)  # no xml: left out
    return root / "annotations", root / "images"


def expected_boxes():
    """``{file: [(class, [x, y, w, h], iscrowd)]}`` of LABELIMG in COCO's continuous form."""
    return {
        name: [(c, [b[0] - 1, b[1] - 1, b[2] - b[0] + 1, b[3] - b[1] + 1], d)
               for c, b, d in objects]
        for name, (_, _, objects) in LABELIMG.items()
    }  # fmt: skip


def coco_instances(coco):
    """``{file_name: [(class name, bbox, iscrowd)]}`` of a COCO dict."""
    names = {c["id"]: c["name"] for c in coco["categories"]}
    files = {i["id"]: i["file_name"] for i in coco["images"]}
    out = {f: [] for f in files.values()}
    for a in coco["annotations"]:
        out[files[a["image_id"]]].append((names[a["category_id"]], a["bbox"], a["iscrowd"]))
    return out


# ---------------------------------------------------------------- voc2coco


def test_voc2coco_labelimg_layout_png_names_and_random_split(tmp_path):
    """The reported defects: LabelImg's annotations/ + images/ layout, images that are .png
    (named by <filename>), a train/val split without ImageSets, and no box-shaped
    segmentation in the output."""
    ann_dir, img_dir = write_labelimg(tmp_path / "labelimg")
    # VOC_ROOT pointed at the LabelImg folder: one line saying which options to use
    run = call_tool(VOC2COCO, tmp_path / "labelimg", tmp_path / "x.json", cwd=tmp_path)
    assert run.status == 1 and run.stderr.count("\n") == 2, run.output
    assert f"--ann-dir {ann_dir} --img-dir {img_dir}" in run.stderr
    args = ["--ann-dir", ann_dir, "--img-dir", img_dir, "--split", "train=0.6,val=0.4"]
    out = run_tool_here([VOC2COCO, *args, "--seed", "3", tmp_path / "coco"], cwd=tmp_path)
    assert "c.xml: names 'c.jpg', not found; using 'c.png'" in out
    assert "1 images of" in out and "have no xml" in out  # unlabelled.jpg
    train, val = read(tmp_path / "coco" / "train.json"), read(tmp_path / "coco" / "val.json")
    assert len(train["images"]) == 3 and len(val["images"]) == 2
    assert train["categories"] == val["categories"] == [
        dict(id=1, name="cat"), dict(id=2, name="dog")]  # fmt: skip
    found = {**coco_instances(train), **coco_instances(val)}
    assert found == expected_boxes()  # every box, class, difficult flag; .png names kept
    for coco in (train, val):
        for img in coco["images"]:
            w, h, _ = LABELIMG[img["file_name"]]
            assert (img["width"], img["height"]) == (w, h)
        assert not any("segmentation" in a for a in coco["annotations"])
        assert all(a["area"] == a["bbox"][2] * a["bbox"][3] for a in coco["annotations"])
    # the same seed gives the same split
    run_tool_here([VOC2COCO, *args, "--seed", "3", tmp_path / "again"], cwd=tmp_path)
    assert read(tmp_path / "again" / "train.json") == train
    # the json loads as COCO with the images where the tool said (img_prefix)
    ds = CocoDataset(str(tmp_path / "coco" / "train.json"), [dict(type="LoadImageFromFile")],
                     img_prefix=str(img_dir), min_size=None)  # fmt: skip
    for i in range(len(ds)):
        info = ds.get_img_info(i)
        assert ds[i]["img"].shape[:2] == (info["height"], info["width"])
    # without --split: every xml in one file
    run_tool_here([VOC2COCO, "--ann-dir", ann_dir, "--img-dir", img_dir, tmp_path / "all.json"],
                  cwd=tmp_path)  # fmt: skip
    assert coco_instances(read(tmp_path / "all.json")) == expected_boxes()


def write_voc_root(root):
    """A VOC folder: Annotations/, JPEGImages/ (a .png among them), ImageSets/Main/."""
    (root / "Annotations").mkdir(parents=True)
    (root / "ImageSets" / "Main").mkdir(parents=True)
    for i, (name, (w, h, objects)) in enumerate(LABELIMG.items()):
        write_image(root / "JPEGImages" / name, w, h, seed=i)
        stem = name.rsplit(".", 1)[0]
        (root / "Annotations" / f"{stem}.xml").write_text(voc_xml(name, objects, (w, h)))
    (root / "ImageSets" / "Main" / "train.txt").write_text("a\nb\nc\n")
    (root / "ImageSets" / "Main" / "val.txt").write_text("d\ne\n")


def test_voc2coco_voc_layout_image_sets_and_classes(tmp_path):
    write_voc_root(tmp_path / "VOC")
    out = run_tool_here([VOC2COCO, tmp_path / "VOC", tmp_path / "tv.json", "--split", "train",
                         "val", "--classes", "dog"], cwd=tmp_path)  # fmt: skip
    assert "skipped objects of classes not in --classes: {'cat': 3}" in out
    coco = read(tmp_path / "tv.json")
    assert [i["file_name"] for i in coco["images"]] == list(LABELIMG)
    assert coco["categories"] == [dict(id=1, name="dog")]
    want = {f: [b for b in boxes if b[0] == "dog"] for f, boxes in expected_boxes().items()}
    assert coco_instances(coco) == want
    # default: ImageSets/Main/train.txt
    run_tool_here([VOC2COCO, tmp_path / "VOC", tmp_path / "t.json"], cwd=tmp_path)
    assert [i["file_name"] for i in read(tmp_path / "t.json")["images"]] == ["a.png", "b.jpg",
                                                                            "c.png"]  # fmt: skip


@pytest.mark.parametrize(
    "case, fragments",
    [
        ("broken xml", ["b.xml: broken xml", "line 2"]),
        ("not voc", ["b.xml: not a Pascal VOC annotation", "<sizes>"]),
        ("missing image", ["b.xml: its image 'b.jpg'", "Fix: add the image"]),
        ("two stand-ins", ["b.xml: names image 'b.jpg'", "['b.bmp', 'b.png']"]),
        ("size mismatch", ["b.xml, field 'size': 60x32 but the image b.jpg is 64x32"]),
        ("missing set", ["ImageSets/Main/test.txt: image-set list not found", "['train', 'val']"]),
        ("missing xml", ["Annotations/zz.xml: annotation xml not found"]),
        ("no JPEGImages", ["JPEGImages: image folder", "Fix: VOC_ROOT is the folder"]),
        ("bad split", ["'val=0.7x' is not NAME=FRACTION"]),
        ("sum", ["the fractions add up to 1.1, not 1"]),
    ],
)
def test_voc2coco_refuses_bad_input_in_one_line(tmp_path, case, fragments):
    root = tmp_path / "VOC"
    write_voc_root(root)
    ann, img = root / "Annotations", root / "JPEGImages"
    args = [root, tmp_path / "out.json"]
    if case == "broken xml":
        (ann / "b.xml").write_text("<annotation><filename>b.jpg</filename>\n<size>")
    elif case == "not voc":
        (ann / "b.xml").write_text("<sizes/>")
    elif case == "missing image":
        (img / "b.jpg").unlink()
    elif case == "two stand-ins":
        (img / "b.jpg").rename(img / "b.png")
        write_image(img / "b.bmp", 8, 8)
    elif case == "size mismatch":
        (ann / "b.xml").write_text(voc_xml("b.jpg", [], (60, 32)))
    elif case == "missing set":
        args += ["--split", "test"]
    elif case == "missing xml":
        (root / "ImageSets" / "Main" / "train.txt").write_text("a\nzz\n")
    elif case == "no JPEGImages":
        shutil.rmtree(img)
    elif case == "bad split":
        args += ["--split", "train=0.3,val=0.7x"]
    elif case == "sum":
        args += ["--split", "train=0.8,val=0.3"]
    run = call_tool(VOC2COCO, *args, cwd=tmp_path)
    assert run.status == 1 and run.stderr.count("\n") == 2, run.output
    for fragment in fragments:
        assert fragment in run.stderr, run.stderr


@pytest.mark.parametrize("orientation", [1, 6])
def test_image_size_is_the_size_as_displayed(tmp_path, orientation):
    """Converters read sizes from the image headers as LoadImageFromFile reads the image:
    with the EXIF orientation applied (6: turned by 90 degrees, width and height swap)."""
    path = tmp_path / "exif.jpg"
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(path, exif=exif.tobytes())
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    displayed = (40, 30) if orientation == 1 else (30, 40)
    assert image_size(str(path)) == (img.shape[1], img.shape[0]) == displayed
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DatasetError, match=r"broken.png: cannot read the image"):
        image_size(str(tmp_path / "broken.png"))


def test_split_is_deterministic_and_refuses_an_empty_part():
    fractions = parse_split(["train=0.75", "val=0.25"])
    assert fractions == dict(train=0.75, val=0.25) and parse_split(["train", "val"]) is None
    parts = split_at_random(range(8), fractions, seed=5)
    assert sorted(parts["train"] + parts["val"]) == list(range(8)) and len(parts["val"]) == 2
    assert split_at_random(reversed(range(8)), fractions, seed=5) == parts  # order-free
    with pytest.raises(DatasetError, match="part 'val' .* gets no image"):
        split_at_random(range(2), parse_split(["train=0.9,val=0.1"]), seed=0)


def test_voc_dataset_takes_the_image_the_xml_names(tmp_path):
    """VOCDataset used JPEGImages/<id>.jpg whatever <filename> said: a .png was missed."""
    root = tmp_path / "VOC"
    write_voc_root(root)
    (root / "Annotations" / "c.xml").write_text(  # names c.jpg; the file is c.png
        voc_xml("c.jpg", LABELIMG["c.png"][2], LABELIMG["c.png"][:2])
    )
    (root / "Annotations" / "a.xml").write_text(voc_xml(None, LABELIMG["a.png"][2]))  # no size
    pipeline = [dict(type="LoadImageFromFile")]
    with pytest.warns(DatasetWarning, match=r"c.xml, image id c, field 'filename': names image "
                                            r"'c.jpg'.*using 'c.png'"):  # fmt: skip
        ds = VOCDataset(str(root / "ImageSets/Main/train.txt"), pipeline, img_prefix=str(root),
                        classes=("cat", "dog"), min_size=None)  # fmt: skip
    names = [ds.get_img_info(i)["filename"] for i in range(len(ds))]
    assert names == ["JPEGImages/a.png", "JPEGImages/b.jpg", "JPEGImages/c.png"]
    assert (ds.get_img_info(0)["width"], ds.get_img_info(0)["height"]) == (48, 40)
    assert [ds[i]["img"].shape[:2] for i in range(3)] == [(40, 48), (32, 64), (56, 40)]


# ---------------------------------------------------------------- masks at build time


def test_mask_pipeline_refuses_box_only_annotations_at_build_time(tmp_path):
    ann_dir, img_dir = write_labelimg(tmp_path / "labelimg")
    run_tool_here([VOC2COCO, "--ann-dir", ann_dir, "--img-dir", img_dir, tmp_path / "boxes.json"],
                  cwd=tmp_path)  # fmt: skip
    mask_rcnn_data = dict(type="CocoDataset", ann_file=str(tmp_path / "boxes.json"),
                          img_prefix=str(img_dir), pipeline=MASK_PIPELINE)  # fmt: skip
    with pytest.raises(DatasetError) as info:
        build_dataset(mask_rcnn_data)
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'boxes.json'}: the pipeline loads masks")
    assert "no annotation of this file has a segmentation" in message
    assert "Faster R-CNN" in message and "annotate outlines" in message
    # in a nested pipeline too (MultiScaleFlipAug's transforms)
    nested = [dict(type="MultiScaleFlipAug", img_scale=(64, 64), transforms=MASK_PIPELINE[1:])]
    with pytest.raises(DatasetError, match="loads masks"):
        build_dataset(dict(mask_rcnn_data, pipeline=nested, test_mode=True))
    # box-only training of the same file builds; so does VOC without masks, and VOC with
    # masks is refused
    boxes = dict(mask_rcnn_data, pipeline=[dict(type="LoadAnnotations")])
    assert len(build_dataset(boxes)) == 5
    write_voc_root(tmp_path / "VOC")
    voc = dict(type="VOCDataset", ann_file=str(tmp_path / "VOC/ImageSets/Main/train.txt"),
               img_prefix=str(tmp_path / "VOC"), classes=("cat", "dog"),
               pipeline=MASK_PIPELINE)  # fmt: skip
    with pytest.raises(DatasetError, match=r"train.txt: the pipeline loads masks"):
        build_dataset(voc)
    # some instances with, some without an outline: named, refused
    coco = read(tmp_path / "boxes.json")
    coco["annotations"][0]["segmentation"] = [[4, 5, 30, 5, 30, 25]]
    (tmp_path / "some.json").write_text(json.dumps(coco))
    with pytest.raises(DatasetError, match=r"4 of the 5 annotations have no segmentation \(the "
                                           r"first in image id 2, 'b.jpg'\)"):  # fmt: skip
        build_dataset(dict(mask_rcnn_data, ann_file=str(tmp_path / "some.json")))
    # ignored (crowd / difficult) instances need no outline
    coco["annotations"] = [a for a in coco["annotations"] if a["iscrowd"] or "segmentation" in a]
    (tmp_path / "crowd.json").write_text(json.dumps(coco))
    ds = build_dataset(dict(mask_rcnn_data, ann_file=str(tmp_path / "crowd.json")))
    assert ds[0]["gt_masks"].to_ndarray().shape == (1, 40, 48)


# ---------------------------------------------------------------- yolo2coco


def write_yolo(root, names):
    """Ultralytics layout: train with box labels (and a background image), val with polygon
    (YOLO-seg) labels. Returns ``{file_name: (w, h, [(class id, values)])}``."""
    labels = {
        "images/train/a.jpg": (64, 48, [(0, [0.5, 0.5, 0.5, 0.25]), (1, [0.25, 0.75, 0.5, 0.5])]),
        "images/train/sub/b.png": (40, 60, [(1, [0.1, 0.2, 0.2, 0.3])]),
        "images/train/empty.jpg": (32, 32, None),  # no label file: a background image
        "images/val/c.jpg": (50, 40, [(0, [0.1, 0.1, 0.9, 0.1, 0.5, 0.8]),
                                      (1, [0.2, 0.5, 0.4, 0.5, 0.4, 0.9, 0.2, 0.9])]),
    }  # fmt: skip
    for i, (name, (w, h, objects)) in enumerate(labels.items()):
        write_image(root / name, w, h, seed=i)
        if objects is not None:
            label = root / name.replace("images/", "labels/", 1).rsplit(".", 1)[0]
            label.parent.mkdir(parents=True, exist_ok=True)
            lines = [" ".join([str(c), *(f"{v:g}" for v in values)]) for c, values in objects]
            label.with_suffix(".txt").write_text("\n".join(lines) + "\n")
    (root / "data.yaml").write_text(
        f"path: {root.name}\ntrain: images/train\nval: images/val\nnames: {names}\n"
    )
    return labels


@pytest.mark.parametrize("names", ["[cat, dog]", "{0: cat, 1: dog}"], ids=["list", "dict"])
def test_yolo2coco_round_trip(tmp_path, names):
    labels = write_yolo(tmp_path / "yolo", names)
    out = run_tool_here([YOLO2COCO, tmp_path / "yolo" / "data.yaml", tmp_path / "coco"],
                        cwd=tmp_path)  # fmt: skip
    assert "1 images without a label file" in out
    assert f"img_prefix for the dataset config: {tmp_path / 'yolo'}" in out
    for split in ("train", "val"):
        coco = read(tmp_path / "coco" / f"{split}.json")
        assert coco["categories"] == [dict(id=1, name="cat"), dict(id=2, name="dog")]
        files = {i["id"]: i for i in coco["images"]}
        assert sorted(i["file_name"] for i in files.values()) == sorted(
            n for n in labels if n.startswith(f"images/{split}/"))  # fmt: skip
        for img in files.values():
            assert (img["width"], img["height"]) == labels[img["file_name"]][:2]
        for ann in coco["annotations"]:
            img = files[ann["image_id"]]
            w, h, objects = labels[img["file_name"]]
            anns = [a for a in coco["annotations"] if a["image_id"] == ann["image_id"]]
            cls, values = objects[anns.index(ann)]
            assert ann["category_id"] == cls + 1
            if len(values) == 4:  # a box: centre and size, normalised
                cx, cy, bw, bh = values
                want = [(cx - bw / 2) * w, (cy - bh / 2) * h, bw * w, bh * h]
                assert "segmentation" not in ann
            else:  # a polygon: segmentation, and its tight box
                poly = [v * (w if k % 2 == 0 else h) for k, v in enumerate(values)]
                np.testing.assert_allclose(ann["segmentation"], [poly], atol=1e-3)
                xs, ys = poly[0::2], poly[1::2]
                want = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
            np.testing.assert_allclose(ann["bbox"], want, atol=1e-3)
    assert len(read(tmp_path / "coco" / "train.json")["annotations"]) == 3
    # the polygon set trains a mask model; its masks are the polygons
    val = CocoDataset(str(tmp_path / "coco" / "val.json"), MASK_PIPELINE,
                      img_prefix=str(tmp_path / "yolo"), min_size=None)  # fmt: skip
    masks = val[0]["gt_masks"].to_ndarray()
    assert masks.shape == (2, 40, 50) and masks[1, 22:34, 12:18].all() and not masks[1, :18].any()


@pytest.mark.parametrize(
    "line, fragment",
    [
        ("0 0.5 0.5 0.2", "line 2: 3 values after the class; expected 4"),
        ("0 0.1 0.2 0.3 0.4 0.5", "line 2: 5 values after the class"),
        ("0 0.5 0.5 0.2 zero", "line 2: 'zero' is not a finite number"),
        ("2 0.5 0.5 0.2 0.2", "line 2: class '2' is not one of the class ids"),
        ("0 32 24 10 10", "line 2: value(s) [32.0, 24.0, 10.0, 10.0] outside [0, 1]"),
        ("1 0.5 0.5 0 0.2", "line 2: the box has no area"),
    ],
)
def test_yolo2coco_refuses_malformed_lines_with_file_and_line(tmp_path, line, fragment):
    write_yolo(tmp_path / "yolo", "[cat, dog]")
    label = tmp_path / "yolo" / "labels" / "train" / "a.txt"
    label.write_text(f"0 0.5 0.5 0.5 0.25\n{line}\n")
    run = call_tool(YOLO2COCO, tmp_path / "yolo" / "data.yaml", tmp_path / "coco", cwd=tmp_path)
    assert run.status == 1 and run.stderr.count("\n") == 2, run.output
    assert f"{label}, {fragment}" in run.stderr, run.stderr


def test_yolo2coco_refuses_bad_data_yaml(tmp_path):
    write_yolo(tmp_path / "yolo", "[cat, dog]")
    yaml_path = tmp_path / "yolo" / "data.yaml"
    cases = [
        ("path: yolo\ntrain: [images/train\nnames: [a]\n", "data.yaml, line 3: broken yaml"),
        ("path: yolo\ntrain: images/train\nnc: 3\nnames: [cat, dog]\n", "field 'nc': 3 but"),
        ("path: nowhere\ntrain: images/train\nnames: [cat]\n", "field 'path': 'nowhere' is not"),
        ("path: yolo\ntrain: images/tr\nnames: [cat, dog]\n", "field 'train':"),
        ("path: yolo\nval: images/val\nnames: [cat, dog]\nkpt_shape: [17, 3]\n", "pose"),
    ]
    for text, fragment in cases:
        yaml_path.write_text(text)
        run = call_tool(YOLO2COCO, yaml_path, tmp_path / "coco", cwd=tmp_path)
        assert run.status == 1 and fragment in run.stderr, (text, run.output)
    # labels/ missing altogether: said, with the path looked for
    yaml_path.write_text("path: yolo\ntrain: images/train\nnames: [cat, dog]\n")
    shutil.rmtree(tmp_path / "yolo" / "labels")
    run = call_tool(YOLO2COCO, yaml_path, tmp_path / "coco", cwd=tmp_path)
    assert run.status == 1 and "none of its 3 images has a label file" in run.stderr
    assert str(tmp_path / "yolo" / "labels" / "train" / "a.txt") in run.stderr


# ---------------------------------------------------------------- labelme2coco


def labelme(image_path, width, height, shapes):
    return dict(version="5.4.1", flags={}, shapes=shapes, imagePath=image_path, imageData=None,
                imageHeight=height, imageWidth=width)  # fmt: skip


def shape(label, kind, points, group_id=None):
    return dict(label=label, points=points, group_id=group_id, shape_type=kind, flags={})


def write_labelme(root):
    """Two LabelMe files: one beside its image, one whose imagePath is ../images/b.png."""
    write_image(root / "a.jpg", 64, 48)
    write_image(root.parent / "images" / "b.png", 40, 40, seed=1)
    shapes_a = [
        shape("cat", "polygon", [[4, 6], [30, 6], [30, 20], [4, 20]]),
        shape("dog", "rectangle", [[50, 40], [40, 10]]),
        shape("ball", "circle", [[20, 30], [20, 40]]),  # centre (20, 30), radius 10
    ]
    shapes_b = [  # one cat in two parts (group 1), points outside the image clipped
        shape("cat", "polygon", [[2, 2], [10, 2], [10, 10]], group_id=1),
        shape("cat", "polygon", [[20, 20], [45, 20], [30, 30]], group_id=1),
        shape("dog", "polygon", [[5, 30], [15, 30], [10, 38]]),
    ]
    (root / "a.json").write_text(json.dumps(labelme("a.jpg", 64, 48, shapes_a)))
    (root / "sub").mkdir()
    (root / "sub" / "b.json").write_text(json.dumps(labelme("../../images/b.png", 40, 40,
                                                             shapes_b)))  # fmt: skip


def test_labelme2coco_round_trip(tmp_path):
    root = tmp_path / "labelme"
    root.mkdir()
    write_labelme(root)
    out = run_tool_here([LABELME2COCO, root, root / "coco.json"], cwd=tmp_path)
    assert "(4 with polygons, 1 boxes only)" in out
    coco = read(root / "coco.json")
    assert [c["name"] for c in coco["categories"]] == ["ball", "cat", "dog"]
    assert coco["images"] == [
        dict(id=1, file_name="a.jpg", width=64, height=48),
        dict(id=2, file_name="../images/b.png", width=40, height=40),
    ]
    a_cat, a_dog, a_ball, b_cat, b_dog = coco["annotations"]
    assert a_cat["segmentation"] == [[4, 6, 30, 6, 30, 20, 4, 20]] and a_cat["area"] == 26 * 14
    assert a_cat["bbox"] == [4, 6, 26, 14] and a_cat["category_id"] == 2
    assert a_dog["bbox"] == [40, 10, 10, 30] and "segmentation" not in a_dog  # a box
    circle = np.asarray(a_ball["segmentation"][0]).reshape(-1, 2)
    np.testing.assert_allclose(np.hypot(*(circle - [20, 30]).T), 10, atol=1e-3)
    np.testing.assert_allclose(a_ball["bbox"], [10, 20, 20, 20], atol=1e-3)
    # within half a pixel of the circle: its edges' midpoints too
    assert 10 * math.cos(math.pi / len(circle)) >= 10 - 0.5
    assert a_ball["area"] == pytest.approx(math.pi * 100, rel=0.05)
    assert b_cat["segmentation"] == [[2, 2, 10, 2, 10, 10], [20, 20, 40, 20, 30, 30]]
    assert b_cat["bbox"] == [2, 2, 38, 28] and b_cat["area"] == 32 + 100
    assert b_dog["category_id"] == 3 and b_dog["image_id"] == 2
    # a rerun with the output in the folder skips it; --rectangles-as-masks and --classes
    out = run_tool_here([LABELME2COCO, root, root / "coco.json", "--rectangles-as-masks",
                         "--classes", "dog", "cat"], cwd=tmp_path)  # fmt: skip
    assert "skipped instances of labels not in --classes: {'ball': 1}" in out
    coco = read(root / "coco.json")
    assert coco["annotations"][1]["segmentation"] == [[40, 10, 50, 10, 50, 40, 40, 40]]
    assert [c["name"] for c in coco["categories"]] == ["dog", "cat"]
    # the masks a dataset makes of it
    ds = CocoDataset(str(root / "coco.json"), MASK_PIPELINE, img_prefix=str(root),
                     min_size=None)  # fmt: skip
    masks = ds[0]["gt_masks"].to_ndarray()
    assert masks.shape == (2, 48, 64) and masks[0, 7:19, 5:29].all() and masks[0].sum() < 30 * 16
    # a random split: one file per part
    run_tool_here([LABELME2COCO, root, tmp_path / "parts", "--split", "train=0.5,val=0.5"],
                  cwd=tmp_path)  # fmt: skip
    parts = [read(tmp_path / "parts" / f"{p}.json")["images"] for p in ("train", "val")]
    assert sorted(i["file_name"] for p in parts for i in p) == ["../images/b.png", "a.jpg"]


@pytest.mark.parametrize(
    "shapes, fragment",
    [
        ([shape("cat", "polygon", [[1, 1], [5, 5]])], "a.json, shape 1: a polygon needs 3"),
        ([shape("cat", "line", [[1, 1], [5, 5]])], "a.json, shape 1: shape_type 'line' is no"),
        ([shape("", "polygon", [[1, 1], [5, 5], [1, 5]])], "a.json, shape 1: no 'label'"),
        ([shape("cat", "polygon", [[1, "x"], [5, 5], [1, 5]])], "a.json, shape 1: 'points'"),
        ([shape("cat", "circle", [[1, 1]])], "a.json, shape 1: a circle has 2 points"),
        ([shape("cat", "rectangle", [[70, 50], [80, 60]])], "a.json, shape 1: the rectangle has"),
        ([shape("cat", "polygon", [[1, 1], [5, 5], [1, 5]], group_id=2),
          shape("dog", "polygon", [[1, 1], [5, 5], [1, 5]], group_id=2)],
         "a.json, shapes [1, 2]: group_id 2 joins different labels"),
    ],
)  # fmt: skip
def test_labelme2coco_refuses_bad_shapes_naming_file_and_shape(tmp_path, shapes, fragment):
    root = tmp_path / "labelme"
    root.mkdir()
    write_labelme(root)
    doc = read(root / "a.json")
    doc["shapes"] = doc["shapes"][:1] + shapes
    (root / "a.json").write_text(json.dumps(doc))
    run = call_tool(LABELME2COCO, root, tmp_path / "coco.json", cwd=tmp_path)
    assert run.status == 1 and run.stderr.count("\n") == 2, run.output
    assert fragment in run.stderr, run.stderr


def test_labelme2coco_refuses_bad_files(tmp_path):
    root = tmp_path / "labelme"
    root.mkdir()
    write_labelme(root)
    good = (root / "a.json").read_text()
    cases = [
        (good.replace(', "shapes"', ',\n"shapes" "'), "a.json: broken JSON at line 2"),
        (good.replace('"imageWidth": 64', '"imageWidth": 60'),
         "a.json, fields 'imageWidth'/'imageHeight': 60x48 but the image"),
        (json.dumps(dict(images=[])), "a.json: not a LabelMe file"),
    ]  # fmt: skip
    for text, fragment in cases:
        (root / "a.json").write_text(text)
        run = call_tool(LABELME2COCO, root, tmp_path / "coco.json", cwd=tmp_path)
        assert run.status == 1 and fragment in run.stderr, (fragment, run.output)
    # an image neither where imagePath says nor of the json's name
    (root / "a.json").write_text(good.replace('"imagePath": "a.jpg"', '"imagePath": "x.jpg"'))
    (root / "a.jpg").rename(root / "z.jpg")
    run = call_tool(LABELME2COCO, root, tmp_path / "coco.json", cwd=tmp_path)
    assert run.status == 1 and "a.json, field 'imagePath': image 'x.jpg' not found" in run.stderr
    (root / "z.jpg").rename(root / "a.jpg")
    # the image renamed: the one with the same stem is used, and said
    (root / "a.json").write_text(good)
    (root / "a.jpg").rename(root / "a.png")
    out = run_tool_here([LABELME2COCO, root, tmp_path / "coco.json"], cwd=tmp_path)
    assert "a.json: imagePath 'a.jpg' not found; using 'a.png'" in out
    assert read(tmp_path / "coco.json")["images"][0]["file_name"] == "a.png"
    # a line shape skipped on request
    doc = json.loads(good)
    doc["shapes"].append(shape("edge", "line", [[1, 1], [5, 5]]))
    (root / "a.json").write_text(json.dumps(doc).replace("a.jpg", "a.png"))
    out = run_tool_here([LABELME2COCO, root, tmp_path / "coco.json", "--skip-other-shapes"],
                        cwd=tmp_path)  # fmt: skip
    assert "skipped shapes that are no region: {'line': 1}" in out


def test_converters_are_sub_commands():
    from mmdet_like import cli

    for name in ("voc2coco", "yolo2coco", "labelme2coco"):
        assert cli.script_path(name).endswith(f"dataset_converters/{name}.py")
        assert tool_module(f"dataset_converters/{name}.py").main


# ---------------------------------------------------------------- configs


def test_voc0712_config_builds_on_a_tiny_devkit(tmp_path, monkeypatch):
    cfg = load_config(str(ROOT / "configs/_base_/datasets/voc0712.py"))
    check_config(cfg, "voc0712.py")
    assert cfg.evaluation.metric == "mAP" and len(VOCDataset.CLASSES) == 20
    monkeypatch.chdir(tmp_path)  # the config's paths are relative: data/VOCdevkit/...
    devkit = tmp_path / "data" / "VOCdevkit"
    sets = {"VOC2007": {"trainval": ["a", "b"], "test": ["c"]}, "VOC2012": {"trainval": ["d"]}}
    for year, lists in sets.items():
        (devkit / year / "Annotations").mkdir(parents=True)
        (devkit / year / "ImageSets" / "Main").mkdir(parents=True)
        for name, ids in lists.items():
            (devkit / year / "ImageSets" / "Main" / f"{name}.txt").write_text("\n".join(ids))
            for i in ids:
                write_image(devkit / year / "JPEGImages" / f"{i}.jpg", 48, 40)
                objects = [("dog", (2, 3, 30, 35), 0), ("person", (10, 5, 40, 38), 0)]
                (devkit / year / "Annotations" / f"{i}.xml").write_text(
                    voc_xml(f"{i}.jpg", objects, (48, 40))
                )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DatasetWarning)  # 18 of the 20 classes have no box
        train = build_dataset(cfg.data.train)
        test = build_dataset(cfg.data.test)
    assert len(train) == 3 * 3 and train.CLASSES == VOCDataset.CLASSES
    assert len(test) == 1 and test.get_img_info(0)["filename"] == "JPEGImages/c.jpg"
    assert train[4]["data_samples"].gt_instances.labels.tolist() == [11, 14]  # dog, person


def test_custom_coco_template_builds_on_converted_data(tmp_path, monkeypatch):
    template = ROOT / "configs/_base_/datasets/coco_custom.py"
    cfg = load_config(str(template))
    check_config(cfg, "coco_custom.py")
    assert cfg.data_root == "data/my_dataset/" and cfg.data.train.classes == cfg.classes
    # the recipe of its header: a model config over the (copied) template loads and checks
    base = tmp_path / "configs" / "_base_"
    shutil.copytree(ROOT / "configs" / "_base_", base)
    shutil.copy(template, base / "datasets" / "my_dataset.py")
    user = tmp_path / "configs" / "faster_rcnn_my_dataset.py"
    user.write_text(
        '_base_ = ["_base_/models/faster_rcnn_r50_fpn.py", "_base_/datasets/my_dataset.py",\n'
        '          "_base_/schedules/schedule_1x.py", "_base_/default_runtime.py"]\n'
        "model = dict(roi_head=dict(bbox_head=dict(num_classes=3)))\n"
    )
    user_cfg = load_config(str(user))
    check_config(user_cfg, str(user))
    assert user_cfg.data.train.ann_file == "data/my_dataset/annotations/train.json"
    # a dataset converted into the template's layout builds from it as it is
    monkeypatch.chdir(tmp_path)
    ann_dir, img_dir = write_labelimg(tmp_path / "data" / "my_dataset")
    for xml in ann_dir.iterdir():  # the template's class names
        xml.write_text(xml.read_text().replace("cat", "class_a").replace("dog", "class_c"))
    run_tool_here([VOC2COCO, "--ann-dir", ann_dir, "--img-dir", img_dir, ann_dir, "--split",
                   "train=0.6,val=0.4", "--classes", *cfg.classes], cwd=tmp_path)  # fmt: skip
    train, val = build_dataset(user_cfg.data.train), build_dataset(user_cfg.data.val)
    assert train.CLASSES == ("class_a", "class_b", "class_c") and len(train) + len(val) == 5
    sample = train[0]["data_samples"]
    assert sample.gt_instances.bboxes.shape[1] == 4 and "masks" not in sample.gt_instances
