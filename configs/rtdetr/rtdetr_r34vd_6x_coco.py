# RT-DETR R34-vd, 72 epochs, COCO (the authors' rtdetr_r34vd_6x_coco.yml; the paper reports
# 48.9 box AP): the R18-vd recipe (trained batch norms, nothing frozen, expansion 0.5) with
# ResNet-34-vd and 4 decoder layers. The same difference as R18-vd (backbone norms decay).
_base_ = "rtdetr_r18vd_6x_coco.py"
model = dict(backbone=dict(depth=34), decoder=dict(num_layers=4))
