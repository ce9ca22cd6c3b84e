# DINO-5scale, Swin-L, 12 epochs, COCO, as mmdetection's
# configs/dino/dino-5scale_swin-l_8xb2-12e_coco.py (mmdetection reports 57.2 box AP), on our
# TimmBackbone:
# - backbone: timm's swin_large_patch4_window12_384 (patch 4, window 12, depths 2-2-18-2,
#   heads 6-12-24-48, embed 192, drop path 0.2) with its ImageNet-22k weights (ms_in22k: the
#   Swin authors' swin_large_patch4_window12_384_22k, which mmdetection starts from), fetched
#   by timm in init_weights; the four levels at strides 4-32 (192, 384, 768, 1536 channels),
#   each through a LayerNorm (mmdetection's backbone.norm0..3); any input size
#   (strict_img_size=False; always_partition=True: every second block shifts its windows,
#   as mmdetection's Swin). See configs/swin/ for the differences from mmdetection's Swin
#   (timm pads a map to whole windows after the cyclic shift); mmdetection's with_cp
#   (activation checkpointing) is not set.
# - 5 levels: the four backbone levels projected to 256 channels and a fifth (3x3 stride-2
#   conv on the last); the encoder's and decoder's deformable attention over 5 levels.
# - the rest is the 4-scale recipe (AdamW 1e-4, backbone 0.1x, clip 0.1, LR x0.1 after 11).
_base_ = "dino-4scale_r50_8xb2-12e_coco.py"
_num_levels = 5
model = dict(
    num_feature_levels=_num_levels,
    pretrained=None,  # the backbone's own: timm's weights
    backbone=dict(
        _delete_=True,
        type="TimmBackbone",
        model_name="swin_large_patch4_window12_384.ms_in22k",
        out_indices=(0, 1, 2, 3),
        pretrained=True,
        out_norm=dict(type="LN", eps=1e-5),
        model_kwargs=dict(strict_img_size=False, always_partition=True, drop_path_rate=0.2),
    ),
    neck=dict(in_channels=[192, 384, 768, 1536], num_outs=_num_levels),
    encoder=dict(layer_cfg=dict(self_attn_cfg=dict(num_levels=_num_levels))),
    decoder=dict(layer_cfg=dict(cross_attn_cfg=dict(num_levels=_num_levels))),
)
