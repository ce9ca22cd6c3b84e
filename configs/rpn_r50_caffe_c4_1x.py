# RPN R-50-C4, caffe style (stride on the 1x1 conv), frozen BN, caffe image normalisation
# (BGR, mean subtraction only), 1x schedule (12 epochs), COCO. The caffe-style ImageNet
# weights are a local file: put them at checkpoints/resnet50_caffe.pth (docs/models.md).
_base_ = [
    "_base_/models/rpn_r50_caffe_c4.py",
    "_base_/datasets/coco_detection_caffe.py",
    "_base_/schedules/schedule_1x.py",
    "_base_/default_runtime.py",
]
evaluation = dict(interval=1, metric="proposal_fast")
