# RT-DETR R50-vd, 72 epochs (6x), COCO, as the authors' rtdetr_pytorch/configs/rtdetr/
# rtdetr_r50vd_6x_coco.yml (lyuwenyu/RT-DETR; the paper reports 53.1 box AP at 640 x 640):
# - backbone: ResNet-50-vd (PResNet, variant d: three 3x3 stem convs, average-pooled
#   shortcuts), C3-C5, frozen batch norms, the stem frozen (freeze_at 0);
# - neck: HybridEncoder: the levels projected to 256 channels (1x1 conv + BN), one
#   transformer layer on C5 (AIFI: 8 heads, FFN 1024, GELU, no dropout, 2-D sine-cosine
#   positions), then the top-down and bottom-up CSP/RepVGG fusion (CCFM: 3 RepVGG blocks a
#   CSP layer, expansion 1.0, SiLU);
# - decoder: 300 queries selected from the encoder's cells (IoU-aware query selection:
#   varifocal-trained scores, anchors of side 0.05 * 2 ** level), 6 deformable layers (8
#   heads, 3 levels, 4 points, FFN 1024, ReLU, no dropout), box refinement looking forward
#   twice; about 100 contrastive denoising queries (label noise 0.5, box noise 1.0);
# - losses: varifocal (alpha 0.75, gamma 2, weight 1), L1 5, GIoU 2 on every decoder layer,
#   the selected cells and the denoising queries; Hungarian matching with focal cost 2
#   (alpha 0.25, gamma 2), L1 5, GIoU 2; detections: the 300 best (query, class) pairs;
# - schedule: AdamW, LR 1e-4 (the backbone 1e-5), betas (0.9, 0.999), weight decay 1e-4
#   (0 for the norms and biases outside the backbone), gradients clipped to norm 0.1, the
#   LR constant for 72 epochs (the authors' MultiStepLR milestone 1000 is never reached),
#   EMA of the weights (decay 0.9999 with 2000 warmup steps, buffers too: the authors'
#   ModelEMA); 4 GPUs x 4 images;
# - data: photometric distortion, zoom-out (p 0.5, up to 4x), IoU crop (p 0.8), horizontal
#   flip, resize to 640 x 640 (aspect not kept), pixels scaled to [0, 1] (no mean/std);
#   each training batch then resized to a square size drawn from 480-800 (the model's
#   multi_scale); test at 640 x 640.
# Differences from the authors' recipe: the augmentations are ours (mmdetection's SSD-style
# PhotoMetricDistortion, Expand, MinIoURandomCrop; theirs torchvision's v2 transforms);
# their sanitisation of degenerate boxes is the pipeline's filtering; the authors stop
# multi-scale for the last epoch (ours keeps it); pretrained=None: the authors' ImageNet
# ResNet-50-vd (ResNet50_vd_ssld_v2_pretrained_from_paddle.pth) is not loaded (start from a
# converted RT-DETR checkpoint, or set it once converted). EMAHook is the engine's
# (ema_type DecayWarmupEMA: the authors' ModelEMA formula).
_base_ = ["../_base_/datasets/coco_detection.py", "../_base_/default_runtime.py"]
_embed_dims = 256
_attn_cfg = dict(embed_dims=_embed_dims, num_heads=8, dropout=0.0, batch_first=True)
_deform_cfg = dict(embed_dims=_embed_dims, num_heads=8, num_levels=3, num_points=4, dropout=0.0,
                   batch_first=True)  # fmt: skip
