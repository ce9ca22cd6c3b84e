"""Optimizers from config: ``optimizer=dict(type="SGD", lr=0.02, momentum=0.9, ...)``.

``paramwise_cfg`` gives parameters their own learning rate and weight decay, through the
constructor named by ``optimizer.constructor`` (mmdetection v2's key; an ``OPTIMIZER_CONSTRUCTORS``
entry):

- ``DefaultOptimizerConstructor`` (the default): ``custom_keys``, ``bias_lr_mult``,
  ``bias_decay_mult``, ``norm_decay_mult`` (mmengine's rules, see the class);
- ``LearningRateDecayOptimizerConstructor``: layer-wise or stage-wise learning-rate decay
  over the backbone (``decay_rate``, ``decay_type``, ``num_layers``), as mmdetection's.

The engine never imports the models: the layer-wise constructor reads the backbone's
layout through its ``blocks()`` method (:class:`~mmdet_like.models.backbones.BaseBackbone`).
"""

import difflib
import numbers

import torch
from torch import nn

from mmdet_like.errors import ProjectError
from mmdet_like.registry import OPTIMIZER_CONSTRUCTORS, OPTIMIZERS, build_from_cfg

for _name in (
    "SGD",
    "Adam",
    "AdamW",
    "RMSprop",
    "Adagrad",
    "Adadelta",
    "Adamax",
    "NAdam",
    "RAdam",
    "ASGD",
    "Rprop",
):
    if hasattr(torch.optim, _name):
        OPTIMIZERS.register(_name)(getattr(torch.optim, _name))

_NORM_TYPES = (
    nn.modules.batchnorm._BatchNorm,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.modules.instancenorm._InstanceNorm,
)
PARAMWISE_PATH = "optimizer.paramwise_cfg"


class OptimizerConfigError(ProjectError, ValueError):
    """An ``optimizer`` config (``constructor``, ``paramwise_cfg``) that cannot be built;
    the message names every field at fault."""


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _unknown_keys(path, mapping, known):
    """``(path, message)`` of each key of ``mapping`` not in ``known``, with the closest."""
    problems = []
    for key in mapping:
        if key in known:
            continue
        close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
        hint = f"; did you mean {path}.{close[0]}?" if close else ""
        problems.append(
            (f"{path}.{key}", f"not a key mmdet_like reads{hint} (known: {', '.join(known)})")
        )
    return problems


def _raise_problems(problems):
    if problems:
        raise OptimizerConfigError(
            "\n  ".join(["optimizer config:", *(f"{path}: {msg}" for path, msg in problems)])
        )


def _named_trainable_parameters(model):
    """``(name, module, local name, parameter)`` of every parameter that takes a gradient,
    each once (a parameter shared by two modules goes with the first)."""
    seen = set()
    for prefix, module in model.named_modules():
        for local, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            yield (f"{prefix}.{local}" if prefix else local), module, local, param


def _group(param, lr, weight_decay):
    group = {"params": [param], "lr": lr}
    if weight_decay is not None:
        group["weight_decay"] = weight_decay
    return group


