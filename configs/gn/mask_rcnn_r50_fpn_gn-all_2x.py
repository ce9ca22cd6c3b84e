# Mask R-CNN, ResNet-50-FPN with GroupNorm everywhere (backbone, FPN, a 4conv1fc box head,
# the mask head), 2x schedule (24 epochs), COCO, as mmdetection's
# configs/gn/mask_rcnn_r50_fpn_gn-all_2x_coco.py (Wu & He 2018).
# mmdetection model zoo: 40.2 box AP, 36.4 mask AP.
#
# Backbone weights: mmdetection starts from 'open-mmlab://detectron/resnet50_gn', Detectron's
# ImageNet R-50-GN (trained with the stride on the 3x3 conv, i.e. style="pytorch", and the
# caffe image normalisation: the coco_instance_caffe dataset base). That name is not
# loadable here: put those weights at
# checkpoints/resnet50_gn.pth with our (torchvision) ResNet key names (mmcv's gn1/gn2/gn3 ->
# bn1/bn2/bn3, downsample.1 as it is; see docs/models.md).
_base_ = [
    "../_base_/models/mask_rcnn_r50_fpn.py",
    "../_base_/datasets/coco_instance_caffe.py",
    "../_base_/schedules/schedule_2x.py",
    "../_base_/default_runtime.py",
]
_gn_norm_cfg = dict(type="GN", num_groups=32, requires_grad=True)
model = dict(
    pretrained="checkpoints/resnet50_gn.pth",
    backbone=dict(norm_cfg=_gn_norm_cfg, norm_eval=False, style="pytorch"),
    neck=dict(norm_cfg=_gn_norm_cfg),
    roi_head=dict(
        bbox_head=dict(type="Shared4Conv1FCBBoxHead", conv_out_channels=256, norm_cfg=_gn_norm_cfg),
        mask_head=dict(norm_cfg=_gn_norm_cfg),
    ),
)
