# RT-DETR R101-vd, 72 epochs, COCO (the authors' rtdetr_r101vd_6x_coco.yml; the paper
# reports 54.3 box AP): the R50-vd recipe with ResNet-101-vd, the hybrid encoder 384 wide
# (its FFN 2048), the decoder still 256 wide (its input projections 384 -> 256), the
# backbone's LR 1e-6 (0.01x) and, as the authors' R101 optimizer lists only the backbone's
# group, weight decay 1e-4 on every other parameter (norms and biases too).
_base_ = "rtdetr_r50vd_6x_coco.py"
model = dict(
    backbone=dict(depth=101),
    neck=dict(
        out_channels=384,
        encoder=dict(
            layer_cfg=dict(
                self_attn_cfg=dict(embed_dims=384),
                ffn_cfg=dict(embed_dims=384, feedforward_channels=2048),
            )
        ),
    ),
)
optimizer = dict(paramwise_cfg=dict(_delete_=True, custom_keys=dict(backbone=dict(lr_mult=0.01))))
