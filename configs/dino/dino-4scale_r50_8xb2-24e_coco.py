# DINO-4scale, ResNet-50, 24 epochs (mmdetection's dino-4scale_r50_8xb2-24e_coco.py): the
# 12-epoch recipe with LR x0.1 after epoch 20.
_base_ = "dino-4scale_r50_8xb2-12e_coco.py"
lr_config = dict(policy="step", step=[20])
total_epochs = 24