model = dict(
    type="RTDETR",
    num_queries=300,
    num_feature_levels=3,
    size_divisor=32,
    pretrained=None,
    backbone=dict(
        type="ResNet",
        depth=50,
        deep_stem=True,
        avg_down=True,
        conv_shortcut_first_block=True,
        out_indices=(1, 2, 3),
        frozen_stages=0,
        norm_cfg=dict(type="FrozenBN"),
        norm_eval=True,
        style="pytorch",
    ),
    neck=dict(
        type="HybridEncoder",
        in_channels=[512, 1024, 2048],
        out_channels=_embed_dims,
        encoder=dict(
            num_layers=1,
            layer_cfg=dict(
                self_attn_cfg=_attn_cfg,
                ffn_cfg=dict(
                    embed_dims=_embed_dims,
                    feedforward_channels=1024,
                    ffn_drop=0.0,
                    act_cfg=dict(type="GELU"),
                ),
            ),
        ),  # fmt: skip
        encoder_levels=(2,),
        pe_temperature=10000,
        expansion=1.0,
        depth_mult=1.0,
        act_cfg=dict(type="SiLU"),
    ),
    decoder=dict(
        num_layers=6,
        look_forward_twice=True,
        layer_cfg=dict(
            self_attn_cfg=_attn_cfg,
            cross_attn_cfg=_deform_cfg,
            ffn_cfg=dict(embed_dims=_embed_dims, feedforward_channels=1024, ffn_drop=0.0),
        ),
    ),
    bbox_head=dict(
        type="RTDETRHead",
        num_classes=80,
        embed_dims=_embed_dims,
        loss_cls=dict(
            type="VarifocalLoss",
            use_sigmoid=True,
            alpha=0.75,
            gamma=2.0,
            iou_weighted=True,
            loss_weight=1.0,
        ),
        loss_bbox=dict(type="L1Loss", loss_weight=5.0),
        loss_iou=dict(type="GIoULoss", loss_weight=2.0),
    ),  # fmt: skip
    dn_cfg=dict(label_noise_scale=0.5, box_noise_scale=1.0, num_dn_queries=100),
    learn_initial_query=False,
    multi_scale=[480, 512, 544, 576, 608, 640, 640, 640, 672, 704, 736, 768, 800],
)
train_cfg = dict(
    assigner=dict(
        type="HungarianAssigner",
        match_costs=[
            dict(type="FocalLossCost", weight=2.0, alpha=0.25, gamma=2.0, eps=1e-8),
            dict(type="BBoxL1Cost", weight=5.0, box_format="cxcywh"),
            dict(type="IoUCost", iou_mode="giou", weight=2.0),
        ],
    )
)
test_cfg = dict(max_per_img=300)
img_norm_cfg = dict(mean=[0.0, 0.0, 0.0], std=[255.0, 255.0, 255.0], to_rgb=True)
train_pipeline = [
    dict(type="LoadImageFromFile", to_float32=True),
    dict(type="LoadAnnotations", with_bbox=True),
    dict(type="PhotoMetricDistortion"),
    dict(type="Expand", mean=[0, 0, 0], to_rgb=True, ratio_range=(1, 4), prob=0.5),
    dict(
        type="RandomChoice",
        transforms=[
            [dict(type="MinIoURandomCrop", min_ious=(0.1, 0.3, 0.5, 0.7, 0.9), min_crop_size=0.3)],
            [],
        ],
        prob=[0.8, 0.2],
    ),  # fmt: skip
    dict(type="RandomFlip", flip_ratio=0.5),
    dict(type="Resize", img_scale=(640, 640), keep_ratio=False),
    dict(type="Normalize", **img_norm_cfg),
    dict(type="Pad", size_divisor=32),
    dict(type="PackDetInputs"),
]
test_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(
        type="MultiScaleFlipAug",
        img_scale=(640, 640),
        flip=False,
        transforms=[
            dict(type="Resize", keep_ratio=False),
            dict(type="RandomFlip"),
            dict(type="Normalize", **img_norm_cfg),
            dict(type="Pad", size_divisor=32),
            dict(type="PackDetInputs"),
        ],
    ),
]
data = dict(
    imgs_per_gpu=4,
    workers_per_gpu=4,
    train=dict(pipeline=train_pipeline),
    val=dict(pipeline=test_pipeline),
    test=dict(pipeline=test_pipeline),
)
optimizer = dict(
    type="AdamW",
    lr=0.0001,
    betas=(0.9, 0.999),
    weight_decay=0.0001,
    paramwise_cfg=dict(
        custom_keys=dict(backbone=dict(lr_mult=0.1)), norm_decay_mult=0.0, bias_decay_mult=0.0
    ),
)
optimizer_config = dict(grad_clip=dict(max_norm=0.1, norm_type=2))
lr_config = dict(policy="fixed")
total_epochs = 72
custom_hooks = [
    dict(type="EMAHook", ema_type="DecayWarmupEMA", decay=0.9999, warmups=2000,
         update_buffers=True, priority=49)
]  # fmt: skip
