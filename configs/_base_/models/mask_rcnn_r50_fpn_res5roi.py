# Mask R-CNN with a ResNet-50-FPN backbone and a Res5 RoI head: each RoI is pooled 14x14
# from its FPN level (P2-P5, 256 channels), goes through a res5 stage (ResLayer with
# in_channels=256, 14x14 -> 7x7, 2048 channels), then an average-pooled classifier and box
# regressor (BBoxHead) and, on the positives' res5 features (share_roi_extractor=True), a
# conv-free mask head with a 2x deconv (7x7 -> 14x14 masks). The res5 stage loads the
# pretrained file's layer4 except its first block's conv1 and downsample, whose input width
# differs (256, not 1024): those two are newly initialised (reported at loading).
_base_ = "./mask_rcnn_r50_fpn.py"
model = dict(
    roi_head=dict(
        _delete_=True,
        type="StandardRoIHead",
        shared_head=dict(
            type="ResLayer",
            depth=50,
            stage=3,
            stride=2,
            dilation=1,
            style="pytorch",
            in_channels=256,
            norm_cfg=dict(type="BN", requires_grad=True),
            norm_eval=True,
        ),
        bbox_roi_extractor=dict(
            type="SingleRoIExtractor",
            roi_layer=dict(type="RoIAlign", output_size=14, sampling_ratio=0, aligned=True),
            out_channels=256,
            featmap_strides=[4, 8, 16, 32],
        ),
        bbox_head=dict(
            type="BBoxHead",
            with_avg_pool=True,
            roi_feat_size=7,
            in_channels=2048,
            num_classes=80,
            bbox_coder=dict(
                type="DeltaXYWHBBoxCoder",
                target_means=[0.0, 0.0, 0.0, 0.0],
                target_stds=[0.1, 0.1, 0.2, 0.2],
            ),
            reg_class_agnostic=False,
            loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0),
            loss_bbox=dict(type="SmoothL1Loss", beta=1.0, loss_weight=1.0),
        ),
        mask_roi_extractor=None,
        share_roi_extractor=True,
        mask_head=dict(
            type="FCNMaskHead",
            num_convs=0,
            in_channels=2048,
            conv_out_channels=256,
            roi_feat_size=7,
            upsample_ratio=2,
            num_classes=80,
            loss_mask=dict(type="CrossEntropyLoss", use_mask=True, loss_weight=1.0),
        ),
    ),
)
train_cfg = dict(rcnn=dict(mask_size=14))
