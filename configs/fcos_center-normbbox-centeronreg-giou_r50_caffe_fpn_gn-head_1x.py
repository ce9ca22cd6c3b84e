# FCOS with the improvements of mmdetection's fcos_center-normbbox-centeronreg-giou variant:
# centre sampling (radius 1.5 strides), distances predicted in strides through a ReLU, the
# centre-ness from the regression tower, biased tower convs and the GIoU box loss.
_base_ = "./fcos_r50_caffe_fpn_gn-head_1x.py"
model = dict(
    bbox_head=dict(
        norm_on_bbox=True,
        centerness_on_reg=True,
        center_sampling=True,
        conv_bias=True,
        loss_bbox=dict(_delete_=True, type="GIoULoss", loss_weight=1.0),
    )
)
