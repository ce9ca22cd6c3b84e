"""``CustomDataset``: the base dataset and the documented middle format.

Middle format (a ``.json`` or ``.pkl`` file holding a list, one item per image)::

    [
        {
            "filename": "a.jpg",            # relative to img_prefix
            "width": 1280, "height": 720,
            "ann": {
                "bboxes": [[x1, y1, x2, y2], ...],   # (n, 4) float, continuous pixels
                "labels": [0, 2, ...],               # (n,) int, 0-based index into classes
                "bboxes_ignore": [[...], ...],       # optional (k, 4)
                "labels_ignore": [...],              # optional (k,)
            },
        },
        ...
    ]

Every dataset keeps its annotations in an :class:`~.annotations.AnnotationTable` (numpy
arrays, no list of dicts) and hands the pipeline a v1-style results dict.
"""

import json
import os.path as osp
import pickle
import random

import numpy as np
from torch.utils.data import Dataset

from mmdet_like.datasets.annotations import AnnotationTable, RaggedArray
from mmdet_like.datasets.errors import DatasetError, ProblemLog, check_box, where
from mmdet_like.datasets.pipelines import Compose
from mmdet_like.registry import DATASETS

MAX_RETRIES = 100


@DATASETS.register()
class CustomDataset(Dataset):
    """A detection dataset: annotations in compact arrays, a pipeline, an evaluation.

    Args:
        ann_file: annotation file (joined to ``data_root`` when relative).
        pipeline: list of transform configs (or callables) for :class:`Compose`.
        classes: class names to use (tuple/list, or a text file with one name a line);
            ``None`` uses the dataset's own ``CLASSES``.
        data_root: folder that relative ``ann_file``/``img_prefix``/``proposal_file`` are in.
        img_prefix: image folder; must exist.
        proposal_file: pickle of a list (one (k, 4|5) array per image, file order).
        test_mode: keep every image and hand ``prepare_test_img`` results.
        filter_empty_gt: in training, drop images without a non-ignored box.
        min_size: in training, drop images whose shorter side is below this (``None``: keep).
        strict: raise :class:`DatasetError` for repairable box problems instead of warning.
    """

    CLASSES = None

    def __init__(
        self,
        ann_file,
        pipeline,
        classes=None,
        data_root=None,
        img_prefix="",
        proposal_file=None,
        test_mode=False,
        filter_empty_gt=True,
        min_size=32,
        strict=False,
    ):
        self.data_root = data_root
        self.ann_file = self._join(ann_file)
        self.img_prefix = self._join(img_prefix)
        self.proposal_file = self._join(proposal_file) if proposal_file else None
        self.test_mode = test_mode
        self.filter_empty_gt = filter_empty_gt
        self.min_size = min_size
        self.strict = strict
        self.CLASSES = self.get_classes(classes)
        self._custom_classes = classes is not None
        if self.img_prefix and not osp.isdir(self.img_prefix):
            raise DatasetError(
                f"{type(self).__name__}: image folder {self.img_prefix!r} does not exist "
                f"(ann_file {self.ann_file}). Fix: set img_prefix (and data_root) to the "
                "folder holding the images."
            )
        if not osp.isfile(self.ann_file):
            raise DatasetError(
                f"{self.ann_file}: annotation file not found. Fix: check ann_file and data_root."
            )
        self.table = self.load_annotations(self.ann_file)
        self.proposals = self.load_proposals(self.proposal_file) if self.proposal_file else None
        if not test_mode:
            keep = self._filter_imgs()
            if len(keep) == 0:
                raise DatasetError(
                    f"{self.ann_file}: no image left after filtering ({len(self.table)} images, "
                    f"filter_empty_gt={filter_empty_gt}, min_size={min_size}, classes="
                    f"{self.CLASSES}). Fix: check the classes and the annotations, or relax "
                    "the filters."
                )
            if len(keep) < len(self.table):
                self.table = self.table.select(keep)
                if self.proposals is not None:
                    self.proposals = self.proposals.select(keep)
        self._set_group_flag()
        self.pipeline = Compose(pipeline)

    def _join(self, path):
        if self.data_root and path is not None and not osp.isabs(path):
            return osp.join(self.data_root, path)
        return path

    @classmethod
    def get_classes(cls, classes=None):
        """``classes`` as a tuple of names (a str is read as a file, one name a line)."""
        if classes is None:
            return None if cls.CLASSES is None else tuple(cls.CLASSES)
        if isinstance(classes, str):
            if not osp.isfile(classes):
                raise DatasetError(f"classes file {classes!r} not found; give a list of names")
            with open(classes, encoding="utf-8") as f:
                return tuple(line.strip() for line in f if line.strip())
        if isinstance(classes, (tuple, list)):
            return tuple(classes)
        raise DatasetError(f"classes must be a list/tuple of names or a file, got {classes!r}")

    # ---------------------------------------------------------------- loading

    def load_annotations(self, ann_file):
        """Read the middle format (``.json``/``.pkl``) into an :class:`AnnotationTable`."""
        if not self.CLASSES:
            raise DatasetError(
                f"{ann_file}: {type(self).__name__} needs classes=[...] (the names of label "
                "0, 1, ...). Fix: add classes to the dataset config."
            )
        try:
            if ann_file.endswith(".pkl"):
                with open(ann_file, "rb") as f:
                    infos = pickle.load(f)
            else:
                with open(ann_file, encoding="utf-8") as f:
                    infos = json.load(f)
        except json.JSONDecodeError as exc:
            raise DatasetError(
                f"{ann_file}: broken JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}. "
                "Fix the file (e.g. re-export it)."
            ) from exc
        except (pickle.UnpicklingError, EOFError) as exc:
            raise DatasetError(f"{ann_file}: not a readable pickle ({exc}).") from exc
        if not isinstance(infos, list):
            raise DatasetError(f"{ann_file}: expected a list of images, got {type(infos)}")
        log = ProblemLog(ann_file, self.strict)
        images, instances = [], []
        for index, info in enumerate(infos):
            for key in ("filename", "width", "height"):
                if key not in info:
                    raise DatasetError(
                        f"{where(ann_file, index, key)}: missing. Fix: every image needs "
                        "filename, width and height."
                    )
            w, h = int(info["width"]), int(info["height"])
            images.append((index, info["filename"], w, h))
            ann = info.get("ann", {})
            insts = []
            for key_b, key_l, ignore in (
                ("bboxes", "labels", False),
                ("bboxes_ignore", "labels_ignore", True),
            ):
                bboxes = np.asarray(ann.get(key_b, np.zeros((0, 4))), dtype=np.float64)
                labels = np.asarray(ann.get(key_l, np.zeros(0)), dtype=np.int64).reshape(-1)
                if bboxes.size == 0:
                    bboxes = bboxes.reshape(0, 4)
                if bboxes.ndim != 2 or bboxes.shape[1] != 4 or len(bboxes) != len(labels):
                    raise DatasetError(
                        f"{where(ann_file, index, 'ann.' + key_b)}: expected (n, 4) boxes and "
                        f"n labels, got {bboxes.shape} and {labels.shape}."
                    )
                for box, label in zip(bboxes, labels):
                    if not 0 <= label < len(self.CLASSES):
                        raise DatasetError(
                            f"{where(ann_file, index, 'ann.' + key_l)}: label {label} is not in "
                            f"[0, {len(self.CLASSES)}) for classes {self.CLASSES}."
                        )
                    box = check_box(box, w, h, where(ann_file, index, "ann." + key_b), log)
                    if box is not None:
                        insts.append((box, label, ignore))
            instances.append(insts)
        log.flush()
        return AnnotationTable.build(images, instances)

    def load_proposals(self, proposal_file):
        """A pickle holding one (k, 4 or 5) array per image -> :class:`RaggedArray`."""
        with open(proposal_file, "rb") as f:
            proposals = pickle.load(f)
        if len(proposals) != len(self.table):
            raise DatasetError(
                f"{proposal_file}: {len(proposals)} proposal arrays for {len(self.table)} "
                f"images in {self.ann_file}. Fix: make one array per image, in file order."
            )
        cols = proposals[0].shape[1] if len(proposals) else 4
        return RaggedArray.from_list(proposals, np.float32, (cols,))

    def _filter_imgs(self):
        """Indices of the images kept for training."""
        keep = np.ones(len(self.table), dtype=bool)
        if self.min_size is not None:
            keep &= np.minimum(self.table.widths, self.table.heights) >= self.min_size
        if self.filter_empty_gt:
            ignore = self.table.ignore
            owner = np.repeat(np.arange(len(self.table)), ignore.lengths())
            counts = np.bincount(owner[~ignore.data], minlength=len(self.table))
            keep &= counts > 0
        return np.flatnonzero(keep)

    def _set_group_flag(self):
        """``self.flag``: (n,) uint8, 1 where width / height > 1 (for aspect-ratio grouping)."""
        self.flag = (self.table.widths > self.table.heights).astype(np.uint8)

    # ---------------------------------------------------------------- access

    def __len__(self):
        return len(self.table)

    @property
    def img_ids(self):
        return self.table.img_ids

    def get_img_info(self, idx):
        """``dict(id, filename, width, height)`` of image ``idx``."""
        t = self.table
        return dict(
            id=int(t.img_ids[idx]),
            filename=t.filenames.get_str(idx),
            width=int(t.widths[idx]),
            height=int(t.heights[idx]),
        )

    def get_ann_info(self, idx):
        """Annotations of image ``idx``.

        Returns:
            dict with ``bboxes`` float32 (n, 4), ``labels`` int64 (n,), ``bboxes_ignore``
            float32 (k, 4), ``labels_ignore`` int64 (k,) and ``masks`` (a list of n polygon
            lists / RLE dicts, only for datasets with masks).
        """
        t = self.table
        bboxes, labels, ignore = t.bboxes[idx], t.labels[idx], t.ignore[idx]
        ann = dict(
            bboxes=bboxes[~ignore],
            labels=labels[~ignore],
            bboxes_ignore=bboxes[ignore],
            labels_ignore=labels[ignore],
        )
        if t.masks is not None:
            masks = t.instance_masks(idx)
            ann["masks"] = [m for m, ign in zip(masks, ignore) if not ign]
        return ann

    def get_cat_ids(self, idx):
        """Sorted unique labels of the non-ignored boxes of image ``idx``."""
        return np.unique(self.table.labels[idx][~self.table.ignore[idx]]).astype(np.int64)

    def pre_pipeline(self, results):
        results["img_prefix"] = self.img_prefix
        results["proposal_file"] = self.proposal_file
        results["bbox_fields"] = []
        results["mask_fields"] = []

    def prepare_train_img(self, idx):
        results = dict(img_info=self.get_img_info(idx), ann_info=self.get_ann_info(idx))
        if self.proposals is not None:
            results["proposals"] = self.proposals[idx]
        self.pre_pipeline(results)
        return self.pipeline(results)

    def prepare_test_img(self, idx):
        results = dict(img_info=self.get_img_info(idx))
        if self.proposals is not None:
            results["proposals"] = self.proposals[idx]
        self.pre_pipeline(results)
        return self.pipeline(results)

    def _rand_another(self, idx):
        pool = np.flatnonzero(self.flag == self.flag[idx])
        return int(pool[random.randrange(len(pool))])

    def __getitem__(self, idx):
        if self.test_mode:
            return self.prepare_test_img(idx)
        for _ in range(MAX_RETRIES):
            data = self.prepare_train_img(idx)
            if data is not None:
                return data
            idx = self._rand_another(idx)
        raise DatasetError(
            f"{self.ann_file}: the pipeline dropped {MAX_RETRIES} images in a row (e.g. a crop "
            "that leaves no box). Fix: check the pipeline's crop settings."
        )

    # ---------------------------------------------------------------- evaluation

    def evaluate(
        self,
        results,
        metric="mAP",
        iou_thrs=(0.5,),
        proposal_nums=(100, 300, 1000),
        ap_mode="area",
        logger=None,
    ):
        """VOC-style ``mAP`` (per-class table) or proposal ``recall``.

        Args:
            results: per image, a list over classes of (n, 5) float32 arrays ``[x1, y1, x2,
                y2, score]`` (``mAP``) or an (n, 4|5) array of proposals (``recall``).
            ap_mode: ``"area"`` or ``"11points"``.

        Returns:
            dict: ``mAP`` and ``AP50``, ``AP75``... per IoU threshold; or ``AR@N`` (mean
            over ``iou_thrs``) and ``recall@N@IoU``.
        """
        from mmdet_like.evaluation.recall import eval_recalls, print_recall_summary
        from mmdet_like.evaluation.voc_metric import evaluate_voc

        if len(results) != len(self):
            raise ValueError(f"evaluate: {len(results)} results for {len(self)} images")
        annotations = [self.get_ann_info(i) for i in range(len(self))]
        metrics = [metric] if isinstance(metric, str) else list(metric)
        out = {}
        for m in metrics:
            if m == "mAP":
                out.update(
                    evaluate_voc(results, annotations, self.CLASSES, iou_thrs, ap_mode, logger)
                )
            elif m == "recall":
                gts = [a["bboxes"] for a in annotations]
                recalls = eval_recalls(gts, results, proposal_nums, iou_thrs)
                print_recall_summary(recalls, proposal_nums, iou_thrs, logger=logger)
                for i, num in enumerate(proposal_nums):
                    out[f"AR@{num}"] = float(recalls[i].mean())
                    for j, thr in enumerate(iou_thrs):
                        out[f"recall@{num}@{thr}"] = float(recalls[i, j])
            else:
                raise KeyError(
                    f"{type(self).__name__}.evaluate: metric {m!r} is not 'mAP' or 'recall'"
                )
        return out