@OPTIMIZER_CONSTRUCTORS.register()
class DefaultOptimizerConstructor:
    """One parameter group per parameter, with mmengine's ``paramwise_cfg`` rules.

    - ``custom_keys``: ``{name part: dict(lr_mult=..., decay_mult=...)}``. A parameter whose
      full name (``backbone.layer1.0.conv1.weight``) contains a key gets ``lr * lr_mult`` and
      ``weight_decay * decay_mult`` (each 1 when left out) and no other rule: the custom key
      takes precedence over the bias and norm multipliers. Of several matching keys the
      longest wins (equal lengths: the alphabetically first).
    - the other parameters: ``norm_decay_mult`` scales the weight decay of every parameter of
      a normalisation layer (BN, GN, LN, IN); ``bias_lr_mult`` and ``bias_decay_mult`` the
      learning rate and weight decay of the other ``bias`` parameters.

    A ``decay_mult`` needs ``optimizer.weight_decay`` (there is nothing to scale otherwise).
    Frozen parameters (``requires_grad=False``) are left out.
    """

    paramwise_keys = ("custom_keys", "bias_lr_mult", "bias_decay_mult", "norm_decay_mult")
    custom_key_options = ("lr_mult", "decay_mult")

    def __init__(self, paramwise_cfg=None):
        self.paramwise_cfg = dict(paramwise_cfg or {})
        _raise_problems(self.check_paramwise(self.paramwise_cfg))

    @classmethod
    def check_paramwise(cls, paramwise_cfg, path=PARAMWISE_PATH, weight_decay=0.0):
        """``(config path, message)`` of every problem of ``paramwise_cfg``;
        ``weight_decay``: the optimizer's (``None`` when it sets none)."""
        if not isinstance(paramwise_cfg, dict):
            return [(path, f"must be a dict, got {paramwise_cfg!r}")]
        problems = _unknown_keys(path, paramwise_cfg, cls.paramwise_keys)
        for key in ("bias_lr_mult", "bias_decay_mult", "norm_decay_mult"):
            if key in paramwise_cfg and not _is_number(paramwise_cfg[key]):
                problems.append((f"{path}.{key}", f"must be a number, got {paramwise_cfg[key]!r}"))
        custom_keys = paramwise_cfg.get("custom_keys", {})
        if not isinstance(custom_keys, dict):
            problems.append(
                (
                    f"{path}.custom_keys",
                    "must be a dict {name part: dict(lr_mult=..., decay_mult=...)}, got "
                    f"{custom_keys!r}",
                )
            )
            return problems
        for key, options in custom_keys.items():
            where = f"{path}.custom_keys[{key!r}]"
            if not isinstance(key, str) or not key:
                problems.append((where, "the key must be a non-empty part of parameter names"))
            if not isinstance(options, dict):
                problems.append(
                    (where, f"must be dict(lr_mult=..., decay_mult=...), got {options!r}")
                )
                continue
            problems += _unknown_keys(where, options, cls.custom_key_options)
            for option in cls.custom_key_options:
                if option in options and not _is_number(options[option]):
                    problems.append(
                        (f"{where}.{option}", f"must be a number, got {options[option]!r}")
                    )
            if "decay_mult" in options and weight_decay is None:
                problems.append(
                    (
                        f"{where}.decay_mult",
                        "needs optimizer.weight_decay (the weight decay it multiplies)",
                    )
                )
        return problems

    def custom_key_of(self, name):
        """The ``custom_keys`` entry that applies to the parameter ``name``, or ``None``."""
        matches = [key for key in self.paramwise_cfg.get("custom_keys", {}) if key in name]
        return min(matches, key=lambda key: (-len(key), key)) if matches else None

    def param_groups(self, model, base_lr, base_wd):
        """The parameter groups of ``model`` for an optimizer with learning rate ``base_lr``
        and weight decay ``base_wd`` (``None``: the optimizer's default, left unset)."""
        cfg = self.paramwise_cfg
        _raise_problems(self.check_paramwise(cfg, weight_decay=base_wd))
        custom_keys = cfg.get("custom_keys", {})
        bias_lr_mult = cfg.get("bias_lr_mult", 1.0)
        bias_decay_mult = cfg.get("bias_decay_mult", 1.0)
        norm_decay_mult = cfg.get("norm_decay_mult", 1.0)
        groups = []
        for name, module, local, param in _named_trainable_parameters(model):
            lr, wd = base_lr, base_wd
            key = self.custom_key_of(name)
            if key is not None:
                lr = base_lr * custom_keys[key].get("lr_mult", 1.0)
                if base_wd is not None:
                    wd = base_wd * custom_keys[key].get("decay_mult", 1.0)
            elif isinstance(module, _NORM_TYPES):
                if base_wd is not None:
                    wd = base_wd * norm_decay_mult
            elif local == "bias":
                lr = base_lr * bias_lr_mult
                if base_wd is not None:
                    wd = base_wd * bias_decay_mult
            groups.append(_group(param, lr, wd))
        return groups


