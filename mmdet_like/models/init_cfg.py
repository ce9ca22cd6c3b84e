"""mmdetection's ``init_cfg`` (2.x and 3.x model configs), read as what our modules take.

- ``init_cfg=dict(type="Pretrained", checkpoint=C[, prefix=P])`` on a part that loads
  pretrained weights (a backbone, a shared head: its class takes ``pretrained``) becomes
  ``pretrained=C`` (``pretrained=dict(checkpoint=C, prefix=P)`` with a prefix: the weights
  under ``P``, e.g. a backbone's from a whole detector's checkpoint).
- On the whole model (``model.init_cfg``) it is the config's ``load_from`` (every weight
  from ``C`` after initialisation, as mmdetection's whole-model ``Pretrained`` does), set by
  :func:`mmdet_like.apis.config_check.apply_mmdet_v2_aliases`.
- Initialiser types (``Normal``, ``Kaiming``, ``Xavier``, ...) are dropped with a note: our
  modules initialise themselves (each part's ``init_weights``).
"""

import copy

from mmdet_like.errors import ProjectError
from mmdet_like.registry import BACKBONES, SHARED_HEADS, accepted_arguments

INITIALISER_TYPES = (
    "Normal", "Kaiming", "Xavier", "Constant", "Uniform", "TruncNormal", "Caffe2Xavier",
)  # fmt: skip
PRETRAINED_KEYS = ("type", "checkpoint", "prefix", "map_location")


class InitCfgError(ProjectError, ValueError):
    """An ``init_cfg`` that cannot be read here."""


def _takes_pretrained(type_name):
    for registry in (BACKBONES, SHARED_HEADS):
        if isinstance(type_name, str) and type_name in registry:
            accepted = accepted_arguments(registry.get(type_name))
            return accepted is None or "pretrained" in accepted[0]
    return False


def _entries(init_cfg, path):
    entries = init_cfg if isinstance(init_cfg, list | tuple) else [init_cfg]
    for entry in entries:
        if not isinstance(entry, dict) or "type" not in entry:
            raise InitCfgError(f"{path}: must be dict(type=...) or a list of them, got {entry!r}")
    return entries


def _pretrained_value(entry, path):
    unknown = sorted(set(entry) - set(PRETRAINED_KEYS))
    if unknown or not isinstance(entry.get("checkpoint"), str):
        raise InitCfgError(
            f"{path}: dict(type='Pretrained', checkpoint=PATH_OR_URL[, prefix=...]) expected; "
            f"{'unknown key(s) ' + str(unknown) if unknown else 'no checkpoint'}"
        )
    prefix = entry.get("prefix")
    return dict(checkpoint=entry["checkpoint"], prefix=prefix) if prefix else entry["checkpoint"]


def whole_model_checkpoint(model_cfg, path="model"):
    """Pop a ``Pretrained`` entry from ``model_cfg["init_cfg"]`` (the whole model's) and
    return its checkpoint (None without one); a prefix there is refused."""
    init_cfg = model_cfg.get("init_cfg")
    if init_cfg is None:
        return None
    entries = _entries(init_cfg, f"{path}.init_cfg")
    pretrained = [e for e in entries if e["type"] == "Pretrained"]
    if not pretrained:
        return None
    value = _pretrained_value(pretrained[0], f"{path}.init_cfg")
    if isinstance(value, dict):
        raise InitCfgError(
            f"{path}.init_cfg: a prefix on the whole model's Pretrained is not read (it loads "
            "every weight); load a part's weights with init_cfg on that part (e.g. "
            "model.backbone.init_cfg=dict(type='Pretrained', checkpoint=..., prefix='backbone.'))"
        )
    rest = [e for e in entries if e["type"] != "Pretrained"]
    if rest:
        model_cfg["init_cfg"] = rest
    else:
        model_cfg.pop("init_cfg")
    return value


def translate_init_cfgs(model_cfg, path="model"):
    """Rewrite every ``init_cfg`` below the model (in place) as the module docstring says;
    returns one note per change. A whole-model ``Pretrained`` must have been taken out first
    (:func:`whole_model_checkpoint`): here it is an error saying to use ``load_from``."""
    notes = []

    def visit(node, where, top):
        if isinstance(node, list | tuple):
            for i, item in enumerate(node):
                visit(item, f"{where}.{i}", False)
            return
        if not isinstance(node, dict):
            return
        if "init_cfg" in node:
            for entry in _entries(node.pop("init_cfg"), f"{where}.init_cfg"):
                kind = entry["type"]
                if kind == "Pretrained":
                    if top:
                        raise InitCfgError(
                            f"{where}.init_cfg: the whole model's Pretrained weights are "
                            f"loaded with load_from={entry.get('checkpoint')!r} (a config key) "
                            "or init_detector(config, checkpoint)"
                        )
                    if not _takes_pretrained(node.get("type")):
                        raise InitCfgError(
                            f"{where}.init_cfg: {node.get('type')!r} does not load pretrained "
                            "weights; put the Pretrained init_cfg on the backbone"
                        )
                    if node.get("pretrained"):
                        raise InitCfgError(
                            f"{where}: both pretrained and init_cfg=dict(type='Pretrained') "
                            "are set; keep one"
                        )
                    node["pretrained"] = _pretrained_value(entry, f"{where}.init_cfg")
                    notes.append(
                        f"{where}.init_cfg=dict(type='Pretrained', ...) is mmdetection's: read "
                        f"as {where}.pretrained={node['pretrained']!r}"
                    )
                elif kind in INITIALISER_TYPES:
                    notes.append(
                        f"{where}.init_cfg (type {kind!r}) is not read: each part initialises "
                        "its own weights (its init_weights)"
                    )
                else:
                    raise InitCfgError(
                        f"{where}.init_cfg: unknown type {kind!r} (Pretrained, or an "
                        f"initialiser: {', '.join(INITIALISER_TYPES)})"
                    )
        for key, value in node.items():
            visit(value, f"{where}.{key}", False)

    visit(model_cfg, path, True)
    return notes


def _has_init_cfg(node):
    if isinstance(node, dict):
        return "init_cfg" in node or any(_has_init_cfg(v) for v in node.values())
    if isinstance(node, list | tuple):
        return any(_has_init_cfg(v) for v in node)
    return False


def translated_model_cfg(model_cfg):
    """A copy of ``model_cfg`` with its ``init_cfg`` entries read (see
    :func:`translate_init_cfgs`) and the notes; the same dict when it has none."""
    if not _has_init_cfg(model_cfg):
        return model_cfg, []
    model_cfg = copy.deepcopy(model_cfg)
    return model_cfg, translate_init_cfgs(model_cfg)
