"""Checkpoint I/O: atomic writes, ``weights_only`` reads, weight loading with a report.

A checkpoint is a dict holding only tensors and plain Python types::

    {"state_dict": {name: tensor}, "optimizer": optimizer.state_dict(),
     "meta": {"epoch": int, "iter": int, "inner_iter": int, "config": str,
              "mmdet_like_version": str, "torch_version": str, "CLASSES": [str] | None,
              "rng": {...}, "hook_states": {...}, ...}}

so ``torch.load(path, weights_only=True)`` reads it.

A run with ``EMAHook`` adds ``"source_state_dict"``: then ``state_dict`` holds the averaged
weights (what testing, inference, export and ``load_from`` read) and ``source_state_dict``
the weights the optimizer trains (what ``resume_from`` goes on from); see
mmdet_like/engine/hooks/ema.py.
"""

import os
import os.path as osp
import random
import re
import tempfile
import time
import warnings
from collections import OrderedDict

import numpy as np
import torch

from mmdet_like.checkpoint_file import CheckpointError, load_checkpoint_file
from mmdet_like.version import __version__

__all__ = ["CheckpointError", "load_checkpoint_file"]  # re-exported: read below models and engine

_PLAIN_TYPES = (int, float, bool, str, bytes, type(None))


class CheckpointMismatchWarning(UserWarning):
    """Weights of a checkpoint that were not loaded (missing, unexpected, other shape);
    warned when :func:`load_state_dict` has no logger to report them to."""


def _unwrap(model):
    return model.module if hasattr(model, "module") else model


def weights_to_cpu(state_dict):
    """A copy of ``state_dict`` with every tensor on the CPU."""
    return OrderedDict((k, v.detach().cpu()) for k, v in state_dict.items())


def check_plain(obj, where="checkpoint"):
    """Raise :class:`CheckpointError` if ``obj`` holds anything but tensors and plain types."""
    if isinstance(obj, torch.Tensor) or type(obj) in _PLAIN_TYPES:  # no str subclasses
        return
    if type(obj) in (dict, OrderedDict):
        for key, value in obj.items():
            if type(key) not in _PLAIN_TYPES:
                raise CheckpointError(f"{where}: key {key!r} is a {type(key).__name__}")
            check_plain(value, f"{where}[{key!r}]")
        return
    if type(obj) in (list, tuple):
        for index, value in enumerate(obj):
            check_plain(value, f"{where}[{index}]")
        return
    raise CheckpointError(
        f"{where} is a {type(obj).__module__}.{type(obj).__name__}; checkpoints hold only "
        "tensors and plain Python types (int, float, bool, str, None, list, tuple, dict), so "
        "that torch.load(..., weights_only=True) can read them. Convert it first (e.g. "
        "numpy arrays to tensors or lists)."
    )


