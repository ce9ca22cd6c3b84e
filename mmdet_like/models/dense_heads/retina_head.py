"""RetinaNet's head (Lin et al. 2017): two towers of stacked 3x3 convs, sigmoid class scores
per anchor and class, class-agnostic box deltas. An :class:`AnchorHead` subclass: its layers,
their forward and their initialisation are all it adds. ATSS and GFL heads build on it
(``scale_regression``: a learnable scale per level on the box branch)."""

import math

from torch import nn

from mmdet_like.models.dense_heads.anchor_head import AnchorHead
from mmdet_like.models.layers import Scale, build_norm_layer
from mmdet_like.registry import HEADS

RETINA_ANCHOR_GENERATOR = dict(
    type="AnchorGenerator", octave_base_scale=4, scales_per_octave=3, ratios=[0.5, 1.0, 2.0],
    strides=[8, 16, 32, 64, 128],
)  # fmt: skip
RETINA_FOCAL_LOSS = dict(type="FocalLoss", use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0)


@HEADS.register()
class RetinaHead(AnchorHead):
    """``stacked_convs`` 3x3 convs of ``feat_channels`` (each followed by ``norm_cfg``'s norm,
    if given, and a ReLU) for the class scores and as many for the box deltas, then a 3x3 conv
    each: (N, A * num_classes, H, W) logits and (N, A * 4, H, W) deltas.

    Args:
        num_classes, in_channels, feat_channels: as :class:`AnchorHead`.
        stacked_convs: convs in each tower.
        norm_cfg: optional norm of the tower convs (e.g. ``dict(type="GN", num_groups=32)``).
        prior_prob: the classifier's bias makes every class score this at initialisation.
        anchor_generator: default RetinaNet's (octave base scale 4, 3 scales per octave,
            ratios 0.5 / 1 / 2, strides 8-128).
        scale_regression: the box predictions of each level times a learnable scale of
            that level (ATSS, GFL; ``scales``).
        loss_cls: default the sigmoid focal loss (gamma 2, alpha 0.25).
        Other arguments: :class:`AnchorHead`.
    """

    def __init__(
        self, num_classes, in_channels, stacked_convs=4, feat_channels=256, norm_cfg=None,
        prior_prob=0.01, anchor_generator=None, loss_cls=None, scale_regression=False, **kwargs,
    ):  # fmt: skip
        self.stacked_convs = stacked_convs
        self.scale_regression = scale_regression
        self.norm_cfg = norm_cfg
        self.prior_prob = prior_prob
        super().__init__(
            num_classes, in_channels, feat_channels=feat_channels,
            anchor_generator=anchor_generator or RETINA_ANCHOR_GENERATOR,
            loss_cls=loss_cls or RETINA_FOCAL_LOSS, **kwargs,
        )  # fmt: skip

    def _tower(self):
        layers = []
        for i in range(self.stacked_convs):
            channels = self.in_channels if i == 0 else self.feat_channels
            layers.append(
                nn.Conv2d(channels, self.feat_channels, 3, padding=1, bias=self.norm_cfg is None)
            )
            if self.norm_cfg is not None:
                layers.append(build_norm_layer(self.norm_cfg, self.feat_channels))
            layers.append(nn.ReLU(inplace=True))
        return nn.Sequential(*layers)

    def _init_layers(self):
        self.cls_convs = self._tower()
        self.reg_convs = self._tower()
        tower_channels = self.feat_channels if self.stacked_convs else self.in_channels
        self.retina_cls = nn.Conv2d(
            tower_channels, self.num_anchors * self.cls_out_channels, 3, padding=1
        )
        self.retina_reg = nn.Conv2d(
            tower_channels, self.num_anchors * self.bbox_pred_channels, 3, padding=1
        )
        self.scales = None
        if self.scale_regression:
            self.scales = nn.ModuleList(Scale(1.0) for _ in self.prior_generator.strides)

    def init_weights(self):
        """Normal(0, 0.01) conv weights, zero biases, and the classifier's bias at
        ``-log((1 - prior_prob) / prior_prob)``."""
        super().init_weights()
        for module in self.modules():
            if isinstance(module, nn.GroupNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.constant_(self.retina_cls.bias, -math.log((1 - self.prior_prob) / self.prior_prob))

    def forward(self, feats):
        """Tuple of L levels -> a tuple of lists over the levels, one per output of
        :meth:`forward_single` (which is told each level, for its scale)."""
        per_level = [self.forward_single(x, level) for level, x in enumerate(feats)]
        return tuple(list(outputs) for outputs in zip(*per_level))

    def scaled(self, bbox_pred, level):
        """Box predictions of ``level`` times its scale (with ``scale_regression``)."""
        return bbox_pred if self.scales is None else self.scales[level](bbox_pred)

    def forward_single(self, x, level=0):
        """(N, in_channels, H, W) -> ((N, A * num_classes, H, W), (N, A * bbox_pred_channels,
        H, W))."""
        cls_score = self.retina_cls(self.cls_convs(x))
        return cls_score, self.scaled(self.retina_reg(self.reg_convs(x)), level)
