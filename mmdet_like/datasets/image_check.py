"""Reading an image file with every problem named, and checking many files at once.

One function decides whether an image file can be used: :func:`read_image_file`. Training
(``LoadImageFromFile``), the inference API and the demos read images through it, and
``tools/check_dataset.py`` and a dataset's ``check_images=True`` check every image with it
(:func:`check_image_files`), so an image refused by one is refused by all.

Problems (``kind``): ``missing`` (no such file), ``unreadable`` (the file cannot be
opened), ``empty`` (0 bytes), ``not an image`` (no format OpenCV decodes), ``truncated``
(a JPEG without its end-of-image marker, a PNG without its ``IEND`` chunk, a WebP shorter
than its header says: a copy or download cut short), ``corrupt`` (a known format that
OpenCV cannot decode) and, for :func:`check_image_files`, ``size`` (the image as read differs
from its annotation's width/height). Truncation is found from the file's structure, not
from the decoder: OpenCV decodes a truncated JPEG from a file into a partly grey image with
only a warning on stderr (``cv2.imread``), and whether ``cv2.imdecode`` refuses one depends
on its version.
"""

import os
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import cv2
import mmcv
import numpy as np
from mmengine import fileio

from mmdet_like.datasets.errors import DatasetError, ImageReadError, where

FIXES = {
    "missing": "check the path (in a dataset: img_prefix, data_root and the file name)",
    "unreadable": "make it a file this user may read",
    "empty": "copy or download the image again",
    "not an image": "put the image itself under this name",
    "truncated": "copy or download the image again (it was cut short)",
    "corrupt": "replace the image with a good copy",
}

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class ImageProblem(NamedTuple):
    """An image file that cannot be used: its path, the ``kind`` of problem (see the module
    docstring) and the message (the file, the problem and the fix, one line)."""

    path: str
    kind: str
    message: str


def _jpeg_end(data):
    """Offset just past the end-of-image marker of the JPEG ``data``; ``None`` when the data
    ends before it. Walks the segments by their lengths (so an EXIF thumbnail's own marker is
    not taken for the image's); after a scan header, its entropy-coded data runs to the next
    marker: a 0xFF followed by a byte other than 0x00 (a stuffed 0xFF), 0xFF (a fill byte)
    or a restart marker's (0xD0-0xD7). Those markers are found with one vectorised pass."""
    buf = np.frombuffer(data, np.uint8)
    at_ff = np.flatnonzero(buf[:-1] == 0xFF)
    following = buf[at_ff + 1]
    not_marker = (following == 0x00) | (following == 0xFF) | ((following & 0xF8) == 0xD0)
    markers = at_ff[~not_marker] + 1  # offsets of the marker codes
    pos, size = 2, len(data)
    while True:
        k = int(np.searchsorted(markers, pos))
        if k == len(markers):
            return None
        pos = int(markers[k])
        code, pos = data[pos], pos + 1
        if code == 0xD9:  # EOI
            return pos
        if code == 0x01:  # TEM: no length
            continue
        if pos + 2 > size:
            return None
        pos += int.from_bytes(data[pos : pos + 2], "big")  # the segment (SOS: its header)
        if pos > size:
            return None


def _png_problem(data):
    """``(kind, reason)`` when the chunks of the PNG ``data`` do not reach its ``IEND``
    chunk: ``truncated`` when the data ends first, ``corrupt`` at a chunk whose type is not
    four letters; ``None`` when they do."""
    pos, size = len(_PNG_SIGNATURE), len(data)
    while pos + 12 <= size:
        length = int.from_bytes(data[pos : pos + 4], "big")
        chunk_type = data[pos + 4 : pos + 8]
        if chunk_type == b"IEND":
            return None
        if not chunk_type.isalpha():
            return "corrupt", f"corrupt: the PNG data has no valid chunk at byte {pos}"
        pos += 12 + length  # length, type, data, CRC
    return "truncated", (f"truncated: the PNG data ends (after {size} bytes) before its IEND chunk")


def image_format(data):
    """``"JPEG"``, ``"PNG"``, ``"WebP"``, ``"BMP"``, ``"TIFF"`` or ``"GIF"`` from the first
    bytes of ``data``; ``None`` for anything else."""
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:8] == _PNG_SIGNATURE:
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    if data[:2] == b"BM":
        return "BMP"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    return None


def data_problem(data):
    """``(kind, reason)`` of image file contents ``data`` that cannot be decoded whole, found
    from the bytes alone (empty, truncated, a PNG chunk that is none); ``None`` when none is
    found."""
    if len(data) == 0:
        return "empty", "the file is empty (0 bytes)"
    kind = image_format(data)
    if kind == "JPEG" and _jpeg_end(data) is None:
        return "truncated", (
            f"truncated: the JPEG data ends (after {len(data)} bytes) before its end-of-image "
            "marker"
        )
    if kind == "PNG":
        return _png_problem(data)
    if kind == "WebP":
        declared = int.from_bytes(data[4:8], "little") + 8
        if declared > len(data):
            return "truncated", (
                f"truncated: the file has {len(data)} bytes, its WebP header says {declared}"
            )
    return None


