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

import logging
import os.path as osp
import random
import warnings

import numpy as np
import torch.distributed as torch_dist
from torch.utils.data import Dataset

from mmdet_like.datasets.annotations import AnnotationTable, RaggedArray
from mmdet_like.datasets.errors import (
    DatasetError,
    DatasetWarning,
    ImageReadError,
    ProblemLog,
    check_box,
    where,
)
from mmdet_like.datasets.image_check import check_image_files, problems_report
from mmdet_like.datasets.pipelines import Compose, LoadImageFromFile
from mmdet_like.datasets.pipelines.loading import LoadAnnotations
from mmdet_like.datasets.validate import (
    describe,
    numeric_array,
    read_json_file,
    require_dict,
    require_size,
    require_str,
    safe_pickle_load,
)
from mmdet_like.registry import DATASETS

MAX_RETRIES = 100
CHECK_IMAGES_SHOWN = 10  # files named in the error of check_images=True


def _transforms(pipeline):
    """Every transform of ``pipeline`` (a :class:`Compose`), those nested in wrappers with a
    ``transforms`` list (e.g. ``MultiScaleFlipAug``) included."""
    inner = getattr(pipeline, "transforms", None)
    if isinstance(inner, Compose):
        inner = inner.transforms
    for t in inner if isinstance(inner, (list, tuple)) else ():
        yield t
        yield from _transforms(t)


def _warn_skipped(exc):
    """Warn that the image of ``exc`` (an :class:`ImageReadError`) is skipped: through the
    ``mmdet_like`` logger, or as a :class:`DatasetWarning` where that logger drops warnings
    (ranks > 0 only log errors), so that every rank names its bad files."""
    message = (
        f"skipping image {exc.filename} ({exc.reason or 'cannot read it'}; "
        "skip_bad_images=True): replaced by another image. Fix or remove the file."
    )
    logger = logging.getLogger("mmdet_like")
    if logger.isEnabledFor(logging.WARNING):
        logger.warning(message)
    else:
        warnings.warn(message, DatasetWarning, stacklevel=3)


