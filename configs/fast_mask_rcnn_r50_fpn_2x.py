# Fast Mask R-CNN, ResNet-50-FPN, 2x schedule (24 epochs), COCO.
_base_ = [
    "_base_/models/fast_rcnn_r50_fpn.py",
    "_base_/datasets/coco_instance_proposals.py",
    "_base_/schedules/schedule_2x.py",
    "_base_/default_runtime.py",
]
# Fast R-CNN with a mask branch (as Mask R-CNN's) on precomputed proposals.
model = dict(
    roi_head=dict(
        mask_roi_extractor=dict(
            type="SingleRoIExtractor",
            roi_layer=dict(type="RoIAlign", output_size=14, sampling_ratio=0, aligned=True),
            out_channels=256,
            featmap_strides=[4, 8, 16, 32],
        ),
        mask_head=dict(
            type="FCNMaskHead",
            num_convs=4,
            in_channels=256,
            conv_out_channels=256,
            num_classes=80,
            loss_mask=dict(type="CrossEntropyLoss", use_mask=True, loss_weight=1.0),
        ),
    )
)
train_cfg = dict(rcnn=dict(mask_size=28))
test_cfg = dict(rcnn=dict(mask_thr_binary=0.5))
