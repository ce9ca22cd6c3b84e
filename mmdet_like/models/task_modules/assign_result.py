"""The outcome of assigning ground-truth boxes to candidate boxes (anchors or proposals)."""

from dataclasses import dataclass

import torch


@dataclass
class AssignResult:
    """Per-candidate assignment of one image.

    Attributes:
        num_gts: number of ground-truth boxes.
        gt_inds: (N,) int64: 0 negative, -1 ignored, ``i + 1`` positive for gt ``i``.
        max_overlaps: (N,) best IoU of each candidate with any gt.
        labels: (N,) int64 label of the assigned gt, -1 where not positive (or ``None``).
    """

    num_gts: int
    gt_inds: torch.Tensor
    max_overlaps: torch.Tensor
    labels: torch.Tensor | None = None

    @property
    def num_candidates(self):
        return self.gt_inds.numel()

    def add_gt_(self, gt_labels):
        """Prepend the gts themselves as positives (each assigned to itself, IoU 1)."""
        gt_inds = torch.arange(1, self.num_gts + 1, dtype=torch.long, device=self.gt_inds.device)
        self.gt_inds = torch.cat([gt_inds, self.gt_inds])
        self.max_overlaps = torch.cat([self.max_overlaps.new_ones(self.num_gts), self.max_overlaps])
        if self.labels is not None:
            self.labels = torch.cat([gt_labels.to(self.labels), self.labels])
