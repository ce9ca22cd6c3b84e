# Your own data, the example of docs/own_dataset.md: the demo Mask R-CNN (half-width
# ResNet-18, 128 px images, trained from scratch) on a COCO json made from a LabelMe folder:
#   python tools/make_demo_dataset.py data/shapes_labelme --format labelme \
#       --num-train 240 --num-val 60
#   python tools/dataset_converters/labelme2coco.py data/shapes_labelme \
#       data/shapes_labelme/annotations \
#       --split train=0.75,val=0.25 --seed 0
#   python tools/check_dataset.py configs/examples/mask_rcnn_r18_fpn_own_shapes.py
#   python tools/train.py configs/examples/mask_rcnn_r18_fpn_own_shapes.py
# For photographs, start from a full-size config (e.g. configs/mask_rcnn_r50_fpn_1x.py with
# model.pretrained) and configs/_base_/datasets/coco_custom.py instead.
_base_ = ["../demo/mask_rcnn_r18_fpn_demo.py"]

# the classes as labelme2coco.py printed them (the json's category names, in this order)
classes = ("circle", "rectangle", "star", "triangle")
# the LabelMe folder: file names in the jsons labelme2coco.py wrote are relative to it
data_root = "data/shapes_labelme/"
data = dict(
    imgs_per_gpu=4,
    workers_per_gpu=0,
    # decode every image before the first iteration (a corrupt file stops it at once)
    train=dict(
        classes=classes,
        ann_file=data_root + "annotations/train.json",
        img_prefix=data_root,
        check_images=True,
    ),
    val=dict(classes=classes, ann_file=data_root + "annotations/val.json", img_prefix=data_root),
    test=dict(classes=classes, ann_file=data_root + "annotations/val.json", img_prefix=data_root),
)
model = dict(roi_head=dict(bbox_head=dict(num_classes=4), mask_head=dict(num_classes=4)))
# 57 iterations an epoch; evaluated and saved every 4 epochs (evaluation takes ~2 s)
total_epochs = 24
evaluation = dict(interval=4, metric=["bbox", "segm"])
checkpoint_config = dict(interval=4)
work_dir = "work_dirs/own_shapes"
