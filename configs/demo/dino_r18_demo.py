# Small DINO (half-width ResNet-18 C3-C5 plus a stride-64 level, 64-wide transformer of 3 + 3
# layers, 100 queries) for the demo shapes dataset; the data, image size and batch of
# configs/demo/retinanet_r18_fpn_demo.py, DINO's losses, matching and denoising, 24 epochs
# at LR 2e-3 (bbox AP 0.697; the LR, denoising and epoch runs are in the README's DINO demo
# section):
#   python tools/make_demo_dataset.py data/demo
#   python tools/train.py configs/demo/dino_r18_demo.py
#   python tools/test.py configs/demo/dino_r18_demo.py \
#       work_dirs/dino_r18_demo/latest.pth --eval bbox
# Trained from scratch (no pretrained backbone), so the backbone gets the full LR; AdamW at
# 2e-3 (at 12 epochs 5e-4 / 1e-3 / 2e-3 / 4e-3 gave bbox
# AP 0.269 / 0.372 / 0.489 / 0.373) with DINO's gradient clipping (0.1) and the demos' warmup
# and per-iteration cosine.
_base_ = "./retinanet_r18_fpn_demo.py"
_embed_dims = 64
_deform_cfg = dict(embed_dims=_embed_dims, num_heads=4, num_levels=4, num_points=4, dropout=0.0,
                   batch_first=True)  # fmt: skip
_attn_cfg = dict(embed_dims=_embed_dims, num_heads=4, dropout=0.0, batch_first=True)
_ffn_cfg = dict(embed_dims=_embed_dims, feedforward_channels=256, ffn_drop=0.0)
model = dict(
    _delete_=True,
    type="DINO",
    num_queries=100,
    num_feature_levels=4,
    with_box_refine=True,
    as_two_stage=True,
    size_divisor=1,
    pretrained=None,
    backbone=dict(
        type="ResNet",
        depth=18,
        base_channels=32,  # half-width: C3-C5 of 64, 128 and 256 channels
        num_stages=4,
        out_indices=(1, 2, 3),
        frozen_stages=-1,
        norm_cfg=dict(type="BN", requires_grad=True),
        norm_eval=False,
        style="pytorch",
    ),
    neck=dict(
        type="ChannelMapper",
        in_channels=[64, 128, 256],
        kernel_size=1,
        out_channels=_embed_dims,
        act_cfg=None,
        norm_cfg=dict(type="GN", num_groups=16),
        num_outs=4,
    ),
    encoder=dict(num_layers=3, layer_cfg=dict(self_attn_cfg=_deform_cfg, ffn_cfg=_ffn_cfg)),
    decoder=dict(
        num_layers=3,
        return_intermediate=True,
        layer_cfg=dict(self_attn_cfg=_attn_cfg, cross_attn_cfg=_deform_cfg, ffn_cfg=_ffn_cfg),
        post_norm_cfg=None,
    ),
    positional_encoding=dict(
        num_feats=_embed_dims // 2, normalize=True, offset=0.0, temperature=20
    ),  # fmt: skip
    bbox_head=dict(
        type="DINOHead",
        num_classes=4,
        embed_dims=_embed_dims,
        loss_cls=dict(type="FocalLoss", use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
        loss_bbox=dict(type="L1Loss", loss_weight=5.0),
        loss_iou=dict(type="GIoULoss", loss_weight=2.0),
    ),
    dn_cfg=dict(
        label_noise_scale=0.5,
        box_noise_scale=1.0,
        group_cfg=dict(dynamic=True, num_groups=None, num_dn_queries=50),
    ),
)
train_cfg = dict(
    _delete_=True,
    assigner=dict(
        type="HungarianAssigner",
        match_costs=[
            dict(type="FocalLossCost", weight=2.0),
            dict(type="BBoxL1Cost", weight=5.0, box_format="cxcywh"),
            dict(type="IoUCost", iou_mode="giou", weight=2.0),
        ],
    ),
)
test_cfg = dict(_delete_=True, max_per_img=50)
optimizer = dict(
    _delete_=True,
    type="AdamW",
    lr=2e-3,
    weight_decay=1e-4,
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0),
)
optimizer_config = dict(grad_clip=dict(max_norm=0.1, norm_type=2))
total_epochs = 24
work_dir = "./work_dirs/dino_r18_demo"
