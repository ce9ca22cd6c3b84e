# DETR R-50 as Hugging Face transformers computes it (DetrForObjectDetection with its
# default timm ResNet-50, DetrImageProcessor and post_process_object_detection), for weights
# converted by tools/model_converters/transformers2ours.py (e.g. facebook/detr-resnet-50:
# set num_classes=91, its id2label with the unused COCO ids). Differences from
# configs/detr/detr_r50_8x2_150e_coco.py, all transformers' (the equivalence tests in
# tests/models/test_transformers_detr.py measure them):
#   images resized as its image processor (uint8, torchvision's antialiased bilinear
#   resize, its size rule: short side 800, long side at most 1333), then normalised with
#   ImageNet's mean and std; no padding of a single image;
#   no dropout on the attention weights (transformers' attention_dropout 0.0; its dropout
#   0.1 on the residual branches is ours too); in the FFN no dropout after the activation
#   (its activation_dropout 0.0), only its 0.1 after the second linear layer (mmdetection:
#   0.1 after both); the backbone trains from its stem (with a
#   timm backbone transformers 5 freezes no stage; its batch norms are frozen, as ours);
#   detections: every query's best class scoring above 0.5 (its default threshold), boxes
#   not clipped to the image, in the original image.
# A model saved with auxiliary_loss=True (transformers' setting for training with the
# auxiliary losses) feeds each decoder layer the previous layer's output after the final
# LayerNorm and normalises the last output twice (DETR and mmdetection pass the
# unnormalised output on and normalise only what the head reads): set
# model.decoder.norm_layer_inputs=True for it (the converter notes it).
# Not reproduced: transformers' dropout on the encoder's input features in training (not in
# DETR or mmdetection).
_base_ = "../detr/detr_r50_8x2_150e_coco.py"
_embed_dims = 256
_attn_cfg = dict(embed_dims=_embed_dims, num_heads=8, attn_drop=0.0, dropout=0.1, batch_first=True)
_ffn_cfg = dict(embed_dims=_embed_dims, feedforward_channels=2048, ffn_drop=0.0, dropout=0.1)
model = dict(
    pretrained=None,
    backbone=dict(frozen_stages=-1),
    encoder=dict(layer_cfg=dict(self_attn_cfg=_attn_cfg, ffn_cfg=_ffn_cfg)),
    decoder=dict(
        layer_cfg=dict(self_attn_cfg=_attn_cfg, cross_attn_cfg=_attn_cfg, ffn_cfg=_ffn_cfg)
    ),
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
