"""Compact annotation storage: numpy arrays and one bytes buffer, no lists of dicts.

Data-loader workers are forked from the main process; touching a Python object (a dict,
a list, a float) writes its reference count and so copies its memory page into the worker.
Keeping every annotation in a few large numpy arrays means a worker reads them without
copying, and host memory stays flat with many workers.

:class:`RaggedArray` holds one small array per image, concatenated, with offsets;
:class:`PackedBytes` holds one bytes object per item (file names, serialised polygons and
RLE masks) in a single uint8 buffer with offsets.
"""

import pickle

import numpy as np


class RaggedArray:
    """Per-image arrays of rows, concatenated: ``data`` (N, *row) and ``offsets`` (n + 1,).

    ``ragged[i]`` is a copy of ``data[offsets[i]:offsets[i + 1]]``.
    """

    def __init__(self, data, offsets):
        self.data = np.ascontiguousarray(data)
        self.offsets = np.asarray(offsets, dtype=np.int64)

    @classmethod
    def from_list(cls, arrays, dtype, row_shape=()):
        """Build from a list of arrays, each of shape (k_i, *row_shape)."""
        lengths = np.array([len(a) for a in arrays], dtype=np.int64)
        offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        parts = [np.asarray(a, dtype=dtype).reshape((-1, *row_shape)) for a in arrays]
        data = np.concatenate(parts) if parts else np.zeros((0, *row_shape), dtype=dtype)
        return cls(data.astype(dtype, copy=False), offsets)

    def __len__(self):
        return len(self.offsets) - 1

    def __getitem__(self, index):
        return self.data[self.offsets[index] : self.offsets[index + 1]].copy()

    def span(self, index):
        """``(start, stop)`` of item ``index`` in ``data``."""
        return int(self.offsets[index]), int(self.offsets[index + 1])

    def lengths(self):
        return np.diff(self.offsets)

    def select(self, indices):
        """A new RaggedArray with the items ``indices`` in that order."""
        indices = np.asarray(indices, dtype=np.int64)
        return RaggedArray.from_list(
            [self[i] for i in indices], self.data.dtype, self.data.shape[1:]
        )


