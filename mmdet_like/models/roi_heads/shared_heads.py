"""Shared heads (``SHARED_HEADS``): modules run on every pooled RoI feature before the box
and mask heads. :class:`ResLayer` is a ResNet stage, the RoI head of C4 models (res5 on
res4's RoI features) and of Res5-on-FPN heads.
"""

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from mmdet_like.models.backbones.resnet import (
    STYLES,
    ResNet,
    init_resnet_weights,
    make_res_layer,
)
from mmdet_like.models.utils.pretrained import (
    PretrainedWeightsError,
    load_state_dict_report,
    read_pretrained,
)
from mmdet_like.registry import SHARED_HEADS


@SHARED_HEADS.register()
class ResLayer(nn.Module):
    """One ResNet stage (by default res5, ``layer4``) as a shared RoI head.

    The stage is held under the backbone's module name (``layer{stage + 1}``), so a
    ResNet checkpoint's ``layer4.*`` weights load into it unchanged.

    Args:
        depth: ResNet depth (18, 34, 50, 101, 152); sets the block type and the number of
            blocks of the stage (res5 of ResNet-50 and -101: 3 bottlenecks).
        stage: 0-based stage index (3: res5, ``layer4``).
        stride: stride of the stage's first block (2 halves the RoI features, 14 -> 7).
        dilation: dilation of the 3x3 convs (e.g. ``stride=1, dilation=2``).
        style: ``"pytorch"`` (stride on the 3x3 conv) or ``"caffe"`` (on the first 1x1).
        norm_cfg: normalisation, default ``dict(type="BN", requires_grad=True)``.
        norm_eval: keep batch norms in eval mode (frozen statistics) while training.
        in_channels: channels of the RoI features; ``None``: the previous stage's output
            (1024 for ResNet-50/101's res4, what a C4 model pools). A Res5 head on FPN
            features sets the FPN width (256): its first block's ``conv1`` and
            ``downsample`` then differ in shape from a ResNet checkpoint's and are newly
            initialised.
        base_channels, groups, base_width: as :class:`ResNet` (stage ``i`` has
            ``base_channels * 2**i`` planes).
        fold_norm: as :class:`ResNet`: fixed-statistics norms folded into their convs.
        zero_init_residual: zero every block's last norm at initialisation.
        pretrained: ``torchvision://<resnet>`` or a ResNet checkpoint path, whose
            ``layer{stage + 1}.*`` weights :meth:`init_weights` loads. ``None``: a two-stage
            detector loads its backbone's ``pretrained`` file here.

    forward: (K, in_channels, S, S) -> (K, out_channels, S / stride, S / stride); res5 of
    ResNet-50: (K, 1024, 14, 14) -> (K, 2048, 7, 7).
    """

    def __init__(
        self,
        depth,
        stage=3,
        stride=2,
        dilation=1,
        style="pytorch",
        norm_cfg=None,
        norm_eval=True,
        in_channels=None,
        base_channels=64,
        groups=1,
        base_width=64,
        fold_norm=True,
        zero_init_residual=True,
        pretrained=None,
    ):
        super().__init__()
        if depth not in ResNet.arch_settings:
            raise ValueError(
                f"ResLayer: depth must be one of {sorted(ResNet.arch_settings)}, got {depth}"
            )
        if stage not in range(4):
            raise ValueError(f"ResLayer: stage must be in 0..3 (3: res5, layer4), got {stage}")
        if style not in STYLES:
            raise ValueError(f"ResLayer: style must be one of {STYLES}, got {style!r}")
        if stride < 1 or dilation < 1:
            raise ValueError(
                f"ResLayer: stride and dilation must be positive, got stride={stride}, "
                f"dilation={dilation} (res5 on 14x14 RoIs: stride=2, or stride=1, dilation=2)"
            )
        if base_channels < 1:
            raise ValueError(f"ResLayer: base_channels must be positive, got {base_channels}")
        block, stage_blocks = ResNet.arch_settings[depth]
        planes = base_channels * 2**stage
        if in_channels is None:  # the previous stage's output (the stem's for stage 0)
            in_channels = (
                base_channels * 2 ** (stage - 1) * block.expansion if stage else base_channels
            )
        if in_channels < 1:
            raise ValueError(f"ResLayer: in_channels must be positive, got {in_channels}")
        self.stage = stage
        self.in_channels = in_channels
        self.out_channels = planes * block.expansion
        self.norm_eval = norm_eval
        self.zero_init_residual = zero_init_residual
        self.pretrained = pretrained
        self.layer_name = f"layer{stage + 1}"
        layer = make_res_layer(
            block, in_channels, planes, stage_blocks[stage], stride, dilation,
            norm_cfg=dict(norm_cfg or dict(type="BN", requires_grad=True)), style=style,
            groups=groups, base_width=base_width, fold_norm=fold_norm,
        )  # fmt: skip
        self.add_module(self.layer_name, layer)
        init_resnet_weights(self, zero_init_residual)

    def init_weights(self):
        """Kaiming-normal convs, unit norms (zeroed last norms with ``zero_init_residual``),
        then ``pretrained``'s stage weights when one is set."""
        init_resnet_weights(self, self.zero_init_residual)
        if self.pretrained:
            self.load_pretrained(self.pretrained)

    def load_pretrained(self, pretrained):
        """Load the ``layer{stage + 1}.*`` weights of a ResNet checkpoint
        (``torchvision://<name>`` or a path); the rest of the file is not read into this
        head. Weights missing from the file or of another shape (the first block's ``conv1``
        and ``downsample`` when ``in_channels`` differs from the checkpoint's) keep their
        initialisation and are reported (a warning).

        Returns:
            (missing, unexpected) key lists of this head.
        """
        state_dict = read_pretrained(pretrained)
        prefix = f"{self.layer_name}."
        stage_weights = {k: v for k, v in state_dict.items() if k.startswith(prefix)}
        if not stage_weights:  # a C4 head left at random would train to nothing, silently
            raise PretrainedWeightsError(
                f"ResLayer: {pretrained} has no {prefix}* weights for this shared head (its "
                f"keys begin {sorted(state_dict)[:3]}); give a ResNet checkpoint with "
                "torchvision's key names, or set the shared head's pretrained=None and "
                "the detector's to None to train it from scratch"
            )
        return load_state_dict_report(self, stage_weights)

    def train(self, mode=True):
        """Switch mode, keeping batch norms in eval with ``norm_eval``."""
        super().train(mode)
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    def forward(self, x):
        """(K, in_channels, S, S) RoI features -> (K, out_channels, S', S')."""
        return getattr(self, self.layer_name)(x)
