# seed-004 run "coco/Mask-RCNN-FPN-C3.yaml" (first run): a Res5 RoI head on the FPN levels, anchor
# sizes 120 / 240 / 480 / 512, no plugin
# The log reports COCO val2017 bbox AP 0.235, mask AP 0.175 after 120k iterations.
_base_ = [
    "../_base_/models/mask_rcnn_r50_fpn_res5roi_seed004.py",
    "../_base_/datasets/coco_instance.py",
    "../_base_/schedules/schedule_seed004.py",
    "../_base_/default_runtime.py",
]
model = dict(
    rpn_head=dict(anchor_generator=dict(sizes=[[120], [240], [480], [512]])),
)
