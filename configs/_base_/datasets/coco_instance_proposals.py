# COCO 2017 instance masks with precomputed proposals (Fast R-CNN). The proposal files are
# pickles of one (k, 4|5) array per image, e.g. written by testing rpn_r50_fpn_1x.py.
_base_ = "./coco_instance.py"
img_norm_cfg = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadProposals", num_max_proposals=2000),
    dict(type="LoadAnnotations", with_bbox=True, with_mask=True),
    dict(type="Resize", img_scale=(1333, 800), keep_ratio=True),
    dict(type="RandomFlip", flip_ratio=0.5),
    dict(type="Normalize", **img_norm_cfg),
    dict(type="Pad", size_divisor=32),
    dict(type="PackDetInputs"),
]
test_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadProposals", num_max_proposals=None),
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
    train=dict(
        proposal_file="data/coco/proposals/rpn_r50_fpn_1x_train2017.pkl",
        pipeline=train_pipeline,
    ),
    val=dict(
        proposal_file="data/coco/proposals/rpn_r50_fpn_1x_val2017.pkl",
        pipeline=test_pipeline,
    ),
    test=dict(
        proposal_file="data/coco/proposals/rpn_r50_fpn_1x_val2017.pkl",
        pipeline=test_pipeline,
    ),
)
