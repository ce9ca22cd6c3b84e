"""``CocoDataset``: COCO json (boxes, polygon and RLE masks, crowd regions as ignore)."""

import difflib

import numpy as np

from mmdet_like.datasets.annotations import AnnotationTable
from mmdet_like.datasets.custom import CustomDataset
from mmdet_like.datasets.errors import DatasetError, ProblemLog, check_box, where
from mmdet_like.datasets.validate import (
    coco_keypoints,
    coco_segmentation,
    describe,
    is_int,
    read_json_file,
    require_dict,
    require_int,
    require_list,
    require_number,
    require_size,
    require_str,
)
from mmdet_like.registry import DATASETS


def read_json(path):
    """Load a json file; a broken file raises :class:`DatasetError` with line and column."""
    return read_json_file(path)


def _category_keypoints(cat, location):
    """``(names, skeleton)`` of a category's ``keypoints`` (names) and ``skeleton`` (1-based
    pairs, converted to 0-based), checked."""
    names = require_list(cat["keypoints"], f"{location}, field 'keypoints'", "keypoints")
    names = [require_str(n, f"{location}, field 'keypoints'", "a keypoint name") for n in names]
    if len(set(names)) != len(names):
        raise DatasetError(
            f"{location}, field 'keypoints': the names {names} repeat. Fix: one name per keypoint."
        )
    skeleton = []
    for pair in require_list(cat.get("skeleton") or [], f"{location}, field 'skeleton'", "it"):
        if (
            not isinstance(pair, (list, tuple)) or len(pair) != 2
            or not all(is_int(i) and 1 <= int(i) <= len(names) for i in pair)
            or int(pair[0]) == int(pair[1])
        ):  # fmt: skip
            raise DatasetError(
                f"{location}, field 'skeleton': {describe(pair)} is not a pair of two different "
                f"keypoint numbers in 1..{len(names)} (1-based). Fix the pair."
            )
        skeleton.append((int(pair[0]) - 1, int(pair[1]) - 1))
    return names, skeleton


