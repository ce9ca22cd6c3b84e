"""Instance masks that move with their image: :class:`BitmapMasks` and :class:`PolygonMasks`.

Both hold ``n`` instance masks of one ``height x width`` image and offer the same methods:
``rescale``, ``resize``, ``flip``, ``crop``, ``pad``, ``expand``, ``warp``, ``to_ndarray``,
``to_tensor``, ``areas`` and ``get_bboxes``. Every method returns a new object.

Coordinates are continuous, as for boxes: pixel ``(row, col)`` covers ``[col, col + 1) x
[row, row + 1)``, so a mask's tight box is ``[min_col, min_row, max_col + 1, max_row + 1]``.
"""

import cv2
import numpy as np
import pycocotools.mask as mask_utils
import torch

from mmdet_like.structures.bbox import project_points

# pixel-centre aligned nearest neighbour: the resized mask's box stays within 0.5 px
_NEAREST = getattr(cv2, "INTER_NEAREST_EXACT", cv2.INTER_NEAREST)


def polygons_to_bitmap(polygons, height, width):
    """Rasterise one instance (a list of flat ``[x0, y0, x1, y1, ...]`` polygons).

    Returns:
        (height, width) uint8 array of 0/1.
    """
    polys = [np.asarray(p, dtype=np.float64).ravel().tolist() for p in polygons]
    polys = [p for p in polys if len(p) >= 6]
    if not polys:
        return np.zeros((height, width), dtype=np.uint8)
    rles = mask_utils.frPyObjects(polys, height, width)
    return mask_utils.decode(mask_utils.merge(rles)).astype(np.uint8)


def rle_to_bitmap(rle):
    """Decode a COCO RLE dict (compressed ``counts`` str/bytes, or an uncompressed list).

    Returns:
        (h, w) uint8 array of 0/1, with ``(h, w) = rle["size"]``.
    """
    h, w = rle["size"]
    if isinstance(rle["counts"], list):
        rle = mask_utils.frPyObjects(rle, h, w)
    return mask_utils.decode(rle).astype(np.uint8)


def bitmap_to_rle(mask, str_counts=True):
    """(H, W) 0/1 array -> compressed COCO RLE dict: the one RLE encoder of the project.

    ``counts`` is a ``str`` (JSON-ready) or, with ``str_counts=False``, the ``bytes`` that
    ``pycocotools.mask.encode`` returns (mmdetection's ``results.pkl`` format).
    """
    rle = mask_utils.encode(np.asfortranarray(np.asarray(mask).astype(np.uint8)))
    if str_counts:
        rle["counts"] = rle["counts"].decode("ascii")
    return rle


def masks_to_boxes(masks):
    """(n, H, W) masks -> (n, 4) float32 tight boxes ``[x1, y1, x2, y2]``; empty -> zeros."""
    masks = np.asarray(masks)
    boxes = np.zeros((len(masks), 4), dtype=np.float32)
    for i, mask in enumerate(masks):
        cols = np.flatnonzero(mask.any(axis=0))
        rows = np.flatnonzero(mask.any(axis=1))
        if len(cols) and len(rows):
            boxes[i] = [cols[0], rows[0], cols[-1] + 1, rows[-1] + 1]
    return boxes


def _scaled_size(height, width, scale):
    """Size after ``rescale``: a float factor, or a (long, short) bound keeping the ratio."""
    if isinstance(scale, (int, float)):
        factor = float(scale)
    else:
        long_edge, short_edge = max(scale), min(scale)
        factor = min(long_edge / max(height, width), short_edge / min(height, width))
    return int(height * factor + 0.5), int(width * factor + 0.5)


def _axis_aligned(matrix):
    """``(sx, sy, tx, ty)`` of a 3x3 matrix that only scales (possibly mirrors) and
    translates, else ``None``."""
    m = np.asarray(matrix, dtype=np.float64)
    if m[0, 1] or m[1, 0] or m[2, 0] or m[2, 1] or m[2, 2] != 1 or not m[0, 0] or not m[1, 1]:
        return None
    return m[0, 0], m[1, 1], m[0, 2], m[1, 2]


