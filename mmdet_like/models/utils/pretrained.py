"""Loading pretrained weights: ``torchvision://<model>[.<WEIGHTS>]`` names or local files.

Torchvision weights come through torchvision's own weights API, so they land in (and are read
from) the torch hub cache, ``$TORCH_HOME/hub/checkpoints`` (default ``~/.cache/torch``). When
the file is absent and cannot be downloaded, :class:`PretrainedWeightsError` says where to put
it. Our ResNet/ResNeXt use torchvision's module names, so the key mapping only drops the
classifier (``fc.*``).
"""

import logging
import os
import socket
import warnings
from urllib.parse import urlparse

import torch

from mmdet_like.checkpoint_file import CheckpointError, load_checkpoint_file
from mmdet_like.errors import ProjectError

TORCHVISION_PREFIX = "torchvision://"

# ``torchvision://resnet50`` means these weights (the ones mmdetection's baselines used);
# ``torchvision://resnet50.IMAGENET1K_V2`` picks another entry of the weights enum.
DEFAULT_TORCHVISION_WEIGHTS = "IMAGENET1K_V1"

# Seconds a network read may stall before the download counts as failed.
DOWNLOAD_TIMEOUT_S = 20.0


class PretrainedWeightsError(ProjectError, RuntimeError):
    """Pretrained weights could not be found, fetched or read."""


def _torchvision_weights(name):
    """``"resnet50"`` or ``"resnet50.IMAGENET1K_V2"`` -> torchvision weights enum entry."""
    from torchvision.models import get_model_weights

    model_name, _, entry = name.partition(".")
    try:
        weights_enum = get_model_weights(model_name)
    except (ValueError, KeyError) as exc:
        raise PretrainedWeightsError(
            f"torchvision has no model {model_name!r} (from {TORCHVISION_PREFIX}{name})"
        ) from exc
    entry = entry or DEFAULT_TORCHVISION_WEIGHTS
    try:
        return weights_enum[entry]
    except KeyError as exc:
        raise PretrainedWeightsError(
            f"{TORCHVISION_PREFIX}{name}: {weights_enum.__name__} has no entry {entry!r}; "
            f"choose one of {[w.name for w in weights_enum]}"
        ) from exc


def torchvision_cache_path(name):
    """The hub-cache file that ``torchvision://<name>`` is read from."""
    url = _torchvision_weights(name).url
    return os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(urlparse(url).path))


def load_torchvision_state_dict(name, timeout_s=DOWNLOAD_TIMEOUT_S):
    """State dict of torchvision's ``<name>`` weights, downloaded into the hub cache if absent.

    Raises:
        PretrainedWeightsError: naming the URL and the exact cache path to put the file at.
    """
    weights = _torchvision_weights(name)
    path = torchvision_cache_path(name)
    previous_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout_s)
    try:
        return weights.get_state_dict(progress=False, map_location="cpu", weights_only=True)
    except Exception as exc:  # network, file-system and unpickling errors alike
        if os.path.exists(path):
            reason = f"the cached file {path} could not be read ({exc})"
        else:
            reason = f"downloading {weights.url} failed ({type(exc).__name__}: {exc})"
        raise PretrainedWeightsError(
            f"Cannot load pretrained weights {TORCHVISION_PREFIX}{name}: {reason}. Offline, "
            f"download {weights.url} elsewhere and put it at {path} (the torch hub cache; "
            f"set TORCH_HOME to move it)."
        ) from exc
    finally:
        socket.setdefaulttimeout(previous_timeout)


def read_checkpoint_state_dict(path):
    """State dict from a local checkpoint file (``{"state_dict": ...}`` wrappers and a
    ``module.`` prefix from DataParallel are removed)."""
    if not os.path.isfile(path):
        raise PretrainedWeightsError(f"pretrained checkpoint file not found: {path}")
    try:  # weights_only, with the reason when the file is unreadable or unsafe
        checkpoint = load_checkpoint_file(path)
    except CheckpointError as exc:
        raise PretrainedWeightsError(f"pretrained weights: {exc}") from exc
    for key in ("state_dict", "model"):
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get(key), dict):
            checkpoint = checkpoint[key]
            break
    if not isinstance(checkpoint, dict):
        raise PretrainedWeightsError(f"{path} holds no state dict (got {type(checkpoint)})")
    return {
        (k[len("module.") :] if k.startswith("module.") else k): v for k, v in checkpoint.items()
    }


