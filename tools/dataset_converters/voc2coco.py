"""Convert Pascal VOC / LabelImg xml annotations to COCO json.

    # VOC layout: VOC_ROOT/Annotations/*.xml, JPEGImages/, ImageSets/Main/<set>.txt
    python tools/dataset_converters/voc2coco.py VOC_ROOT OUT_JSON [--split train [val ...]]
    # LabelImg layout: a folder of xml files and a folder of images (the same by default)
    python tools/dataset_converters/voc2coco.py --ann-dir annotations --img-dir images OUT_JSON
    # either layout split at random: OUT_DIR/train.json and OUT_DIR/val.json
    python tools/dataset_converters/voc2coco.py ... OUT_DIR --split train=0.8,val=0.2 --seed 0

Named sets (``--split train val``, VOC layout) are merged into OUT_JSON (default: ``train``
where ``ImageSets/Main/train.txt`` exists, else every xml). ``--split NAME=FRACTION,...``
deals every xml at random (deterministic for a ``--seed``) into one json per part.
``--classes`` keeps those classes in that order (others are skipped and counted); by default
every object name found, sorted.

Each image is the file the xml's ``<filename>`` names (any extension) in the image folder;
where it is missing, the one image with the same name stem is used and reported. Sizes come
from ``<size>`` (checked against the image header) or the image header. Boxes (1-based
inclusive) become continuous ``[xmin - 1, ymin - 1, w, h]`` clipped to the image;
``difficult`` objects become ``iscrowd=1`` (ignored in training and evaluation). No
``segmentation`` is written: these are boxes, and a mask model refuses them.
"""

import argparse
import os
import os.path as osp
import sys
from collections import Counter

from mmdet_like.datasets.conversion import (
    ImageRecord,
    Instance,
    build_coco,
    output_paths,
    parse_split,
    split_at_random,
    summary,
    write_json,
)
from mmdet_like.datasets.errors import DatasetError
from mmdet_like.datasets.image_files import ImageFolder, image_size
from mmdet_like.datasets.voc import parse_voc_xml
from mmdet_like.errors import run_tool

LAYOUT_FIX = (
    "Fix: VOC_ROOT is the folder holding Annotations/ and JPEGImages/ (e.g. "
    "VOCdevkit/VOC2007); for LabelImg's layout give --ann-dir XML_FOLDER --img-dir "
    "IMAGE_FOLDER instead."
)


def _require_dir(path, what, fix):
    if not osp.isdir(path):
        raise DatasetError(f"{path}: {what} not found. {fix}")


def xml_stems(ann_dir):
    """Sorted name stems of the ``.xml`` files in ``ann_dir``."""
    stems = sorted(osp.splitext(f)[0] for f in os.listdir(ann_dir) if f.lower().endswith(".xml"))
    if not stems:
        raise DatasetError(
            f"{ann_dir}: no .xml file in this folder. Fix: point it at the folder of the "
            "Pascal VOC xml files (LabelImg: 'Save' in PascalVOC format)."
        )
    return stems


def image_set(voc_root, name):
    """The image ids of ``VOC_ROOT/ImageSets/Main/<name>.txt``."""
    folder = osp.join(voc_root, "ImageSets", "Main")
    path = osp.join(folder, f"{name}.txt")
    if not osp.isdir(folder):
        raise DatasetError(
            f"{folder}: no image-set lists (ImageSets/Main/ not found) for --split {name}. Fix: "
            "split at random with --split train=0.8,val=0.2, or leave --split out to convert "
            "every xml into one file."
        )
    if not osp.isfile(path):
        sets = sorted(f[:-4] for f in os.listdir(folder) if f.endswith(".txt"))
        raise DatasetError(
            f"{path}: image-set list not found (sets there: {sets or 'none'}). Fix: name an "
            "existing set with --split, or split at random with --split train=0.8,val=0.2."
        )
    with open(path, encoding="utf-8") as f:
        return [line.split()[0] for line in f if line.strip()]


