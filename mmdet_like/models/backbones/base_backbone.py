"""The backbone contract: what a detector, a neck and the optimizer read from a backbone.

A backbone is an ``nn.Module`` whose ``forward`` maps (N, C, H, W) images to a tuple of
feature maps, finest first. A subclass of :class:`BaseBackbone`

- sets ``self.out_channels`` and ``self.out_strides``, one entry per output of ``forward``
  (the neck's ``in_channels`` default to ``out_channels``; :meth:`output_shape` pairs them);
- lists its parts in :meth:`blocks`: the stem (stage 0) and each stage's blocks, in forward
  order, by the names of its submodules (or parameters);
- calls :meth:`freeze_stages` at the end of ``__init__``.

The base then owns ``frozen_stages`` (the stem and stages ``1..frozen_stages`` take no
gradient and stay in eval mode) and ``norm_eval`` (batch norms keep their running
statistics in training), and the layer-wise learning-rate decay of the optimizer reads the
stage and block of every parameter from :meth:`blocks`.
"""

import abc
from typing import NamedTuple

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


class FeatureShape(NamedTuple):
    """One output of a backbone: its channels and its stride (input pixels per feature
    pixel)."""

    channels: int
    stride: int


class Block(NamedTuple):
    """One block of a backbone: its stage (0: the stem, 1..: the stages) and the names of the
    submodules or parameters it is made of (relative to the backbone)."""

    stage: int
    names: tuple


class BaseBackbone(nn.Module, metaclass=abc.ABCMeta):
    """Base of the backbones: output shapes, stage freezing and frozen batch norms.

    Args:
        frozen_stages: the stem and stages ``1..frozen_stages`` are frozen (their parameters
            take no gradient, their modules stay in eval mode); -1: none, 0: the stem only.
        norm_eval: keep every batch norm in eval mode (running statistics fixed) while the
            backbone trains.

    Subclasses set ``out_channels`` and ``out_strides`` (lists, one entry per output of
    ``forward``), implement :meth:`blocks` and ``forward``, and call :meth:`freeze_stages`
    once their modules exist.
    """

    def __init__(self, frozen_stages=-1, norm_eval=False):
        super().__init__()
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.out_channels = []
        self.out_strides = []

    @abc.abstractmethod
    def blocks(self):
        """The backbone's parts in forward order, a list of :class:`Block`: the stem's blocks
        (stage 0) first, then each stage's (1, 2, ...). Parameters of the backbone in no
        block (e.g. modules after the last stage) are neither frozen by ``frozen_stages``
        nor decayed by layer-wise learning-rate decay (they count as the head's)."""

    @property
    def num_stages(self):
        """The number of stages (the stem not counted)."""
        return max((block.stage for block in self.blocks()), default=0)

    def output_shape(self):
        """``[FeatureShape(channels, stride), ...]``, one per output of ``forward``, in its
        order (a list, as ``forward`` returns a tuple, not named features)."""
        if len(self.out_channels) != len(self.out_strides):
            raise ValueError(
                f"{type(self).__name__}: out_channels {list(self.out_channels)} and out_strides "
                f"{list(self.out_strides)} must have one entry per output"
            )
        return [
            FeatureShape(int(c), int(s))
            for c, s in zip(self.out_channels, self.out_strides, strict=True)
        ]

    def init_weights(self):
        """The weights' initialisation; the base keeps what the modules' constructors set.
        Backbones with pretrained weights load them here."""

    def _frozen_parts(self):
        """The modules and parameters of the stem and stages ``1..frozen_stages``."""
        num_stages = self.num_stages
        if not -1 <= self.frozen_stages <= num_stages:
            raise ValueError(
                f"{type(self).__name__}: frozen_stages must be in -1..{num_stages} (-1: none, "
                f"0: the stem, k: the stem and stages 1..k), got {self.frozen_stages}"
            )
        modules, params = [], []
        for block in self.blocks():
            if block.stage > self.frozen_stages:
                continue
            for name in block.names:
                part = self._part(name)
                (modules if isinstance(part, nn.Module) else params).append(part)
        return modules, params

    def _part(self, name):
        """The submodule or parameter ``name`` of :meth:`blocks`."""
        try:
            return self.get_submodule(name)
        except AttributeError:
            pass
        try:
            return self.get_parameter(name)
        except AttributeError:
            raise ValueError(
                f"{type(self).__name__}.blocks() names {name!r}, which is neither a submodule "
                "nor a parameter of the backbone"
            ) from None

    def freeze_stages(self):
        """Put the stem and stages ``1..frozen_stages`` in eval mode and stop their
        gradients (called at construction and by :meth:`train`)."""
        modules, params = self._frozen_parts()
        for module in modules:
            module.eval()
            params.extend(module.parameters())
        for param in params:
            param.requires_grad_(False)
        # a container (a stage's nn.Sequential) whose children are all frozen is frozen too
        frozen = {id(m) for module in modules for m in module.modules()}
        for module in reversed(list(self.modules())):  # children before their parents
            children = list(module.children())
            if (
                module is not self
                and id(module) not in frozen
                and children
                and all(id(child) in frozen for child in children)
                and not any(p.requires_grad for p in module.parameters(recurse=False))
            ):
                frozen.add(id(module))
                module.eval()

    def train(self, mode=True):
        """Switch mode, keeping frozen stages (and all batch norms with ``norm_eval``) in
        eval mode."""
        super().train(mode)
        self.freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self
