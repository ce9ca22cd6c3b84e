"""``CocoDataset``: COCO json (boxes, polygon and RLE masks, crowd regions as ignore)."""

import difflib
import json

import numpy as np
import pycocotools.mask as mask_utils

from mmdet_like.datasets.annotations import AnnotationTable
from mmdet_like.datasets.custom import CustomDataset
from mmdet_like.datasets.errors import DatasetError, ProblemLog, check_box, where
from mmdet_like.registry import DATASETS


def read_json(path):
    """Load a json file; a broken file raises :class:`DatasetError` with line and column."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        raise DatasetError(
            f"{path}: broken JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}. "
            "Fix the file (e.g. re-export it)."
        ) from exc


def compact_segmentation(segm, height, width):
    """A COCO ``segmentation`` as stored: polygons -> list of float32 arrays; RLE (either
    form) -> compressed RLE dict with ``bytes`` counts."""
    if isinstance(segm, list):
        return [np.asarray(p, dtype=np.float32) for p in segm]
    if isinstance(segm.get("counts"), list):
        segm = mask_utils.frPyObjects(segm, *segm["size"])
    counts = segm["counts"]
    return {
        "size": list(segm["size"]),
        "counts": counts.encode() if isinstance(counts, str) else counts,
    }


@DATASETS.register()
class CocoDataset(CustomDataset):
    """A COCO-format dataset.

    ``classes=None`` uses every category of the file, ordered by id; ``classes=[names]``
    trains on that subset, labels in the given order. Category ids map to contiguous labels
    (``cat2label``) and back (``label2cat``). Crowd annotations become ignore regions.
    """

    CLASSES = None

    def load_annotations(self, ann_file):
        data = read_json(ann_file)
        if not isinstance(data, dict):
            raise DatasetError(f"{ann_file}: expected a COCO json object, got {type(data)}")
        for key in ("images", "annotations", "categories"):
            if key not in data:
                raise DatasetError(
                    f"{where(ann_file, field=key)}: missing. Fix: a COCO file needs 'images', "
                    "'annotations' and 'categories'."
                )
        names = {}
        for cat in data["categories"]:
            if "id" not in cat or "name" not in cat:
                raise DatasetError(
                    f"{where(ann_file, field='categories')}: {cat} needs id and name"
                )
            names[int(cat["id"])] = str(cat["name"])
        self._select_classes(names, ann_file)
        self.cat2label = {cat_id: i for i, cat_id in enumerate(self.cat_ids)}

        images, index_of = [], {}
        for img in data["images"]:
            img_id = img.get("id")
            for key in ("id", "file_name", "width", "height"):
                if key not in img:
                    raise DatasetError(
                        f"{where(ann_file, img_id, key)}: missing in 'images'. Fix: every image "
                        "needs id, file_name, width and height."
                    )
            index_of[img_id] = len(images)
            images.append((int(img_id), img["file_name"], int(img["width"]), int(img["height"])))

        log = ProblemLog(ann_file, self.strict)
        instances = [[] for _ in images]
        with_masks = False
        for ann in data["annotations"]:
            img_id, ann_id = ann.get("image_id"), ann.get("id")
            if img_id not in index_of:
                raise DatasetError(
                    f"{where(ann_file, img_id, 'image_id', ann_id)}: no image with this id in "
                    "'images'. Fix: add the image or remove the annotation."
                )
            cat_id = ann.get("category_id")
            if cat_id not in names:
                raise DatasetError(
                    f"{where(ann_file, img_id, 'category_id', ann_id)}: category id {cat_id} is "
                    f"not in 'categories' (ids {sorted(names)}). Fix the id or add the category."
                )
            if cat_id not in self.cat2label:
                continue
            i = index_of[img_id]
            _, _, w, h = images[i]
            bbox = ann.get("bbox")
            if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
                raise DatasetError(
                    f"{where(ann_file, img_id, 'bbox', ann_id)}: expected [x, y, w, h], got "
                    f"{bbox!r}."
                )
            x, y, bw, bh = (float(v) for v in bbox)
            box = check_box(
                [x, y, x + bw, y + bh], w, h, where(ann_file, img_id, "bbox", ann_id), log
            )
            if box is None:
                continue
            segm = ann.get("segmentation")
            if segm:
                with_masks = True
                segm = compact_segmentation(segm, h, w)
            else:
                segm = []
            instances[i].append((box, self.cat2label[cat_id], bool(ann.get("iscrowd", 0)), segm))
        log.flush()
        del data
        return AnnotationTable.build(images, instances, with_masks=with_masks)

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

    def evaluate(
        self,
        results,
        metric="bbox",
        logger=None,
        jsonfile_prefix=None,
        classwise=False,
        proposal_nums=(100, 300, 1000),
        iou_thrs=None,
        backend="pycocotools",
    ):
        """COCO evaluation; see :func:`mmdet_like.evaluation.coco_metric.evaluate_coco`."""
        from mmdet_like.evaluation.coco_metric import evaluate_coco

        if len(results) != len(self):
            raise ValueError(f"evaluate: {len(results)} results for {len(self)} images")
        gt_bboxes = None
        metrics = [metric] if isinstance(metric, str) else list(metric)
        if "proposal_fast" in metrics:
            gt_bboxes = [self.get_ann_info(i)["bboxes"] for i in range(len(self))]
        return evaluate_coco(
            self.ann_file,
            results,
            img_ids=self.img_ids,
            cat_ids=self.cat_ids,
            metric=metrics,
            class_names=self.CLASSES,
            classwise=classwise,
            proposal_nums=proposal_nums,
            iou_thrs=iou_thrs,
            jsonfile_prefix=jsonfile_prefix,
            backend=backend,
            gt_bboxes=gt_bboxes,
            logger=logger,
        )
