"""Type and value checks for annotation records, shared by the dataset loaders.

Each check returns the value in the form the loader stores, or raises
:class:`~mmdet_like.datasets.errors.DatasetError` whose message starts with ``location``
(the file, the image / annotation id and the field, see :func:`~.errors.where`), says what
was found and how to fix it. Geometry problems that training can go on without (a polygon
with fewer than 3 points, a non-finite coordinate) go to a :class:`~.errors.ProblemLog`
instead, like the box checks of :func:`~.errors.check_box`.
"""

import json
import math
import numbers
import pickle

import numpy as np

from mmdet_like.datasets.errors import DatasetError

# Largest image side accepted in an annotation file. Box coordinates are stored as float32,
# which holds every integer up to 2**24 exactly, so a box clipped to the image stays inside
# it after storage.
MAX_IMAGE_SIDE = 2**24


def describe(value, limit=60):
    """``repr(value)`` cut to ``limit`` characters, with its type: ``"'1,2' (str)"``."""
    text = repr(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{text} ({type(value).__name__})"


def is_int(value):
    """True for Python / numpy integers, False for bools (``True`` is not an id)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def is_number(value):
    """True for real numbers (int, float, numpy scalars), False for bools and strings."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def require_int(value, location, what="the value"):
    """``value`` as an ``int``; anything but an integer (a str, a float, a list) raises."""
    if not is_int(value):
        raise DatasetError(
            f"{location}: {what} must be an integer, got {describe(value)}. Fix the value."
        )
    return int(value)


def require_size(value, location):
    """An image width/height: a positive integer (``640`` or ``640.0``) up to 2**24."""
    number = None
    if is_int(value):
        number = int(value)
    elif is_number(value) and math.isfinite(value) and float(value).is_integer():
        number = int(value)
    if number is None or not 1 <= number <= MAX_IMAGE_SIDE:
        raise DatasetError(
            f"{location}: must be a positive whole number of pixels (at most {MAX_IMAGE_SIDE}), "
            f"got {describe(value)}. Fix: write the image's real size."
        )
    return number


def require_number(value, location, what="the value"):
    """A real number as a ``float``; an int too large for a float becomes +-inf (a box
    with it is then dropped as non-finite). A str, None or list raises."""
    if not is_number(value):
        raise DatasetError(
            f"{location}: {what} must be a number, got {describe(value)}. Fix the value."
        )
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def require_str(value, location, what="the value"):
    """A non-empty ``str``."""
    if not isinstance(value, str) or not value:
        raise DatasetError(
            f"{location}: {what} must be a non-empty string, got {describe(value)}. Fix the value."
        )
    return value


def require_list(value, location, what="the value"):
    """A JSON array (a list or tuple)."""
    if not isinstance(value, (list, tuple)):
        raise DatasetError(
            f"{location}: {what} must be a list, got {describe(value)}. Fix the file's structure."
        )
    return value


def require_dict(value, location, what="the record"):
    """A JSON object (a dict)."""
    if not isinstance(value, dict):
        raise DatasetError(
            f"{location}: {what} must be an object ({{...}}), got {describe(value)}. Fix the "
            "file's structure."
        )
    return value


def numeric_array(value, location, what, integer=False):
    """``value`` (nested lists or an array) as a float64 array of real numbers.

    With ``integer=True`` every element must be a whole number. Strings, None, ragged
    nesting and bools raise.
    """
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as exc:  # ragged nesting
        raise DatasetError(
            f"{location}: expected a regular array of numbers for {what} ({exc}); got "
            f"{describe(value)}. Fix the nesting."
        ) from exc
    if array.dtype.kind not in "iuf" and not (array.dtype.kind == "O" and array.size == 0):
        raise DatasetError(
            f"{location}: {what} must hold only numbers, got {describe(value)}. Fix the values."
        )
    if array.dtype.kind == "O":  # an empty list of lists
        array = np.zeros(array.shape, dtype=np.float64)
    with np.errstate(over="ignore"):
        floats = array.astype(np.float64)
    if integer and not np.all(np.isfinite(floats) & (floats == np.floor(floats))):
        raise DatasetError(
            f"{location}: {what} must hold whole numbers, got {describe(value)}. Fix the values."
        )
    return floats


def rle_string_counts(text):
    """The run lengths of a compressed COCO RLE string (pycocotools' ``rleFrString``).

    Raises ``ValueError`` for characters outside the format's alphabet and for a string
    that ends inside a number.
    """
    counts, p, n = [], 0, len(text)
    while p < n:
        x, k, more = 0, 0, True
        while more:
            if p >= n:
                raise ValueError("it ends inside a run length")
            c = ord(text[p]) - 48
            if not 0 <= c < 64:
                raise ValueError(f"character {text[p]!r} at position {p} is not RLE data")
            if k > 12:
                raise ValueError(f"a run length at position {p} is too long")
            x |= (c & 0x1F) << (5 * k)
            more = c & 0x20
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def _rle(segm, height, width, location):
    """A validated COCO RLE dict in stored form (compressed ``bytes`` counts)."""
    import pycocotools.mask as mask_utils

    fix = "Fix: re-export the mask (RLE 'size' is [height, width] of its image)."
    for key in ("size", "counts"):
        if key not in segm:
            raise DatasetError(f"{location}: RLE mask has no {key!r}. {fix}")
    size = segm["size"]
    if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(map(is_int, size))):
        raise DatasetError(
            f"{location}: RLE 'size' must be [height, width], got {describe(size)}. {fix}"
        )
    if [int(size[0]), int(size[1])] != [height, width]:
        raise DatasetError(
            f"{location}: RLE mask of size {list(size)} (height, width) does not match the "
            f"image's [{height}, {width}]. {fix}"
        )
    counts = segm["counts"]
    if isinstance(counts, bytes):
        try:
            counts = counts.decode("ascii")
        except UnicodeDecodeError:
            counts = None
    if isinstance(counts, str):
        try:
            runs = rle_string_counts(counts)
        except ValueError as exc:
            raise DatasetError(
                f"{location}: RLE 'counts' is not a valid string: {exc}. {fix}"
            ) from exc
    elif isinstance(counts, (list, tuple)) and all(map(is_int, counts)):
        runs = [int(c) for c in counts]
    else:
        raise DatasetError(
            f"{location}: RLE 'counts' must be a string or a list of integers, got "
            f"{describe(segm['counts'])}. {fix}"
        )
    if any(not 0 <= r < 2**32 for r in runs) or sum(runs) != height * width:
        raise DatasetError(
            f"{location}: RLE 'counts' cover {sum(runs)} pixels (runs must be non-negative), "
            f"but the {height}x{width} image has {height * width}. {fix}"
        )
    if isinstance(counts, str):
        return {"size": [height, width], "counts": counts.encode("ascii")}
    rle = mask_utils.frPyObjects({"size": [height, width], "counts": runs}, height, width)
    return {"size": [height, width], "counts": rle["counts"]}