@OPTIMIZER_CONSTRUCTORS.register()
class LearningRateDecayOptimizerConstructor:
    """Layer-wise (or stage-wise) learning-rate decay over the backbone, for ConvNeXt, Swin
    and ViT backbones (mmdetection's constructor of that name, for any backbone that lists
    its blocks).

    ``paramwise_cfg=dict(decay_rate=0.95, decay_type="layer_wise", num_layers=N)``. Each
    parameter gets a layer id and the learning rate
    ``lr * decay_rate ** (num_layers + 1 - layer_id)``:

    - ``"layer_wise"``: the stem's parameters 0; the stages' blocks, counted ``k = 0..B-1``
      in forward order over all stages, ``1 + k * num_layers // B`` (``num_layers`` in
      ``1..B``: ``B`` gives every block its own layer, as ViT's recipes; ``B / 3`` groups
      three blocks a layer, which for ConvNeXt-T (18 blocks, ``num_layers=6``) and -S/B (36,
      12) gives mmdetection's ConvNeXt layer ids);
    - ``"stage_wise"``: the stem 0, stage ``i``'s parameters ``i`` (``num_layers`` at least
      the number of stages);
    - everything else (the neck, the heads, backbone parameters in no block): ``num_layers +
      1``, the full learning rate.

    Weight decay as mmdetection's: none for one-dimensional parameters (norms, biases,
    per-channel scales), ``*.bias`` and ``pos_embed`` / ``cls_token``; ``weight_decay`` for
    the rest. The model's ``backbone`` must list its blocks (a ``BaseBackbone``). Frozen
    parameters are left out.
    """

    paramwise_keys = ("decay_rate", "decay_type", "num_layers")
    decay_types = ("layer_wise", "stage_wise")
    no_decay_names = ("pos_embed", "cls_token")

    def __init__(self, paramwise_cfg=None):
        self.paramwise_cfg = dict(paramwise_cfg or {})
        _raise_problems(self.check_paramwise(self.paramwise_cfg))

    @classmethod
    def check_paramwise(cls, paramwise_cfg, path=PARAMWISE_PATH, weight_decay=0.0):
        """``(config path, message)`` of every problem of ``paramwise_cfg``."""
        example = "dict(decay_rate=0.95, decay_type='layer_wise', num_layers=6)"
        if not isinstance(paramwise_cfg, dict):
            return [(path, f"must be {example}, got {paramwise_cfg!r}")]
        problems = _unknown_keys(path, paramwise_cfg, cls.paramwise_keys)
        for key in ("decay_rate", "num_layers"):
            if key not in paramwise_cfg:
                problems.append((path, f"needs {key}, e.g. {example}"))
        rate = paramwise_cfg.get("decay_rate", 1.0)
        if not _is_number(rate) or not 0 < rate <= 1:
            problems.append((f"{path}.decay_rate", f"must be a number in (0, 1], got {rate!r}"))
        num_layers = paramwise_cfg.get("num_layers", 1)
        if not isinstance(num_layers, int) or isinstance(num_layers, bool) or num_layers < 1:
            problems.append((f"{path}.num_layers", f"must be an integer >= 1, got {num_layers!r}"))
        decay_type = paramwise_cfg.get("decay_type", "layer_wise")
        if decay_type not in cls.decay_types:
            problems.append(
                (f"{path}.decay_type", f"must be one of {cls.decay_types}, got {decay_type!r}")
            )
        return problems

    def layer_ids(self, model):
        """``{parameter name: layer id}`` for the backbone's parameters in its blocks (the
        names as ``model.named_parameters()`` gives them)."""
        cfg = self.paramwise_cfg
        num_layers = cfg["num_layers"]
        decay_type = cfg.get("decay_type", "layer_wise")
        backbone = getattr(model, "backbone", None)
        if not callable(getattr(backbone, "blocks", None)):
            raise OptimizerConfigError(
                "optimizer.constructor='LearningRateDecayOptimizerConstructor' needs a model "
                "whose backbone lists its blocks (a BaseBackbone, "
                "mmdet_like/models/backbones/base_backbone.py); "
                f"model.backbone is {type(backbone).__name__}"
            )
        blocks = list(backbone.blocks())
        stage_blocks = [block for block in blocks if block.stage > 0]
        num_stages = max((block.stage for block in blocks), default=0)
        where = f"{PARAMWISE_PATH}.num_layers"
        if decay_type == "layer_wise" and num_layers > len(stage_blocks):
            raise OptimizerConfigError(
                f"{where}={num_layers} is more than the {len(stage_blocks)} blocks of "
                f"{type(backbone).__name__}'s stages; set num_layers in 1..{len(stage_blocks)}"
            )
        if decay_type == "stage_wise" and num_layers < num_stages:
            raise OptimizerConfigError(
                f"{where}={num_layers} is fewer than the {num_stages} stages of "
                f"{type(backbone).__name__}; stage_wise decay needs num_layers >= {num_stages}"
            )
        ids = {name: 0 for block in blocks if block.stage == 0 for name in block.names}
        for k, block in enumerate(stage_blocks):
            if decay_type == "stage_wise":
                layer_id = block.stage
            else:
                layer_id = 1 + k * num_layers // len(stage_blocks)
            for name in block.names:
                ids[name] = layer_id
        layer_of = {}
        for name, _ in backbone.named_parameters():
            parts = name.split(".")
            for end in range(len(parts), 0, -1):
                prefix = ".".join(parts[:end])
                if prefix in ids:
                    layer_of[f"backbone.{name}"] = ids[prefix]
                    break
        return layer_of

    def param_groups(self, model, base_lr, base_wd):
        """The parameter groups of ``model`` (see the class) for learning rate ``base_lr``
        and weight decay ``base_wd``."""
        num_layers = self.paramwise_cfg["num_layers"]
        rate = self.paramwise_cfg["decay_rate"]
        layer_of = self.layer_ids(model)
        groups = []
        for name, _, local, param in _named_trainable_parameters(model):
            layer_id = layer_of.get(name, num_layers + 1)
            lr = base_lr * rate ** (num_layers + 1 - layer_id)
            no_decay = param.ndim <= 1 or local == "bias" or local in self.no_decay_names
            wd = 0.0 if no_decay else base_wd
            groups.append(_group(param, lr, wd))
        return groups


