"""Two-stage detectors: backbone -> neck -> (RPN) -> RoI head."""

import torch

from mmdet_like.models.detectors.base import BaseDetector, pad_images
from mmdet_like.registry import DETECTORS, HEADS, build_from_cfg
from mmdet_like.structures.instances import detection_to_per_class


class TwoStageDetector(BaseDetector):
    """Backbone, neck, optional RPN head and a RoI head.

    Args:
        backbone, neck, rpn_head, roi_head: part configs (``rpn_head=None``: proposals come
            with the data, as for Fast R-CNN).
        train_cfg: ``dict(rpn=..., rpn_proposal=..., rcnn=...)``: RPN assigner/sampler, the
            proposal settings used in training, and the RoI head's assigner/sampler.
        test_cfg: ``dict(rpn=..., rcnn=...)``.
        pretrained: backbone weights (``torchvision://resnet50`` or a file), loaded by
            :meth:`init_weights`, never at build time.
    """

    def __init__(
        self,
        backbone,
        roi_head,
        neck=None,
        rpn_head=None,
        train_cfg=None,
        test_cfg=None,
        pretrained=None,
    ):
        super().__init__()
        self._init_backbone_neck(backbone, neck, pretrained)
        self.train_cfg = dict(train_cfg or {})
        self.test_cfg = dict(test_cfg or {})
        self.rpn_head = None
        if rpn_head is not None:
            self.rpn_head = build_from_cfg(
                dict(
                    rpn_head,
                    train_cfg=self.train_cfg.get("rpn"),
                    test_cfg=self.test_cfg.get("rpn"),
                ),
                HEADS,
            )
        self.roi_head = build_from_cfg(
            dict(
                roi_head,
                train_cfg=self.train_cfg.get("rcnn"),
                test_cfg=self.test_cfg.get("rcnn"),
            ),
            HEADS,
        )
        self.num_classes = self.roi_head.num_classes

    @property
    def with_mask(self):
        return self.roi_head.with_mask

    def init_weights(self):
        """Backbone weights (loading ``pretrained``), then the other parts' initialisation."""
        self.init_backbone_neck()
        if self.rpn_head is not None:
            self.rpn_head.init_weights()
        self.roi_head.init_weights()

    def forward_train(
        self,
        img,
        img_metas,
        gt_bboxes,
        gt_labels,
        gt_bboxes_ignore=None,
        gt_masks=None,
        proposals=None,
    ):
        """Losses: ``loss_rpn_cls``, ``loss_rpn_bbox`` (with an RPN), ``loss_cls``,
        ``loss_bbox``, ``acc`` and ``loss_mask`` (with a mask head)."""
        x = self.extract_feat(img)
        losses = {}
        if self.rpn_head is not None:
            rpn_losses, proposal_list = self.rpn_head.forward_train(
                x,
                img_metas,
                gt_bboxes,
                gt_bboxes_ignore=gt_bboxes_ignore,
                proposal_cfg=self.train_cfg.get("rpn_proposal") or {},
            )
            losses.update(rpn_losses)
        elif proposals is None:
            raise ValueError(f"{type(self).__name__}: without an RPN, proposals are required")
        else:
            proposal_list = [p.to(img.device) for p in proposals]
        losses.update(
            self.roi_head.forward_train(
                x, img_metas, proposal_list, gt_bboxes, gt_labels, gt_bboxes_ignore, gt_masks
            )
        )
        return losses

    @torch.no_grad()
    def simple_test_instances(self, img, img_metas, proposals=None, rescale=False):
        """Typed results: list of N :class:`DetectionResult`."""
        x = self.extract_feat(img)
        if self.rpn_head is not None:
            proposals = self.rpn_head.get_proposals(*self.rpn_head(x), img_metas)
        elif proposals is None:
            raise ValueError(f"{type(self).__name__}: without an RPN, proposals are required")
        else:
            proposals = [p.to(img.device) for p in proposals]
        return self.roi_head.simple_test(x, proposals, img_metas, rescale=rescale)

    def simple_test(self, img, img_metas, proposals=None, rescale=False):
        """Per image: ``bbox_results`` (list over classes of (n, 5) float32 arrays), or
        ``(bbox_results, segm_results)`` with a mask head."""
        results = self.simple_test_instances(img, img_metas, proposals, rescale)
        return [detection_to_per_class(r, self.num_classes) for r in results]

    @torch.no_grad()
    def aug_test_instances(self, imgs, img_metas, proposals=None):
        """Test-time augmentation, typed: list of N :class:`DetectionResult` in the original
        images. Each image's augmentations run one by one (their sizes differ); the RoI
        head merges them (:meth:`StandardRoIHead.aug_test`)."""
        if self.rpn_head is None:
            raise ValueError(
                f"{type(self).__name__}: test-time augmentation needs an RPN (precomputed "
                "proposals belong to one scale); use MultiScaleFlipAug with one img_scale "
                "and flip=False"
            )
        results = []
        for image_augs, metas in zip(imgs, img_metas):
            feats, proposals = [], []
            for aug_img, meta in zip(image_augs, metas):
                x = self.extract_feat(pad_images(aug_img, self.size_divisor))
                feats.append(x)
                proposals.append(self.rpn_head.get_proposals(*self.rpn_head(x), [meta])[0])
            results.append(self.roi_head.aug_test(feats, proposals, metas))
        return results

    def aug_test(self, imgs, img_metas, proposals=None):
        """Per image, as :meth:`simple_test` with ``rescale=True``, merged over the
        augmentations."""
        results = self.aug_test_instances(imgs, img_metas, proposals)
        return [detection_to_per_class(r, self.num_classes) for r in results]


@DETECTORS.register()
class FastRCNN(TwoStageDetector):
    """Fast R-CNN: RoI head on precomputed ``proposals`` (given in training and testing)."""

    def __init__(
        self, backbone, roi_head, neck=None, train_cfg=None, test_cfg=None, pretrained=None
    ):
        super().__init__(backbone, roi_head, neck, None, train_cfg, test_cfg, pretrained)


@DETECTORS.register()
class FasterRCNN(TwoStageDetector):
    """Faster R-CNN: RPN proposals and a box RoI head."""

    def __init__(
        self, backbone, rpn_head, roi_head, neck=None, train_cfg=None, test_cfg=None,
        pretrained=None,
    ):  # fmt: skip
        super().__init__(backbone, roi_head, neck, rpn_head, train_cfg, test_cfg, pretrained)


@DETECTORS.register()
class MaskRCNN(FasterRCNN):
    """Mask R-CNN: Faster R-CNN whose RoI head has a mask branch."""

    def __init__(
        self, backbone, rpn_head, roi_head, neck=None, train_cfg=None, test_cfg=None,
        pretrained=None,
    ):  # fmt: skip
        if roi_head.get("mask_head") is None:
            raise ValueError("MaskRCNN: roi_head needs a mask_head")
        super().__init__(backbone, rpn_head, roi_head, neck, train_cfg, test_cfg, pretrained)
