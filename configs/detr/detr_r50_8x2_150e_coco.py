# DETR, ResNet-50 (frozen batch norms), 150 epochs, COCO, as mmdetection's
# configs/detr/detr_r50_8xb2-150e_coco.py (v2: detr_r50_8x2_150e_coco.py): 8 processes x 2
# images; AdamW at LR 1e-4, weight decay 1e-4, the backbone at 0.1x LR; gradients clipped to
# norm 0.1; LR x0.1 after epoch 100.
# The model: the backbone's C5 projected to 256 channels by a 1x1 conv (ChannelMapper
# without norm or activation: DETR's input_proj), a sine positional encoding, 6 encoder and
# 6 decoder layers (8 heads, FFN 2048, dropout 0.1), 100 queries, a DETRHead with softmax CE
# (no-object weight 0.1), L1 (5) and GIoU (2) on every decoder layer, matched one-to-one by
# a HungarianAssigner with the same weights. Images are not padded to a multiple (the
# padding of a batch is masked out of the attention).
# Augmentation (DETR's, mmdetection's AutoAugment policies): a flip, then one of
#   (a) the shorter side resized to one of 480, 512, ..., 800 (the longer at most 1333);
#   (b) the shorter side to one of 400, 500, 600, a random crop with sides drawn from
#       384-600 px, then (a)'s resize again (override=True).
_base_ = [
    "../_base_/datasets/coco_detection.py",
    "../_base_/default_runtime.py",
]
_embed_dims = 256
_attn_cfg = dict(embed_dims=_embed_dims, num_heads=8, dropout=0.1, batch_first=True)
_ffn_cfg = dict(
    embed_dims=_embed_dims, feedforward_channels=2048, num_fcs=2, ffn_drop=0.1,
    act_cfg=dict(type="ReLU", inplace=True),
)  # fmt: skip
model = dict(
    type="DETR",
    num_queries=100,
    size_divisor=1,
    pretrained="torchvision://resnet50",
    backbone=dict(
        type="ResNet",
        depth=50,
        num_stages=4,
        out_indices=(3,),
        frozen_stages=1,
        norm_cfg=dict(type="FrozenBN"),
        norm_eval=True,
        style="pytorch",
    ),
    neck=dict(
        type="ChannelMapper",
        in_channels=[2048],
        kernel_size=1,
        out_channels=_embed_dims,
        act_cfg=None,
        norm_cfg=None,
        num_outs=1,
    ),
    encoder=dict(num_layers=6, layer_cfg=dict(self_attn_cfg=_attn_cfg, ffn_cfg=_ffn_cfg)),
    decoder=dict(
        num_layers=6,
        layer_cfg=dict(self_attn_cfg=_attn_cfg, cross_attn_cfg=_attn_cfg, ffn_cfg=_ffn_cfg),
        return_intermediate=True,
    ),
    positional_encoding=dict(num_feats=_embed_dims // 2, normalize=True),
    bbox_head=dict(
        type="DETRHead",
        num_classes=80,
        embed_dims=_embed_dims,
        loss_cls=dict(
            type="CrossEntropyLoss",
            bg_cls_weight=0.1,
            use_sigmoid=False,
            loss_weight=1.0,
            class_weight=1.0,
        ),  # fmt: skip
        loss_bbox=dict(type="L1Loss", loss_weight=5.0),
        loss_iou=dict(type="GIoULoss", loss_weight=2.0),
    ),
)
train_cfg = dict(
    assigner=dict(
        type="HungarianAssigner",
        match_costs=[
            dict(type="ClassificationCost", weight=1.0),
            dict(type="BBoxL1Cost", weight=5.0, box_format="cxcywh"),
            dict(type="IoUCost", iou_mode="giou", weight=2.0),
        ],
    )
)
test_cfg = dict(max_per_img=100)
img_norm_cfg = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
_multi_scale = [(1333, 480 + 32 * i) for i in range(11)]  # short sides 480, 512, ..., 800
train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations", with_bbox=True),
    dict(type="RandomFlip", flip_ratio=0.5),
    dict(
        type="RandomChoice",
        transforms=[
            [dict(type="Resize", img_scale=_multi_scale, multiscale_mode="value", keep_ratio=True)],
            [
                dict(
                    type="Resize",
                    img_scale=[(1333, 400), (1333, 500), (1333, 600)],
                    multiscale_mode="value",
                    keep_ratio=True,
                ),  # fmt: skip
                dict(
                    type="RandomCrop",
                    crop_type="absolute_range",
                    crop_size=(384, 600),
                    allow_negative_crop=True,
                ),  # fmt: skip
                dict(
                    type="Resize",
                    img_scale=_multi_scale,
                    multiscale_mode="value",
                    keep_ratio=True,
                    override=True,
                ),  # fmt: skip
            ],
        ],
    ),
    dict(type="Normalize", **img_norm_cfg),
    dict(type="Pad", size_divisor=1),
    dict(type="PackDetInputs"),
]
test_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(
        type="MultiScaleFlipAug",
        img_scale=(1333, 800),
        flip=False,
        transforms=[
            dict(type="Resize", keep_ratio=True),
            dict(type="RandomFlip"),
            dict(type="Normalize", **img_norm_cfg),
            dict(type="Pad", size_divisor=1),
            dict(type="PackDetInputs"),
        ],
    ),
]
data = dict(
    imgs_per_gpu=2,
    train=dict(pipeline=train_pipeline),
    val=dict(pipeline=test_pipeline),
    test=dict(pipeline=test_pipeline),
)
optimizer = dict(
    type="AdamW",
    lr=0.0001,
    weight_decay=0.0001,
    paramwise_cfg=dict(custom_keys=dict(backbone=dict(lr_mult=0.1, decay_mult=1.0))),
)
optimizer_config = dict(grad_clip=dict(max_norm=0.1, norm_type=2))
lr_config = dict(policy="step", step=[100])
total_epochs = 150
