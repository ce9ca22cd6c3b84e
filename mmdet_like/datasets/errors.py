"""The project's dataset errors and warnings.

Every problem found while a dataset is built raises :class:`DatasetError` (or warns with
:class:`DatasetWarning` where training can go on). Messages name the file, the image id,
the field and the fix.
"""

from mmdet_like.errors import ProjectError


class DatasetError(ProjectError, ValueError):
    """A dataset file or folder that cannot be used as it is."""


class ImageReadError(DatasetError):
    """An image file that is missing or cannot be decoded (see ``skip_bad_images``):
    ``filename``, ``reason``, the ``kind`` of problem and its ``fix`` (see
    :mod:`mmdet_like.datasets.image_check`)."""

    def __init__(self, message, filename=None, reason=None, kind=None, fix=None):
        super().__init__(message)
        self.filename = filename
        self.reason = reason
        self.kind = kind
        self.fix = fix


class DatasetWarning(UserWarning):
    """A dataset problem that was repaired (clipped, dropped) so training can go on."""


def where(path, img_id=None, field=None, ann_id=None):
    """``"file: image id 3, annotation id 7, field 'bbox'"`` for error messages."""
    parts = [str(path)]
    if img_id is not None:
        parts.append(f"image id {img_id}")
    if ann_id is not None:
        parts.append(f"annotation id {ann_id}")
    if field is not None:
        parts.append(f"field {field!r}")
    return ", ".join(parts)


class ProblemLog:
    """Collects repairable problems of one file: raises at once when ``strict``, else warns
    once at :meth:`flush` with the count and the first few messages."""

    def __init__(self, source, strict=False, shown=5):
        self.source, self.strict, self.shown = str(source), strict, shown
        self.messages = []

    def add(self, message):
        if self.strict:
            raise DatasetError(message + " (strict=True turns this warning into an error)")
        self.messages.append(message)

    def flush(self):
        import warnings

        if self.messages:
            more = len(self.messages) - self.shown
            text = "\n  ".join(self.messages[: self.shown])
            tail = f"\n  ... and {more} more" if more > 0 else ""
            warnings.warn(
                f"{self.source}: {len(self.messages)} annotation problem(s) repaired:\n  "
                f"{text}{tail}",
                DatasetWarning,
                stacklevel=3,
            )
        self.messages = []


def check_box(box, width, height, location, log):
    """Clip ``box = [x1, y1, x2, y2]`` to the image; ``None`` if it has no area left.

    Problems go to ``log`` (a :class:`ProblemLog`) with ``location`` (see :func:`where`).
    Values are rounded to float32 first (how boxes are stored), so a kept box has a
    positive size after storage too; values too large for float32 count as non-finite.
    """
    import math

    import numpy as np

    with np.errstate(over="ignore"):
        x1, y1, x2, y2 = (float(v) for v in np.asarray(box, dtype=np.float64).astype(np.float32))
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        log.add(f"{location}: box {list(box)} has a non-finite value; dropped. Fix the value.")
        return None
    if x2 <= x1 or y2 <= y1:
        log.add(
            f"{location}: box {[x1, y1, x2, y2]} has non-positive size (width {x2 - x1:g}, "
            f"height {y2 - y1:g}); dropped. Fix: give the box a positive width and height."
        )
        return None
    if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
        cx1, cy1 = min(max(x1, 0.0), width), min(max(y1, 0.0), height)
        cx2, cy2 = min(max(x2, 0.0), width), min(max(y2, 0.0), height)
        if cx2 <= cx1 or cy2 <= cy1:
            log.add(
                f"{location}: box {[x1, y1, x2, y2]} lies outside the {width}x{height} image; "
                "dropped. Fix the box or the image width/height."
            )
            return None
        log.add(
            f"{location}: box {[x1, y1, x2, y2]} extends outside the {width}x{height} image; "
            f"clipped to {[cx1, cy1, cx2, cy2]}. Fix the box or the image width/height."
        )
        return [cx1, cy1, cx2, cy2]
    return [x1, y1, x2, y2]
