# RT-DETR R18-vd, 72 epochs, COCO (the authors' rtdetr_r18vd_6x_coco.yml; the paper reports
# 46.5 box AP): the R50-vd recipe (rtdetr_r50vd_6x_coco.py) with
# - ResNet-18-vd, its batch norms trained (batch statistics; the authors' freeze_norm False)
#   and no stage frozen (freeze_at -1); C3-C5 of 128, 256, 512 channels;
# - the fusion's CSP layers at half width (expansion 0.5);
# - 3 decoder layers.
# Difference: the authors also exempt the backbone's norms from weight decay; here the
# backbone's custom key (LR 0.1x) takes precedence over norm_decay_mult, so they decay.
_base_ = "rtdetr_r50vd_6x_coco.py"
model = dict(
    backbone=dict(depth=18, frozen_stages=-1, norm_cfg=dict(type="BN", requires_grad=True),
                  norm_eval=False),
    neck=dict(in_channels=[128, 256, 512], expansion=0.5),
    decoder=dict(num_layers=3),
)  # fmt: skip
