"""Two-stage detectors: backbone -> neck -> (RPN) -> RoI head."""

import torch

from mmdet_like.models.detectors.base import (
    BaseDetector,
    ExportError,
    ExportSpec,
    check_exportable_nms,
    coarsest_prior_stride,
    pad_images,
)
from mmdet_like.models.utils.cfg_keys import check_cfg_keys
from mmdet_like.registry import DETECTORS, HEADS, build_from_cfg


class TwoStageDetector(BaseDetector):
    """Backbone, neck, optional RPN head and a RoI head.

    Args:
        backbone, neck, rpn_head, roi_head: part configs (``rpn_head=None``: proposals come
            with the data, as for Fast R-CNN).
        train_cfg: ``dict(rpn=..., rpn_proposal=..., rcnn=...)``: RPN assigner/sampler, the
            proposal settings used in training, and the RoI head's assigner/sampler.
        test_cfg: ``dict(rpn=..., rcnn=...)``.
        pretrained: backbone weights (``torchvision://resnet50`` or a file), loaded by
            :meth:`init_weights`, never at build time. A shared head that loads ResNet
            weights (``ResLayer``, C4 models' res5) without a ``pretrained`` of its own
            loads its stage from the backbone's file.
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
        self._check_cfg_keys()

    def _check_cfg_keys(self):
        """Every key of ``train_cfg`` / ``test_cfg`` is one the heads read."""
        train_schema = {"rcnn": type(self.roi_head).train_cfg_schema}
        test_schema = {"rcnn": type(self.roi_head).test_cfg_schema}
        if self.rpn_head is not None:
            rpn = type(self.rpn_head)
            train_schema.update(rpn=rpn.train_cfg_schema, rpn_proposal=rpn.test_cfg_schema)
            test_schema.update(rpn=rpn.test_cfg_schema)
        check_cfg_keys([(self.train_cfg, train_schema, "train_cfg"),
                        (self.test_cfg, test_schema, "test_cfg")])  # fmt: skip

    @property
    def with_mask(self):
        return self.roi_head.with_mask

    def init_weights(self):
        """Backbone weights (loading ``pretrained``), then the other parts' initialisation;
        a shared head without ``pretrained`` of its own loads the backbone's file (its
        ``layer4.*`` for a res5 ``ResLayer``)."""
        self.init_backbone_neck()
        if self.rpn_head is not None:
            self.rpn_head.init_weights()
        self.roi_head.init_weights()
        shared_head = getattr(self.roi_head, "shared_head", None)
        backbone_weights = getattr(self.backbone, "pretrained", None)
        if (
            backbone_weights
            and hasattr(shared_head, "load_pretrained")
            and not getattr(shared_head, "pretrained", None)
        ):
            shared_head.load_pretrained(backbone_weights)

    def forward_train(self, img, data_samples):
        """Losses: ``loss_rpn_cls``, ``loss_rpn_bbox`` (with an RPN), ``loss_cls``,
        ``loss_bbox``, ``acc`` and ``loss_mask`` (with a mask head).

        Args:
            img: (N, 3, H, W) padded batch.
            data_samples: N :class:`DetDataSample` with ``gt_instances`` (``bboxes``,
                ``labels`` [, ``masks``]), ``ignored_instances`` and, without an RPN,
                ``proposals``.
        """
        x = self.extract_feat(img)
        losses = {}
        if self.rpn_head is not None:
            rpn_losses, proposals = self.rpn_head.forward_train(
                x, data_samples, proposal_cfg=self.train_cfg.get("rpn_proposal") or {}
            )
            losses.update(rpn_losses)
        else:
            proposals = self._given_proposals(data_samples, img.device)
        losses.update(self.roi_head.forward_train(x, proposals, data_samples))
        return losses

    def _given_proposals(self, data_samples, device):
        """The samples' precomputed ``proposals`` (a detector without an RPN)."""
        if any(s.proposals is None for s in data_samples):
            raise ValueError(
                f"{type(self).__name__}: without an RPN, every data sample needs proposals "
                "(LoadProposals in the pipeline)"
            )
        return [s.proposals.to(device) for s in data_samples]

    def _rpn_proposals(self, x, img_metas):
        return self.rpn_head.get_proposals(*self.rpn_head(x), img_metas)

    @torch.no_grad()
    def predict_instances(self, img, data_samples, rescale=False):
        """N prediction :class:`InstanceData` (``bboxes``, ``scores``, ``labels`` [,
        ``masks``]) of a (N, 3, H, W) batch."""
        x = self.extract_feat(img)
        metas = [s.metainfo for s in data_samples]
        if self.rpn_head is not None:
            proposals = self._rpn_proposals(x, metas)
        else:
            proposals = self._given_proposals(data_samples, img.device)
        return self.roi_head.simple_test(x, proposals, metas, rescale=rescale)

    def export_spec(self):
        """``dets``, ``labels`` and the RoI head's further outputs
        (:meth:`BaseRoIHead.export_output_names`); the coarsest stride is that of the RPN's
        anchors. A detector without an RPN, or with Soft-NMS in the RoI head, does not
        export."""
        if self.rpn_head is None:
            raise ExportError(
                f"{type(self).__name__}: a detector without an RPN takes precomputed "
                "proposals; only detectors that find their own boxes export"
            )
        check_exportable_nms(self.roi_head.test_cfg, "test_cfg.rcnn")
        return ExportSpec(
            output_names=("dets", "labels", *self.roi_head.export_output_names()),
            coarsest_stride=coarsest_prior_stride(self.rpn_head, self.size_divisor),
        )

    def export_outputs(self, batch, img_meta):
        """The RPN's proposals, then the RoI head's :meth:`BaseRoIHead.export_outputs`."""
        x = self.extract_feat(batch)
        proposals = self._rpn_proposals(x, [img_meta])
        return self.roi_head.export_outputs(x, proposals, img_meta)

    def export_instances(self, outputs, img_meta, mask_thr=None):
        """As :meth:`BaseDetector.export_instances`, with masks and keypoints decoded by the
        RoI head (:meth:`BaseRoIHead.decode_export_outputs`)."""
        result = super().export_instances(outputs, img_meta)
        self.roi_head.decode_export_outputs(result, outputs, img_meta, mask_thr)
        return result

    @torch.no_grad()
    def aug_predict_instances(self, imgs, samples_per_image):
        """Test-time augmentation: N :class:`InstanceData` in the original images. Each
        image's augmentations run one by one (their sizes differ); the RoI head merges them
        (:meth:`StandardRoIHead.aug_test`)."""
        if self.rpn_head is None:
            raise ValueError(
                f"{type(self).__name__}: test-time augmentation needs an RPN (precomputed "
                "proposals belong to one scale); use MultiScaleFlipAug with one img_scale "
                "and flip=False"
            )
        results = []
        for image_augs, samples in zip(imgs, samples_per_image):
            feats, proposals, metas = [], [], [s.metainfo for s in samples]
            for aug_img, meta in zip(image_augs, metas):
                x = self.extract_feat(pad_images(aug_img, self.size_divisor))
                feats.append(x)
                proposals.append(self._rpn_proposals(x, [meta])[0])
            results.append(self.roi_head.aug_test(feats, proposals, metas))
        return results


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


