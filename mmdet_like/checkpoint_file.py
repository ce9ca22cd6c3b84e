"""Reading checkpoint files: local paths, ``torchvision://NAME`` and ``http(s)://`` URLs,
always with ``torch.load(..., weights_only=True)``, and an exact reason when a file cannot
be read (empty, cut off, foreign, or holding Python objects that would run code).

This sits below the models and the engine (both read checkpoint files: pretrained weights,
resumed runs), so neither imports the other for it.
"""

import os
import os.path as osp
import re
import urllib.error

import torch

from mmdet_like.errors import ProjectError


class CheckpointError(ProjectError, RuntimeError):
    """A checkpoint that cannot be written, read or loaded, with the reason."""


def _hub_checkpoint_path(url, file_name=None):
    return osp.join(torch.hub.get_dir(), "checkpoints", file_name or osp.basename(url))


def _load_url(url, map_location, file_name=None):
    try:
        return torch.hub.load_state_dict_from_url(
            url,
            map_location=map_location,
            progress=True,
            file_name=file_name,
            weights_only=True,
        )
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise CheckpointError(
            f"could not download {url} ({exc}). Offline, download it on another machine and "
            f"put it at {_hub_checkpoint_path(url, file_name)} (the torch hub cache; set "
            "TORCH_HOME to move it)."
        ) from exc


def _torchvision_url(name):
    """``resnet50`` or ``resnet50.IMAGENET1K_V2`` -> (url of torchvision's weights)."""
    from torchvision import models

    model_name, _, weights_name = name.partition(".")
    try:
        weights_enum = models.get_model_weights(model_name)
    except (ValueError, KeyError) as exc:
        raise CheckpointError(
            f"torchvision://{name}: torchvision has no model {model_name!r}"
        ) from exc
    weights_name = weights_name or (
        "IMAGENET1K_V1" if hasattr(weights_enum, "IMAGENET1K_V1") else "DEFAULT"
    )
    try:
        return weights_enum[weights_name].url
    except KeyError as exc:
        choices = ", ".join(w.name for w in weights_enum)
        raise CheckpointError(
            f"torchvision://{name}: {model_name} has no weights {weights_name!r}; one of {choices}"
        ) from exc


def load_checkpoint_file(filename, map_location="cpu"):
    """Read a checkpoint: a local path, ``torchvision://NAME[.WEIGHTS]`` or ``http(s)://``.

    Reads with ``weights_only=True``; a file that needs arbitrary objects is refused.
    """
    if filename.startswith("torchvision://"):
        return _load_url(_torchvision_url(filename[len("torchvision://") :]), map_location)
    if filename.startswith(("http://", "https://")):
        return _load_url(filename, map_location)
    if not osp.isfile(filename):
        if osp.isdir(filename):
            raise CheckpointError(f"checkpoint {filename!r} is a folder, not a checkpoint file")
        raise CheckpointError(f"checkpoint file {filename!r} does not exist")
    try:
        return torch.load(filename, map_location=map_location, weights_only=True)
    except Exception as exc:  # UnpicklingError, RuntimeError, EOFError, KeyError, ...
        try:
            reason = _why_unreadable(filename, exc)
        except Exception:  # the diagnosis must not hide the error
            reason = f"not a readable checkpoint ({type(exc).__name__}: {exc})"
        raise CheckpointError(f"{filename}: {reason}") from exc


_UNSAFE_ADVICE = (
    "so it is not loaded (loading it would run arbitrary code). Checkpoints written by "
    "mmdet_like never do; if you trust this file, convert it once: load it with "
    "torch.load(path, weights_only=False) and save only tensors / plain types."
)


def _allowed_globals():
    """Names (``module.name``) that ``torch.load(weights_only=True)`` accepts."""
    try:
        from torch._weights_only_unpickler import _get_allowed_globals

        return set(_get_allowed_globals())
    except (ImportError, AttributeError):  # private API: fall back to torch's own names
        return None


