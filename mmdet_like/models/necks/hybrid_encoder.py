"""RT-DETR's hybrid encoder (Zhao et al. 2024): the backbone's levels projected to one
width (1x1 conv + batch norm), one transformer encoder on the coarsest level only (AIFI,
attention-based intra-scale feature interaction, with fixed 2-D sine-cosine positions),
then a top-down and a bottom-up fusion path (CCFM, CNN-based cross-scale feature fusion)
whose blocks are CSP layers of RepVGG blocks.

Parameter names are the authors' (``input_proj.{i}.{0,1}``, ``encoder.{k}.layers.{j}``,
``lateral_convs.{i}.{conv,norm}``, ``fpn_blocks.{i}.{conv1,conv2,conv3,bottlenecks.{b}}``,
``downsample_convs``, ``pan_blocks``), the encoder layers' ours (``self_attn.attn``,
``ffn.layers``, ``norms.{0,1}``).
"""

import torch
import torch.nn.functional as F
from torch import nn

from mmdet_like.models.layers import build_norm_layer, conv_norm
from mmdet_like.models.layers.transformer import DetrTransformerEncoder
from mmdet_like.models.layers.transformer.attention import build_activation
from mmdet_like.models.layers.transformer.rtdetr_layers import sincos_position_embedding
from mmdet_like.registry import NECKS

SILU = dict(type="SiLU")
BN = dict(type="BN")


