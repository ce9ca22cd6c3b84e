"""``VOCDataset``: Pascal VOC xml annotations; ``difficult`` objects become ignore boxes.

``ann_file`` is an image-set list (``ImageSets/Main/train.txt``, one image id a line) and
``img_prefix`` the VOC folder holding ``Annotations/<id>.xml`` and the images in
``JPEGImages/``: the file the xml's ``<filename>`` names (any extension); where that file
is missing, the one image of the same name stem (with a warning); for an xml without
``<filename>``, the image ``<id>.*`` (``<id>.jpg`` when there is none).
VOC boxes are 1-based inclusive pixel indices; they become continuous boxes
``[xmin - 1, ymin - 1, xmax, ymax]``.
"""

import os.path as osp
import warnings
import xml.etree.ElementTree as ET

import cv2

from mmdet_like.datasets.annotations import AnnotationTable
from mmdet_like.datasets.custom import CustomDataset
from mmdet_like.datasets.errors import DatasetError, DatasetWarning, ProblemLog, check_box, where
from mmdet_like.datasets.image_files import ImageFolder
from mmdet_like.datasets.validate import require_size
from mmdet_like.registry import DATASETS

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip


def parse_voc_xml(xml_path):
    """One VOC xml -> ``(filename, width, height, objects)``; ``objects`` is a list of
    ``(name, [xmin, ymin, xmax, ymax] as in the file, difficult)``. Width/height are ``None``
    when the file has no ``size``; ``filename`` is ``None`` when it has no ``<filename>``."""
    try:
        root = ET.parse(xml_path).getroot()
    except ET.ParseError as exc:
        raise DatasetError(f"{xml_path}: broken xml ({exc}). Fix or re-export the file.") from exc
    except FileNotFoundError as exc:
        raise DatasetError(
            f"{xml_path}: annotation xml not found. Fix: check img_prefix (the VOC folder with "
            "Annotations/) and the image-set list."
        ) from exc
    if root.tag != "annotation":
        raise DatasetError(
            f"{xml_path}: not a Pascal VOC annotation (its root element is <{root.tag}>, not "
            "<annotation>). Fix: export the annotations in Pascal VOC format (one xml an image)."
        )
    size = root.find("size")
    width = height = None
    if size is not None and size.find("width") is not None:
        try:
            width = require_size(float(size.findtext("width")), f"{xml_path}, field 'size.width'")
            height = require_size(
                float(size.findtext("height")), f"{xml_path}, field 'size.height'"
            )
        except (TypeError, ValueError) as exc:
            if isinstance(exc, DatasetError):
                raise
            raise DatasetError(
                f"{where(xml_path, None, 'size')}: <width> and <height> must be positive whole "
                f"numbers, got {size.findtext('width')!r} and {size.findtext('height')!r}. Fix "
                "the xml (or remove <size> to read it from the image)."
            ) from exc
    filename = (root.findtext("filename") or "").strip() or None
    objects = []
    for obj in root.findall("object"):
        name = (obj.findtext("name") or "").strip()
        if not name:
            raise DatasetError(
                f"{where(xml_path, None, 'name')}: object {len(objects)} has no <name> (its "
                "class). Fix: name its class in the xml."
            )
        try:
            difficult = int(float(obj.findtext("difficult") or 0)) == 1
        except (TypeError, ValueError) as exc:
            raise DatasetError(
                f"{where(xml_path, None, 'difficult')}: object {name!r} has <difficult>"
                f"{obj.findtext('difficult')}</difficult>; it must be 0 or 1. Fix the xml."
            ) from exc
        bnd = obj.find("bndbox")
        if bnd is None:
            raise DatasetError(f"{where(xml_path, None, 'bndbox')}: object {name!r} has no box")
        try:
            box = [float(bnd.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")]
        except (TypeError, ValueError) as exc:
            raise DatasetError(
                f"{where(xml_path, None, 'bndbox')}: object {name!r} needs numeric xmin, ymin, "
                "xmax, ymax"
            ) from exc
        objects.append((name, box, difficult))
    return filename, width, height, objects


@DATASETS.register()
class VOCDataset(CustomDataset):
    """Pascal VOC (``classes=`` for other VOC-format sets, e.g. BCCD's RBC/WBC/Platelets).

    Objects whose name is not in ``classes`` are skipped.
    """

    CLASSES = VOC_CLASSES

    def load_annotations(self, ann_file):
        try:
            with open(ann_file, encoding="utf-8") as f:
                names = [line.strip().split()[0] for line in f if line.strip()]
        except UnicodeDecodeError as exc:
            raise DatasetError(
                f"{ann_file}: not a text image-set list ({exc}). Fix: ann_file is "
                "ImageSets/Main/<split>.txt, one image name a line."
            ) from exc
        if not names:
            raise DatasetError(
                f"{ann_file}: the image-set list is empty. Fix: list the images of the split, "
                "one name a line."
            )
        label_of = {name: i for i, name in enumerate(self.CLASSES)}
        log = ProblemLog(ann_file, self.strict)
        images, instances = [], []
        seen = set()
        image_folder = ImageFolder(osp.join(self.img_prefix, "JPEGImages"))
        for index, img_name in enumerate(names):
            xml_path = osp.join(self.img_prefix, "Annotations", f"{img_name}.xml")
            named, width, height, objects = parse_voc_xml(xml_path)
            filename = self._image_file(image_folder, named, img_name, xml_path, log)
            if width is None:
                # IMREAD_COLOR applies the EXIF orientation, as LoadImageFromFile does.
                img = cv2.imread(osp.join(self.img_prefix, filename), cv2.IMREAD_COLOR)
                if img is None:
                    raise DatasetError(
                        f"{where(xml_path, img_name, 'size')}: no size in the xml and image "
                        f"{filename} is unreadable. Fix: add <size> or the image."
                    )
                height, width = img.shape[:2]
            images.append((index, filename, width, height))
            insts = []
            for name, box, difficult in objects:
                if name not in label_of:
                    continue
                seen.add(name)
                x1, y1, x2, y2 = box
                box = check_box(
                    [x1 - 1, y1 - 1, x2, y2],
                    width,
                    height,
                    where(xml_path, img_name, "bndbox"),
                    log,
                )
                if box is not None:
                    insts.append((box, label_of[name], difficult))
            instances.append(insts)
        log.flush()
        unseen = [c for c in self.CLASSES if c not in seen]
        if unseen and len(unseen) < len(self.CLASSES):
            warnings.warn(
                f"{ann_file}: class(es) {unseen} from classes have no object in this split.",
                DatasetWarning,
                stacklevel=2,
            )
        elif unseen:
            raise DatasetError(
                f"{ann_file}: none of the classes {self.CLASSES} occurs in the xml files. Fix: "
                "set classes= to the object names used in Annotations/*.xml."
            )
        return AnnotationTable.build(images, instances)

    @staticmethod
    def _image_file(image_folder, named, img_name, xml_path, log):
        """``JPEGImages/<file>``: the xml's ``<filename>`` where that file exists, else the
        one image of the same name stem (reported to ``log``), else ``<filename>`` (or
        ``<id>.jpg`` without one), which loading then reports as missing."""
        found, stand_in = image_folder.find(named, img_name, xml_path)
        if found is None:
            found = named or f"{img_name}.jpg"
        elif stand_in:
            log.add(
                f"{where(xml_path, img_name, 'filename')}: names image {named or img_name!r}, "
                f"which is not in JPEGImages/; using {found!r} (the same name stem). Fix: "
                "correct <filename> in the xml."
            )
        return osp.join("JPEGImages", found)
