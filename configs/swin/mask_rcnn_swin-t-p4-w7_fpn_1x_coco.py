# Mask R-CNN, Swin-T-FPN, 1x schedule (12 epochs), COCO, as mmdetection's
# configs/swin/mask_rcnn_swin-t-p4-w7_fpn_1x_coco.py, on our TimmBackbone:
# - backbone: timm's swin_tiny_patch4_window7_224 (patch 4, window 7, depths 2-2-6-2, heads
#   3-6-12-24, drop path 0.2), its ImageNet-1k weights (ms_in1k: the Swin authors' release,
#   which mmdetection starts from), fetched by timm in init_weights (offline: save
#   timm.create_model(name, pretrained=True).state_dict() and set pretrained to the file);
#   the four levels at strides 4-32 (96, 192, 384, 768 channels; the FPN takes them from the
#   backbone), each through a LayerNorm (out_norm: mmdetection's backbone.norm0..3).
# - strict_img_size=False: any input size (timm builds the shifted-window masks for it on each
#   forward; maps are padded to whole 7x7 windows). always_partition=True: every second block
#   shifts its windows in every stage, as mmdetection's Swin does (timm otherwise fixes window
#   and shift from its 224-pixel img_size and would not shift in the last stage).
# - differs from mmdetection: timm pads a map to whole windows after the cyclic shift,
#   mmdetection before it (the border windows differ where a side is not a multiple of 7).
# - AdamW, LR 1e-4, weight decay 0.05, none on the relative position bias tables and the
#   norms (mmdetection's custom_keys; absolute_pos_embed matches nothing, as there), 2 images
#   a GPU (16 over 8 GPUs); linear warmup over 1000 iterations from 0.001, LR x0.1 after
#   epochs 8 and 11, no gradient clipping (mmdetection's schedule_1x).
_base_ = [
    "../_base_/models/mask_rcnn_r50_fpn.py",
    "../_base_/datasets/coco_instance.py",
    "../_base_/schedules/schedule_1x.py",
    "../_base_/default_runtime.py",
]
model = dict(
    pretrained=None,  # the backbone's own: timm's weights
    backbone=dict(
        _delete_=True,
        type="TimmBackbone",
        model_name="swin_tiny_patch4_window7_224.ms_in1k",
        out_indices=(0, 1, 2, 3),
        pretrained=True,
        out_norm=dict(type="LN", eps=1e-5),
        model_kwargs=dict(strict_img_size=False, always_partition=True, drop_path_rate=0.2),
    ),
    neck=dict(_delete_=True, type="FPN", out_channels=256, num_outs=5),
)
optimizer = dict(
    _delete_=True,
    type="AdamW",
    lr=0.0001,
    betas=(0.9, 0.999),
    weight_decay=0.05,
    paramwise_cfg=dict(
        custom_keys={
            "absolute_pos_embed": dict(decay_mult=0.0),
            "relative_position_bias_table": dict(decay_mult=0.0),
            "norm": dict(decay_mult=0.0),
        }
    ),
)
optimizer_config = dict(_delete_=True)
lr_config = dict(warmup_iters=1000, warmup_ratio=0.001, step=[8, 11])
total_epochs = 12
