# Deformable DETR R-50 as Hugging Face transformers computes it
# (DeformableDetrForObjectDetection with its default timm ResNet-50, DeformableDetrImageProcessor
# and post_process_object_detection), for weights converted by
# tools/model_converters/transformers2ours.py (e.g. SenseTime/deformable-detr: set
# num_classes=91, its id2label with the unused COCO ids). Differences from
# configs/deformable_detr/deformable_detr_r50_16x2_50e_coco.py, all transformers' (the
# equivalence tests in tests/models/test_transformers_deformable_detr.py measure them):
#   images resized as its image processor (uint8, torchvision's antialiased bilinear
#   resize, short side 800, long side at most 1333), ImageNet's mean and std;
#   the input projections' convs keep their bias before the GroupNorm (ChannelMapper
#   bias=True); no dropout on the decoder's self-attention weights (attention_dropout 0.0)
#   nor after the FFN's activation (activation_dropout 0.0; its dropout 0.1 after the FFN
#   and on the residual branches is ours too);
#   the backbone trains from its stem (transformers 5 freezes no stage of a timm backbone;
#   its batch norms are frozen, as ours);
#   the losses unweighted as its loss_dict sums them: focal loss and focal match cost at
#   weight 1 (its class_cost 1 and loss_ce coefficient 1; mmdetection: 2), the cost's log
#   epsilon 1e-8; L1 5 and GIoU 2 as ours;
#   detections: the 100 best (query, class) pairs scoring above 0.5 (its default
#   threshold), boxes not clipped to the image, in the original image.
# Not reproduced: transformers' dropout on the encoder's input features in training (not in
# Deformable DETR or mmdetection). Its loss has no term for a two-stage model's encoder
# proposals (ours: enc_loss_*, see deformable_detr_twostage_refine_r50_transformers.py).
_base_ = "../deformable_detr/deformable_detr_r50_16x2_50e_coco.py"
_embed_dims = 256
_attn_cfg = dict(embed_dims=_embed_dims, num_heads=8, attn_drop=0.0, dropout=0.1, batch_first=True)
_ffn_cfg = dict(embed_dims=_embed_dims, feedforward_channels=1024, ffn_drop=0.0, dropout=0.1)
model = dict(
    pretrained=None,
    backbone=dict(frozen_stages=-1),
    neck=dict(bias=True),
    encoder=dict(layer_cfg=dict(ffn_cfg=_ffn_cfg)),
    decoder=dict(layer_cfg=dict(self_attn_cfg=_attn_cfg, ffn_cfg=_ffn_cfg)),
    bbox_head=dict(loss_cls=dict(loss_weight=1.0)),
)
train_cfg = dict(
    assigner=dict(
        type="HungarianAssigner",
        match_costs=[
            dict(type="FocalLossCost", weight=1.0, eps=1e-8),
            dict(type="BBoxL1Cost", weight=5.0, box_format="cxcywh"),
            dict(type="IoUCost", iou_mode="giou", weight=2.0),
        ],
    )
)
test_cfg = dict(max_per_img=100, score_thr=0.5, clip_bboxes=False)
img_norm_cfg = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
test_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(
        type="MultiScaleFlipAug",
        img_scale=(1333, 800),
        flip=False,
        transforms=[
            dict(type="Resize", keep_ratio=True, backend="transformers"),
            dict(type="RandomFlip"),
            dict(type="Normalize", **img_norm_cfg),
            dict(type="Pad", size_divisor=1),
            dict(type="PackDetInputs"),
        ],
    ),
]
data = dict(val=dict(pipeline=test_pipeline), test=dict(pipeline=test_pipeline))
