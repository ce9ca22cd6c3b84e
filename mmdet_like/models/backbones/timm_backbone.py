"""Any timm model as a backbone: ``TimmBackbone(model_name="convnext_tiny", ...)``.

timm (the ``[timm]`` extra) builds the model with ``features_only=True`` and its feature
getter (``forward_intermediates``, which timm 1.x models have): the outputs are NCHW maps
of the ``out_indices`` feature levels, the layers after the last one are pruned, and the
channels and strides come from timm's ``feature_info``. Stages for ``frozen_stages`` and
layer-wise learning-rate decay: the feature levels of stride >= 4 (C2, C3, ...); what runs
before the first of them is the stem. ``out_norm`` adds a LayerNorm on each returned level
(mmdetection's Swin and mmcls's ConvNeXt ``norm{i}``), which timm's feature levels lack.
timm's Swin blocks get window attention that ``torch.export`` traces with a dynamic image
size (:mod:`~mmdet_like.models.backbones.timm_swin`; the same values as timm's).
"""

import os

from torch import nn

from mmdet_like.errors import ProjectError
from mmdet_like.models.backbones.base_backbone import BaseBackbone, Block
from mmdet_like.models.utils.pretrained import (
    TORCHVISION_PREFIX,
    PretrainedWeightsError,
    read_checkpoint_state_dict,
)
from mmdet_like.registry import BACKBONES


class TimmNotInstalledError(ProjectError, ImportError):
    """``TimmBackbone`` without timm installed."""


def _timm():
    try:
        import timm
    except ImportError as exc:
        raise TimmNotInstalledError(
            "TimmBackbone needs timm: pip install 'mmdet_like[timm]' (or pip install timm)"
        ) from exc
    return timm


def _split_blocks(name, module):
    """The blocks of one top-level unit of a stage, each a tuple of names: the entries of a
    ``blocks`` container (the unit's other children, e.g. a downsample layer, go with the
    first block before it and the last after it), the entries of an ``nn.Sequential``, or
    the unit as one block."""
    children = list(module.named_children())
    inner = dict(children).get("blocks")
    if isinstance(inner, (nn.Sequential, nn.ModuleList)) and len(inner):
        before, after, seen = [], [], False
        for child_name, _ in children:
            if child_name == "blocks":
                seen = True
            else:
                (after if seen else before).append(f"{name}.{child_name}")
        blocks = [[f"{name}.blocks.{i}"] for i in range(len(inner))]
        blocks[0] = before + blocks[0]
        blocks[-1] += after
        return [tuple(block) for block in blocks]
    if isinstance(module, nn.Sequential) and len(module):
        return [(f"{name}.{i}",) for i in range(len(module))]
    return [(name,)]


def _out_norms(out_norm, channels):
    """``None``, or a ``ModuleList`` of one channel LayerNorm (NCHW) per output."""
    if out_norm is None:
        return None
    known = {"type", "eps"}
    if not isinstance(out_norm, dict) or out_norm.get("type") != "LN" or set(out_norm) - known:
        raise ValueError(
            f"TimmBackbone: out_norm must be None or dict(type='LN', eps=...), got {out_norm!r}"
        )
    eps = out_norm.get("eps", 1e-5)
    return nn.ModuleList(_timm().layers.LayerNorm2d(c, eps=eps) for c in channels)


