"""The second stage of Faster/Mask R-CNN: sample RoIs, pool features, box and mask heads."""

import torch

from mmdet_like.models.roi_heads.bbox_heads import nms_detections
from mmdet_like.models.utils.cfg_keys import NMS_SCHEMA
from mmdet_like.registry import (
    BBOX_ASSIGNERS,
    BBOX_SAMPLERS,
    HEADS,
    ROI_EXTRACTORS,
    SHARED_HEADS,
    build_from_cfg,
)
from mmdet_like.structures.bbox import bbox2roi, bbox_mapping, bbox_mapping_back
from mmdet_like.structures.instance_data import InstanceData
from mmdet_like.structures.instances import unpack_gt_instances

DEFAULT_TEST_CFG = dict(score_thr=0.05, nms=dict(iou_thr=0.5), max_per_img=100, mask_thr_binary=0.5)


def assign_and_sample(assigner, sampler, proposal_boxes, batch_gt_instances, batch_gt_ignore,
                      batch_img_metas):  # fmt: skip
    """Per image, assign the (n_i, 4) ``proposal_boxes`` (the assigner's priors) to the gts
    of ``batch_gt_instances`` (crowds of ``batch_gt_ignore`` ignored) and sample them.

    Returns:
        N :class:`SamplingResult` (per image: positives, then negatives; gt boxes added as
        proposals when the sampler says so).
    """
    results = []
    for boxes, gt, ignored, meta in zip(
        proposal_boxes, batch_gt_instances, batch_gt_ignore, batch_img_metas
    ):
        boxes = boxes.detach()
        assign_result = assigner.assign(InstanceData(priors=boxes), gt, ignored, img_meta=meta)
        results.append(sampler.sample(assign_result, boxes, gt.bboxes, gt.labels))
    return results


