"""Single-stage detectors: backbone -> neck -> a dense head that outputs detections."""

import torch

from mmdet_like.models.detectors.base import (
    BaseDetector,
    ExportSpec,
    check_exportable_nms,
    coarsest_prior_stride,
)
from mmdet_like.models.utils.cfg_keys import check_cfg_keys
from mmdet_like.registry import DETECTORS, HEADS, build_from_cfg
from mmdet_like.structures.instance_data import DetDataSample


@DETECTORS.register()
class SingleStageDetector(BaseDetector):
    """Backbone, optional neck and a detection head (an ``AnchorHead`` subclass or any head
    with the same ``forward_train`` / ``get_bboxes``).

    Args:
        backbone, neck, bbox_head: part configs.
        train_cfg: the head's training settings (assigner, sampler, ...), the whole
            top-level ``train_cfg`` (single-stage configs have no ``rpn`` / ``rcnn`` keys).
        test_cfg: the head's detection settings (``nms_pre``, ``score_thr``, ``nms``,
            ``max_per_img``).
        pretrained: backbone weights, loaded by :meth:`init_weights`.

    Training returns the head's losses; inference the samples with ``pred_instances``
    (``bboxes``, ``scores``, ``labels``).
    """

    def __init__(
        self, backbone, bbox_head, neck=None, train_cfg=None, test_cfg=None, pretrained=None
    ):
        super().__init__()
        self._init_backbone_neck(backbone, neck, pretrained)
        self.train_cfg = None if train_cfg is None else dict(train_cfg)
        self.test_cfg = None if test_cfg is None else dict(test_cfg)
        self.bbox_head = build_from_cfg(
            dict(bbox_head, train_cfg=self.train_cfg, test_cfg=self.test_cfg), HEADS
        )
        self.num_classes = self.bbox_head.num_classes
        head = type(self.bbox_head)
        check_cfg_keys([(self.train_cfg, head.train_cfg_schema, "train_cfg"),
                        (self.test_cfg, head.test_cfg_schema, "test_cfg")])  # fmt: skip

    def init_weights(self):
        """Backbone weights (loading ``pretrained``), then the neck's and head's."""
        self.init_backbone_neck()
        self.bbox_head.init_weights()

    def forward_train(self, img, data_samples):
        """The head's losses (``gt_instances``: ``bboxes``, ``labels``; fields a box
        detector does not use, such as ``masks``, are not read)."""
        x = self.extract_feat(img)
        losses, _ = self.bbox_head.forward_train(x, data_samples)
        return losses

    @torch.no_grad()
    def predict_instances(self, img, data_samples, rescale=False):
        """N prediction :class:`InstanceData` (``bboxes``, ``scores``, ``labels``)."""
        x = self.extract_feat(img)
        metas = [s.metainfo for s in data_samples]
        return self.bbox_head.get_bboxes(*self.bbox_head(x), metas, rescale=rescale)

    def export_spec(self):
        """``dets``, ``labels``: the head's detections (:meth:`predict_instances`); the
        coarsest stride is that of the head's priors. Soft-NMS does not export."""
        check_exportable_nms(self.bbox_head.test_cfg, "test_cfg")
        return ExportSpec(
            output_names=("dets", "labels"),
            coarsest_stride=coarsest_prior_stride(self.bbox_head, self.size_divisor),
        )

    def export_outputs(self, batch, img_meta):
        result = self.predict_instances(batch, [DetDataSample(metainfo=img_meta)])[0]
        return torch.cat([result.bboxes, result.scores[:, None]], dim=1), result.labels


@DETECTORS.register()
class RetinaNet(SingleStageDetector):
    """RetinaNet (Lin et al. 2017): a :class:`SingleStageDetector` whose head is a
    ``RetinaHead`` (focal loss, anchors of 3 scales and 3 ratios per level)."""


@DETECTORS.register()
class FCOS(SingleStageDetector):
    """FCOS (Tian et al. 2019): a :class:`SingleStageDetector` whose head is an
    ``FCOSHead`` (anchor-free: one point per cell, distances to the box sides, centre-ness)."""


@DETECTORS.register()
class ATSS(SingleStageDetector):
    """ATSS (Zhang et al. 2020): a :class:`SingleStageDetector` whose head is an ``ATSSHead``
    (one anchor per location, adaptive positive selection, centre-ness)."""


@DETECTORS.register()
class GFL(SingleStageDetector):
    """Generalized Focal Loss (Li et al. 2020): a :class:`SingleStageDetector` whose head is a
    ``GFLHead`` (joint class-quality scores, distance distributions)."""
