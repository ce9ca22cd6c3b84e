# RT-DETR R50-vd as Hugging Face transformers computes it (RTDetrForObjectDetection with its
# RT-DETR ResNet-50-vd, RTDetrImageProcessor and post_process_object_detection), for weights
# converted by tools/model_converters/transformers2ours.py (e.g. PekingU/rtdetr_r50vd, 80
# classes). Differences from configs/rtdetr/rtdetr_r50vd_6x_coco.py, all transformers' (the
# equivalence tests in tests/models/test_transformers_rtdetr.py measure them):
#   images resized as its image processor to 640 x 640 (uint8, torchvision's antialiased
#   bilinear resize, the aspect not kept), pixels scaled by 1 / 255 (no mean/std);
#   the backbone trains from its stem (transformers freezes its batch norms only; the
#   authors' R50 recipe also freezes the stem);
#   no look forward twice: each decoder layer's box adds its offset to the previous layer's
#   box detached (model.decoder.look_forward_twice=False; the values are the same, the
#   gradients reach one box branch less);
#   no multi-scale batch resize (transformers' model has none);
#   detections: the 300 best (query, class) pairs scoring above 0.5 (its default
#   threshold), boxes not clipped to the image, in the original image.
# The same as transformers (and the authors): the anchors outside (0.01, 0.99) get the
# largest float32 value (the authors' code: infinity; the boxes' sigmoid is 1 either way);
# the contrastive denoising groups, drawn from the same generator state, are transformers'
# queries (RTDETRCdnQueryGenerator). Not reproduced: transformers' eval_size (its AIFI then
# runs without positions in eval mode) and anchor_image_size (fixed anchors in eval mode);
# the converter refuses more than one extra decoder level (transformers projects each one
# from the last input level).
_base_ = "../rtdetr/rtdetr_r50vd_6x_coco.py"
model = dict(
    backbone=dict(frozen_stages=-1),
    decoder=dict(look_forward_twice=False),
    multi_scale=None,
)
test_cfg = dict(max_per_img=300, score_thr=0.5, clip_bboxes=False)
img_norm_cfg = dict(mean=[0.0, 0.0, 0.0], std=[255.0, 255.0, 255.0], to_rgb=True)
test_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(
        type="MultiScaleFlipAug",
        img_scale=(640, 640),
        flip=False,
        transforms=[
            dict(type="Resize", keep_ratio=False, backend="transformers"),
            dict(type="RandomFlip"),
            dict(type="Normalize", **img_norm_cfg),
            dict(type="Pad", size_divisor=32),
            dict(type="PackDetInputs"),
        ],
    ),
]
data = dict(val=dict(pipeline=test_pipeline), test=dict(pipeline=test_pipeline))