def _pickle_globals(data, max_pickles=8):
    """The classes / functions that the pickles at the start of ``data`` import, read with
    :mod:`pickletools` (which only parses: nothing is imported or run).

    Returns ``(names, pickles parsed, the parse error or None)``.
    """
    import io
    import pickletools

    names, strings, pos, parsed = [], [], 0, 0
    try:
        while pos < len(data) and parsed < max_pickles:
            stream = io.BytesIO(data[pos:])
            for opcode, arg, _ in pickletools.genops(stream):
                if opcode.name in ("GLOBAL", "INST"):
                    names.append(str(arg).replace(" ", "."))
                elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                    names.append(f"{strings[-2]}.{strings[-1]}")
                elif isinstance(arg, str) and ("UNICODE" in opcode.name or "STRING" in opcode.name):
                    strings.append(arg)
            pos += stream.tell()
            parsed += 1
    except Exception as exc:  # not (or no longer) pickle data
        return names, parsed, exc
    return names, parsed, None


def _why_unreadable(filename, exc):
    """Why ``torch.load(filename, weights_only=True)`` failed, in words: an empty, truncated
    or foreign file, or one that would import code (named) when unpickled."""
    import zipfile

    detail = str(exc).strip() or type(exc).__name__
    with open(filename, "rb") as f:
        head = f.read(1 << 20)
    size = os.path.getsize(filename)
    if size == 0:
        return "the file is empty (0 bytes): an interrupted copy or download. Copy it again."
    allowed = _allowed_globals()

    def unsafe(names):
        if allowed is None:
            return sorted({n for n in names if not n.startswith(("torch.", "collections."))})
        return sorted(set(names) - allowed)

    match = re.search(r"GLOBAL ([\w.]+) was not an allowed global", detail)
    if match:
        return (
            f"holds Python objects other than tensors and plain types (it refers to "
            f"{match.group(1)}), {_UNSAFE_ADVICE}"
        )
    if head.startswith(b"PK\x03\x04"):
        if not zipfile.is_zipfile(filename):
            return (
                f"a damaged zip archive ({size} bytes, its end is missing): the file was cut "
                "off, e.g. by an interrupted download, copy or save. Copy it again."
            )
        with zipfile.ZipFile(filename) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("data.pkl")]
            if not pickles:
                shown = ", ".join(archive.namelist()[:5])
                return (
                    f"a zip archive but not a PyTorch checkpoint (no data.pkl; it holds "
                    f"{shown or 'nothing'})."
                )
            data = archive.read(pickles[0])
        bad = unsafe(_pickle_globals(data)[0])
        if bad:
            return (
                f"holds Python objects other than tensors and plain types (it refers to "
                f"{', '.join(bad)}), {_UNSAFE_ADVICE}"
            )
        return f"a damaged PyTorch checkpoint ({detail}). Copy it again."
    names, parsed, error = _pickle_globals(head)
    bad = unsafe(names)
    if bad:
        return (
            f"a pickle that holds Python objects other than tensors and plain types (it refers "
            f"to {', '.join(bad)}), {_UNSAFE_ADVICE}"
        )
    start = head[:256]
    if not any(b < 9 or 13 < b < 32 or b == 127 for b in start):  # no control bytes: text
        text = start.decode("utf-8", "replace")
        if text.startswith("version https://git-lfs"):
            return "a Git LFS pointer, not the checkpoint itself. Fetch it: git lfs pull."
        return f"a text file, not a checkpoint (it starts with {text[:40]!r})."
    if parsed == 0:
        return (
            f"not a checkpoint: neither a PyTorch zip archive nor a pickle (it starts with "
            f"{head[:8]!r})."
        )
    return (
        f"a truncated or damaged checkpoint ({size} bytes; {detail.splitlines()[0]}). Copy it "
        "again."
    )
