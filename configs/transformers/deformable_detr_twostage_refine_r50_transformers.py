# Two-stage Deformable DETR with box refinement as transformers computes it
# (DeformableDetrForObjectDetection with two_stage=True, with_box_refine=True; e.g.
# SenseTime/deformable-detr-with-box-refine-two-stage), for weights converted by
# tools/model_converters/transformers2ours.py: deformable_detr_r50_transformers.py's
# differences (see there) on configs/deformable_detr/
# deformable_detr_twostage_refine_r50_16x2_50e_coco.py. The queries are its
# two_stage_num_proposals best encoder cells (300).
# transformers' loss has no term for the encoder's proposals: ours adds enc_loss_cls,
# enc_loss_bbox and enc_loss_iou (mmdetection's and Deformable DETR's); leave them out of
# the sum to train exactly as transformers does.
_base_ = "deformable_detr_r50_transformers.py"
model = dict(with_box_refine=True, as_two_stage=True)