def constructor_class(cfg):
    """The ``OPTIMIZER_CONSTRUCTORS`` class an ``optimizer`` config names (its
    ``constructor``; ``DefaultOptimizerConstructor`` when left out)."""
    name = cfg.get("constructor", "DefaultOptimizerConstructor")
    return OPTIMIZER_CONSTRUCTORS.get(name) if isinstance(name, str) else name


def build_optimizer(model, cfg):
    """Build the optimizer of ``cfg`` (a dict with ``type``, ``lr``, ...) for ``model``.

    ``model`` may be wrapped (DDP). An optional ``paramwise_cfg`` gives parameters their own
    learning rate and weight decay, by the rules of ``constructor`` (see the module).
    """
    cfg = dict(cfg)
    model = model.module if hasattr(model, "module") else model
    constructor = constructor_class(cfg)
    cfg.pop("constructor", None)
    paramwise_cfg = cfg.pop("paramwise_cfg", None)
    if paramwise_cfg or constructor is not DefaultOptimizerConstructor:
        if "lr" not in cfg:
            raise OptimizerConfigError(
                "optimizer.lr is needed with paramwise_cfg (its multipliers scale it)"
            )
        builder = constructor(paramwise_cfg)
        params = builder.param_groups(model, cfg["lr"], cfg.get("weight_decay"))
    else:
        params = [p for p in model.parameters() if p.requires_grad]
    return build_from_cfg(cfg, OPTIMIZERS, {"params": params})


def param_group_settings(model, optimizer):
    """``{parameter name: dict(lr=..., weight_decay=...)}``: what ``optimizer`` applies to each
    of ``model``'s parameters (a parameter in no group is left out)."""
    model = model.module if hasattr(model, "module") else model
    settings = {}
    for group in optimizer.param_groups:
        for param in group["params"]:
            settings[id(param)] = dict(lr=group["lr"], weight_decay=group.get("weight_decay"))
    return {
        name: settings[id(param)]
        for name, param in model.named_parameters()
        if id(param) in settings
    }
