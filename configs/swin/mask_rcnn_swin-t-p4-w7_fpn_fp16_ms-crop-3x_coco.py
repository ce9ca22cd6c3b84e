# mask_rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py in mixed precision (float16 autocast, dynamic
# loss scale), as mmdetection's configs/swin/mask_rcnn_swin-t-p4-w7_fpn_fp16_ms-crop-3x_coco.py.
# mmdetection's dynamic scale starts at 512, torch's GradScaler (ours) at 65536: the first
# few steps may overflow and be skipped while it halves.
_base_ = "./mask_rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py"
fp16 = dict(dtype="float16", loss_scale="dynamic")
