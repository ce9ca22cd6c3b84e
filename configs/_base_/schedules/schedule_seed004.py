# The seed-004 runs' schedule: SGD at LR 0.02, 1,000 warmup iterations, 120,000 iterations of
# 4 images with the LR divided by 10 at 80,000 and 100,000. The runner counts epochs: COCO
# train2017 has 117,266 images with annotations, so 4 epochs of 4 images a batch are 117,266
# iterations (98% of the log's); the LR steps stay on iterations.
optimizer = dict(type="SGD", lr=0.02, momentum=0.9, weight_decay=0.0001)
optimizer_config = dict(grad_clip=None)
lr_config = dict(
    policy="step",
    by_epoch=False,
    warmup="linear",
    warmup_iters=1000,
    warmup_ratio=0.001,
    step=[80000, 100000],
)
total_epochs = 4
