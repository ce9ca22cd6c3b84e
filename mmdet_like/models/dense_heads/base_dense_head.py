"""What every dense (per-location) head shares: the forward over levels, the training step on
data samples, and the contract a head fills in.

A dense head runs ``forward_single`` on each pyramid level; its outputs (per level lists,
e.g. class scores, box predictions and, for FCOS, centre-ness) go as they are to ``loss``
(training) and ``get_bboxes`` (detections) or ``get_proposals`` (proposal heads).
:class:`~mmdet_like.models.dense_heads.AnchorHead` is the base of the anchor-based heads;
anchor-free heads (:class:`~mmdet_like.models.dense_heads.FCOSHead`) subclass this one
directly.
"""

import abc

from torch import nn

from mmdet_like.structures.instances import unpack_gt_instances


class BaseDenseHead(nn.Module, metaclass=abc.ABCMeta):
    """Subclasses implement ``forward_single(x)`` (one level's outputs, a tuple; heads whose
    layers differ by level override :meth:`forward`),
    ``loss(*outputs, batch_gt_instances, batch_img_metas, batch_gt_instances_ignore)`` and
    ``get_bboxes(*outputs, img_metas, cfg=None, rescale=False)``; proposal heads also
    ``get_proposals``. ``train_cfg_schema`` / ``test_cfg_schema`` list the config keys the
    head reads (the detector refuses others)."""

    train_cfg_schema = {}
    test_cfg_schema = {}

    @abc.abstractmethod
    def forward_single(self, x):
        """One level: (N, C, H, W) -> a tuple of that level's outputs."""

    def forward(self, feats):
        """Tuple of L (N, C, H_l, W_l) features -> a tuple of lists over the levels, one list
        per output of :meth:`forward_single`."""
        per_level = [self.forward_single(x) for x in feats]
        return tuple(list(outputs) for outputs in zip(*per_level))

    def _check_can_train(self):
        """Raise a clear error where the head was built without what training needs."""

    @abc.abstractmethod
    def loss(self, *args, **kwargs):
        """Dict of the head's losses (see the subclass)."""

    @abc.abstractmethod
    def get_bboxes(self, *args, **kwargs):
        """N prediction :class:`InstanceData` (see the subclass)."""

    def forward_train(self, feats, data_samples, proposal_cfg=None):
        """Training: the losses and, with ``proposal_cfg``, proposals (:meth:`get_proposals`,
        for heads that give them).

        Args:
            feats: tuple of L (N, C, H_l, W_l) features.
            data_samples: N :class:`DetDataSample` (``gt_instances``: ``bboxes``,
                ``labels``; ``ignored_instances``; the image meta).

        Returns:
            (losses dict, N proposal :class:`InstanceData` (``bboxes``, ``scores``) or
            ``None``).
        """
        self._check_can_train()
        batch_gt_instances, batch_gt_ignore, batch_img_metas = unpack_gt_instances(data_samples)
        outputs = self(feats)
        losses = self.loss(*outputs, batch_gt_instances, batch_img_metas, batch_gt_ignore)
        proposals = None
        if proposal_cfg is not None:
            detached = [[x.detach() for x in level] for level in outputs]
            proposals = self.get_proposals(*detached, batch_img_metas, proposal_cfg)
        return losses, proposals

    def get_proposals(self, *args, **kwargs):
        raise NotImplementedError(
            f"{type(self).__name__} is a detection head and gives no proposals; use RPNHead "
            "(or another proposal head) as the rpn_head of a two-stage detector"
        )