def coco_segmentation(segm, height, width, location, log):
    """A COCO ``segmentation`` validated and in stored form.

    Polygons (a list of flat ``[x1, y1, x2, y2, ...]`` lists) become float32 arrays; RLE
    (compressed or not) becomes a dict with compressed ``bytes`` counts and must have the
    image's size and cover every pixel once. Wrong types, odd coordinate counts and bad
    RLE raise :class:`DatasetError`. A polygon with fewer than 3 points, a non-finite
    coordinate or a point more than one image size outside the image is dropped (reported
    to ``log``); returns ``None`` when no polygon is left, meaning: drop the annotation.
    ``None`` / ``[]`` (no mask) give ``[]``.
    """
    if segm is None or (isinstance(segm, (list, tuple)) and len(segm) == 0):
        return []
    if isinstance(segm, dict):
        return _rle(segm, height, width, location)
    if not isinstance(segm, (list, tuple)):
        raise DatasetError(
            f"{location}: expected polygons [[x1, y1, x2, y2, ...], ...] or an RLE dict, got "
            f"{describe(segm)}. Fix the annotation."
        )
    polygons = []
    for j, poly in enumerate(segm):
        if not isinstance(poly, (list, tuple)):
            raise DatasetError(
                f"{location}: polygon {j} must be a list [x1, y1, x2, y2, ...] (segmentation "
                f"is a list of polygons), got {describe(poly)}. Fix the nesting."
            )
        coords = [require_number(v, location, f"polygon {j}'s coordinate") for v in poly]
        if len(coords) % 2:
            raise DatasetError(
                f"{location}: polygon {j} has {len(coords)} coordinates; it needs x, y pairs. "
                "Fix the polygon."
            )
        if len(coords) < 6:
            log.add(
                f"{location}: polygon {j} has {len(coords) // 2} point(s), fewer than 3; "
                "dropped. Fix: give it at least 3 points."
            )
            continue
        array = np.asarray(coords, dtype=np.float32)
        if not np.all(np.isfinite(array)):
            log.add(f"{location}: polygon {j} has a non-finite coordinate; dropped. Fix it.")
            continue
        xs, ys = array[0::2], array[1::2]
        if xs.min() < -width or xs.max() > 2 * width or ys.min() < -height or ys.max() > 2 * height:
            # Rasterising such a polygon makes pycocotools hang or crash.
            log.add(
                f"{location}: polygon {j} has a point far outside the {width}x{height} image "
                f"(x in [{xs.min():g}, {xs.max():g}], y in [{ys.min():g}, {ys.max():g}]); "
                "dropped. Fix the polygon or the image width/height."
            )
            continue
        polygons.append(array)
    if not polygons:
        log.add(f"{location}: no valid polygon left; annotation dropped.")
        return None
    return polygons


