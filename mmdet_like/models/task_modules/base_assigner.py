"""The contract every assigner keeps: candidates and ground truth of one image in, an
:class:`AssignResult` out."""

from abc import ABCMeta, abstractmethod

from mmdet_like.structures.instances import ignored_bboxes


class BaseAssigner(metaclass=ABCMeta):
    """Decides, for one image, which gt (if any) each candidate is trained towards.

    :meth:`assign` takes :class:`~mmdet_like.structures.InstanceData` containers:

    * ``pred_instances``: the N candidates. ``priors`` (N, 4) boxes (anchors, proposals) or
      (N, 2) points; prediction-aware assigners also read ``bboxes`` (N, 4) predicted boxes
      (``[x1, y1, x2, y2]`` in the input image) and ``scores`` (N, C) class logits.
    * ``gt_instances``: ``bboxes`` (G, 4) and ``labels`` (G,) (``labels`` optional for the
      IoU assigners: the result's ``labels`` is then ``None``).
    * ``gt_instances_ignore``: ``bboxes`` (K, 4) regions (crowds) whose candidates are
      neither positive nor negative; ``None`` or a container without ``bboxes`` for none.

    and keyword context that a caller may give to any assigner, each assigner reading the
    keys it needs (a head passes what it has, whichever assigner its config names):

    * ``valid_mask``: (N,) bools, ``False`` for candidates that must take no part (anchors
      outside the image): they come out ignored (``gt_inds`` -1) and no gt is matched to
      them.
    * ``num_level_priors``: the number of candidates of each pyramid level, the candidates
      being concatenated level after level (needed by :class:`ATSSAssigner`).
    * ``img_meta``: the image's meta dict (``img_shape`` ``(h, w)``, used to normalise boxes
      by :class:`HungarianAssigner`'s costs).

    The result's ``gt_inds`` is 0 (negative), -1 (ignored) or ``i + 1`` (gt ``i``), and its
    float ``max_overlaps`` is what the assigner measured for each candidate (see each
    assigner). Assigners used inside the training step run on the candidates' device without
    host syncs; :class:`HungarianAssigner` solves its matching on the host.
    """

    @abstractmethod
    def assign(self, pred_instances, gt_instances, gt_instances_ignore=None, *,
               valid_mask=None, num_level_priors=None, img_meta=None):  # fmt: skip
        """Assign the gts of ``gt_instances`` to the candidates of ``pred_instances``.

        Returns:
            :class:`~mmdet_like.models.task_modules.AssignResult` of N candidates.
        """


def ignore_boxes_of(gt_instances_ignore):
    """(K, 4) boxes of ``gt_instances_ignore`` with K > 0, else ``None``."""
    boxes = ignored_bboxes(gt_instances_ignore)
    if boxes is None or boxes.numel() == 0:
        return None
    return boxes[:, :4]
