# Two-stage Deformable DETR with box refinement (mmdetection's
# deformable-detr-refine-twostage_r50_16xb2-50e_coco.py): the 300 queries are the encoder's
# best-scoring cells, their proposals' boxes the reference points; the encoder's proposals
# are trained class-agnostic (enc_loss_cls, enc_loss_bbox, enc_loss_iou).
_base_ = "deformable_detr_refine_r50_16x2_50e_coco.py"
model = dict(as_two_stage=True)