@DATASETS.register()
class CocoDataset(CustomDataset):
    """A COCO-format dataset.

    ``classes=None`` uses every category of the file, ordered by id; ``classes=[names]``
    trains on that subset, labels in the given order. Category ids map to contiguous labels
    (``cat2label``) and back (``label2cat``). Crowd annotations become ignore regions.

    Keypoints (COCO's person_keypoints files): a category with a ``keypoints`` list of names
    (and a ``skeleton`` of 1-based index pairs) gives the dataset its keypoint set
    (``keypoint_meta``; the selected categories that have keypoints must share one set), and
    each of its annotations a (K, 3) ``keypoints`` array (``x, y, visibility``; unlabelled
    where the annotation has none). The config's ``keypoint_meta`` adds the flip pairs
    (default: the ``left`` / ``right`` names) and OKS sigmas (COCO person's are built in).
    """

    DEFAULT_METRIC = "bbox"

    CLASSES = None

    def load_annotations(self, ann_file):
        """Read and check a COCO json file into an :class:`AnnotationTable`.

        Every record is checked before it is used; a wrong type, a missing key, a duplicate
        id, an unknown image or category id or a malformed mask raises
        :class:`DatasetError` naming the file, the image / annotation id (or the record's
        index when it has no valid id) and the field. Boxes and polygons that training can
        go on without are repaired or dropped with one :class:`DatasetWarning`.
        """
        data = read_json(ann_file)
        if not isinstance(data, dict):
            raise DatasetError(
                f"{ann_file}: expected a COCO json object {{'images': [...], 'annotations': "
                f"[...], 'categories': [...]}}, got {describe(data)}. Fix: point ann_file at "
                "a COCO annotation file."
            )
        for key in ("images", "annotations", "categories"):
            if key not in data:
                raise DatasetError(
                    f"{where(ann_file, field=key)}: missing. Fix: a COCO file needs 'images', "
                    "'annotations' and 'categories'."
                )
            require_list(data[key], where(ann_file, field=key), "it")
        names, category_keypoints = self._read_categories(data["categories"], ann_file)
        self._select_classes(names, ann_file)
        self.cat2label = {cat_id: i for i, cat_id in enumerate(self.cat_ids)}
        self.keypoint_meta = self._keypoint_meta_of(category_keypoints, ann_file)
        num_keypoints = None if self.keypoint_meta is None else self.keypoint_meta.num_keypoints
        images, index_of = self._read_images(data["images"], ann_file)

        log = ProblemLog(ann_file, self.strict)
        instances = [[] for _ in images]
        with_masks = False
        ann_ids = {}
        for k, ann in enumerate(data["annotations"]):
            require_dict(ann, f"{ann_file}, annotations[{k}]", "an annotation")
            ann_id = ann.get("id")
            if ann_id is not None:
                ann_id = require_int(ann_id, f"{ann_file}, annotations[{k}], field 'id'", "id")
                if ann_id in ann_ids:
                    raise DatasetError(
                        f"{where(ann_file, None, 'id', ann_id)}: annotation id "
                        f"{ann_id} is used twice (annotations[{ann_ids[ann_id]}] and "
                        f"annotations[{k}]); COCO evaluation would mix them up. Fix: give "
                        "every annotation a unique id."
                    )
                ann_ids[ann_id] = k
            suffix = "" if ann_id is not None else f" (annotations[{k}], no id)"

            def loc(field, img_id=None, ann_id=ann_id, suffix=suffix):
                return where(ann_file, img_id, field, ann_id) + suffix

            for key in ("image_id", "category_id", "bbox"):
                if key not in ann:
                    img_id = ann.get("image_id") if key != "image_id" else None
                    raise DatasetError(
                        f"{loc(key, img_id if is_int(img_id) else None)}: "
                        "missing. Fix: every annotation needs image_id, category_id and bbox."
                    )
            img_id = require_int(ann["image_id"], loc("image_id"), "image_id")
            if img_id not in index_of:
                raise DatasetError(
                    f"{loc('image_id', img_id)}: no image with this id in "
                    "'images'. Fix: add the image or remove the annotation."
                )
            cat_id = require_int(ann["category_id"], loc("category_id", img_id), "category_id")
            if cat_id not in names:
                raise DatasetError(
                    f"{loc('category_id', img_id)}: category id {cat_id} is "
                    f"not in 'categories' (ids {sorted(names)}). Fix the id or add the category."
                )
            iscrowd = ann.get("iscrowd", 0)
            if iscrowd not in (0, 1):  # also rejects "1", [1], None, NaN
                raise DatasetError(
                    f"{loc('iscrowd', img_id)}: must be 0 or 1, got {describe(iscrowd)}. "
                    "Fix the value."
                )
            if cat_id not in self.cat2label:
                continue
            i = index_of[img_id]
            _, _, w, h = images[i]
            bbox = ann["bbox"]
            if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
                raise DatasetError(
                    f"{loc('bbox', img_id)}: expected [x, y, w, h], got {describe(bbox)}. "
                    "Fix the box."
                )
            x, y, bw, bh = (require_number(v, loc("bbox", img_id), "a box value") for v in bbox)
            box = check_box([x, y, x + bw, y + bh], w, h, loc("bbox", img_id), log)
            if box is None:
                continue
            segm = coco_segmentation(
                ann.get("segmentation"), h, w, loc("segmentation", img_id), log
            )
            if segm is None:
                continue
            with_masks = with_masks or bool(segm)
            instance = (box, self.cat2label[cat_id], bool(iscrowd), segm)
            if num_keypoints is not None:
                instance += (self._read_keypoints(ann, cat_id, category_keypoints, loc, img_id),)
            instances[i].append(instance)
        log.flush()
        del data
        return AnnotationTable.build(
            images, instances, with_masks=with_masks, num_keypoints=num_keypoints
        )

    def _read_keypoints(self, ann, cat_id, category_keypoints, loc, img_id):
        """The (K, 3) keypoints of ``ann`` (all unlabelled for a category without keypoints,
        or an annotation without them)."""
        num_keypoints = self.keypoint_meta.num_keypoints
        if cat_id not in category_keypoints or ann.get("keypoints") is None:
            if cat_id not in category_keypoints and ann.get("keypoints"):
                raise DatasetError(
                    f"{loc('keypoints', img_id)}: the annotation has keypoints but its "
                    f"category {cat_id} names none. Fix: add the 'keypoints' names to the "
                    "category, or remove the annotation's keypoints."
                )
            return np.zeros((num_keypoints, 3), np.float32)
        return coco_keypoints(
            ann["keypoints"], num_keypoints, ann.get("num_keypoints"),
            lambda field: loc(field, img_id),
        )  # fmt: skip

    def _keypoint_meta_of(self, category_keypoints, ann_file):
        """The keypoint set of the selected categories (``None`` without keypoints), merged
        with the config's ``keypoint_meta``."""
        selected = {c: category_keypoints[c] for c in self.cat_ids if c in category_keypoints}
        if not selected:
            if self._keypoint_cfg:
                raise DatasetError(
                    f"{where(ann_file, field='categories')}: the config gives keypoint_meta, "
                    "but no selected category lists 'keypoints' names. Fix: use a keypoint "
                    "annotation file (e.g. person_keypoints_*.json) or drop keypoint_meta."
                )
            return None
        sets = {(tuple(k), tuple(map(tuple, sk))) for k, sk in selected.values()}
        if len(sets) > 1:
            raise DatasetError(
                f"{where(ann_file, field='categories')}: categories {sorted(selected)} list "
                "different keypoints; one dataset has one keypoint set. Fix: give them the "
                "same 'keypoints' and 'skeleton', or select classes that share one."
            )
        names, skeleton = sets.pop()
        cfg = dict(self._keypoint_cfg)
        if "names" in cfg and tuple(cfg["names"]) != names:
            raise DatasetError(
                f"{where(ann_file, field='categories')}: the config's keypoint_meta.names "
                f"{list(cfg['names'])} differ from the file's {list(names)}. Fix: drop names "
                "from keypoint_meta (the file gives them) or make them equal."
            )
        cfg["names"] = names
        cfg.setdefault("skeleton", skeleton)
        return self._build_keypoint_meta(cfg)

    @staticmethod
    def _read_categories(categories, ann_file):
        """``{category id: name}`` from the checked ``categories`` list, and ``{category id:
        (keypoint names, 0-based skeleton pairs)}`` of the categories with keypoints."""
        names, keypoints = {}, {}
        for k, cat in enumerate(categories):
            location = f"{where(ann_file, field='categories')}, categories[{k}]"
            require_dict(cat, location, "a category")
            for key in ("id", "name"):
                if key not in cat:
                    raise DatasetError(
                        f"{location}: {describe(cat)} has no {key!r}. Fix: every category "
                        "needs id and name."
                    )
            cat_id = require_int(cat["id"], location, "the category id")
            name = require_str(cat["name"], location, "the category name")
            if cat_id in names:
                raise DatasetError(
                    f"{location}: category id {cat_id} is used twice ({names[cat_id]!r} and "
                    f"{name!r}). Fix: give every category a unique id."
                )
            names[cat_id] = name
            if cat.get("keypoints"):
                keypoints[cat_id] = _category_keypoints(cat, location)
        if not names:
            raise DatasetError(
                f"{where(ann_file, field='categories')}: the list is empty. Fix: list the "
                "categories (id and name)."
            )
        return names, keypoints

    @staticmethod
    def _read_images(records, ann_file):
        """``[(id, file_name, width, height)]`` and ``{id: index}`` from ``images``."""
        images, index_of = [], {}
        for k, img in enumerate(records):
            require_dict(img, f"{ann_file}, images[{k}]", "an image")
            img_id = img.get("id")
            suffix = "" if is_int(img_id) else f" (images[{k}])"
            for key in ("id", "file_name", "width", "height"):
                if key not in img:
                    raise DatasetError(
                        f"{where(ann_file, img_id, key)}{suffix}: missing in 'images'. Fix: every "
                        "image needs id, file_name, width and height."
                    )
            img_id = require_int(img_id, where(ann_file, None, "id") + suffix, "the image id")
            file_name = require_str(img["file_name"], where(ann_file, img_id, "file_name"))
            width = require_size(img["width"], where(ann_file, img_id, "width"))
            height = require_size(img["height"], where(ann_file, img_id, "height"))
            if img_id in index_of:
                first = images[index_of[img_id]][1]
                raise DatasetError(
                    f"{where(ann_file, img_id, 'id')}: image id {img_id} is used twice "
                    f"(images[{index_of[img_id]}] {first!r} and images[{k}] {file_name!r}). "
                    "Fix: give every image a unique id."
                )
            index_of[img_id] = len(images)
            images.append((img_id, file_name, width, height))
        if not images:
            raise DatasetError(
                f"{where(ann_file, field='images')}: the list is empty. Fix: add the images "
                "(a dataset without images can be neither trained nor evaluated)."
            )
        return images, index_of

    def _select_classes(self, names, ann_file):
        """Set ``CLASSES``, ``cat_ids`` and ``label2cat`` from the file and ``classes=``."""
        if not self._custom_classes:
            self.cat_ids = sorted(names)
            self.CLASSES = tuple(names[c] for c in self.cat_ids)
        else:
            id_of = {}
            for cat_id in sorted(names):
                id_of.setdefault(names[cat_id], cat_id)
            missing = [c for c in self.CLASSES if c not in id_of]
            if missing:
                hints = []
                for name in missing:
                    close = difflib.get_close_matches(name, id_of, n=1, cutoff=0.6)
                    hints.append(repr(name) + (f" (did you mean {close[0]!r}?)" if close else ""))
                raise DatasetError(
                    f"{where(ann_file, field='categories')}: class(es) {', '.join(hints)} from "
                    f"the config's classes are not in the file. Its categories: "
                    f"{sorted(id_of)}. Fix the classes list."
                )
            self.cat_ids = [id_of[c] for c in self.CLASSES]
        self.label2cat = np.asarray(self.cat_ids, dtype=np.int64)

    # ---------------------------------------------------------------- evaluation

    def format_results(self, results, jsonfile_prefix=None):
        """Write ``results`` as COCO result json files.

        Returns:
            (dict of metric -> file path, TemporaryDirectory or None): keep the second alive
            while the files are used.
        """
        from mmdet_like.evaluation.coco_metric import format_results

        return format_results(results, self.img_ids, self.cat_ids, jsonfile_prefix)

    def ground_truth(self):
        """:meth:`CustomDataset.ground_truth` plus the COCO annotation file and the
        category id of each label."""
        gt = super().ground_truth()
        gt.cat_ids = [int(c) for c in self.cat_ids]
        gt.coco = self.ann_file
        return gt

    def evaluate(
        self,
        results,
        metric=None,
        logger=None,
        jsonfile_prefix=None,
        classwise=False,
        proposal_nums=(100, 300, 1000),
        iou_thrs=None,
        backend="pycocotools",
    ):
        """COCO evaluation (:class:`mmdet_like.evaluation.CocoMetric`, see
        :func:`mmdet_like.evaluation.coco_metric.evaluate_coco`) on :meth:`ground_truth`."""
        from mmdet_like.evaluation import CocoMetric

        metric = CocoMetric(
            metric or self.DEFAULT_METRIC, classwise=classwise, proposal_nums=proposal_nums,
            iou_thrs=iou_thrs, jsonfile_prefix=jsonfile_prefix, backend=backend,
        )  # fmt: skip
        return metric(results, self.ground_truth(), logger)
