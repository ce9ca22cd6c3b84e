# seed-004 run "coco/Mask-RCNN-FPN-C3-3.yaml" (FusionBackbone hook): a Res5 RoI head and the stage
# fusion, anchor sizes 64 / 128 / 256 / 512
# The log reports COCO val2017 bbox AP 0.108, mask AP 0.099 after 120k iterations.
_base_ = [
    "../_base_/models/mask_rcnn_r50_fpn_res5roi_seed004.py",
    "../_base_/datasets/coco_instance.py",
    "../_base_/schedules/schedule_seed004.py",
    "../_base_/default_runtime.py",
]
model = dict(
    backbone=dict(plugins=[dict(cfg=dict(type="StageFusion"), position="after_backbone")]),
    rpn_head=dict(anchor_generator=dict(sizes=[[64], [128], [256], [512]])),
)
