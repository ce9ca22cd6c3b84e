# Faster R-CNN R-50-C4, caffe style (stride on the 1x1 conv), frozen BN, caffe image
# normalisation (BGR, mean subtraction only), 1x schedule (12 epochs), COCO. The caffe-style
# ImageNet weights are a local file: put them at checkpoints/resnet50_caffe.pth
# (docs/models.md); the backbone loads res2-res4, the shared head res5 (layer4).
# maskrcnn-benchmark's R-50-C4 1x (Detectron's setup, 8 images a batch): 34.8 box AP.
_base_ = [
    "_base_/models/faster_rcnn_r50_caffe_c4.py",
    "_base_/datasets/coco_detection.py",
    "_base_/schedules/schedule_1x.py",
    "_base_/default_runtime.py",
]
img_norm_cfg = dict(mean=[102.9801, 115.9465, 122.7717], std=[1.0, 1.0, 1.0], to_rgb=False)
train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations", with_bbox=True),
    dict(type="Resize", img_scale=(1333, 800), keep_ratio=True),
    dict(type="RandomFlip", flip_ratio=0.5),
    dict(type="Normalize", **img_norm_cfg),
    dict(type="Pad", size_divisor=32),
    dict(type="PackDetInputs"),
]
test_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(
        type="MultiScaleFlipAug",
        img_scale=(1333, 800),
        flip=False,
        transforms=[
            dict(type="Resize", keep_ratio=True),
            dict(type="RandomFlip"),
            dict(type="Normalize", **img_norm_cfg),
            dict(type="Pad", size_divisor=32),
            dict(type="PackDetInputs"),
        ],
    ),
]
data = dict(
    train=dict(pipeline=train_pipeline),
    val=dict(pipeline=test_pipeline),
    test=dict(pipeline=test_pipeline),
)