class ConvNormAct(nn.Module):
    """``act(norm(conv(x)))``, the conv without bias and padded by ``(k - 1) // 2``; the
    norm folded into the conv when its statistics are fixed (eval mode) and ``fold_norm``
    (:func:`conv_norm`). (N, in, H, W) -> (N, out, H / stride, W / stride).

    Parameters: ``conv``, ``norm`` (the authors' ``ConvNormLayer``)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, norm_cfg=BN,
                 act_cfg=None, fold_norm=True):  # fmt: skip
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride,
                              padding=(kernel_size - 1) // 2, bias=False)  # fmt: skip
        self.norm = build_norm_layer(norm_cfg, out_channels)
        self.act = build_activation(act_cfg, "HybridEncoder.act_cfg")
        self.fold_norm = fold_norm

    def forward(self, x):
        return self.act(conv_norm(self.conv, self.norm, x, self.fold_norm))


class RepVGGBlock(nn.Module):
    """``act(bn(conv3x3(x)) + bn(conv1x1(x)))`` (Ding et al. 2021), channels kept:
    (N, C, H, W) -> (N, C, H, W). ``conv1`` the 3x3 branch, ``conv2`` the 1x1 one.

    :meth:`fuse` folds both branches into one 3x3 conv with bias (``conv``; the authors'
    ``convert_to_deploy``), for inference: the same function, one conv."""

    def __init__(self, channels, norm_cfg=BN, act_cfg=SILU, fold_norm=True):
        super().__init__()
        self.conv1 = ConvNormAct(channels, channels, 3, norm_cfg=norm_cfg, fold_norm=fold_norm)
        self.conv2 = ConvNormAct(channels, channels, 1, norm_cfg=norm_cfg, fold_norm=fold_norm)
        self.act = build_activation(act_cfg, "HybridEncoder.act_cfg")
        self.conv = None

    def forward(self, x):
        if self.conv is not None:
            return self.act(self.conv(x))
        return self.act(self.conv1(x) + self.conv2(x))

    @torch.no_grad()
    def fuse(self):
        """Replace the two branches by their sum as one 3x3 conv (their norms' running
        statistics folded in; inference only: call it in eval mode)."""
        if self.training:
            raise RuntimeError("RepVGGBlock.fuse: fold the norms in eval mode (model.eval())")
        weights, biases = [], []
        for branch, pad in ((self.conv1, 0), (self.conv2, 1)):
            norm = branch.norm
            scale = norm.weight * (norm.running_var + norm.eps).rsqrt()
            weights.append(F.pad(branch.conv.weight * scale[:, None, None, None], [pad] * 4))
            biases.append(norm.bias - norm.running_mean * scale)
        channels = self.conv1.conv.out_channels
        conv = nn.Conv2d(channels, channels, 3, padding=1).to(weights[0])
        conv.weight.copy_(weights[0] + weights[1])
        conv.bias.copy_(biases[0] + biases[1])
        self.conv = conv
        del self.conv1, self.conv2
        return self


class CSPRepLayer(nn.Module):
    """``conv3(bottlenecks(conv1(x)) + conv2(x))``: two 1x1 ConvNormAct to
    ``out * expansion`` channels, ``num_blocks`` :class:`RepVGGBlock` on the first, and a
    1x1 ConvNormAct to ``out`` when ``expansion`` is not 1 (else the identity).
    (N, in, H, W) -> (N, out, H, W)."""

    def __init__(self, in_channels, out_channels, num_blocks=3, expansion=1.0, norm_cfg=BN,
                 act_cfg=SILU, fold_norm=True):  # fmt: skip
        super().__init__()
        hidden = int(out_channels * expansion)
        common = dict(norm_cfg=norm_cfg, act_cfg=act_cfg, fold_norm=fold_norm)
        self.conv1 = ConvNormAct(in_channels, hidden, 1, **common)
        self.conv2 = ConvNormAct(in_channels, hidden, 1, **common)
        self.bottlenecks = nn.Sequential(*(RepVGGBlock(hidden, **common)
                                           for _ in range(num_blocks)))  # fmt: skip
        self.conv3 = (ConvNormAct(hidden, out_channels, 1, **common) if hidden != out_channels
                      else nn.Identity())  # fmt: skip

    def forward(self, x):
        return self.conv3(self.bottlenecks(self.conv1(x)) + self.conv2(x))


@NECKS.register()
class HybridEncoder(nn.Module):
    """AIFI + CCFM: (N, in_channels[i], H_i, W_i) levels (strides 8, 16, 32) -> as many
    (N, out_channels, H_i, W_i) levels.

    Args:
        in_channels: the backbone's levels' channels (finest first).
        out_channels: the width of everything (the authors' ``hidden_dim``: 256; 384 for
            R101).
        encoder: the AIFI transformer, ``dict(num_layers=1, layer_cfg=dict(self_attn_cfg=
            dict(embed_dims, num_heads=8, dropout=0.0), ffn_cfg=dict(embed_dims,
            feedforward_channels=1024, ffn_drop=0.0, act_cfg=dict(type="GELU"))))``
            (:class:`DetrTransformerEncoder`, post-norm); ``None``: no encoder.
        encoder_levels: the levels the encoder runs on, each with its own encoder (the
            authors' ``use_encoder_idx``, ``[2]``: the coarsest of three).
        pe_temperature: the positions' temperature (10000).
        expansion: the CSP layers' hidden width ratio (0.5 for R18/R34, 1.0 for R50/R101).
        depth_mult: RepVGG blocks per CSP layer: ``round(3 * depth_mult)``.
        act_cfg: the fusion path's activation (``SiLU``).
        norm_cfg: its norms (``BN``, trained with batch statistics).
        fold_norm: fold the norms into the convs when their statistics are fixed.

    The fusion: top-down, the coarser map through ``lateral_convs`` (1x1), upsampled x2
    (nearest) and concatenated with the finer map into ``fpn_blocks``; bottom-up, the finer
    output through ``downsample_convs`` (3x3, stride 2) and concatenated with the top-down
    map into ``pan_blocks``. Input sizes must be multiples of the coarsest stride (the
    upsampled maps must meet the finer ones).
    """

    def __init__(self, in_channels=(512, 1024, 2048), out_channels=256, encoder=None,
                 encoder_levels=(2,), pe_temperature=10000, expansion=1.0, depth_mult=1.0,
                 act_cfg=SILU, norm_cfg=BN, fold_norm=True):  # fmt: skip
        super().__init__()
        self.in_channels = list(in_channels)
        levels = len(self.in_channels)
        if levels < 1:
            raise ValueError("HybridEncoder: in_channels must list at least one level")
        self.out_channels = int(out_channels)
        self.num_outs = levels
        self.encoder_levels = [int(i) for i in encoder_levels] if encoder is not None else []
        bad = [i for i in self.encoder_levels if not 0 <= i < levels]
        if bad:
            raise ValueError(
                f"HybridEncoder: encoder_levels {bad} outside the {levels} input levels 0.."
                f"{levels - 1}"
            )
        self.pe_temperature = float(pe_temperature)
        width = self.out_channels
        self.input_proj = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, width, 1, bias=False), build_norm_layer(norm_cfg, width))
            for c in self.in_channels
        )
        self.fold_norm = fold_norm
        self.encoder = nn.ModuleList(DetrTransformerEncoder(**encoder)
                                     for _ in self.encoder_levels)  # fmt: skip
        for stack in self.encoder:
            if stack.embed_dims != width:
                raise ValueError(
                    f"HybridEncoder: encoder embed_dims {stack.embed_dims} differs from "
                    f"out_channels {width}; set them equal"
                )
        blocks = round(3 * depth_mult)
        common = dict(norm_cfg=norm_cfg, act_cfg=act_cfg, fold_norm=fold_norm)
        csp = dict(num_blocks=blocks, expansion=expansion, **common)
        self.lateral_convs = nn.ModuleList(ConvNormAct(width, width, 1, **common)
                                           for _ in range(levels - 1))  # fmt: skip
        self.fpn_blocks = nn.ModuleList(CSPRepLayer(width * 2, width, **csp)
                                        for _ in range(levels - 1))  # fmt: skip
        self.downsample_convs = nn.ModuleList(ConvNormAct(width, width, 3, 2, **common)
                                              for _ in range(levels - 1))  # fmt: skip
        self.pan_blocks = nn.ModuleList(CSPRepLayer(width * 2, width, **csp)
                                        for _ in range(levels - 1))  # fmt: skip

    def init_weights(self):
        """PyTorch's default initialisation of the convs and norms; xavier-uniform
        matrices in the encoder (as the DETR family's transformers)."""
        for stack in self.encoder:
            for param in stack.parameters():
                if param.dim() > 1:
                    nn.init.xavier_uniform_(param)

    def forward(self, feats):
        """Tuple of (N, in_channels[i], H_i, W_i) -> tuple of (N, out_channels, H_i, W_i)."""
        if len(feats) != len(self.in_channels):
            raise ValueError(
                f"HybridEncoder: {len(feats)} input levels, in_channels lists "
                f"{len(self.in_channels)}"
            )
        proj = [conv_norm(p[0], p[1], x, self.fold_norm) for p, x in zip(self.input_proj, feats)]
        for stack, level in zip(self.encoder, self.encoder_levels):
            feat = proj[level]
            batch, channels, height, width = feat.shape
            pos = sincos_position_embedding(height, width, channels, self.pe_temperature,
                                            feat.device, feat.dtype)  # fmt: skip
            tokens = feat.flatten(2).transpose(1, 2)
            tokens = stack(tokens, pos[None].expand(batch, -1, -1), None)
            proj[level] = tokens.transpose(1, 2).reshape(batch, channels, height, width)
        levels = len(proj)
        inner = [proj[-1]]  # top-down: coarsest first
        for k in range(levels - 1):
            top = self.lateral_convs[k](inner[0])
            inner[0] = top
            up = F.interpolate(top, scale_factor=2.0, mode="nearest")
            inner.insert(0, self.fpn_blocks[k](torch.cat([up, proj[levels - 2 - k]], 1)))
        outs = [inner[0]]  # bottom-up
        for k in range(levels - 1):
            down = self.downsample_convs[k](outs[-1])
            outs.append(self.pan_blocks[k](torch.cat([down, inner[k + 1]], 1)))
        return tuple(outs)
