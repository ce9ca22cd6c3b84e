"""Convert an Ultralytics YOLO dataset (detection or segmentation labels) to COCO json.

    python tools/dataset_converters/yolo2coco.py data/my_set/data.yaml data/my_set/coco/
    # -> data/my_set/coco/train.json, val.json (and test.json where data.yaml has test)

``data.yaml`` gives ``names`` (a list, or a dict ``{class id: name}``), ``path`` (the dataset
root; relative to the yaml's folder, else to the working folder; default: the yaml's
folder) and ``train`` / ``val`` / ``test``: image folders (searched recursively), text files
listing images, or lists of these, relative to the root. Each image ``.../images/x.jpg``
has its labels in ``.../labels/x.txt``, one object a line:

- ``class cx cy w h``: a box (centre and size), normalised by the image width and height;
- ``class x1 y1 x2 y2 x3 y3 ...``: a polygon (YOLO-seg), normalised; it becomes the
  instance's ``segmentation`` and its tight box the ``bbox``.

An image without a label file (or with an empty one) is kept without instances. Image sizes
are read from the image headers (as displayed, EXIF orientation applied). ``file_name`` is
relative to the dataset root: set ``img_prefix`` to it. Detection labels get no
``segmentation`` (a mask model refuses them).
"""

import argparse
import math
import os.path as osp
import sys

import yaml

from mmdet_like.datasets.conversion import (
    ImageRecord,
    Instance,
    build_coco,
    output_paths,
    polygon_box,
    summary,
    write_json,
)
from mmdet_like.datasets.errors import DatasetError
from mmdet_like.datasets.image_files import image_size, is_image_file, list_images
from mmdet_like.errors import run_tool

SPLITS = ("train", "val", "test")
TOLERANCE = 1e-3  # normalised coordinates this far outside [0, 1] are clipped, not refused


def read_data_yaml(path):
    """``data.yaml`` -> its dict, checked: ``names`` a list or a ``{class id: name}`` dict."""
    if not osp.isfile(path):
        raise DatasetError(
            f"{path}: data.yaml not found. Fix: give the dataset's yaml file (names, path, "
            "train, val)."
        )
    with open(path, encoding="utf-8") as f:
        try:
            data = yaml.safe_load(f)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f", line {mark.line + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or exc
            raise DatasetError(f"{path}{line}: broken yaml ({problem}). Fix the file.") from None
    if not isinstance(data, dict) or "names" not in data:
        raise DatasetError(
            f"{path}: expected a mapping with 'names' (the class names) and 'train' / 'val' "
            "(the images). Fix the file."
        )
    if data.get("kpt_shape") is not None:
        raise DatasetError(
            f"{path}, field 'kpt_shape': a pose (keypoint) dataset; yolo2coco.py converts "
            "detection and segmentation labels only."
        )
    return data


def class_names(data, path):
    """``(names, label of class id)`` from ``names`` (list, or dict by class id)."""
    names = data["names"]
    if isinstance(names, dict):
        if not all(isinstance(k, int) and not isinstance(k, bool) for k in names):
            raise DatasetError(
                f"{path}, field 'names': the keys must be class ids (0, 1, ...), got "
                f"{list(names)}. Fix the file."
            )
        ids = sorted(names)
        names = [names[k] for k in ids]
    elif isinstance(names, list):
        ids = list(range(len(names)))
    else:
        raise DatasetError(
            f"{path}, field 'names': expected a list of class names or a dict {{id: name}}, "
            f"got {names!r}. Fix the file."
        )
    names = [str(n) for n in names]
    if not names or len(set(names)) != len(names):
        raise DatasetError(
            f"{path}, field 'names': {names} must be non-empty and unique. Fix the file."
        )
    nc = data.get("nc")
    if nc is not None and nc != len(names):
        raise DatasetError(
            f"{path}, field 'nc': {nc} but 'names' lists {len(names)} classes. Fix one of them."
        )
    return names, {class_id: label for label, class_id in enumerate(ids)}


def dataset_root(data, yaml_path, root=None):
    """The folder that ``train`` / ``val`` are relative to (see the module docstring)."""
    if root is not None:
        if not osp.isdir(root):
            raise DatasetError(f"{root}: --root folder not found. Fix the path.")
        return osp.abspath(root)
    yaml_dir = osp.dirname(osp.abspath(yaml_path))
    path = data.get("path")
    if not path:
        return yaml_dir
    tried = [str(path)] if osp.isabs(str(path)) else [osp.join(yaml_dir, str(path)), str(path)]
    for candidate in tried:
        if osp.isdir(candidate):
            return osp.abspath(candidate)
    raise DatasetError(
        f"{yaml_path}, field 'path': {path!r} is not a folder (tried {tried}). Fix 'path', or "
        "give the dataset root with --root."
    )


def split_images(entry, root, yaml_path, split):
    """Image paths (sorted, no repeats) of one split entry of ``data.yaml``."""
    entries = entry if isinstance(entry, list) else [entry]
    images = []
    for item in entries:
        path = osp.join(root, str(item))
        if not osp.exists(path) and str(item).startswith("../"):
            path = osp.join(root, str(item)[3:])  # as Ultralytics reads Roboflow's exports
        if osp.isdir(path):
            images += [osp.join(path, name) for name in list_images(path, recursive=True)]
        elif osp.isfile(path) and path.endswith(".txt"):
            folder = osp.dirname(path)
            with open(path, encoding="utf-8") as f:
                lines = [line.strip() for line in f if line.strip()]
            images += [osp.normpath(osp.join(folder, line)) for line in lines]
        else:
            raise DatasetError(
                f"{yaml_path}, field '{split}': {path} is neither an image folder nor a .txt "
                "list of images. Fix the entry (relative to 'path') or --root."
            )
    images = sorted(set(images))
    if not images:
        raise DatasetError(
            f"{yaml_path}, field '{split}': no image in {entries} (under {root}). Fix the entry."
        )
    return images


