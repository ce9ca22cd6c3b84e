# Mask R-CNN, ConvNeXt-B-FPN (depths 3-3-27-3, 128-1024 channels), multi-scale training, 3x
# schedule, mixed precision, COCO, under mmdetection's naming. Not a mmdetection config
# (mmdetection has no ConvNeXt-B Mask R-CNN). This is
# mask_rcnn_convnext-s_p4_w7_fpn_fp16_ms-crop_3x_coco.py (the ConvNeXt-T Mask R-CNN recipe,
# layer-wise decay over num_layers=12) with timm's convnext_base, its fb_in1k weights (the
# ConvNeXt authors' ImageNet-1k release, EMA form) and drop path 0.7, the ConvNeXt authors'
# ConvNeXt-B ImageNet-1k detection setting (their Cascade Mask R-CNN config). Levels of 128,
# 256, 512 and 1024 channels, taken by the FPN from the backbone. No published box / mask AP
# to compare with.
_base_ = "./mask_rcnn_convnext-s_p4_w7_fpn_fp16_ms-crop_3x_coco.py"
model = dict(
    backbone=dict(model_name="convnext_base.fb_in1k", model_kwargs=dict(drop_path_rate=0.7))
)