def voc_layout(voc_root, sets, every_xml=False):
    """``(ann_dir, img_dir, stems, sets used)`` of a VOC folder: the ids of the image sets
    ``sets``, or every xml (``every_xml``); ``sets=None`` takes ``train`` where
    ``ImageSets/Main/train.txt`` exists, else every xml."""
    _require_dir(voc_root, "VOC folder", LAYOUT_FIX)
    ann_dir, img_dir = osp.join(voc_root, "Annotations"), osp.join(voc_root, "JPEGImages")
    if not osp.isdir(ann_dir):
        labelimg = [osp.join(voc_root, d) for d in ("annotations", "images")]
        if all(osp.isdir(d) for d in labelimg):
            raise DatasetError(
                f"{voc_root}: no Annotations/ folder; it holds annotations/ and images/ "
                f"(LabelImg's layout). Fix: voc2coco.py --ann-dir {labelimg[0]} --img-dir "
                f"{labelimg[1]} OUT (without VOC_ROOT)."
            )
        raise DatasetError(f"{voc_root}: no Annotations/ folder. {LAYOUT_FIX}")
    _require_dir(img_dir, "image folder (JPEGImages/ of the VOC folder)", LAYOUT_FIX)
    if every_xml:
        return ann_dir, img_dir, xml_stems(ann_dir), None
    if sets is None and osp.isfile(osp.join(voc_root, "ImageSets", "Main", "train.txt")):
        sets = ["train"]
    if sets is None:
        return ann_dir, img_dir, xml_stems(ann_dir), None
    stems = []
    for name in sets:
        stems += image_set(voc_root, name)
    return ann_dir, img_dir, stems, sets


def read_xml_files(ann_dir, img_dir, stems):
    """Parse ``ann_dir/<stem>.xml`` for each stem and find its image in ``img_dir``.

    Returns ``(items, notes)``: items ``(stem, file_name, width, height, objects)``
    (objects as :func:`parse_voc_xml` gives them), notes a line for each image found under
    another name than the xml's ``<filename>``.
    """
    images = ImageFolder(img_dir)
    items, notes = [], []
    for stem in stems:
        xml_path = osp.join(ann_dir, f"{stem}.xml")
        if not osp.isfile(xml_path):
            raise DatasetError(
                f"{xml_path}: annotation xml not found. Fix: add it, or remove {stem!r} from the "
                "image-set list."
            )
        named, width, height, objects = parse_voc_xml(xml_path)
        file_name, stand_in = images.find(named, stem, xml_path)
        if file_name is None:
            raise DatasetError(
                f"{xml_path}: its image {named or stem + '.*'!r} (field 'filename') is not in "
                f"{img_dir}, nor any image named {stem}.*. Fix: add the image, correct "
                "<filename>, or remove the xml."
            )
        if stand_in:
            notes.append(f"{xml_path}: names {named!r}, not found; using {file_name!r}")
        actual = image_size(osp.join(img_dir, file_name))
        if width is not None and (width, height) != actual:
            swapped = " (swapped: an EXIF orientation?)" if (height, width) == actual else ""
            raise DatasetError(
                f"{xml_path}, field 'size': {width}x{height} but the image {file_name} is "
                f"{actual[0]}x{actual[1]} (width x height){swapped}; the boxes would be "
                "misplaced. Fix: re-annotate or re-export the image (or remove <size> to take "
                "the image's)."
            )
        items.append((stem, file_name, actual[0], actual[1], objects))
    return items, notes


def to_records(items, classes):
    """``(records, class names, skipped boxes, unknown class counts)``: one
    :class:`ImageRecord` per item; boxes clipped to the image, those left without area
    skipped."""
    names = list(classes) if classes else sorted({o[0] for it in items for o in it[4]})
    label_of = {c: i for i, c in enumerate(names)}
    records, skipped, unknown = [], [], Counter()
    for stem, file_name, w, h, objects in items:
        instances = []
        for cls, (xmin, ymin, xmax, ymax), difficult in objects:
            if cls not in label_of:
                unknown[cls] += 1
                continue
            x1, y1 = max(xmin - 1, 0.0), max(ymin - 1, 0.0)
            x2, y2 = min(xmax, float(w)), min(ymax, float(h))
            if x2 <= x1 or y2 <= y1:
                skipped.append((stem, cls, (xmin, ymin, xmax, ymax)))
                continue
            instances.append(Instance(label_of[cls], (x1, y1, x2, y2), None, difficult))
        records.append(ImageRecord(file_name, w, h, instances))
    return records, names, skipped, unknown


