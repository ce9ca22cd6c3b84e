"""Region Proposal Network as a stand-alone detector (proposal recall / precomputing)."""

import torch

from mmdet_like.models.detectors.base import BaseDetector, pad_images
from mmdet_like.models.utils.cfg_keys import check_cfg_keys
from mmdet_like.ops import nms
from mmdet_like.registry import DETECTORS, HEADS, build_from_cfg
from mmdet_like.structures.bbox import bbox_mapping_back
from mmdet_like.structures.instance_data import InstanceData


@DETECTORS.register()
class RPN(BaseDetector):
    """Backbone, optional neck and an RPN head.

    Training returns ``dict(loss_rpn_cls, loss_rpn_bbox)``; inference the samples with
    ``pred_instances`` holding the proposals (``bboxes``, ``scores``; in the original image
    when ``rescale``), an (n, 5) float32 array ``[x1, y1, x2, y2, score]`` per image at the
    legacy edge.
    """

    def __init__(
        self, backbone, rpn_head, neck=None, train_cfg=None, test_cfg=None, pretrained=None
    ):
        super().__init__()
        self._init_backbone_neck(backbone, neck, pretrained)
        self.train_cfg, self.test_cfg = train_cfg, test_cfg
        rpn_train = None if train_cfg is None else train_cfg.get("rpn")
        rpn_test = None if test_cfg is None else test_cfg.get("rpn")
        self.rpn_head = build_from_cfg(
            dict(rpn_head, train_cfg=rpn_train, test_cfg=rpn_test), HEADS
        )
        head = type(self.rpn_head)
        check_cfg_keys([
            (train_cfg, {"rpn": head.train_cfg_schema, "rpn_proposal": head.test_cfg_schema},
             "train_cfg"),
            (test_cfg, {"rpn": head.test_cfg_schema}, "test_cfg"),
        ])  # fmt: skip

    def init_weights(self):
        """Backbone weights (loading ``pretrained``), then the heads' initialisation."""
        self.init_backbone_neck()
        self.rpn_head.init_weights()

    def forward_train(self, img, data_samples):
        """The RPN losses (``gt_instances.bboxes``; labels and masks are not read)."""
        x = self.extract_feat(img)
        losses, _ = self.rpn_head.forward_train(x, data_samples)
        return losses

    @torch.no_grad()
    def predict_instances(self, img, data_samples, rescale=False):
        """N proposal :class:`InstanceData` (``bboxes``, ``scores``), in the original image
        when ``rescale``."""
        x = self.extract_feat(img)
        metas = [s.metainfo for s in data_samples]
        proposals = self.rpn_head.get_proposals(*self.rpn_head(x), metas)
        if rescale:
            proposals = [_to_original(p, meta) for p, meta in zip(proposals, metas)]
        return proposals

    @torch.no_grad()
    def aug_predict_instances(self, imgs, samples_per_image):
        """Test-time augmentation: per image, the proposals of every augmentation mapped
        back to the original image, merged by one NMS (``test_cfg.rpn.nms_thr``) and cut to
        ``max_num``."""
        cfg = self.rpn_head.test_cfg
        results = []
        for image_augs, samples in zip(imgs, samples_per_image):
            merged = []
            for aug_img, sample in zip(image_augs, samples):
                x = self.extract_feat(pad_images(aug_img, self.size_divisor))
                props = self.rpn_head.get_proposals(*self.rpn_head(x), [sample.metainfo])[0]
                merged.append(_to_original(props, sample.metainfo))
            merged = InstanceData.cat(merged)
            keep = nms(merged.bboxes, merged.scores, cfg["nms_thr"])[: cfg["max_num"]]
            results.append(merged[keep])
        return results


def _to_original(proposals, img_meta):
    """Proposals of an input (resized, maybe flipped) -> the original image."""
    return InstanceData(bboxes=bbox_mapping_back(proposals.bboxes, img_meta),
                        scores=proposals.scores)  # fmt: skip
