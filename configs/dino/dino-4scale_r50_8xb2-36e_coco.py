# DINO-4scale, ResNet-50, 36 epochs (mmdetection's dino-4scale_r50_8xb2-36e_coco.py): the
# 12-epoch recipe with LR x0.1 after epoch 30.
_base_ = "dino-4scale_r50_8xb2-12e_coco.py"
lr_config = dict(policy="step", step=[30])
total_epochs = 36