@DETECTORS.register()
class KeypointRCNN(FasterRCNN):
    """Keypoint R-CNN: Faster R-CNN whose RoI head has a keypoint branch
    (``keypoint_roi_extractor``, ``keypoint_head``); its predictions add ``keypoints``
    (n, K, 2) and ``keypoint_scores`` (n, K)."""

    def __init__(
        self, backbone, rpn_head, roi_head, neck=None, train_cfg=None, test_cfg=None,
        pretrained=None,
    ):  # fmt: skip
        if roi_head.get("keypoint_head") is None:
            raise ValueError("KeypointRCNN: roi_head needs a keypoint_head")
        super().__init__(backbone, rpn_head, roi_head, neck, train_cfg, test_cfg, pretrained)


@DETECTORS.register()
class CascadeRCNN(FasterRCNN):
    """Cascade R-CNN (and Cascade Mask R-CNN, with a mask branch): Faster R-CNN whose RoI
    head is a :class:`~mmdet_like.models.roi_heads.CascadeRoIHead`."""

    def __init__(
        self, backbone, rpn_head, roi_head, neck=None, train_cfg=None, test_cfg=None,
        pretrained=None,
    ):  # fmt: skip
        if roi_head.get("type") != "CascadeRoIHead":
            raise ValueError(
                f"CascadeRCNN: roi_head must be a CascadeRoIHead, got {roi_head.get('type')!r}"
            )
        super().__init__(backbone, rpn_head, roi_head, neck, train_cfg, test_cfg, pretrained)