def read_json_file(path):
    """Load a json file; anything unreadable raises :class:`DatasetError` naming the file
    and (for syntax errors) the line and column."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        raise DatasetError(
            f"{path}: broken JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}. "
            "Fix the file (e.g. re-export it)."
        ) from exc
    except UnicodeDecodeError as exc:
        raise DatasetError(
            f"{path}: not a UTF-8 text file (byte {exc.start} is "
            f"{exc.object[exc.start : exc.start + 1]!r}); is it a JSON file at all? Fix: point "
            "ann_file at the JSON annotation file."
        ) from exc
    except RecursionError as exc:
        raise DatasetError(
            f"{path}: JSON nested too deeply to read. Fix the file's structure."
        ) from exc


# What an annotation / proposal pickle may hold besides plain Python values: numpy arrays,
# scalars and dtypes (numpy moved its internals from numpy.core to numpy._core in 2.0).
_PICKLE_GLOBALS = (
    {
        (module, name)
        for module in ("numpy.core.multiarray", "numpy._core.multiarray")
        for name in ("_reconstruct", "scalar")
    }
    | {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("collections", "OrderedDict"),
        ("builtins", "slice"),
        ("_codecs", "encode"),  # bytes in protocol 2
    }
    | {
        (module, name)
        for module in ("builtins", "__builtin__")  # protocols 0-3 name these containers
        for name in ("bytes", "bytearray", "set", "frozenset")
    }
)


class _DataUnpickler(pickle.Unpickler):
    """Unpickles plain values and numpy arrays only: any other class or function that the
    pickle names (``os.system``, ``builtins.eval``, ...) is refused before it is imported."""

    def find_class(self, module, name):
        if (module, name) in _PICKLE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"it refers to {module}.{name}")


def safe_pickle_load(path):
    """Load an annotation or proposal pickle holding lists, dicts, numbers, strings and
    numpy arrays. Anything else (a pickle that would run code or build other objects when
    loaded) and unreadable files raise :class:`DatasetError`; nothing in the file runs."""
    try:
        with open(path, "rb") as f:
            return _DataUnpickler(f).load()
    except pickle.UnpicklingError as exc:
        if "refers to" in str(exc):
            raise DatasetError(
                f"{path}: refused to load this pickle: {exc}, and annotation pickles may hold "
                "only lists, dicts, numbers, strings and numpy arrays (loading it could run "
                "arbitrary code). Fix: re-create the file from plain data, or use the JSON "
                "format."
            ) from exc
        raise DatasetError(f"{path}: not a readable pickle ({exc}). Fix: re-create it.") from exc
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
        raise DatasetError(
            f"{path}: not a readable pickle ({type(exc).__name__}: {exc}); it is truncated or "
            "not a pickle. Fix: re-create it."
        ) from exc


def coco_keypoints(value, num_keypoints, num_labelled, location):
    """An annotation's ``keypoints`` (a flat list ``[x1, y1, v1, ...]`` of ``3 K`` numbers)
    as a (K, 3) float32 array, checked: the length, numbers only, finite coordinates, each
    visibility 0 (unlabelled), 1 (labelled, hidden) or 2 (visible), and ``num_keypoints``
    (``num_labelled``, when the annotation has it) equal to the labelled count.

    ``location(field)`` names the file, image, annotation and field for errors."""
    require_list(value, location("keypoints"), "keypoints")
    if len(value) != 3 * num_keypoints:
        raise DatasetError(
            f"{location('keypoints')}: expected {3 * num_keypoints} numbers (x, y, visibility "
            f"for each of the category's {num_keypoints} keypoints), got {len(value)}. Fix the "
            "list, or the category's 'keypoints' names."
        )
    numbers = [require_number(v, location("keypoints"), "a keypoint value") for v in value]
    points = np.asarray(numbers, dtype=np.float64).reshape(num_keypoints, 3)
    visibility = points[:, 2]
    bad = np.flatnonzero(~np.isin(visibility, (0.0, 1.0, 2.0)))
    if len(bad):
        k = int(bad[0])
        raise DatasetError(
            f"{location('keypoints')}: keypoint {k} has visibility {describe(value[3 * k + 2])}"
            "; it must be 0 (not labelled), 1 (labelled, not visible) or 2 (visible). Fix "
            "the value."
        )
    labelled = visibility > 0
    if not np.isfinite(points[labelled, :2]).all():
        k = int(np.flatnonzero(labelled & ~np.isfinite(points[:, :2]).all(1))[0])
        raise DatasetError(
            f"{location('keypoints')}: keypoint {k} is labelled but its coordinates "
            f"{points[k, :2].tolist()} are not finite. Fix the coordinates."
        )
    if num_labelled is not None:
        count = require_int(num_labelled, location("num_keypoints"), "num_keypoints")
        if count != int(labelled.sum()):
            raise DatasetError(
                f"{location('num_keypoints')}: {count}, but {int(labelled.sum())} of the "
                "keypoints are labelled (visibility 1 or 2). Fix num_keypoints or the "
                "keypoints."
            )
    points[~labelled] = 0
    return points.astype(np.float32)