def _fail(path, kind, reason):
    fix = FIXES[kind]
    return ImageReadError(f"{path}: {reason}. Fix: {fix}.", str(path), reason, kind, fix)


def read_image_file(path, color_type="color"):
    """The image at ``path`` decoded by ``mmcv.imfrombytes`` with flag ``color_type`` (as
    ``mmcv.imread`` reads it: ``"color"`` gives (H, W, 3) uint8 BGR with the EXIF
    orientation applied). Raises :class:`ImageReadError` (with ``filename``, ``reason``,
    ``kind`` and ``fix``) for a file that is missing, unreadable, empty, truncated, not an
    image or that cannot be decoded."""
    try:
        data = fileio.get(path)
    except FileNotFoundError:
        raise _fail(path, "missing", "no such file") from None
    except OSError as exc:  # a folder, no permission
        raise _fail(path, "unreadable", f"cannot open it ({exc.strerror or exc})") from None
    problem = data_problem(data)
    if problem is not None:
        raise _fail(path, *problem)
    try:
        img = mmcv.imfrombytes(data, flag=color_type)
    except (OSError, ValueError, cv2.error) as exc:  # the pillow backend raises
        img, detail = None, f" ({exc})"
    else:
        detail = ""
    if img is None:
        kind = image_format(data)
        if kind is None:
            raise _fail(
                path, "not an image", f"not an image OpenCV can decode (it starts with "
                f"{bytes(data[:16])!r}){detail}"
            )  # fmt: skip
        raise _fail(path, "corrupt", f"corrupt: OpenCV cannot decode this {kind} file{detail}")
    return img


def check_image_size(img, img_info, filename):
    """Raise :class:`DatasetError` when the decoded image's size differs from the
    annotation's ``width``/``height`` (boxes and masks would then be misplaced).

    The image is compared as read, i.e. after its EXIF orientation was applied (mmcv /
    OpenCV do that for ``color_type="color"`` and ``"grayscale"``).
    """
    width, height = img_info.get("width"), img_info.get("height")
    if width is None or height is None:
        return
    h, w = img.shape[:2]
    if (h, w) == (int(height), int(width)):
        return
    hint = ""
    if (w, h) == (int(height), int(width)):
        hint = (
            " Width and height are swapped: the file most likely has an EXIF orientation tag, "
            "which is applied when it is read, while the annotation describes the stored, "
            "unrotated pixels."
        )
    raise DatasetError(
        f"{where(filename, img_info.get('id'), 'width/height')}: the image is {w}x{h} "
        f"(width x height, as read) but the annotation says {width}x{height}.{hint} Fix: make "
        "the annotation's width/height (and its boxes) match the image as displayed, or "
        "re-save the image (e.g. without the EXIF orientation tag)."
    )


def _check_one(path, img_info, color_type):
    try:
        check_image_size(read_image_file(path, color_type), img_info or {}, path)
    except ImageReadError as exc:
        return ImageProblem(str(path), exc.kind, str(exc))
    except DatasetError as exc:
        return ImageProblem(str(path), "size", str(exc))
    return None


def default_workers():
    """Threads for :func:`check_image_files`: the cores this process may use, shared among
    the processes of a distributed run on this machine (``LOCAL_WORLD_SIZE``)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))


def check_image_files(images, color_type="color", workers=None, progress=None):
    """Decode every image of ``images`` (``(path, img_info)`` pairs; ``img_info`` a dict with
    the annotation's ``width``, ``height`` and ``id``, or ``None`` for no size check) with
    :func:`read_image_file` and compare its size (:func:`check_image_size`), in ``workers``
    threads (default :func:`default_workers`; decoding releases the GIL). ``progress``: the
    description of a progress bar on stderr (``None``: no bar). Returns the
    :class:`ImageProblem` of every file that cannot be used, in the order of ``images``."""
    from tqdm import tqdm

    images = list(images)
    workers = max(1, min(workers or default_workers(), len(images) or 1))
    bar = tqdm(
        total=len(images), desc=progress, unit="images", file=sys.stderr,
        disable=progress is None, dynamic_ncols=True,
    )  # fmt: skip
    problems = []
    with bar, ThreadPoolExecutor(workers) as pool:
        for problem in pool.map(lambda image: _check_one(*image, color_type), images):
            if problem is not None:
                problems.append(problem)
            bar.update()
    return problems


def problems_report(problems, checked, shown=None, note=""):
    """Lines for a report of ``problems`` among ``checked`` files (``note`` follows the
    count): a count per kind, then one line per file (the first ``shown``; all with
    ``None``)."""
    counts = {}
    for p in problems:
        counts[p.kind] = counts.get(p.kind, 0) + 1
    kinds = ", ".join(f"{kind}: {n}" for kind, n in counts.items())
    lines = [f"{len(problems)} of {checked} image files{note} cannot be used ({kinds}):"]
    lines += [f"  {p.message}" for p in problems[:shown]]
    if shown is not None and len(problems) > shown:
        lines.append(f"  ... and {len(problems) - shown} more")
    return lines
