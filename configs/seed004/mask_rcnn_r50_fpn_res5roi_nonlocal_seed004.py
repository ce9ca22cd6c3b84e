# seed-004 run "coco/Mask-RCNN-FPN-C3-2.yaml" (with the NonLocal hook): a Res5 RoI head, a non-
# local block after res4, anchor sizes 64 / 128 / 256 / 512
# The log reports COCO val2017 bbox AP 0.274, mask AP 0.220 after 120k iterations.
_base_ = [
    "../_base_/models/mask_rcnn_r50_fpn_res5roi_seed004.py",
    "../_base_/datasets/coco_instance.py",
    "../_base_/schedules/schedule_seed004.py",
    "../_base_/default_runtime.py",
]
model = dict(
    backbone=dict(
        plugins=[
            dict(
                cfg=dict(type="NonLocal2d", reduction=2, use_scale=True, mode="embedded_gaussian"),
                stages=(False, False, True, False),
                position="after_stage",
            )
        ]
    ),
    rpn_head=dict(anchor_generator=dict(sizes=[[64], [128], [256], [512]])),
)