# where the paths come from (docs/config.md, "data_root"): a child config that sets only
# data_root moves the paths it inherits (mmdet_like.engine.config.reroot_inherited_data)
DATA_ROOT_HINT = (
    " (relative paths are joined to the dataset's data_root; a config that inherits its "
    "paths from a base's data_root can set data_root alone: the paths follow it)"
)


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
        skip_bad_images: in training, an image that cannot be read (missing, corrupt) is
            replaced by another one instead of raising :class:`ImageReadError`; a warning
            naming the file goes to the ``mmdet_like`` logger, and every sample gets a
            ``skipped_images`` count (bad images replaced to make it) that the runner sums
            into the training log.
        keypoint_meta: the keypoint set of a dataset with keypoints, as a dict of
            :class:`~mmdet_like.structures.keypoints.KeypointMeta`'s arguments: ``names``,
            ``skeleton`` (0-based index pairs), ``flip_pairs`` (swapped by a horizontal flip;
            default: the ``left`` / ``right`` names), ``vertical_flip_pairs``, ``sigmas``
            (OKS, one per keypoint, for ``--eval keypoints``). A COCO file's categories give
            the names and skeleton; the config then adds (or overrides) the rest.
        check_images: decode every image file (after filtering) when the dataset is built,
            as the pipeline's ``LoadImageFromFile`` reads it, and raise one
            :class:`DatasetError` listing the files that cannot be used (missing, empty,
            truncated, not an image, undecodable, another size than the annotation's);
            :meth:`check_image_files` in threads, with a progress bar on rank 0. Off by
            default (it reads the whole dataset once more).
    """

    CLASSES = None
    DEFAULT_METRIC = "mAP"  # what evaluation computes when the config names no metric

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
        skip_bad_images=False,
        keypoint_meta=None,
        check_images=False,
    ):
        self.data_root = data_root
        self.ann_file = self._join(ann_file)
        self.img_prefix = self._join(img_prefix)
        self.proposal_file = self._join(proposal_file) if proposal_file else None
        self.test_mode = test_mode
        self.filter_empty_gt = filter_empty_gt
        self.min_size = min_size
        self.strict = strict
        self.skip_bad_images = skip_bad_images
        self._bad_images = set()  # indices found unreadable (in this process)
        if keypoint_meta is not None and not isinstance(keypoint_meta, dict):
            raise DatasetError(
                f"{type(self).__name__}: keypoint_meta must be a dict (names, skeleton, "
                f"flip_pairs, vertical_flip_pairs, sigmas), got {keypoint_meta!r}"
            )
        # (key, value) pairs: no dict on the dataset (workers would copy its pages)
        self._keypoint_cfg = tuple((keypoint_meta or {}).items())
        # the keypoint set (a KeypointMeta) of a dataset with keypoints; set by
        # load_annotations (a COCO file's categories) or from the config's names
        self.keypoint_meta = None
        self.CLASSES = self.get_classes(classes)
        self._custom_classes = classes is not None
        if self.img_prefix and not osp.isdir(self.img_prefix):
            raise DatasetError(
                f"{type(self).__name__}: image folder {self.img_prefix!r} does not exist "
                f"(ann_file {self.ann_file}). Fix: set img_prefix to the folder holding the "
                f"images{DATA_ROOT_HINT}."
            )
        if not osp.isfile(self.ann_file):
            raise DatasetError(
                f"{self.ann_file}: annotation file not found. Fix: check ann_file{DATA_ROOT_HINT}."
            )
        self.table = self.load_annotations(self.ann_file)
        if self.keypoint_meta is None and self._keypoint_cfg:
            self.keypoint_meta = self._build_keypoint_meta(dict(self._keypoint_cfg))
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
        self._check_masks_for_pipeline()
        if check_images:
            self._check_images()

    def _check_masks_for_pipeline(self):
        """Refuse a pipeline that loads masks (``LoadAnnotations(with_mask=True)``) when
        instances of this dataset have no segmentation: the mask head would be trained on
        empty masks. Crowd / difficult (ignored) instances need none."""
        if not any(
            isinstance(t, LoadAnnotations) and t.with_mask for t in _transforms(self.pipeline)
        ):
            return
        missing = self.table.instances_without_mask() & ~self.table.ignore.data
        total = int((~self.table.ignore.data).sum())
        if not missing.any():
            return
        fix = (
            "Fix: train a box-only model (e.g. a Faster R-CNN config: LoadAnnotations without "
            "with_mask), or annotate outlines (polygons, e.g. with LabelMe, then "
            "tools/dataset_converters/labelme2coco.py)"
        )
        if missing.sum() == total:
            raise DatasetError(
                f"{self.ann_file}: the pipeline loads masks (LoadAnnotations with_mask=True) but "
                "no annotation of this file has a segmentation (box-only data, e.g. from "
                f"voc2coco.py or YOLO detection labels). {fix}."
            )
        first = int(np.flatnonzero(missing)[0])
        image = int(np.searchsorted(self.table.bboxes.offsets, first, side="right")) - 1
        raise DatasetError(
            f"{self.ann_file}: the pipeline loads masks (LoadAnnotations with_mask=True) but "
            f"{int(missing.sum())} of the {total} annotations have no segmentation (the first "
            f"in image id {int(self.table.img_ids[image])}, "
            f"{self.table.filenames.get_str(image)!r}); the mask head would learn empty masks "
            f"for them. {fix}, or add the missing outlines."
        )

    def check_image_files(self, indices=None, workers=None, progress=None):
        """Decode the image files of the images ``indices`` (default: all) as the pipeline's
        ``LoadImageFromFile`` reads them (its ``color_type``) and compare their sizes with
        the annotations' (:func:`~mmdet_like.datasets.image_check.check_image_files`, in
        ``workers`` threads, ``progress`` the description of a progress bar). Returns the
        :class:`~mmdet_like.datasets.image_check.ImageProblem` of each file that cannot be
        used."""
        indices = range(len(self)) if indices is None else indices
        infos = [self.get_img_info(i) for i in indices]
        images = [(osp.join(self.img_prefix or "", info["filename"]), info) for info in infos]
        loaders = [t for t in self.pipeline.transforms if isinstance(t, LoadImageFromFile)]
        color_type = loaders[0].color_type if loaders else "color"
        return check_image_files(images, color_type, workers, progress)

    def _check_images(self):
        """``check_images=True``: every image file, or one error listing the bad ones."""
        distributed = torch_dist.is_available() and torch_dist.is_initialized()
        rank = torch_dist.get_rank() if distributed else 0
        progress = f"{type(self).__name__}: decoding every image" if rank == 0 else None
        problems = self.check_image_files(progress=progress)
        if problems:
            report = "\n".join(problems_report(problems, len(self), shown=CHECK_IMAGES_SHOWN))
            raise DatasetError(
                f"{self.ann_file}: check_images=True: {report}\nFix each file as its line says, "
                "or take it out of the annotations (tools/check_dataset.py CONFIG lists every "
                "one)."
            )

    def _build_keypoint_meta(self, cfg):
        """A :class:`KeypointMeta` of ``cfg`` (its arguments); a bad value is a
        :class:`DatasetError` naming the dataset's file and the fix."""
        from mmdet_like.structures.keypoints import KeypointMeta

        if "names" not in cfg:
            raise DatasetError(
                f"{self.ann_file}: keypoint_meta has no 'names'. Fix: list the keypoint names "
                "in the dataset config's keypoint_meta (or use a COCO file whose category "
                "lists them)."
            )
        unknown = set(cfg) - {"names", "skeleton", "flip_pairs", "vertical_flip_pairs", "sigmas"}
        if unknown:
            raise DatasetError(
                f"{self.ann_file}: keypoint_meta has unknown key(s) {sorted(unknown)}. Fix: use "
                "names, skeleton, flip_pairs, vertical_flip_pairs and sigmas."
            )
        try:
            return KeypointMeta(**cfg)
        except (TypeError, ValueError) as exc:
            raise DatasetError(f"{self.ann_file}: the dataset's keypoint_meta: {exc}") from None

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
        if ann_file.endswith(".pkl"):
            infos = safe_pickle_load(ann_file)
        else:
            infos = read_json_file(ann_file)
        if not isinstance(infos, list):
            raise DatasetError(
                f"{ann_file}: expected a list of images (the middle format), got "
                f"{describe(infos)}. Fix: see CustomDataset's docstring for the format."
            )
        if not infos:
            raise DatasetError(
                f"{ann_file}: the list of images is empty. Fix: add the images (a dataset "
                "without images can be neither trained nor evaluated)."
            )
        log = ProblemLog(ann_file, self.strict)
        images, instances = [], []
        for index, info in enumerate(infos):
            require_dict(info, where(ann_file, index), "an image")
            for key in ("filename", "width", "height"):
                if key not in info:
                    raise DatasetError(
                        f"{where(ann_file, index, key)}: missing. Fix: every image needs "
                        "filename, width and height."
                    )
            filename = require_str(info["filename"], where(ann_file, index, "filename"))
            w = require_size(info["width"], where(ann_file, index, "width"))
            h = require_size(info["height"], where(ann_file, index, "height"))
            images.append((index, filename, w, h))
            ann = require_dict(info.get("ann", {}), where(ann_file, index, "ann"), "ann")
            insts = []
            for key_b, key_l, ignore in (
                ("bboxes", "labels", False),
                ("bboxes_ignore", "labels_ignore", True),
            ):
                loc_b = where(ann_file, index, "ann." + key_b)
                loc_l = where(ann_file, index, "ann." + key_l)
                bboxes = numeric_array(ann.get(key_b, np.zeros((0, 4))), loc_b, "the boxes")
                labels = numeric_array(ann.get(key_l, np.zeros(0)), loc_l, "the labels", True)
                labels = labels.reshape(-1)
                if bboxes.size == 0:
                    bboxes = bboxes.reshape(0, 4)
                if bboxes.ndim != 2 or bboxes.shape[1] != 4 or len(bboxes) != len(labels):
                    raise DatasetError(
                        f"{loc_b}: expected (n, 4) boxes and n labels, got {bboxes.shape} and "
                        f"{labels.shape}. Fix: one [x1, y1, x2, y2] box per label."
                    )
                for box, label in zip(bboxes, labels):
                    if not 0 <= label < len(self.CLASSES):
                        raise DatasetError(
                            f"{loc_l}: label {label:g} is not in [0, {len(self.CLASSES)}) for "
                            f"classes {self.CLASSES}. Fix the label or the classes."
                        )
                    box = check_box(box, w, h, loc_b, log)
                    if box is not None:
                        insts.append((box, int(label), ignore))
            instances.append(insts)
        log.flush()
        return AnnotationTable.build(images, instances)

    def load_proposals(self, proposal_file):
        """A pickle holding one (k, 4 or 5) array per image -> :class:`RaggedArray`."""
        proposals = safe_pickle_load(proposal_file)
        if not isinstance(proposals, (list, tuple)):
            raise DatasetError(
                f"{proposal_file}: expected a list of (k, 4|5) arrays, one per image, got "
                f"{describe(proposals)}. Fix: re-create the proposal file."
            )
        proposals = [
            numeric_array(p, where(proposal_file, field=f"proposals[{i}]"), "the proposals")
            for i, p in enumerate(proposals)
        ]
        for i, p in enumerate(proposals):
            if p.ndim != 2 or p.shape[1] not in (4, 5) or p.shape[1] != proposals[0].shape[1]:
                raise DatasetError(
                    f"{where(proposal_file, field=f'proposals[{i}]')}: expected a (k, 4) or "
                    f"(k, 5) array (the same columns for every image), got shape {p.shape}. "
                    "Fix: re-create the proposal file."
                )
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
            float32 (k, 4), ``labels_ignore`` int64 (k,), ``masks`` (a list of n polygon
            lists / RLE dicts, only for datasets with masks) and ``keypoints`` float32
            (n, K, 3) (only for datasets with keypoints).
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
        if t.keypoints is not None:
            ann["keypoints"] = t.keypoints[idx][~ignore]
        return ann

    def get_cat_ids(self, idx):
        """Sorted unique labels of the non-ignored boxes of image ``idx``."""
        return np.unique(self.table.labels[idx][~self.table.ignore[idx]]).astype(np.int64)

    def pre_pipeline(self, results):
        results["img_prefix"] = self.img_prefix
        results["proposal_file"] = self.proposal_file
        results["bbox_fields"] = []
        results["mask_fields"] = []
        results["keypoint_fields"] = []
        if self.keypoint_meta is not None:
            results["keypoint_meta"] = self.keypoint_meta

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
        """A random image of ``idx``'s aspect group (any group if that has none left),
        other than the ones found unreadable."""
        bad = np.fromiter(self._bad_images, dtype=np.int64)
        for pool in (np.flatnonzero(self.flag == self.flag[idx]), np.arange(len(self))):
            pool = np.setdiff1d(pool, bad)
            if len(pool):
                return int(pool[random.randrange(len(pool))])
        raise DatasetError(
            f"{self.ann_file}: no image can be read (skip_bad_images=True skipped all "
            f"{len(self)}). Fix: check img_prefix and the image files."
        )

    def __getitem__(self, idx):
        if self.test_mode:
            return self.prepare_test_img(idx)
        skipped = 0
        for _ in range(MAX_RETRIES):
            try:
                data = self.prepare_train_img(idx)
            except ImageReadError as exc:
                if not self.skip_bad_images:
                    raise
                self._bad_images.add(idx)
                skipped += 1
                _warn_skipped(exc)
                data = None
            if data is not None:
                if self.skip_bad_images:
                    data["skipped_images"] = skipped
                return data
            idx = self._rand_another(idx)
        raise DatasetError(
            f"{self.ann_file}: the pipeline dropped {MAX_RETRIES} images in a row (e.g. a crop "
            "that leaves no box). Fix: check the pipeline's crop settings."
        )

    # ---------------------------------------------------------------- evaluation

    def ground_truth(self):
        """What evaluators read of this dataset (:class:`DatasetGroundTruth`), in result
        order: the image ids, the classes and the annotations (read when needed)."""
        from mmdet_like.structures import DatasetGroundTruth

        return DatasetGroundTruth(
            img_ids=[int(i) for i in self.img_ids],
            class_names=tuple(self.CLASSES or ()),
            get_ann_info=self.get_ann_info,
            source=str(self.ann_file),
            keypoint_sigmas=None if self.keypoint_meta is None else self.keypoint_meta.sigmas,
        )

    def evaluate(
        self,
        results,
        metric=None,
        iou_thrs=(0.5,),
        proposal_nums=(100, 300, 1000),
        ap_mode="area",
        logger=None,
    ):
        """VOC-style ``mAP`` (per-class table) or proposal ``recall``: the registered
        metrics (:func:`mmdet_like.evaluation.build_evaluator`) on :meth:`ground_truth`.

        Args:
            results: per image, a list over classes of (n, 5) float32 arrays ``[x1, y1, x2,
                y2, score]`` (``mAP``) or an (n, 4|5) array of proposals (``recall``).
            ap_mode: ``"area"`` or ``"11points"``.

        Returns:
            dict: ``mAP`` and ``AP50``, ``AP75``... per IoU threshold; or ``AR@N`` (mean
            over ``iou_thrs``) and ``recall@N@IoU``.
        """
        from mmdet_like.evaluation import build_evaluator

        evaluator = build_evaluator(
            metric or self.DEFAULT_METRIC, strict=False, iou_thrs=iou_thrs,
            proposal_nums=proposal_nums, ap_mode=ap_mode,
        )  # fmt: skip
        return evaluator(results, self.ground_truth(), logger)
