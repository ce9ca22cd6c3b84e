# Mask R-CNN, Swin-B-FPN (embed dims 128, depths 2-2-18-2, heads 4-8-16-32, window 7),
# multi-scale training, 3x schedule, mixed precision, COCO, under mmdetection's naming. Not a
# mmdetection config: mmdetection ships Swin-T and Swin-S Mask R-CNN only. Like
# mask_rcnn_swin-s-p4-w7_fpn_fp16_ms-crop-3x_coco.py, this is
# mask_rcnn_swin-t-p4-w7_fpn_fp16_ms-crop-3x_coco.py (optimizer, schedule, pipeline, fp16)
# with another timm model: swin_base_patch4_window7_224 with its ImageNet-1k weights (ms_in1k:
# the Swin authors' release; ms_in22k_ft_in1k are their ImageNet-22k ones), and drop path 0.3,
# the Swin-B setting of the Swin authors' detection configs (their Cascade Mask R-CNN; Swin-T
# and Swin-S use 0.2). Levels of 128, 256, 512 and 1024 channels, taken by the FPN from the
# backbone. No published box / mask AP to compare with.
_base_ = "./mask_rcnn_swin-t-p4-w7_fpn_fp16_ms-crop-3x_coco.py"
model = dict(
    backbone=dict(
        model_name="swin_base_patch4_window7_224.ms_in1k",
        model_kwargs=dict(drop_path_rate=0.3),
    )
)