def _place(masks, top, left, height, width):
    """(n, h, w) masks put with their top-left corner at integer ``(top, left)`` of a zero
    (n, height, width) canvas; the parts outside the canvas are cut off."""
    out = np.zeros((len(masks), height, width), dtype=np.uint8)
    h, w = masks.shape[1:]
    y1, x1 = max(top, 0), max(left, 0)
    y2, x2 = min(top + h, height), min(left + w, width)
    if y2 > y1 and x2 > x1:
        out[:, y1:y2, x1:x2] = masks[:, y1 - top : y2 - top, x1 - left : x2 - left]
    return out


class BitmapMasks:
    """``n`` binary masks as one (n, H, W) uint8 array."""

    def __init__(self, masks, height, width):
        self.height, self.width = int(height), int(width)
        if len(masks) == 0:
            self.masks = np.zeros((0, self.height, self.width), dtype=np.uint8)
        else:
            self.masks = np.stack([np.asarray(m, dtype=np.uint8) for m in masks])
            if self.masks.shape[1:] != (self.height, self.width):
                raise ValueError(
                    f"BitmapMasks: masks have shape {self.masks.shape[1:]}, expected "
                    f"({self.height}, {self.width})"
                )

    def __len__(self):
        return len(self.masks)

    def __getitem__(self, index):
        return BitmapMasks(self.masks[index].reshape(-1, self.height, self.width), *self.shape)

    def __repr__(self):
        return f"BitmapMasks(num_masks={len(self)}, height={self.height}, width={self.width})"

    @classmethod
    def cat(cls, items):
        """The masks of ``items`` (all of one image size), in order."""
        _check_one_size(items, cls.__name__)
        return cls(np.concatenate([m.masks for m in items]), *items[0].shape)

    @property
    def shape(self):
        return self.height, self.width

    def rescale(self, scale):
        """Resize by a factor, or to fit a (long, short) bound keeping the aspect ratio."""
        return self.resize(_scaled_size(self.height, self.width, scale))

    def resize(self, out_shape):
        """Nearest-neighbour resize (pixel centres aligned) to ``out_shape = (h, w)``."""
        h, w = out_shape
        masks = [cv2.resize(m, (w, h), interpolation=_NEAREST) for m in self.masks]
        return BitmapMasks(masks, h, w)

    def flip(self, direction="horizontal"):
        axis = {"horizontal": 2, "vertical": 1, "diagonal": (1, 2)}[direction]
        return BitmapMasks(np.flip(self.masks, axis=axis), *self.shape)

    def pad(self, out_shape, pad_val=0):
        """Pad at the bottom and right to ``out_shape = (h, w)``."""
        h, w = out_shape
        out = np.full((len(self), h, w), pad_val, dtype=np.uint8)
        out[:, : self.height, : self.width] = self.masks
        return BitmapMasks(out, h, w)

    def crop(self, bbox):
        """Keep the integer window ``bbox = [x1, y1, x2, y2]`` (clipped to the image)."""
        x1, y1, x2, y2 = _clip_window(bbox, self.height, self.width)
        return BitmapMasks(self.masks[:, y1:y2, x1:x2], y2 - y1, x2 - x1)

    def expand(self, expanded_h, expanded_w, top, left):
        """Place the masks at ``(top, left)`` of a zero canvas of ``(expanded_h, expanded_w)``."""
        out = np.zeros((len(self), expanded_h, expanded_w), dtype=np.uint8)
        out[:, top : top + self.height, left : left + self.width] = self.masks
        return BitmapMasks(out, expanded_h, expanded_w)

    def warp(self, matrix, out_shape):
        """The masks moved by a 3x3 projective ``matrix`` (continuous coordinates: point
        ``(x, y)`` goes to ``M @ (x, y, 1)``) onto a zero canvas of ``out_shape = (h, w)``;
        nearest neighbour at pixel centres (an output pixel is set where its centre maps
        into a set pixel), so a mask's tight box stays within half a pixel of the moved
        continuous one. A matrix that only scales (or mirrors) to whole-pixel sizes and
        translates by whole pixels (Mosaic, MixUp) is a :meth:`resize`, a flip and a
        placement; any other goes through ``cv2.warpPerspective``."""
        h, w = (int(v) for v in out_shape[:2])
        aligned = _axis_aligned(matrix)
        if aligned is not None:
            sx, sy, tx, ty = aligned
            # whole-pixel sizes and offsets: a resize and a placement give the same pixels
            corners = (
                self.height * abs(sy), self.width * abs(sx),
                ty + min(0.0, sy * self.height), tx + min(0.0, sx * self.width),
            )  # fmt: skip
            if all(abs(v - round(v)) < 1e-3 for v in corners) and min(corners[:2]) >= 0.5:
                size = (int(round(corners[0])), int(round(corners[1])))
                moved = self.resize(size) if size != self.shape else self
                if sx < 0:
                    moved = moved.flip("horizontal")
                if sy < 0:
                    moved = moved.flip("vertical")
                top, left = int(round(corners[2])), int(round(corners[3]))
                return BitmapMasks(_place(moved.masks, top, left, h, w), h, w)
        # pixel indices: pixel i's centre is the continuous i + 0.5
        centre = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])
        index_matrix = np.linalg.inv(centre) @ np.asarray(matrix, np.float64) @ centre
        masks = [
            cv2.warpPerspective(m, index_matrix, (w, h), flags=cv2.INTER_NEAREST, borderValue=0)
            for m in self.masks
        ]
        return BitmapMasks(np.asarray(masks, np.uint8).reshape(len(self), h, w), h, w)

    @property
    def areas(self):
        """(n,) float64 pixel counts."""
        return self.masks.sum(axis=(1, 2)).astype(np.float64)

    def get_bboxes(self):
        """(n, 4) float32 tight boxes."""
        return masks_to_boxes(self.masks)

    def to_ndarray(self):
        return self.masks

    def to_tensor(self, dtype=torch.uint8, device="cpu"):
        return torch.as_tensor(self.masks, dtype=dtype, device=device)


