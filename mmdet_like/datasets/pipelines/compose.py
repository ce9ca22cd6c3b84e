"""``Compose``: run transforms in order on a results dict."""

from mmdet_like.registry import PIPELINES, BuildError, build_from_cfg


class Compose:
    """Transforms built from config dicts (through ``PIPELINES``) or given as callables.

    ``Compose(...)(results)`` returns the last transform's output, or ``None`` as soon as a
    transform returns ``None`` (e.g. a crop that left no box): the dataset then tries
    another image.
    """

    def __init__(self, transforms):
        self.transforms = []
        for index, t in enumerate(transforms or []):
            if isinstance(t, dict):
                try:
                    t = build_from_cfg(t, PIPELINES)
                except BuildError as exc:  # name the step: pipeline[2] (Resize): ...
                    raise BuildError(f"pipeline[{index}] ({t.get('type')}): {exc}") from exc
            elif not callable(t):
                raise TypeError(
                    f"Compose: a transform must be a config dict or callable, got {t!r}"
                )
            self.transforms.append(t)

    def __call__(self, data):
        for t in self.transforms:
            data = t(data)
            if data is None:
                return None
        return data

    def __repr__(self):
        inner = "".join(f"\n    {t!r}," for t in self.transforms)
        return f"Compose({inner}\n)"
