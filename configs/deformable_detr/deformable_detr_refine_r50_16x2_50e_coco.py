# Deformable DETR with iterative bounding box refinement (mmdetection's
# deformable-detr-refine_r50_16xb2-50e_coco.py): each decoder layer's box branch moves the
# next layer's reference points; one classifier and box branch per layer.
_base_ = "deformable_detr_r50_16x2_50e_coco.py"
model = dict(with_box_refine=True)
