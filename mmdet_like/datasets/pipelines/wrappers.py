"""``RandomChoice``: run one of several transform sequences, drawn per image (mmcv's
``RandomChoice``; mmdetection 2's ``AutoAugment`` with ``policies``). DETR's augmentation
is one: either a multi-scale resize, or a resize, a random crop and the multi-scale resize
again."""

import random

from mmdet_like.datasets.pipelines.compose import Compose
from mmdet_like.registry import PIPELINES


@PIPELINES.register()
class RandomChoice:
    """Draw one of ``transforms`` (each a list of transform configs, or one config) and run
    it on the results.

    Args:
        transforms: the candidate sequences.
        prob: their probabilities (summing to 1); default uniform.

    Returns what the drawn sequence returns (``None`` when one of its steps drops the
    image, as :class:`Compose`).
    """

    def __init__(self, transforms, prob=None):
        if not isinstance(transforms, (list, tuple)) or not transforms:
            raise ValueError(
                "RandomChoice: transforms must be a non-empty list of transform sequences "
                f"(lists of config dicts), got {transforms!r}"
            )
        self.transforms = [
            Compose(t if isinstance(t, (list, tuple)) else [t]) for t in transforms
        ]  # fmt: skip
        if prob is not None:
            prob = [float(p) for p in prob]
            if len(prob) != len(self.transforms) or min(prob) < 0 or abs(sum(prob) - 1) > 1e-6:
                raise ValueError(
                    f"RandomChoice: prob must give {len(self.transforms)} non-negative "
                    f"probabilities summing to 1, one per sequence, got {prob}"
                )
        self.prob = prob

    def __call__(self, results):
        index = random.choices(range(len(self.transforms)), weights=self.prob)[0]
        return self.transforms[index](results)

    def __repr__(self):
        return f"RandomChoice(transforms={self.transforms!r}, prob={self.prob})"