def atomic_torch_save(obj, filename):
    """``torch.save`` to a temporary file in the same folder, fsync, then rename.

    A process killed during the save leaves the previous ``filename`` intact.
    """
    folder = osp.dirname(osp.abspath(filename))
    os.makedirs(folder, exist_ok=True)
    fd, tmp_path = tempfile.mkstemp(prefix=f".{osp.basename(filename)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp creates 0600 files
        os.replace(tmp_path, filename)
    except BaseException:
        if osp.exists(tmp_path):
            os.remove(tmp_path)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


_TMP_NAME = re.compile(r"^\.(?P<target>.+\.pth)\..+\.tmp$")
_CKPT_NAME = re.compile(r"^(epoch|iter)_(\d+)\.pth$")


def remove_partial_checkpoints(folder):
    """Delete the temporary files (``.NAME.pth.XXXX.tmp``) that :func:`atomic_torch_save`
    and ``latest.pth`` updates leave in ``folder`` when the process is killed mid-write.

    They never replaced a checkpoint, so they hold nothing that is needed. Returns the
    removed paths.
    """
    removed = []
    if not osp.isdir(folder):
        return removed
    for name in sorted(os.listdir(folder)):
        if _TMP_NAME.match(name):
            path = osp.join(folder, name)
            try:
                os.remove(path)
            except OSError:
                continue
            removed.append(path)
    return removed


def _checkpoint_progress(path):
    """``(iter, epoch)`` stored in the checkpoint at ``path``; raises if it is unreadable.

    Reads with ``mmap=True`` so that only the pickled structure is read, not the tensors
    (then without, e.g. for the legacy format or a file system without mmap).
    """
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    meta = checkpoint.get("meta") if isinstance(checkpoint, dict) else None
    if not isinstance(meta, dict) or "epoch" not in meta or "state_dict" not in checkpoint:
        raise CheckpointError("no state_dict or meta.epoch (not a training checkpoint)")
    return int(meta.get("iter", 0)), int(meta["epoch"])


def find_latest_checkpoint(folder, logger=None):
    """The path of the newest checkpoint in ``folder`` that can be resumed from, or None.

    Candidates are ``latest.pth`` and every ``epoch_N.pth`` / ``iter_N.pth``. Each is opened
    (tensors are memory-mapped, not read); one that cannot be read (truncated, corrupt, a
    dangling link) or that is not a training checkpoint is skipped with a warning. The
    newest is the one with the most finished iterations (then epochs, then the latest
    modification), so a broken ``latest.pth`` falls back to the newest valid
    ``epoch_N.pth``, and an ``epoch_N.pth`` written just before a kill is found even if
    ``latest.pth`` was not updated yet.
    """
    if not osp.isdir(folder):
        return None
    found = {}  # real path -> (sort key, path shown)
    for name in sorted(os.listdir(folder)):
        match = _CKPT_NAME.match(name)
        if not match and name != "latest.pth":
            continue
        path = osp.join(folder, name)
        real = osp.realpath(path)
        try:
            mtime = os.stat(real).st_mtime_ns
            progress = _checkpoint_progress(real)
        except Exception as exc:  # any unreadable file is skipped
            if logger is not None:
                logger.warning(
                    "auto-resume: skipping %s, not a usable checkpoint (%s)",
                    path,
                    str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                )
            continue
        key = (*progress, mtime, match is not None)  # a link's own name loses to N.pth
        if real not in found or key > found[real][0]:
            found[real] = (key, path)
    if not found:
        return None
    return max(found.values())[1]


def build_checkpoint(model, optimizer=None, meta=None):
    """The checkpoint dict of ``model``'s weights (on the CPU), ``optimizer``'s state and
    ``meta`` (plain), with the versions and the time added to ``meta``.

    ``model`` may be wrapped (DDP); its ``module`` is saved.
    """
    meta = dict(meta or {})
    meta.setdefault("mmdet_like_version", __version__)
    meta.setdefault("torch_version", str(torch.__version__))
    meta.setdefault("time", time.asctime())
    checkpoint = {"meta": meta, "state_dict": weights_to_cpu(_unwrap(model).state_dict())}
    if optimizer is not None:
        checkpoint["optimizer"] = optimizer.state_dict()
    return checkpoint


def write_checkpoint(checkpoint, filename):
    """Check that ``checkpoint`` holds only tensors and plain types, then write it
    atomically (:func:`atomic_torch_save`)."""
    check_plain(checkpoint)
    atomic_torch_save(checkpoint, filename)


def save_checkpoint(filename, model, optimizer=None, meta=None):
    """Write ``model``'s weights, ``optimizer``'s state and ``meta`` atomically.

    ``model`` may be wrapped (DDP); its ``module`` is saved. ``meta`` must be plain.
    """
    write_checkpoint(build_checkpoint(model, optimizer, meta), filename)


def get_rng_states():
    """RNG states of python, numpy, torch and CUDA as plain types and tensors."""
    version, internal, gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()  # noqa: NPY002 (the global RNG is what is seeded)
    states = {
        "python": [version, list(internal), gauss],
        "numpy": [
            np_name,
            torch.from_numpy(np_keys.astype(np.int64)),
            int(np_pos),
            int(np_has_gauss),
            float(np_gauss),
        ],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states):
    """Restore states saved by :func:`get_rng_states`."""
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = states["numpy"]
    np.random.set_state(  # noqa: NPY002 (the global RNG is what is seeded)
        (np_name, np_keys.numpy().astype(np.uint32), np_pos, np_has_gauss, np_gauss)
    )
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        cuda_states = states["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


def format_table(header, rows):
    """A plain-text table: ``header`` (list of str), ``rows`` (lists of values)."""
    columns = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in columns) for i in range(len(header))]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    out = [line, "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |", line]
    out += [
        "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in columns[1:]
    ]
    out.append(line)
    return "\n".join(out)


