"""What an evaluator reads of a dataset: image ids, classes and the annotations, and the
COCO annotation file where there is one. Datasets build it (``dataset.ground_truth()``);
metrics take it, so they never depend on a dataset class."""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class DatasetGroundTruth:
    """Ground truth of an evaluated dataset, in result order.

    Attributes:
        img_ids: the image ids, one per result.
        class_names: names of the labels ``0 .. num_classes - 1``.
        get_ann_info: ``i -> dict(bboxes=(n, 4), labels=(n,), bboxes_ignore=(k, 4), ...)``
            for image ``i`` (boxes ``[x1, y1, x2, y2]``), read when a metric needs it.
        cat_ids: the COCO category id of each label (COCO-format datasets), else ``None``.
        coco: the COCO annotation file (a path, or a loaded ``COCO`` object), else ``None``.
        source: what to name in messages (the annotation file).
        keypoint_sigmas: the OKS sigmas of the keypoint set (datasets with keypoints whose
            set declares them), else ``None``.
    """

    img_ids: list
    class_names: tuple
    get_ann_info: Callable[[int], dict]
    cat_ids: list | None = None
    coco: Any = None
    source: str = "the dataset"
    keypoint_sigmas: tuple | None = None
    _annotations: list | None = field(default=None, init=False, repr=False, compare=False)

    def __len__(self):
        return len(self.img_ids)

    def annotations(self):
        """Every image's annotation dict, in result order (read once, for every metric)."""
        if self._annotations is None:
            self._annotations = [self.get_ann_info(i) for i in range(len(self))]
        return self._annotations
