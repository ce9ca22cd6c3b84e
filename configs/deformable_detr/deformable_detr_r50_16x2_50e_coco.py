# Deformable DETR, ResNet-50 (frozen batch norms), 50 epochs, COCO, as mmdetection's
# configs/deformable_detr/deformable-detr_r50_16xb2-50e_coco.py (v2:
# deformable_detr_r50_16x2_50e_coco.py): 16 processes x 2 images; AdamW at LR 2e-4, weight
# decay 1e-4, the backbone, the sampling offsets and the reference points at 0.1x LR;
# gradients clipped to norm 0.1; LR x0.1 after epoch 40.
# The model: C3-C5 projected to 256 channels (1x1 conv + GroupNorm 32) and a fourth level
# (3x3 stride-2 conv + GroupNorm on C5), sine positions (cell centres, offset -0.5) plus a
# learned embedding per level; 6 encoder and 6 decoder layers with multi-scale deformable
# attention (8 heads, 4 levels, 4 points; FFN 1024, dropout 0.1), 300 queries; a
# DeformableDETRHead with sigmoid focal loss (2), L1 (5) and GIoU (2) on every decoder
# layer, matched one-to-one by a HungarianAssigner with the same weights; detections: the
# 100 best (query, class) pairs. The augmentation is DETR's (configs/detr).
_base_ = "../detr/detr_r50_8x2_150e_coco.py"
_embed_dims = 256
_deform_cfg = dict(embed_dims=_embed_dims, num_heads=8, num_levels=4, num_points=4, dropout=0.1,
                   batch_first=True)  # fmt: skip
_attn_cfg = dict(embed_dims=_embed_dims, num_heads=8, dropout=0.1, batch_first=True)
_ffn_cfg = dict(embed_dims=_embed_dims, feedforward_channels=1024, ffn_drop=0.1)
model = dict(
    _delete_=True,
    type="DeformableDETR",
    num_queries=300,
    num_feature_levels=4,
    with_box_refine=False,
    as_two_stage=False,
    size_divisor=1,
    pretrained="torchvision://resnet50",
    backbone=dict(
        type="ResNet",
        depth=50,
        num_stages=4,
        out_indices=(1, 2, 3),
        frozen_stages=1,
        norm_cfg=dict(type="FrozenBN"),
        norm_eval=True,
        style="pytorch",
    ),
    neck=dict(
        type="ChannelMapper",
        in_channels=[512, 1024, 2048],
        kernel_size=1,
        out_channels=_embed_dims,
        act_cfg=None,
        norm_cfg=dict(type="GN", num_groups=32),
        num_outs=4,
    ),
    encoder=dict(num_layers=6, layer_cfg=dict(self_attn_cfg=_deform_cfg, ffn_cfg=_ffn_cfg)),
    decoder=dict(
        num_layers=6,
        return_intermediate=True,
        layer_cfg=dict(self_attn_cfg=_attn_cfg, cross_attn_cfg=_deform_cfg, ffn_cfg=_ffn_cfg),
    ),
    positional_encoding=dict(num_feats=_embed_dims // 2, normalize=True, offset=-0.5),
    bbox_head=dict(
        type="DeformableDETRHead",
        num_classes=80,
        embed_dims=_embed_dims,
        loss_cls=dict(type="FocalLoss", use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=2.0),
        loss_bbox=dict(type="L1Loss", loss_weight=5.0),
        loss_iou=dict(type="GIoULoss", loss_weight=2.0),
    ),
)
train_cfg = dict(
    assigner=dict(
        type="HungarianAssigner",
        match_costs=[
            dict(type="FocalLossCost", weight=2.0),
            dict(type="BBoxL1Cost", weight=5.0, box_format="cxcywh"),
            dict(type="IoUCost", iou_mode="giou", weight=2.0),
        ],
    )
)
test_cfg = dict(max_per_img=100)
optimizer = dict(
    type="AdamW",
    lr=0.0002,
    weight_decay=0.0001,
    paramwise_cfg=dict(
        custom_keys=dict(
            backbone=dict(lr_mult=0.1),
            sampling_offsets=dict(lr_mult=0.1),
            reference_points=dict(lr_mult=0.1),
        )
    ),
)
optimizer_config = dict(grad_clip=dict(max_norm=0.1, norm_type=2))
lr_config = dict(policy="step", step=[40])
total_epochs = 50
