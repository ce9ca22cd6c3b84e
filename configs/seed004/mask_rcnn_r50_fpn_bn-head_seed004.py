# seed-004 run "coco/Mask-RCNN-FPN-3.yaml" (StandardROIHeads): the standard RoI head (4 convs + 1
# fc box head and the 4-conv mask head, both batch-normed), anchor sizes 64 / 128 / 256 / 512
# The log reports COCO val2017 bbox AP 0.267, mask AP 0.252 after 120k iterations.
_base_ = [
    "../_base_/models/mask_rcnn_r50_fpn_seed004.py",
    "../_base_/datasets/coco_instance.py",
    "../_base_/schedules/schedule_seed004.py",
    "../_base_/default_runtime.py",
]
model = dict(
    rpn_head=dict(anchor_generator=dict(sizes=[[64], [128], [256], [512]])),
)