class PolygonMasks:
    """``n`` instances, each a list of flat float64 polygons ``[x0, y0, x1, y1, ...]``."""

    def __init__(self, masks, height, width):
        self.height, self.width = int(height), int(width)
        self.masks = [[np.asarray(p, dtype=np.float64).ravel() for p in inst] for inst in masks]

    def __len__(self):
        return len(self.masks)

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            index = [index]
        elif isinstance(index, slice):
            index = range(len(self))[index]
        elif np.asarray(index).dtype == bool:
            index = np.flatnonzero(index)
        return PolygonMasks([self.masks[i] for i in index], *self.shape)

    def __repr__(self):
        return f"PolygonMasks(num_masks={len(self)}, height={self.height}, width={self.width})"

    @classmethod
    def cat(cls, items):
        """The instances of ``items`` (all of one image size), in order."""
        _check_one_size(items, cls.__name__)
        return cls([inst for m in items for inst in m.masks], *items[0].shape)

    @property
    def shape(self):
        return self.height, self.width

    def _map(self, fn, height, width):
        return PolygonMasks([[fn(p) for p in inst] for inst in self.masks], height, width)

    def rescale(self, scale):
        return self.resize(_scaled_size(self.height, self.width, scale))

    def resize(self, out_shape):
        h, w = out_shape
        sx, sy = w / self.width, h / self.height

        def scale(p):
            q = p.copy()
            q[0::2] *= sx
            q[1::2] *= sy
            return q

        return self._map(scale, h, w)

    def flip(self, direction="horizontal"):
        def flip(p):
            q = p.copy()
            if direction in ("horizontal", "diagonal"):
                q[0::2] = self.width - q[0::2]
            if direction in ("vertical", "diagonal"):
                q[1::2] = self.height - q[1::2]
            return q

        if direction not in ("horizontal", "vertical", "diagonal"):
            raise ValueError(f"PolygonMasks.flip: unknown direction {direction!r}")
        return self._map(flip, *self.shape)

    def pad(self, out_shape, pad_val=0):
        """Padding at the bottom/right only changes the canvas size."""
        return PolygonMasks(self.masks, *out_shape)

    def crop(self, bbox):
        """Shift into the window ``[x1, y1, x2, y2]`` and clamp the points to it."""
        x1, y1, x2, y2 = _clip_window(bbox, self.height, self.width)
        w, h = x2 - x1, y2 - y1

        def crop(p):
            q = p.copy()
            q[0::2] = np.clip(q[0::2] - x1, 0, w)
            q[1::2] = np.clip(q[1::2] - y1, 0, h)
            return q

        return self._map(crop, h, w)

    def expand(self, expanded_h, expanded_w, top, left):
        def shift(p):
            q = p.copy()
            q[0::2] += left
            q[1::2] += top
            return q

        return self._map(shift, expanded_h, expanded_w)

    def warp(self, matrix, out_shape):
        """Every polygon point moved by a 3x3 projective ``matrix`` (``M @ (x, y, 1)``) into
        an ``out_shape = (h, w)`` image, then clamped to it (as :meth:`crop` clamps)."""
        h, w = (int(v) for v in out_shape[:2])

        def warp(p):
            q = project_points(p.reshape(-1, 2), matrix)
            q[:, 0] = np.clip(q[:, 0], 0, w)
            q[:, 1] = np.clip(q[:, 1], 0, h)
            return q.ravel()

        return self._map(warp, h, w)

    @property
    def areas(self):
        """(n,) float64 polygon areas (shoelace formula, parts summed)."""
        out = np.zeros(len(self), dtype=np.float64)
        for i, inst in enumerate(self.masks):
            for p in inst:
                x, y = p[0::2], p[1::2]
                out[i] += 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))
        return out

    def get_bboxes(self):
        """(n, 4) float32 boxes around the polygon points."""
        boxes = np.zeros((len(self), 4), dtype=np.float32)
        for i, inst in enumerate(self.masks):
            if inst:
                pts = np.concatenate(inst)
                xs, ys = pts[0::2], pts[1::2]
                boxes[i] = [xs.min(), ys.min(), xs.max(), ys.max()]
        return boxes

    def to_ndarray(self):
        """(n, H, W) uint8 rasterised masks."""
        if not self.masks:
            return np.zeros((0, self.height, self.width), dtype=np.uint8)
        return np.stack([polygons_to_bitmap(m, self.height, self.width) for m in self.masks])

    def to_bitmap(self):
        return BitmapMasks(self.to_ndarray(), *self.shape)

    def to_tensor(self, dtype=torch.uint8, device="cpu"):
        return torch.as_tensor(self.to_ndarray(), dtype=dtype, device=device)


def _check_one_size(items, name):
    sizes = {tuple(m.shape) for m in items}
    if len(sizes) != 1:
        raise ValueError(f"{name}.cat: masks of different image sizes {sorted(sizes)}")


def _clip_window(bbox, height, width):
    x1, y1, x2, y2 = (int(round(float(v))) for v in bbox)
    x1, x2 = min(max(x1, 0), width - 1), min(max(x2, 0), width)
    y1, y2 = min(max(y1, 0), height - 1), min(max(y2, 0), height)
    return int(x1), int(y1), int(max(x2, x1 + 1)), int(max(y2, y1 + 1))