def label_path(image_path):
    """``.../images/<sub>/x.jpg`` -> ``.../labels/<sub>/x.txt`` (the last ``images`` folder);
    ``None`` when the path has no ``images`` folder."""
    parts = osp.normpath(image_path).split(osp.sep)
    if "images" not in parts[:-1]:
        return None
    k = len(parts) - 2 - parts[:-1][::-1].index("images")
    parts[k] = "labels"
    return osp.splitext(osp.sep.join(parts))[0] + ".txt"


def _number(token, where):
    try:
        value = float(token)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise DatasetError(f"{where}: {token!r} is not a finite number. Fix the line.")
    return value


def read_labels(path, width, height, label_of):
    """The :class:`Instance` items of one YOLO label file of a ``width`` x ``height`` image."""
    instances = []
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    for number, line in enumerate(lines, start=1):
        tokens = line.split()
        if not tokens:
            continue
        where = f"{path}, line {number}"
        class_id = _number(tokens[0], where)
        if class_id != int(class_id) or int(class_id) not in label_of:
            raise DatasetError(
                f"{where}: class {tokens[0]!r} is not one of the class ids of data.yaml's "
                f"names ({sorted(label_of)}). Fix the class id or the names."
            )
        values = [_number(t, where) for t in tokens[1:]]
        if len(values) != 4 and (len(values) < 6 or len(values) % 2):
            raise DatasetError(
                f"{where}: {len(values)} values after the class; expected 4 ('class cx cy w "
                "h', a box) or an even number of at least 6 ('class x1 y1 x2 y2 x3 y3 ...', a "
                "polygon). Fix the line."
            )
        outside = [v for v in values if not -TOLERANCE <= v <= 1 + TOLERANCE]
        if outside:
            raise DatasetError(
                f"{where}: value(s) {outside[:4]} outside [0, 1]; YOLO coordinates are "
                "normalised (divided by the image width and height). Fix the line (pixel "
                "coordinates: divide by the image size)."
            )
        values = [min(max(v, 0.0), 1.0) for v in values]
        label = label_of[int(class_id)]
        if len(values) == 4:
            cx, cy, w, h = values
            box = (
                max(cx - w / 2, 0.0) * width,
                max(cy - h / 2, 0.0) * height,
                min(cx + w / 2, 1.0) * width,
                min(cy + h / 2, 1.0) * height,
            )
            polygons = None
        else:
            polygon = [v * (width if i % 2 == 0 else height) for i, v in enumerate(values)]
            polygons = [polygon]
            box = polygon_box(polygons)
        if box[2] <= box[0] or box[3] <= box[1]:
            raise DatasetError(
                f"{where}: the {'box' if polygons is None else 'polygon'} has no area in the "
                f"{width}x{height} image. Fix or remove the line."
            )
        instances.append(Instance(label, box, polygons))
    return instances


def convert_split(images, root, label_of, yaml_path, split):
    """``(records, images without a label file)`` of one split."""
    records, unlabelled = [], 0
    for image in images:
        if not is_image_file(image):
            raise DatasetError(f"{image}: not an image file. Fix the list of {split} images.")
        labels = label_path(image)
        if labels is None:
            raise DatasetError(
                f"{yaml_path}, field '{split}': image {image} is not in an images/ folder, so "
                "its labels/ folder is unknown. Fix: use the layout images/<split>/x.jpg + "
                "labels/<split>/x.txt."
            )
        width, height = image_size(image)
        if osp.isfile(labels):
            instances = read_labels(labels, width, height, label_of)
        else:
            instances, unlabelled = [], unlabelled + 1
        records.append(ImageRecord(osp.relpath(image, root), width, height, instances))
    if unlabelled == len(images):
        raise DatasetError(
            f"{yaml_path}, field '{split}': none of its {len(images)} images has a label file "
            f"(e.g. {label_path(images[0])} for {images[0]}). Fix: put the labels in "
            "labels/<split>/ beside images/<split>/."
        )
    return records, unlabelled


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[2:]),
    )  # fmt: skip
    parser.add_argument("data_yaml", help="the dataset's data.yaml")
    parser.add_argument("out_dir", help="folder that gets <split>.json for each split")
    parser.add_argument("--root", help="the dataset root (default: data.yaml's path)")
    parser.add_argument(
        "--splits", nargs="+", default=None, help=f"splits to convert (default: those of {SPLITS} "
        "that data.yaml names)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    data = read_data_yaml(args.data_yaml)
    names, label_of = class_names(data, args.data_yaml)
    root = dataset_root(data, args.data_yaml, args.root)
    splits = args.splits or [s for s in SPLITS if data.get(s)]
    missing = [s for s in splits if not data.get(s)]
    if not splits or missing:
        raise DatasetError(
            f"{args.data_yaml}: no {' / '.join(missing or SPLITS)} entry (the images of a "
            "split). Fix: add e.g. 'train: images/train' and 'val: images/val'."
        )
    paths = output_paths(args.out_dir, splits)
    for split in splits:
        images = split_images(data[split], root, args.data_yaml, split)
        records, unlabelled = convert_split(images, root, label_of, args.data_yaml, split)
        coco = build_coco(records, names)
        write_json(coco, paths[split])
        print(summary(paths[split], coco))
        if unlabelled:
            print(f"  {unlabelled} images without a label file (kept as background images)")
    print(f"img_prefix for the dataset config: {root}")


if __name__ == "__main__":
    sys.exit(run_tool(main))
