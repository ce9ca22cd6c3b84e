"""Optimizers from config: ``optimizer=dict(type="SGD", lr=0.02, momentum=0.9, ...)``."""

import torch
from torch import nn

from mmdet_like.registry import OPTIMIZERS, build_from_cfg

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


def _param_groups(model, base_lr, base_wd, paramwise_cfg):
    """One group per parameter with lr / weight decay multipliers of ``paramwise_cfg``.

    ``bias_lr_mult``, ``bias_decay_mult`` apply to parameters named ``*.bias``;
    ``norm_decay_mult`` to the parameters of normalization layers.
    """
    bias_lr_mult = paramwise_cfg.get("bias_lr_mult", 1.0)
    bias_decay_mult = paramwise_cfg.get("bias_decay_mult", 1.0)
    norm_decay_mult = paramwise_cfg.get("norm_decay_mult", 1.0)
    unknown = set(paramwise_cfg) - {"bias_lr_mult", "bias_decay_mult", "norm_decay_mult"}
    if unknown:
        raise ValueError(
            f"paramwise_cfg: unknown option(s) {sorted(unknown)}; known: "
            "bias_lr_mult, bias_decay_mult, norm_decay_mult"
        )
    groups = []
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad:
                continue
            group = {"params": [param], "lr": base_lr}
            if base_wd is not None:
                group["weight_decay"] = base_wd
            if isinstance(module, _NORM_TYPES):
                if base_wd is not None:
                    group["weight_decay"] = base_wd * norm_decay_mult
            elif name == "bias":
                group["lr"] = base_lr * bias_lr_mult
                if base_wd is not None:
                    group["weight_decay"] = base_wd * bias_decay_mult
            groups.append(group)
    return groups


def build_optimizer(model, cfg):
    """Build the optimizer of ``cfg`` (a dict with ``type``, ``lr``, ...) for ``model``.

    ``model`` may be wrapped (DDP). An optional ``paramwise_cfg`` sets multipliers.
    """
    cfg = dict(cfg)
    model = model.module if hasattr(model, "module") else model
    paramwise_cfg = cfg.pop("paramwise_cfg", None)
    if paramwise_cfg:
        params = _param_groups(model, cfg["lr"], cfg.get("weight_decay"), dict(paramwise_cfg))
    else:
        params = [p for p in model.parameters() if p.requires_grad]
    return build_from_cfg(cfg, OPTIMIZERS, {"params": params})