class PackedBytes:
    """Many bytes objects in one uint8 buffer with (n + 1,) int64 offsets."""

    def __init__(self, buffer, offsets):
        self.buffer = np.asarray(buffer, dtype=np.uint8)
        self.offsets = np.asarray(offsets, dtype=np.int64)

    @classmethod
    def from_list(cls, items):
        lengths = np.array([len(b) for b in items], dtype=np.int64)
        offsets = np.zeros(len(items) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        buffer = np.frombuffer(b"".join(items), dtype=np.uint8).copy()
        return cls(buffer, offsets)

    @classmethod
    def from_strings(cls, strings):
        return cls.from_list([s.encode("utf-8") for s in strings])

    @classmethod
    def from_objects(cls, objects):
        """Pickle each object (e.g. one instance's polygons or RLE) into the buffer."""
        return cls.from_list([pickle.dumps(o, protocol=pickle.HIGHEST_PROTOCOL) for o in objects])

    def __len__(self):
        return len(self.offsets) - 1

    def get_bytes(self, index):
        return self.buffer[self.offsets[index] : self.offsets[index + 1]].tobytes()

    def get_str(self, index):
        return self.get_bytes(index).decode("utf-8")

    def get_object(self, index):
        return pickle.loads(self.get_bytes(index))

    def select(self, indices):
        return PackedBytes.from_list([self.get_bytes(int(i)) for i in indices])


class AnnotationTable:
    """All images and instances of a dataset in compact form.

    Images (length ``n``): ``img_ids`` int64, ``widths``/``heights`` int32, ``filenames``
    (:class:`PackedBytes` of UTF-8 paths relative to the image folder).
    Instances (per image, :class:`RaggedArray`): ``bboxes`` float32 (k, 4) ``[x1, y1, x2,
    y2]``, ``labels`` int64 (k,), ``ignore`` bool (k,) (crowd / difficult). ``masks``
    (optional, :class:`PackedBytes`, one pickled polygon list or RLE dict per instance, in
    the order of ``bboxes.data``). ``keypoints`` (optional, :class:`RaggedArray` float32
    (k, K, 3) per image: ``x, y, visibility`` of each instance's K keypoints).
    """

    def __init__(
        self, img_ids, filenames, widths, heights, bboxes, labels, ignore, masks=None,
        keypoints=None,
    ):  # fmt: skip
        self.img_ids = np.asarray(img_ids, dtype=np.int64)
        self.filenames = filenames
        self.widths = np.asarray(widths, dtype=np.int32)
        self.heights = np.asarray(heights, dtype=np.int32)
        self.bboxes = bboxes
        self.labels = labels
        self.ignore = ignore
        self.masks = masks
        self.keypoints = keypoints
        n = len(self.img_ids)
        sizes = {len(filenames), len(self.widths), len(self.heights), len(bboxes), len(labels)}
        if sizes != {n}:
            raise ValueError(f"AnnotationTable: inconsistent image counts {sorted(sizes)}")

    @classmethod
    def build(cls, images, instances, with_masks=False, num_keypoints=None):
        """From ``images`` = list of (img_id, filename, width, height) and ``instances`` = per
        image a list of (bbox, label, ignore[, mask[, keypoints]]) tuples (keypoints: a
        (K, 3) array, with ``num_keypoints=K``). Drops the lists afterwards."""
        ids, names, widths, heights = zip(*images) if images else ((), (), (), ())
        bboxes = RaggedArray.from_list(
            [[i[0] for i in insts] for insts in instances], np.float32, (4,)
        )
        labels = RaggedArray.from_list([[i[1] for i in insts] for insts in instances], np.int64)
        ignore = RaggedArray.from_list([[i[2] for i in insts] for insts in instances], bool)
        masks = None
        if with_masks:
            masks = PackedBytes.from_objects([i[3] for insts in instances for i in insts])
        keypoints = None
        if num_keypoints:
            keypoints = RaggedArray.from_list(
                [[i[4] for i in insts] for insts in instances], np.float32, (num_keypoints, 3)
            )
        return cls(
            ids, PackedBytes.from_strings(names), widths, heights, bboxes, labels, ignore, masks,
            keypoints,
        )  # fmt: skip

    def __len__(self):
        return len(self.img_ids)

    def select(self, indices):
        """A new table holding the images ``indices`` (e.g. after filtering)."""
        indices = np.asarray(indices, dtype=np.int64)
        masks = None
        if self.masks is not None:
            flat = [np.arange(*self.bboxes.span(i)) for i in indices]
            flat = np.concatenate(flat) if flat else np.zeros(0, dtype=np.int64)
            masks = self.masks.select(flat)
        return AnnotationTable(
            self.img_ids[indices],
            self.filenames.select(indices),
            self.widths[indices],
            self.heights[indices],
            self.bboxes.select(indices),
            self.labels.select(indices),
            self.ignore.select(indices),
            masks,
            None if self.keypoints is None else self.keypoints.select(indices),
        )

    def instances_without_mask(self):
        """(N,) bool over all instances (in ``bboxes.data`` order): True where the instance
        has no segmentation (every instance when the table has no masks)."""
        if self.masks is None:
            return np.ones(len(self.bboxes.data), dtype=bool)
        empty = pickle.dumps([], protocol=pickle.HIGHEST_PROTOCOL)
        candidates = np.flatnonzero(np.diff(self.masks.offsets) == len(empty))
        result = np.zeros(len(self.masks), dtype=bool)
        result[candidates] = [self.masks.get_bytes(int(k)) == empty for k in candidates]
        return result

    def instance_masks(self, index):
        """The serialised masks (polygon lists / RLE dicts) of image ``index``, in order."""
        if self.masks is None:
            return []
        start, stop = self.bboxes.span(index)
        return [self.masks.get_object(k) for k in range(start, stop)]