@BACKBONES.register()
class TimmBackbone(BaseBackbone):
    """A timm model's feature levels as a backbone.

    Args:
        model_name: timm's name, e.g. ``"resnet50"``, ``"convnext_tiny"``,
            ``"swin_tiny_patch4_window7_224"``, ``"efficientnet_b3"``.
        out_indices: the feature levels returned, as timm numbers them (its
            ``feature_info``): ResNet's 0..4 are strides 2..32, ConvNeXt's and Swin's 0..3
            strides 4..32. ``None``: timm's default (every level).
        pretrained: ``False``/``None``: timm's initialisation; ``True``: timm's pretrained
            weights, fetched by timm (network or its cache); a path: a local file holding the
            whole timm model's state dict (as ``timm.create_model(name,
            pretrained=True).state_dict()`` gives it; also under ``"state_dict"`` or
            ``"model"``), its keys and shapes checked. Loaded by :meth:`init_weights`, not at
            construction. A detector's ``pretrained`` string lands here.
        in_channels: image channels (timm's ``in_chans``).
        frozen_stages, norm_eval: see :class:`BaseBackbone`; stage ``k`` is the ``k``-th
            feature level of stride >= 4 (with what runs between it and the level before).
        model_kwargs: other ``timm.create_model`` arguments (``drop_path_rate``,
            ``img_size``, ...).
        out_norm: ``None`` (the levels as timm returns them) or ``dict(type="LN",
            eps=1e-6)``: a LayerNorm over the channels of each returned level, its parameters
            ``out_norms.{k}`` (``k``: the position among the outputs). mmdetection's Swin
            (eps 1e-5) and mmcls's ConvNeXt (eps 1e-6) normalise their outputs so
            (``backbone.norm{i}``); timm's feature levels are not normalised. The norms are in
            no block: ``frozen_stages`` leaves them trainable and layer-wise decay gives them
            the full learning rate (as mmdetection's decay gives ``backbone.norm{i}``).
    """

    def __init__(
        self,
        model_name,
        out_indices=None,
        pretrained=False,
        in_channels=3,
        frozen_stages=-1,
        norm_eval=False,
        model_kwargs=None,
        out_norm=None,
    ):
        super().__init__(frozen_stages=frozen_stages, norm_eval=norm_eval)
        self.model_name = model_name
        self.pretrained = pretrained
        self._create_args = dict(model_kwargs or {}, in_chans=in_channels)
        if out_indices is not None:
            self._create_args["out_indices"] = tuple(out_indices)
        try:
            self.model = self._create(pretrained=False)
        except RuntimeError as exc:  # timm's unknown model names, among others
            raise ValueError(f"TimmBackbone: timm cannot build {model_name!r}: {exc}") from exc
        from mmdet_like.models.backbones.timm_swin import make_swin_blocks_exportable

        make_swin_blocks_exportable(self.model)  # timm's values; a dynamic size exports
        info = self.model.feature_info
        self.out_indices = tuple(self.model.out_indices)
        self.out_channels = [int(c) for c in info.channels()]
        self.out_strides = [int(r) for r in info.reduction()]
        self._layout = self._stage_layout()
        self.out_norms = _out_norms(out_norm, self.out_channels)
        self.freeze_stages()

    def _create(self, pretrained):
        model = _timm().create_model(
            self.model_name,
            pretrained=pretrained,
            features_only=True,
            feature_cls="getter",
            **self._create_args,
        )
        if not hasattr(model.model, "forward_intermediates"):
            raise ValueError(
                f"TimmBackbone: timm's {self.model_name!r} has no forward_intermediates, which "
                "TimmBackbone reads its feature levels with (timm >= 1.0 has it for most models)"
            )
        return model

    def _stage_layout(self):
        """``[(stage, unit name)]`` of the timm model's top-level units (a container holding
        feature levels, e.g. ``stages``, opened one level), in order: stage 0 before the
        first level of stride >= 4, stage ``k`` up to the ``k``-th; units after the last
        returned level are left out."""
        net = self.model.model
        levels = self.model.feature_info.info[: max(self.out_indices) + 1]
        ends = [info["module"] for info in levels if info["reduction"] >= 4]
        units = []
        for name, child in net.named_children():
            opened = isinstance(child, (nn.Sequential, nn.ModuleList)) and any(
                end.startswith(f"{name}.") for end in ends
            )
            units += [f"{name}.{i}" for i in range(len(child))] if opened else [name]
        missing = [end for end in ends if end not in units]
        if missing:
            raise ValueError(
                f"TimmBackbone: timm's feature levels {missing} of {self.model_name!r} are not "
                f"top-level modules of it (its units: {units[:12]}...); TimmBackbone cannot "
                "tell its stages apart"
            )
        if not ends:
            return []
        first = units.index(ends[0])
        layout, stage = [(0, unit) for unit in units[:first]], 1
        for unit in units[first:]:
            if stage > len(ends):
                break
            layout.append((stage, unit))
            if unit == ends[stage - 1]:
                stage += 1
        return layout

    def blocks(self):
        """The stem's units, then each stage's blocks (a timm ``blocks`` container's or an
        ``nn.Sequential``'s entries); the model's own parameters (ViT's ``cls_token``,
        ``pos_embed``) are the stem's."""
        net = self.model.model
        prefix = "model.model."
        stem = [prefix + name for name, _ in net.named_parameters(recurse=False)]
        blocks = []
        for stage, unit in self._layout:
            if stage == 0:
                stem.append(prefix + unit)
                continue
            for names in _split_blocks(unit, net.get_submodule(unit)):
                blocks.append(Block(stage, tuple(prefix + n for n in names)))
        return ([Block(0, tuple(stem))] if stem else []) + blocks

    def init_weights(self):
        """Load ``pretrained`` (see the class) into the model; without it keep timm's
        initialisation."""
        if not self.pretrained:
            return
        if self.pretrained is True:
            try:
                loaded = self._create(pretrained=True)
            except Exception as exc:
                raise PretrainedWeightsError(
                    f"TimmBackbone: timm could not load the pretrained weights of "
                    f"{self.model_name!r} ({type(exc).__name__}: {exc}). Without a network, "
                    f"save them where timm can fetch them (timm.create_model("
                    f"{self.model_name!r}, pretrained=True) and torch.save(model.state_dict(), "
                    "'weights.pth')) and set pretrained='weights.pth'"
                ) from exc
            self.model.load_state_dict(loaded.state_dict())
        elif str(self.pretrained).startswith(TORCHVISION_PREFIX):
            raise PretrainedWeightsError(
                f"TimmBackbone ({self.model_name}) was given pretrained={self.pretrained!r} "
                "(e.g. a base config's model.pretrained): it loads timm's weights "
                "(pretrained=True) or a local file of them; set model.pretrained=None"
            )
        else:
            self._load_local(os.path.expanduser(str(self.pretrained)))

    def _load_local(self, path):
        """Load a timm state dict of the whole model from ``path``: its keys must be the
        model's (the pruned layers' and the classifier's may be there too), shapes equal."""
        state_dict = read_checkpoint_state_dict(path)
        args = {k: v for k, v in self._create_args.items() if k != "out_indices"}
        whole = _timm().create_model(self.model_name, pretrained=False, **args).state_dict()
        own = self.model.model.state_dict()
        problems = []
        for what, keys in (
            ("keys the model lacks", sorted(set(state_dict) - set(whole))),
            ("of the model's keys missing", sorted(set(own) - set(state_dict))),
            ("shapes that differ", sorted(k for k in own if k in state_dict
                                          and state_dict[k].shape != own[k].shape)),
        ):  # fmt: skip
            if keys:
                problems.append(f"{len(keys)} {what} (e.g. {', '.join(keys[:3])})")
        if problems:
            raise PretrainedWeightsError(
                f"TimmBackbone: {path} is not a state dict of timm's {self.model_name!r} "
                f"(in_chans={args['in_chans']}): {'; '.join(problems)}. Save the weights as "
                f"timm.create_model({self.model_name!r}, pretrained=True).state_dict() gives them"
            )
        self.model.model.load_state_dict({k: state_dict[k] for k in own})

    def forward(self, x):
        """(N, C, H, W) -> tuple of the ``out_indices`` feature maps (NCHW), each through its
        ``out_norm`` where there is one."""
        outs = tuple(self.model(x))
        if self.out_norms is None:
            return outs
        return tuple(norm(out) for norm, out in zip(self.out_norms, outs, strict=True))
