"""``MultiScaleFlipAug``: run the test transforms at several scales and flips."""

import copy

from mmdet_like.datasets.pipelines.compose import Compose
from mmdet_like.datasets.pipelines.transforms import scale_list
from mmdet_like.registry import PIPELINES


@PIPELINES.register()
class MultiScaleFlipAug:
    """Apply ``transforms`` once per (scale, flip) pair and merge the outputs.

    ``results["scale"]``, ``["flip"]`` and ``["flip_direction"]`` are preset for each run
    (``Resize`` and ``RandomFlip`` inside ``transforms`` use them).

    Returns:
        dict of lists: for each key of the transformed results, one entry per augmentation,
        ordered scale-major (``[s0, s0 flipped, s1, s1 flipped, ...]``).
    """

    def __init__(self, transforms, img_scale, flip=False, flip_direction="horizontal"):
        self.transforms = Compose(transforms)
        self.img_scale = scale_list(img_scale, "MultiScaleFlipAug")
        self.flip = flip
        self.flip_direction = (
            [flip_direction] if isinstance(flip_direction, str) else list(flip_direction)
        )

    def __call__(self, results):
        flips = [(False, None)]
        if self.flip:
            flips += [(True, d) for d in self.flip_direction]
        merged = {}
        for scale in self.img_scale:
            for flip, direction in flips:
                _results = copy.deepcopy(results)
                _results["scale"] = scale
                _results["flip"] = flip
                _results["flip_direction"] = direction
                data = self.transforms(_results)
                for key, value in data.items():
                    merged.setdefault(key, []).append(value)
        return merged

    def __repr__(self):
        return (
            f"MultiScaleFlipAug(transforms={self.transforms!r}, img_scale={self.img_scale}, "
            f"flip={self.flip}, flip_direction={self.flip_direction})"
        )