def load_state_dict_report(module, state_dict, ignore_prefixes=(), new_prefixes=()):
    """Load ``state_dict`` non-strictly, warn about mismatches; returns (missing, unexpected).

    Keys under ``ignore_prefixes`` (e.g. a classifier) are dropped first; shape mismatches
    are reported as missing instead of raising. ``new_prefixes`` name modules added to the
    pretrained network (e.g. backbone plugins): their keys, absent from the weights, keep
    their initialisation and are logged (``mmdet_like`` logger, INFO) as newly initialised,
    neither warned about nor returned as missing.
    """
    own = module.state_dict()
    kept, mismatched = {}, []
    for key, value in state_dict.items():
        if any(key.startswith(p) for p in ignore_prefixes):
            continue
        if key in own and own[key].shape != value.shape:
            mismatched.append(f"{key}: {tuple(value.shape)} vs {tuple(own[key].shape)}")
            continue
        kept[key] = value
    result = module.load_state_dict(kept, strict=False)
    new_prefixes = tuple(new_prefixes)
    initialised = {k for k in result.missing_keys if new_prefixes and k.startswith(new_prefixes)}
    if initialised:
        modules = sorted({p for p in new_prefixes if any(k.startswith(p) for k in initialised)})
        logging.getLogger("mmdet_like").info(
            f"{type(module).__name__}: {len(initialised)} tensors of modules added to the "
            f"pretrained network are newly initialised: {', '.join(modules)}"
        )
    missing = [k for k in result.missing_keys if k not in initialised]
    missing += [m.split(":")[0] for m in mismatched]
    unexpected = list(result.unexpected_keys)
    if missing or unexpected:
        warnings.warn(
            f"{type(module).__name__}: pretrained weights do not match. Missing: {missing}. "
            f"Unexpected: {unexpected}. Shape mismatches: {mismatched}.",
            stacklevel=2,
        )
    return missing, unexpected


def read_pretrained(pretrained):
    """The state dict ``pretrained`` names: ``torchvision://<name>``, a local file, or
    ``dict(checkpoint=one of those, prefix="backbone.")`` (the weights under ``prefix``, with
    it taken off: e.g. a backbone's from a whole detector's checkpoint; what mmdetection's
    ``init_cfg=dict(type="Pretrained", checkpoint=..., prefix=...)`` loads)."""
    prefix = ""
    if isinstance(pretrained, dict):
        prefix = pretrained.get("prefix") or ""
        pretrained = pretrained["checkpoint"]
    if pretrained.startswith(TORCHVISION_PREFIX):
        state_dict = load_torchvision_state_dict(pretrained[len(TORCHVISION_PREFIX) :])
    else:
        state_dict = read_checkpoint_state_dict(os.path.expanduser(pretrained))
    if not prefix:
        return state_dict
    prefix = prefix if prefix.endswith(".") else prefix + "."
    selected = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
    if not selected:
        raise PretrainedWeightsError(
            f"{pretrained}: no weights under the prefix {prefix!r} (its keys begin "
            f"{sorted(state_dict)[:3]}); fix init_cfg.prefix"
        )
    return selected


def load_pretrained(module, pretrained, ignore_prefixes=("fc.",), new_prefixes=()):
    """Load ``pretrained`` (see :func:`read_pretrained`) into ``module``; returns (missing,
    unexpected) keys (``new_prefixes``: see :func:`load_state_dict_report`)."""
    state_dict = read_pretrained(pretrained)
    return load_state_dict_report(module, state_dict, ignore_prefixes, new_prefixes)
