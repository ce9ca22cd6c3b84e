# Mask R-CNN, Swin-S-FPN (depths 2-2-18-2; drop path 0.2, kept from Swin-T as mmdetection
# does), multi-scale training, 3x schedule, mixed precision, COCO, as mmdetection's
# configs/swin/mask_rcnn_swin-s-p4-w7_fpn_fp16_ms-crop-3x_coco.py: timm's
# swin_small_patch4_window7_224 with its ImageNet-1k weights (the Swin authors' release), the
# rest as mask_rcnn_swin-t-p4-w7_fpn_fp16_ms-crop-3x_coco.py (see its and its bases' headers
# for what differs from mmdetection). mmdetection has no Swin-B Mask R-CNN config; ours is
# mask_rcnn_swin-b-p4-w7_fpn_fp16_ms-crop-3x_coco.py.
_base_ = "./mask_rcnn_swin-t-p4-w7_fpn_fp16_ms-crop-3x_coco.py"
model = dict(backbone=dict(model_name="swin_small_patch4_window7_224.ms_in1k"))