class BaseRoIHead(torch.nn.Module):
    """What every RoI head has: an optional shared head, a box branch and an optional mask
    branch, each built by a method a subclass may override, and the assigners and samplers
    of ``train_cfg`` (``train_cfg.rcnn``, a dict, or a list of dicts, one per stage, for
    multi-stage heads: then ``self.assigner`` / ``self.sampler`` are lists too). A subclass
    adds ``forward_train(x, proposals, data_samples) -> dict of losses``,
    ``detect_bboxes(x, proposals, img_metas, rescale=False)`` (the box detections and their
    boxes in the input image) and ``simple_test(x, proposals, img_metas, rescale=False) -> N
    InstanceData`` (proposals: N :class:`InstanceData` with ``bboxes`` and optional
    ``scores``).

    Args:
        bbox_roi_extractor, bbox_head: configs (``ROI_EXTRACTORS``, ``HEADS``).
        mask_roi_extractor, mask_head: optional mask branch configs.
        keypoint_roi_extractor, keypoint_head: optional keypoint branch configs (Keypoint
            R-CNN: RoIAlign 14x14 and ``KeypointRCNNHead``), run on the positives in
            training and on the detections at test time.
        shared_head: optional ``SHARED_HEADS`` config: a module run on every pooled RoI
            feature before the box (and mask) heads, e.g. the last ResNet stage of C4
            models.
        share_roi_extractor: the mask branch reuses the box branch's extractor (and shared
            head) and, in training, the positives' box features (then ``mask_roi_extractor``
            is unset).
        train_cfg: ``train_cfg.rcnn``: ``assigner``, ``sampler``, ``pos_weight``,
            ``mask_size`` (or a list of such dicts).
        test_cfg: ``test_cfg.rcnn``.
    """

    default_test_cfg = {}
    # the keys of train_cfg.rcnn (each stage's) / test_cfg.rcnn the head reads
    train_cfg_schema = {
        "assigner": None, "sampler": None, "pos_weight": None, "mask_size": None,
        "debug": None, "mask_target_aligned": None, "mask_target_binarize": None,
    }  # fmt: skip
    test_cfg_schema = {"score_thr": None, "nms": NMS_SCHEMA, "max_per_img": None,
                       "mask_thr_binary": None, "min_bbox_size": None}  # fmt: skip

    def __init__(
        self,
        bbox_roi_extractor,
        bbox_head,
        mask_roi_extractor=None,
        mask_head=None,
        shared_head=None,
        share_roi_extractor=False,
        train_cfg=None,
        test_cfg=None,
        keypoint_roi_extractor=None,
        keypoint_head=None,
    ):
        super().__init__()
        self.share_roi_extractor = share_roi_extractor
        self.shared_head = None if shared_head is None else self.init_shared_head(shared_head)
        self.init_bbox_head(bbox_roi_extractor, bbox_head)
        self.mask_head = None
        if mask_head is not None:
            self.init_mask_head(mask_roi_extractor, mask_head)
        self.keypoint_head = None
        if keypoint_head is not None:
            self.init_keypoint_head(keypoint_roi_extractor, keypoint_head)
        self.train_cfg = train_cfg
        self.test_cfg = dict(self.default_test_cfg, **(test_cfg or {}))
        if train_cfg is not None:
            self.init_assigner_sampler(train_cfg)

    # ------------------------------------------------------------ built by subclasses' choice
    def init_shared_head(self, cfg):
        return build_from_cfg(cfg, SHARED_HEADS)

    def init_bbox_head(self, bbox_roi_extractor, bbox_head):
        self.bbox_roi_extractor = build_from_cfg(bbox_roi_extractor, ROI_EXTRACTORS)
        self.bbox_head = build_from_cfg(bbox_head, HEADS)

    def init_mask_head(self, mask_roi_extractor, mask_head):
        self.mask_head = build_from_cfg(mask_head, HEADS)
        if self.share_roi_extractor:
            self.mask_roi_extractor = self.bbox_roi_extractor
            return
        if mask_roi_extractor is None:
            raise ValueError(
                f"{type(self).__name__}: a mask_head needs a mask_roi_extractor (or "
                "share_roi_extractor=True)"
            )
        self.mask_roi_extractor = build_from_cfg(mask_roi_extractor, ROI_EXTRACTORS)

    def init_keypoint_head(self, keypoint_roi_extractor, keypoint_head):
        if keypoint_roi_extractor is None:
            raise ValueError(
                f"{type(self).__name__}: a keypoint_head needs a keypoint_roi_extractor "
                "(e.g. SingleRoIExtractor with RoIAlign output_size=14, sampling_ratio=2)"
            )
        self.keypoint_roi_extractor = build_from_cfg(keypoint_roi_extractor, ROI_EXTRACTORS)
        self.keypoint_head = build_from_cfg(keypoint_head, HEADS)

    def init_assigner_sampler(self, train_cfg):
        """``self.assigner`` / ``self.sampler`` of ``train_cfg`` (lists for a list)."""
        if isinstance(train_cfg, (list, tuple)):
            self.assigner = [build_from_cfg(c["assigner"], BBOX_ASSIGNERS) for c in train_cfg]
            self.sampler = [build_from_cfg(c["sampler"], BBOX_SAMPLERS) for c in train_cfg]
            return
        self.assigner = build_from_cfg(train_cfg["assigner"], BBOX_ASSIGNERS)
        self.sampler = build_from_cfg(train_cfg["sampler"], BBOX_SAMPLERS)

    # ----------------------------------------------------------------------------- shared
    @property
    def with_mask(self):
        return self.mask_head is not None

    @property
    def with_keypoint(self):
        return self.keypoint_head is not None

    @property
    def with_shared_head(self):
        return self.shared_head is not None

    @property
    def num_classes(self):
        """Object classes of the head's results (the detector asks this, not its parts)."""
        return self.bbox_head.num_classes

    def init_weights(self):
        if self.with_shared_head and hasattr(self.shared_head, "init_weights"):
            self.shared_head.init_weights()
        self.bbox_head.init_weights()
        if self.with_mask:
            self.mask_head.init_weights()
        if self.with_keypoint:
            self.keypoint_head.init_weights()

    # ------------------------------------------------------------------------ detections
    def _image_detections(self, bbox_head, rois, cls_score, bbox_pred, counts, img_metas,
                          rescale):  # fmt: skip
        """Per image, ``bbox_head.get_bboxes`` of its ``counts[i]`` rows of the (K, 5) RoIs,
        (K, num_classes + 1) logits and (K, 4 or 4 * num_classes) deltas with ``test_cfg``.

        Returns:
            (N :class:`InstanceData` with ``bboxes``, ``scores``, ``labels`` (boxes divided
            by ``scale_factor`` when ``rescale``), N (n_i, 4) boxes in the input image, on
            which NMS ran and the mask branch runs).
        """
        results, input_boxes = [], []
        for r, c, b, meta in zip(
            rois.split(counts), cls_score.split(counts), bbox_pred.split(counts), img_metas
        ):
            dets, labels = bbox_head.get_bboxes(
                r, c, b, meta["img_shape"], meta.get("scale_factor", 1.0), False, self.test_cfg
            )
            boxes = dets[:, :4]
            input_boxes.append(boxes)
            if rescale:
                factor = torch.as_tensor(
                    meta.get("scale_factor", 1.0), dtype=boxes.dtype, device=boxes.device
                )
                boxes = boxes / factor
            results.append(InstanceData(bboxes=boxes, scores=dets[:, 4], labels=labels))
        return results, input_boxes

    # ------------------------------------------------------------------------ mask branch
    def _mask_forward(self, x, rois):
        """(K, 5) RoIs -> (K, num_classes or 1, M, M) mask logits."""
        mask_feats = self.mask_roi_extractor(x, rois)
        if self.with_shared_head and self.share_roi_extractor:
            mask_feats = self.shared_head(mask_feats)
        return self.mask_head(mask_feats)

    def _mask_loss(self, x, sampling_results, batch_gt_instances, rcnn_train_cfg,
                   bbox_feats=None):  # fmt: skip
        """The mask branch's loss on the positives of the sampled RoIs (with
        ``share_roi_extractor``: on their rows of ``bbox_feats``, the (K, C, S, S) features of
        all sampled RoIs in ``bbox2roi`` order)."""
        if any("masks" not in gt for gt in batch_gt_instances):
            raise ValueError(
                f"{type(self).__name__}: the mask head needs gt_instances.masks (load them "
                "with LoadAnnotations(with_mask=True))"
            )
        gt_masks = [gt.masks for gt in batch_gt_instances]
        if self.share_roi_extractor:
            is_pos = torch.cat(
                [
                    torch.arange(r.bboxes.size(0), device=bbox_feats.device) < r.pos_inds.numel()
                    for r in sampling_results
                ]
            )
            mask_pred = self.mask_head(bbox_feats[is_pos])
        else:
            pos_rois = bbox2roi([res.pos_bboxes for res in sampling_results])
            mask_pred = self._mask_forward(x, pos_rois)
        mask_targets = self.mask_head.get_targets(sampling_results, gt_masks, rcnn_train_cfg)
        pos_labels = torch.cat([res.pos_gt_labels for res in sampling_results])
        return self.mask_head.loss(mask_pred, mask_targets, pos_labels)

    def _add_masks(self, x, results, input_boxes, img_metas, rescale):
        """Run the mask branch on all images' detections (``input_boxes``, in the input
        image) at once and paste per image."""
        mask_rois = bbox2roi(input_boxes)
        mask_pred = self._mask_forward(x, mask_rois)
        for res, meta, pred in zip(results, img_metas, mask_pred.split([len(r) for r in results])):
            shape = meta["ori_shape"] if rescale else meta["img_shape"]
            res.masks = self.mask_head.get_seg_masks(
                pred, res.bboxes, res.labels, int(shape[0]), int(shape[1]),
                self.test_cfg["mask_thr_binary"],
            )  # fmt: skip

    # ------------------------------------------------------------------------ export
    def export_output_names(self):
        """The outputs an export adds after ``dets`` and ``labels``: ``mask_probs`` with a
        mask branch, ``keypoint_heatmaps`` with a keypoint branch."""
        return [name for name, present in (("mask_probs", self.with_mask),
                                           ("keypoint_heatmaps", self.with_keypoint))
                if present]  # fmt: skip

    def export_outputs(self, x, proposals, img_meta):
        """One image's detections as an exported graph returns them (boxes in the input
        image): ``dets`` (n, 5) ``[x1, y1, x2, y2, score]``, ``labels`` (n,), with a mask
        branch ``mask_probs`` (n, M, M) (each detection's class, on its box) and with a
        keypoint branch ``keypoint_heatmaps`` (n, K, S, S) logits (their decoding, a
        resize to each box's own size, is no single graph operator:
        :meth:`decode_export_outputs`)."""
        results, input_boxes = self.detect_bboxes(x, proposals, [img_meta])
        result = results[0]
        outputs = [torch.cat([result.bboxes, result.scores[:, None]], dim=1), result.labels]
        rois = bbox2roi(input_boxes)
        if self.with_mask:
            outputs.append(self.mask_head.mask_probs(self._mask_forward(x, rois), result.labels))
        if self.with_keypoint:
            outputs.append(self.keypoint_head(self.keypoint_roi_extractor(x, rois)))
        return tuple(outputs)

    def decode_export_outputs(self, result, outputs, img_meta, mask_thr=None):
        """Complete ``result`` (the exported detections in the original image) from the
        exported ``outputs`` (``{name: tensor}``): ``masks`` (n, H, W) bool pasted at
        ``ori_shape`` (``mask_thr`` defaults to ``test_cfg.mask_thr_binary``), ``keypoints``
        (n, K, 2) and ``keypoint_scores`` (n, K) decoded on the boxes in the input image and
        divided by ``scale_factor``, as :meth:`simple_test` gives them."""
        if "mask_probs" in outputs:
            threshold = self.test_cfg["mask_thr_binary"] if mask_thr is None else mask_thr
            height, width = int(img_meta["ori_shape"][0]), int(img_meta["ori_shape"][1])
            result.masks = self.mask_head.paste_probs(
                outputs["mask_probs"], result.bboxes, height, width, threshold
            )
        if "keypoint_heatmaps" in outputs:
            dets = outputs["dets"]
            points, scores = self.keypoint_head.get_keypoints(
                outputs["keypoint_heatmaps"], dets[:, :4]
            )
            factor = torch.as_tensor(img_meta.get("scale_factor", 1.0), dtype=dets.dtype)
            factor = factor.reshape(-1)
            result.keypoints = points / factor[:2] if factor.numel() > 1 else points / factor
            result.keypoint_scores = scores
        return result


