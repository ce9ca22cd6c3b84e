"""Checks of the plain dicts a model reads with ``.get`` (``train_cfg`` / ``test_cfg``): a key
that nothing reads is an error naming the closest key that is read.

A schema is a dict ``{key: None or a nested schema}`` (``None``: any value); the detectors
compose their heads' schemas (``train_cfg_schema`` / ``test_cfg_schema`` class attributes,
which a new head extends) and check the top-level ``train_cfg`` / ``test_cfg`` once, when
they are built.
"""

import difflib

from mmdet_like.errors import ProjectError

# what multiclass_nms reads of an nms dict
NMS_SCHEMA = {
    "type": None,
    "iou_thr": None,
    "iou_threshold": None,
    "sigma": None,
    "min_score": None,
    "method": None,
}


class UnknownConfigKeyError(ProjectError, ValueError):
    """``train_cfg`` / ``test_cfg`` keys that no part of the model reads."""


def unknown_cfg_keys(cfg, schema, path):
    """Messages for the keys of ``cfg`` (at config path ``path``) that ``schema`` does not
    name, checked at every depth the schema describes; a list of dicts (one per stage)
    is checked entry by entry."""
    if cfg is None:
        return []
    if isinstance(cfg, (list, tuple)):
        return [
            m
            for i, entry in enumerate(cfg)
            for m in unknown_cfg_keys(entry, schema, f"{path}[{i}]")
        ]
    if not isinstance(cfg, dict):
        return [f"{path}: must be a dict, got {cfg!r}"]
    messages = []
    for key, value in cfg.items():
        if key not in schema:
            close = difflib.get_close_matches(str(key), list(schema), n=1, cutoff=0.6)
            hint = f"; did you mean {path}.{close[0]}?" if close else ""
            known = ", ".join(sorted(schema))
            messages.append(f"{path}.{key}: not a key the model reads{hint} (known: {known})")
        elif isinstance(schema[key], dict):
            messages.extend(unknown_cfg_keys(value, schema[key], f"{path}.{key}"))
    return messages


def check_cfg_keys(checks):
    """``checks``: ``(cfg, schema, path)`` triples; raises :class:`UnknownConfigKeyError`
    listing every unknown key."""
    messages = [m for cfg, schema, path in checks for m in unknown_cfg_keys(cfg, schema, path)]
    if messages:
        raise UnknownConfigKeyError("\n  ".join(["config keys that nothing reads:", *messages]))
