# Mask R-CNN, ConvNeXt-S-FPN (depths 3-3-27-3, 96-768 channels), multi-scale training, 3x
# schedule, mixed precision, COCO, under mmdetection's naming. Not a mmdetection config:
# mmdetection's ConvNeXt-S model is a Cascade Mask R-CNN with 4conv1fc GIoU box heads (3.x:
# cascade-mask-rcnn_convnext-s-p4-w7_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py), which our
# RoI box heads cannot express. This is mask_rcnn_convnext-t_p4_w7_fpn_fp16_ms-crop_3x_coco.py
# (the Mask R-CNN recipe: AdamW LR 1e-4, layer-wise decay rate 0.95, schedule, pipeline;
# the Cascade recipe's LR 2e-4 and rate 0.7 are left out) with that Cascade config's backbone
# settings:
# - timm's convnext_small, its fb_in1k weights (the ConvNeXt authors' ImageNet-1k release in
#   its EMA form; mmdetection starts from the non-EMA one), drop path 0.6, layer scale from
#   1.0;
# - layer-wise LR decay over num_layers=12: for the 36 blocks, mmdetection's layer ids
#   (stage 3's 27 blocks three to a layer, ids 3-11; stage 4 12), the stem lr x 0.95^13.
# No published box / mask AP to compare with.
_base_ = "./mask_rcnn_convnext-t_p4_w7_fpn_fp16_ms-crop_3x_coco.py"
model = dict(
    backbone=dict(model_name="convnext_small.fb_in1k", model_kwargs=dict(drop_path_rate=0.6))
)
optimizer = dict(paramwise_cfg=dict(num_layers=12))
