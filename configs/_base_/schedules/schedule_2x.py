# 24 epochs, SGD with momentum, LR x0.1 after epochs 16 and 22, linear warmup (mmdetection 2x).
optimizer = dict(type="SGD", lr=0.02, momentum=0.9, weight_decay=0.0001)
optimizer_config = dict(grad_clip=dict(max_norm=35, norm_type=2))
lr_config = dict(
    policy="step", warmup="linear", warmup_iters=500, warmup_ratio=1.0 / 3, step=[16, 22]
)
total_epochs = 24
