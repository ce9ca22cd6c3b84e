# Checkpoints, logging and run settings shared by every config.
checkpoint_config = dict(interval=1)
log_config = dict(interval=50, hooks=[dict(type="TextLoggerHook")])
dist_params = dict(timeout=1800)  # backend: nccl with CUDA, gloo on CPU, unless set here
log_level = "INFO"
load_from = None
resume_from = None
workflow = [("train", 1)]
