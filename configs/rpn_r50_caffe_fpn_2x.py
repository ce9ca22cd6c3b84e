# rpn R-50-FPN, caffe style, 2x schedule (24 epochs).
# The 1x caffe-style config with the 2x schedule (see _base_/schedules/schedule_2x.py).
_base_ = "./rpn_r50_caffe_fpn_1x.py"
lr_config = dict(step=[16, 22])
total_epochs = 24