def voc_to_coco(voc_root, splits=("train",), classes=None):
    """VOC folder (image sets ``splits`` merged) -> ``(coco dict, skipped boxes)``.
    Categories numbered from 1 in ``classes`` order (default: every object name, sorted)."""
    ann_dir, img_dir, stems, _ = voc_layout(voc_root, list(splits))
    items, _ = read_xml_files(ann_dir, img_dir, stems)
    records, names, skipped, _ = to_records(items, classes)
    return build_coco(records, names), skipped


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[2:]),
    )  # fmt: skip
    parser.add_argument("voc_root", nargs="?", help="VOC folder (Annotations/, JPEGImages/)")
    parser.add_argument("out", help="output json, or with --split NAME=FRACTION a folder")
    parser.add_argument("--ann-dir", help="LabelImg layout: the folder of xml files")
    parser.add_argument("--img-dir", help="LabelImg layout: the image folder (default: --ann-dir)")
    parser.add_argument(
        "--split", nargs="+", default=None,
        help="image sets to merge (VOC layout), or NAME=FRACTION,... for a random split",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="seed of the random split")
    parser.add_argument("--classes", nargs="+", default=None, help="keep these, in this order")
    args = parser.parse_args(argv)

    fractions = parse_split(args.split)
    if (args.voc_root is None) == (args.ann_dir is None):
        raise DatasetError(
            "voc2coco.py: give either VOC_ROOT (VOC layout) or --ann-dir (LabelImg layout), "
            f"not {'both' if args.ann_dir else 'neither'}. {LAYOUT_FIX}"
        )
    if args.ann_dir is None:
        if args.img_dir:
            raise DatasetError(
                "voc2coco.py: --img-dir goes with --ann-dir (LabelImg layout); a VOC folder's "
                "images are in JPEGImages/. Fix: drop --img-dir, or give --ann-dir too."
            )
        ann_dir, img_dir, stems, sets = voc_layout(
            args.voc_root, args.split, every_xml=fractions is not None
        )
        source = f"{len(stems)} xml files of {ann_dir}" + (f" (image sets {sets})" if sets else "")
    else:
        if args.split and fractions is None:
            raise DatasetError(
                f"voc2coco.py: --split {' '.join(args.split)} names VOC image-set lists; "
                "LabelImg's layout has none. Fix: split at random with --split "
                "train=0.8,val=0.2 (or leave --split out to convert every xml into one file)."
            )
        ann_dir, img_dir, sets = args.ann_dir, args.img_dir or args.ann_dir, None
        fix = "Fix: give the folder LabelImg saved the xml files to (--ann-dir) and the image "
        _require_dir(ann_dir, "annotation folder (--ann-dir)", fix + "folder (--img-dir).")
        _require_dir(img_dir, "image folder (--img-dir)", fix + "folder (--img-dir).")
        stems = xml_stems(ann_dir)
        source = f"{len(stems)} xml files of {ann_dir}"

    items, notes = read_xml_files(ann_dir, img_dir, stems)
    records, names, skipped, unknown = to_records(items, args.classes)
    if fractions is None:
        outputs = {args.out: records}
    else:
        parts = split_at_random(range(len(records)), fractions, args.seed)
        paths = output_paths(args.out, parts)
        outputs = {paths[name]: [records[i] for i in parts[name]] for name in parts}

    print(f"read {source}")
    for note in notes:
        print(f"note: {note} (same name stem)")
    for stem, cls, box in skipped:
        print(f"skipped {stem}: {cls} box {box} has no area inside the image")
    if unknown:
        print(f"skipped objects of classes not in --classes: {dict(sorted(unknown.items()))}")
    annotated = {r.file_name for r in records}
    unannotated = [n for n in ImageFolder(img_dir).names if n not in annotated]
    if unannotated and (args.ann_dir or not sets):
        print(f"note: {len(unannotated)} images of {img_dir} have no xml and are left out "
              f"(e.g. {unannotated[0]})")  # fmt: skip
    for path, part in outputs.items():
        coco = build_coco(part, names)
        write_json(coco, path)
        print(summary(path, coco))
    print(f"img_prefix for the dataset config: {img_dir}")


if __name__ == "__main__":
    sys.exit(run_tool(main))
