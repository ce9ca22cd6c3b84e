"""Per-image instance containers: named fields of one length, and the per-image data sample.

:class:`InstanceData` holds the instances of one image (ground truth or predictions) as named
fields that all have one entry per instance: tensors or arrays indexed on their first axis
(boxes (n, 4), labels (n,), scores (n,), keypoints (n, K, 3)) or mask structures
(``BitmapMasks`` / ``PolygonMasks``). Indexing by an int, a slice, an index tensor or a
boolean mask selects the same instances in every field; ``cat`` joins containers with the
same fields.

:class:`DetDataSample` is one image: its meta (``img_shape``, ``scale_factor``, ...), its
``gt_instances``, ``ignored_instances`` (crowd regions), optional ``proposals`` and, after
inference, ``pred_instances``.
"""

import numpy as np
import torch


def _length(value):
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return value.shape[0] if value.ndim else None
    try:
        return len(value)
    except TypeError:
        return None


def _cat_values(values):
    first = values[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(values)
    if isinstance(first, np.ndarray):
        return np.concatenate(values)
    if hasattr(type(first), "cat"):
        return type(first).cat(values)
    if isinstance(first, list):
        return [item for v in values for item in v]
    raise TypeError(f"InstanceData.cat: cannot join fields of type {type(first).__name__}")


class InstanceData:
    """Named per-instance fields of equal length.

    ``InstanceData(bboxes=(n, 4) tensor, labels=(n,) tensor)``; fields are set and read as
    attributes (``inst.scores = ...``) and must keep the length of the others.
    """

    def __init__(self, **fields):
        object.__setattr__(self, "_fields", {})
        for name, value in fields.items():
            setattr(self, name, value)

    # ------------------------------------------------------------------- fields
    def __setattr__(self, name, value):
        if name.startswith("_"):
            raise AttributeError(f"InstanceData: field names cannot start with '_' ({name!r})")
        length = _length(value)
        if length is None:
            raise TypeError(
                f"InstanceData: field {name!r} must have one entry per instance (a tensor, "
                f"array, list or mask structure), got {type(value).__name__}"
            )
        # the first field's length, not len(self): under torch.export a length can be a
        # symbolic size that len() cannot return
        current = next((_length(v) for v in self._fields.values()), None)
        others = [n for n in self._fields if n != name]
        if current is not None and others and length != current:
            raise ValueError(
                f"InstanceData: field {name!r} has {length} entries, the others "
                f"({', '.join(others)}) have {current}"
            )
        self._fields[name] = value

    def __getattr__(self, name):
        fields = object.__getattribute__(self, "_fields")
        if name in fields:
            return fields[name]
        raise AttributeError(
            f"InstanceData has no field {name!r}; it has {sorted(fields) or 'none'}"
        )

    def __delattr__(self, name):
        if name not in self._fields:
            raise AttributeError(f"InstanceData has no field {name!r}")
        del self._fields[name]

    def __contains__(self, name):
        return name in self._fields

    def keys(self):
        return list(self._fields)

    def items(self):
        return list(self._fields.items())

    def get(self, name, default=None):
        return self._fields.get(name, default)

    def __len__(self):
        for value in self._fields.values():
            return _length(value)
        return 0

    # ----------------------------------------------------------------- selection
    def __getitem__(self, index):
        """The instances at ``index`` (int, slice, index tensor/array/list, bool mask) in
        every field; an int keeps a length-1 container."""
        if isinstance(index, int):
            n = len(self)
            if not -n <= index < n:
                raise IndexError(f"InstanceData: index {index} out of range for {n} instances")
            index = slice(index % n, index % n + 1)
        if isinstance(index, (torch.Tensor, np.ndarray)) and index.dtype in (torch.bool, bool):
            if index.shape[0] != len(self):
                raise IndexError(
                    f"InstanceData: a boolean mask of {index.shape[0]} for {len(self)} instances"
                )
        out = InstanceData()
        for name, value in self._fields.items():
            out._fields[name] = _select(value, index)
        return out

    @staticmethod
    def cat(items):
        """One container of the instances of ``items`` (all with the same fields), in order."""
        items = list(items)
        if not items:
            raise ValueError("InstanceData.cat: nothing to join")
        names = items[0].keys()
        for item in items[1:]:
            if sorted(item.keys()) != sorted(names):
                raise ValueError(
                    f"InstanceData.cat: fields differ ({sorted(names)} vs {sorted(item.keys())})"
                )
        out = InstanceData()
        for name in names:
            out._fields[name] = _cat_values([item.get(name) for item in items])
        return out

    def to(self, device):
        """A container with every tensor field on ``device`` (other fields shared)."""
        out = InstanceData()
        for name, value in self._fields.items():
            out._fields[name] = value.to(device) if isinstance(value, torch.Tensor) else value
        return out

    def __repr__(self):
        parts = []
        for name, value in self._fields.items():
            shape = tuple(value.shape) if hasattr(value, "shape") else len(value)
            parts.append(f"{name}={type(value).__name__}{shape}")
        return f"InstanceData(num_instances={len(self)}, {', '.join(parts)})"


def _select(value, index):
    if isinstance(value, torch.Tensor):
        if isinstance(index, np.ndarray):
            index = torch.from_numpy(index)
        if isinstance(index, torch.Tensor):
            index = index.to(value.device)
        return value[index]
    if isinstance(value, np.ndarray):
        if isinstance(index, torch.Tensor):
            index = index.cpu().numpy()
        return value[index]
    if isinstance(value, list):
        if isinstance(index, slice):
            return value[index]
        index = index.cpu().numpy() if isinstance(index, torch.Tensor) else np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        return [value[int(i)] for i in index]
    # mask structures index like arrays
    if isinstance(index, torch.Tensor):
        index = index.cpu().numpy()
    return value[index]


class DetDataSample:
    """One image's data: ``metainfo`` (a dict: ``img_shape``, ``ori_shape``,
    ``scale_factor``, ``flip``, ...), ``gt_instances`` and ``ignored_instances``
    (:class:`InstanceData`), optional ``proposals`` (:class:`InstanceData` with ``bboxes``,
    ``scores``) and ``pred_instances`` (set by a detector's test)."""

    def __init__(self, metainfo=None, gt_instances=None, ignored_instances=None,
                 proposals=None, pred_instances=None):  # fmt: skip
        self.metainfo = dict(metainfo or {})
        self.gt_instances = gt_instances if gt_instances is not None else InstanceData()
        self.ignored_instances = (
            ignored_instances if ignored_instances is not None else InstanceData()
        )
        self.proposals = proposals
        self.pred_instances = pred_instances

    def to(self, device):
        """A sample with every instance container on ``device``."""
        move = lambda inst: None if inst is None else inst.to(device)  # noqa: E731
        return DetDataSample(
            self.metainfo, move(self.gt_instances), move(self.ignored_instances),
            move(self.proposals), move(self.pred_instances),
        )  # fmt: skip

    def __repr__(self):
        return (
            f"DetDataSample(metainfo keys={sorted(self.metainfo)}, gt={len(self.gt_instances)}, "
            f"ignored={len(self.ignored_instances)}, proposals="
            f"{None if self.proposals is None else len(self.proposals)}, pred="
            f"{None if self.pred_instances is None else len(self.pred_instances)})"
        )
