"""Loading transforms: image, annotations and proposals into the results dict."""

import os.path as osp

import numpy as np

from mmdet_like.datasets.errors import DatasetError, ImageReadError, where
from mmdet_like.datasets.image_check import check_image_size, read_image_file
from mmdet_like.registry import PIPELINES
from mmdet_like.structures.mask import BitmapMasks, PolygonMasks, polygons_to_bitmap, rle_to_bitmap


@PIPELINES.register()
class LoadImageFromFile:
    """Read ``img_prefix/img_info["filename"]`` with
    :func:`~mmdet_like.datasets.image_check.read_image_file` (mmcv's decoding).

    Adds ``filename``, ``ori_filename``, ``img`` ((H, W, 3) uint8 BGR, or float32 with
    ``to_float32``), ``img_shape``, ``ori_shape`` and ``img_fields``.

    With the default ``color_type="color"`` every format OpenCV reads becomes (H, W, 3)
    uint8 BGR: grayscale is replicated to 3 channels, 16-bit images are scaled to 8 bits
    (value // 256), CMYK JPEGs are converted, an alpha channel is dropped, and the EXIF
    orientation is applied. A file that is missing, empty, truncated, not an image or
    undecodable raises :class:`ImageReadError`; an image whose size (as read) differs from
    ``img_info``'s ``width``/``height`` raises :class:`DatasetError` (see
    :func:`~mmdet_like.datasets.image_check.check_image_size`).
    """

    def __init__(self, to_float32=False, color_type="color"):
        self.to_float32 = to_float32
        self.color_type = color_type

    def __call__(self, results):
        prefix = results.get("img_prefix")
        name = results["img_info"]["filename"]
        filename = osp.join(prefix, name) if prefix else name
        try:
            img = read_image_file(filename, self.color_type)
        except ImageReadError as exc:
            raise ImageReadError(
                f"{where(filename, results['img_info'].get('id'), 'filename')}: cannot read the "
                f"image ({exc.reason}). Fix: {exc.fix}; or (training) set skip_bad_images=True "
                "in the dataset config to train on without it.",
                filename,
                exc.reason,
                exc.kind,
                exc.fix,
            ) from None
        check_image_size(img, results["img_info"], filename)
        if self.to_float32:
            img = img.astype(np.float32)
        results["filename"] = filename
        results["ori_filename"] = name
        results["img"] = img
        results["img_shape"] = img.shape
        results["ori_shape"] = img.shape
        results["img_fields"] = ["img"]
        return results

    def __repr__(self):
        return f"LoadImageFromFile(to_float32={self.to_float32}, color_type={self.color_type!r})"


@PIPELINES.register()
class LoadAnnotations:
    """Copy ``ann_info`` into ``gt_bboxes`` (float32 (n, 4)), ``gt_bboxes_ignore``,
    ``gt_labels`` (int64 (n,)), ``gt_masks`` (:class:`BitmapMasks` with ``poly2mask``,
    else :class:`PolygonMasks`) and ``gt_keypoints`` (float32 (n, K, 3) ``x, y,
    visibility``, with ``with_keypoints``)."""

    def __init__(
        self, with_bbox=True, with_label=True, with_mask=False, poly2mask=True,
        with_keypoints=False,
    ):  # fmt: skip
        self.with_bbox = with_bbox
        self.with_label = with_label
        self.with_mask = with_mask
        self.poly2mask = poly2mask
        self.with_keypoints = with_keypoints

    def __call__(self, results):
        ann = results["ann_info"]
        results.setdefault("bbox_fields", [])
        results.setdefault("mask_fields", [])
        if self.with_bbox:
            results["gt_bboxes"] = np.asarray(ann["bboxes"], dtype=np.float32).reshape(-1, 4)
            results["bbox_fields"].append("gt_bboxes")
            if ann.get("bboxes_ignore") is not None:
                ignore = np.asarray(ann["bboxes_ignore"], dtype=np.float32).reshape(-1, 4)
                results["gt_bboxes_ignore"] = ignore
                results["bbox_fields"].append("gt_bboxes_ignore")
        if self.with_label:
            results["gt_labels"] = np.asarray(ann["labels"], dtype=np.int64).reshape(-1)
        if self.with_mask:
            results["gt_masks"] = self._load_masks(results)
            results["mask_fields"].append("gt_masks")
        if self.with_keypoints:
            if "keypoints" not in ann:
                info = results["img_info"]
                raise DatasetError(
                    f"{where(info['filename'], info.get('id'), 'keypoints')}: "
                    "with_keypoints=True but the dataset has no keypoints. Fix: use a keypoint "
                    "annotation file (categories listing 'keypoints') or with_keypoints=False."
                )
            results["gt_keypoints"] = np.asarray(ann["keypoints"], dtype=np.float32)
            results.setdefault("keypoint_fields", []).append("gt_keypoints")
        return results

    def _load_masks(self, results):
        info = results["img_info"]
        h, w = info["height"], info["width"]
        if "masks" not in results["ann_info"]:
            raise DatasetError(
                f"{where(info['filename'], info.get('id'), 'segmentation')}: with_mask=True but "
                "the dataset has no masks. Fix: use a dataset with segmentation or "
                "with_mask=False."
            )
        masks = results["ann_info"]["masks"]
        if self.poly2mask:
            bitmaps = [
                rle_to_bitmap(m) if isinstance(m, dict) else polygons_to_bitmap(m, h, w)
                for m in masks
            ]
            return BitmapMasks(bitmaps, h, w)
        if any(isinstance(m, dict) for m in masks):
            raise DatasetError(
                f"{where(info['filename'], info.get('id'), 'segmentation')}: RLE masks cannot be "
                "kept as polygons. Fix: LoadAnnotations(poly2mask=True)."
            )
        return PolygonMasks(masks, h, w)

    def __repr__(self):
        return (
            f"LoadAnnotations(with_bbox={self.with_bbox}, with_label={self.with_label}, "
            f"with_mask={self.with_mask}, poly2mask={self.poly2mask}, "
            f"with_keypoints={self.with_keypoints})"
        )


@PIPELINES.register()
class LoadProposals:
    """``results["proposals"]`` ((k, 4|5) from the dataset's proposal file) -> float32 (k, 4)
    boxes, the first ``num_max_proposals``."""

    def __init__(self, num_max_proposals=None):
        self.num_max_proposals = num_max_proposals

    def __call__(self, results):
        proposals = np.asarray(results["proposals"], dtype=np.float32)
        if proposals.ndim != 2 or proposals.shape[1] not in (4, 5):
            raise DatasetError(
                f"{where(results.get('proposal_file'), results['img_info'].get('id'), 'proposals')}"
                f": expected (k, 4) or (k, 5) proposals, got {proposals.shape}"
            )
        if self.num_max_proposals is not None:
            proposals = proposals[: self.num_max_proposals]
        results["proposals"] = proposals[:, :4].copy()
        results.setdefault("bbox_fields", []).append("proposals")
        return results

    def __repr__(self):
        return f"LoadProposals(num_max_proposals={self.num_max_proposals})"