def load_state_dict(module, state_dict, strict=False, logger=None):
    """Copy matching tensors of ``state_dict`` into ``module``.

    Missing keys, unexpected keys and shape mismatches (not loaded) are reported in a
    table through ``logger`` (or raised with ``strict=True``). Returns the report as a dict
    ``{"missing": [...], "unexpected": [...], "shape_mismatch": [(key, ckpt, model)]}``.
    """
    module = _unwrap(module)
    own = module.state_dict()
    mismatched = [
        (k, tuple(v.shape), tuple(own[k].shape))
        for k, v in state_dict.items()
        if k in own and isinstance(v, torch.Tensor) and v.shape != own[k].shape
    ]
    bad = {k for k, _, _ in mismatched}
    result = module.load_state_dict(
        OrderedDict((k, v) for k, v in state_dict.items() if k not in bad), strict=False
    )
    report = {
        "missing": [k for k in result.missing_keys if k not in bad],
        "unexpected": list(result.unexpected_keys),
        "shape_mismatch": mismatched,
    }
    rows = [[k, "missing in checkpoint", "", ""] for k in report["missing"]]
    rows += [[k, "unexpected (not in model)", "", ""] for k in report["unexpected"]]
    rows += [[k, "shape mismatch (not loaded)", c, m] for k, c, m in mismatched]
    loaded = [k for k in state_dict if k in own and k not in bad]
    if rows:
        message = "weights not loaded as they are:\n" + format_table(
            ["key", "problem", "checkpoint shape", "model shape"], rows
        )
        if own and not loaded:  # e.g. the checkpoint of another model
            raise CheckpointError(
                f"none of the checkpoint's {len(state_dict)} weights fits this "
                f"{type(module).__name__} ({len(own)} weights): is it the checkpoint of "
                f"another model or config? {message}"
            )
        if strict:
            raise CheckpointError(message)
        if logger is not None:
            logger.warning(message)
        else:
            warnings.warn(message, CheckpointMismatchWarning, stacklevel=2)
    return report


def load_checkpoint_weights(
    model, checkpoint, filename, strict=False, logger=None, revise_keys=((r"^module\.", ""),)
):
    """Load the weights of an already read ``checkpoint`` (from ``filename``, named in
    errors) into ``model``; see :func:`load_checkpoint`."""
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{filename}: expected a dict, got {type(checkpoint).__name__}")
    state_dict = checkpoint.get("state_dict", checkpoint)
    if not isinstance(state_dict, dict):
        raise CheckpointError(
            f"{filename}: 'state_dict' must be a dict of tensors, got {type(state_dict).__name__}"
        )
    for key, value in state_dict.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            where = "'state_dict'" if "state_dict" in checkpoint else "the file"
            raise CheckpointError(
                f"{filename}: {where} must map weight names (str) to tensors, but holds "
                f"{key!r} -> {type(value).__name__}. Is it a checkpoint of a detector (a dict "
                "with 'state_dict', 'meta' and 'optimizer')?"
            )
    for pattern, replacement in revise_keys:
        state_dict = OrderedDict(
            (re.sub(pattern, replacement, k), v) for k, v in state_dict.items()
        )
    load_state_dict(model, state_dict, strict=strict, logger=logger)
    return checkpoint


def load_checkpoint(
    model,
    filename,
    map_location="cpu",
    strict=False,
    logger=None,
    revise_keys=((r"^module\.", ""),),
):
    """Load weights from ``filename`` into ``model``; returns the checkpoint dict.

    ``revise_keys`` are (regex, replacement) pairs applied to every key (by default the
    ``module.`` prefix of DDP checkpoints is dropped).
    """
    checkpoint = load_checkpoint_file(filename, map_location)
    return load_checkpoint_weights(model, checkpoint, filename, strict, logger, revise_keys)