@HEADS.register()
class StandardRoIHead(BaseRoIHead):
    """One stage of box (and mask) prediction on sampled RoIs: the RoI head of Fast, Faster
    and Mask R-CNN (with a shared head: their C4 variants). Arguments: :class:`BaseRoIHead`;
    ``train_cfg`` is one dict.

    test_cfg: ``score_thr``, ``nms=dict(type="nms"|"soft_nms", iou_thr)``, ``max_per_img``,
    ``mask_thr_binary``.
    """

    default_test_cfg = DEFAULT_TEST_CFG

    def init_assigner_sampler(self, train_cfg):
        if isinstance(train_cfg, (list, tuple)):
            raise ValueError(
                "StandardRoIHead: train_cfg.rcnn is a list (one dict per stage of a cascade); "
                "this head has one stage: give one dict"
            )
        super().init_assigner_sampler(train_cfg)

    def _bbox_forward(self, x, rois):
        """(K, 5) RoIs -> cls_score, bbox_pred and the pooled features (K, C, S, S) (after
        the shared head, when there is one)."""
        bbox_feats = self.bbox_roi_extractor(x, rois)
        if self.with_shared_head:
            bbox_feats = self.shared_head(bbox_feats)
        cls_score, bbox_pred = self.bbox_head(bbox_feats)
        return cls_score, bbox_pred, bbox_feats

    def forward_train(self, x, proposals, data_samples):
        """Losses of the second stage.

        Args:
            x: tuple of L (N, C, H_l, W_l) features.
            proposals: N :class:`InstanceData` with ``bboxes`` (n_i, 4) (the RPN's, or
                precomputed).
            data_samples: N :class:`DetDataSample`: ``gt_instances`` (``bboxes`` (G_i, 4),
                ``labels`` (G_i,) int64, ``masks`` (a mask structure; with a mask head)),
                ``ignored_instances`` (crowd ``bboxes``), the meta.

        Returns:
            ``dict(loss_cls, loss_bbox, acc[, loss_mask][, loss_keypoint])`` (keypoints:
            ``gt_instances.keypoints`` (G_i, K, 3), with a keypoint head).
        """
        if self.train_cfg is None:
            raise ValueError("StandardRoIHead: training needs train_cfg.rcnn (assigner, sampler)")
        batch_gt_instances, batch_gt_ignore, batch_metas = unpack_gt_instances(data_samples)
        sampling_results = assign_and_sample(
            self.assigner, self.sampler, [p.bboxes for p in proposals], batch_gt_instances,
            batch_gt_ignore, batch_metas,
        )  # fmt: skip
        rois = bbox2roi([res.bboxes for res in sampling_results])
        cls_score, bbox_pred, bbox_feats = self._bbox_forward(x, rois)
        targets = self.bbox_head.get_targets(sampling_results, self.train_cfg)
        losses = self.bbox_head.loss(cls_score, bbox_pred, *targets)

        if self.with_mask:
            losses.update(
                self._mask_loss(x, sampling_results, batch_gt_instances, self.train_cfg, bbox_feats)
            )
        if self.with_keypoint:
            losses.update(self._keypoint_loss(x, sampling_results, batch_gt_instances))
        return losses

    def _keypoint_loss(self, x, sampling_results, batch_gt_instances):
        """The keypoint branch's loss on the positives of the sampled RoIs."""
        if any("keypoints" not in gt for gt in batch_gt_instances):
            raise ValueError(
                "StandardRoIHead: the keypoint head needs gt_instances.keypoints (load them "
                "with LoadAnnotations(with_keypoints=True) from a dataset with keypoints)"
            )
        pos_rois = bbox2roi([res.pos_bboxes for res in sampling_results])
        heatmaps = self.keypoint_head(self.keypoint_roi_extractor(x, pos_rois))
        cells, valid = self.keypoint_head.get_targets(
            sampling_results, [gt.keypoints for gt in batch_gt_instances]
        )
        return self.keypoint_head.loss(heatmaps, cells, valid, num_images=len(sampling_results))

    @torch.no_grad()
    def simple_test(self, x, proposals, img_metas, rescale=False):
        """Detections of every image: N :class:`InstanceData` with ``bboxes`` (n, 4),
        ``scores``, ``labels`` and, with a mask head, ``masks`` (n, H, W) bool (boxes in the
        original image when ``rescale``, else in the resized input; masks of the same
        image's size). ``proposals``: N :class:`InstanceData` with ``bboxes``."""
        results, input_boxes = self.detect_bboxes(x, proposals, img_metas, rescale)
        if self.with_mask:
            self._add_masks(x, results, input_boxes, img_metas, rescale)
        if self.with_keypoint:
            self._add_keypoints(x, results, input_boxes, img_metas, rescale)
        return results

    def detect_bboxes(self, x, proposals, img_metas, rescale=False):
        """The box branch's detections of every image, before any mask or keypoint: N
        :class:`InstanceData` (``bboxes``, ``scores``, ``labels``; boxes divided by
        ``scale_factor`` when ``rescale``) and N (n_i, 4) boxes in the input image."""
        rois = bbox2roi([p.bboxes for p in proposals])
        cls_score, bbox_pred, _ = self._bbox_forward(x, rois)
        return self._image_detections(
            self.bbox_head, rois, cls_score, bbox_pred, [p.bboxes.size(0) for p in proposals],
            img_metas, rescale,
        )  # fmt: skip

    def _add_keypoints(self, x, results, input_boxes, img_metas, rescale):
        """``keypoints`` (n, K, 2) and ``keypoint_scores`` (n, K) of every image's
        detections: the heatmaps of all images' detections at once, decoded on the boxes in
        the input image (then divided by ``scale_factor`` when ``rescale``)."""
        heatmaps = self.keypoint_head(self.keypoint_roi_extractor(x, bbox2roi(input_boxes)))
        counts = [len(r) for r in results]
        for res, meta, maps, boxes in zip(results, img_metas, heatmaps.split(counts), input_boxes):
            points, scores = self.keypoint_head.get_keypoints(maps, boxes)
            if rescale:
                factor = torch.as_tensor(
                    meta.get("scale_factor", 1.0), dtype=points.dtype, device=points.device
                ).reshape(-1)
                points = points / factor[:2] if factor.numel() > 1 else points / factor
            res.keypoints = points
            res.keypoint_scores = scores

    @torch.no_grad()
    def aug_test(self, feats_per_aug, proposals_per_aug, metas_per_aug):
        """Detections of one image seen under several test-time augmentations (scales,
        flips), in the original image.

        The scored boxes of every augmentation, mapped back to the original image, go
        through one class-wise NMS together (as detectron2's test-time augmentation does).
        With a mask branch, each augmentation predicts masks for the merged boxes (mapped
        into its input); their probabilities, flipped back, are averaged and pasted once.

        Args:
            feats_per_aug: A feature tuples, each of a batch of this one image.
            proposals_per_aug: A :class:`InstanceData` proposals (``bboxes``), each in its
                augmentation's input.
            metas_per_aug: A metas (``img_shape``, ``scale_factor``, ``flip``,
                ``flip_direction``, ``ori_shape``).

        Returns:
            :class:`InstanceData` (``bboxes``, ``scores``, ``labels`` [, ``masks``]) in the
            original image.
        """
        if self.with_keypoint:
            raise ValueError(
                "StandardRoIHead: test-time augmentation (several scales or flips) is not "
                "available with a keypoint branch; test with one scale and flip=False"
            )
        cfg = self.test_cfg
        boxes, scores, valid = [], [], []
        for x, proposals, meta in zip(feats_per_aug, proposals_per_aug, metas_per_aug):
            rois = bbox2roi([proposals.bboxes])
            cls_score, bbox_pred, _ = self._bbox_forward(x, rois)
            aug_boxes, aug_scores, aug_valid = self.bbox_head.get_candidates(
                rois, cls_score, bbox_pred, meta["img_shape"], cfg
            )
            boxes.append(bbox_mapping_back(aug_boxes, meta))
            scores.append(aug_scores)
            valid.append(aug_valid)
        # min_bbox_size is one setting for every augmentation: all None or none
        valid = None if valid[0] is None else torch.cat(valid)
        dets, labels = nms_detections(torch.cat(boxes), torch.cat(scores), valid, cfg)
        result = InstanceData(bboxes=dets[:, :4], scores=dets[:, 4], labels=labels)
        if self.with_mask:
            probs = 0
            for x, meta in zip(feats_per_aug, metas_per_aug):
                mask_rois = bbox2roi([bbox_mapping(result.bboxes, meta)])
                aug_probs = self.mask_head.mask_probs(self._mask_forward(x, mask_rois), labels)
                probs = probs + _flip_back(aug_probs, meta)
            probs = probs / len(metas_per_aug)
            height, width = metas_per_aug[0]["ori_shape"][:2]
            result.masks = self.mask_head.paste_probs(
                probs, result.bboxes, int(height), int(width), cfg["mask_thr_binary"]
            )
        return result


def _flip_back(mask_probs, meta):
    """(n, M, M) mask probabilities predicted on a flipped input -> the unflipped view."""
    if not meta.get("flip"):
        return mask_probs
    direction = meta.get("flip_direction")
    dims = {"horizontal": [-1], "vertical": [-2], "diagonal": [-2, -1]}[direction]
    return mask_probs.flip(dims)
