"""The config check at start-up: keys that nothing reads at any depth, values of the wrong
type (from the file or from --cfg-options), and mmdetection v2's names."""

import subprocess

import pytest

from mmdet_like.apis.config_check import ConfigCheckError, check_config
from mmdet_like.engine import load_config
from mmdet_like.models import build_detector
from mmdet_like.models.utils.cfg_keys import UnknownConfigKeyError
from mmdet_like.registry import BuildError
from tests.engine.cli_utils import PYTHON, ROOT, env, finish

MASK_RCNN = str(ROOT / "configs" / "mask_rcnn_r50_fpn_1x.py")
DEMO = str(ROOT / "configs" / "demo" / "mask_rcnn_r18_fpn_demo.py")


def problems(options, path=MASK_RCNN):
    cfg = load_config(path, options)
    with pytest.raises(ConfigCheckError) as info:
        check_config(cfg, path)
    return str(info.value)


def test_every_shipped_config_passes():
    configs = sorted((ROOT / "configs").rglob("*.py"))
    configs = [c for c in configs if "_base_" not in c.parts]
    assert len(configs) > 50
    for path in configs:
        assert check_config(load_config(str(path)), str(path)) == [], path


UNREAD = "not a key mmdet_like reads; did you mean"
P2 = "data.train.pipeline[2]"
AUG = "data.test.pipeline[1].transforms[0]"


@pytest.mark.parametrize(
    "option, message",
    [
        ("data.imgs_per_gpus=2", f"data.imgs_per_gpus: {UNREAD} data.imgs_per_gpu?"),
        ("data.train.pipeline.2.img_scal=(1, 2)", f"{P2}.img_scal: {UNREAD} {P2}.img_scale?"),
        ("data.test.pipeline.1.transforms.0.keep_ratoi=True",
         f"{AUG}.keep_ratoi: {UNREAD} {AUG}.keep_ratio?"),
        ("data.train.ann_fle=x.json", f"data.train.ann_fle: {UNREAD} data.train.ann_file?"),
        ("optimizer.momentun=0.9", f"optimizer.momentun: {UNREAD} optimizer.momentum?"),
        ("optimizer_config.grad_clip=dict(max_nrom=35)",
         f"optimizer_config.grad_clip.max_nrom: {UNREAD} optimizer_config.grad_clip.max_norm?"),
        ("lr_config.warmup_iter=500", f"lr_config.warmup_iter: {UNREAD} lr_config.warmup_iters?"),
        ("checkpoint_config.intreval=2",
         f"checkpoint_config.intreval: {UNREAD} checkpoint_config.interval?"),
        ("log_config.intervall=5", f"log_config.intervall: {UNREAD} log_config.interval?"),
        ("evaluation.metrc=mAP", f"evaluation.metrc: {UNREAD} evaluation.metric?"),
        ("evaluation.metric=bbx", "evaluation.metric: unknown metric 'bbx'; did you mean 'bbox'?"),
        ("evaluation.clsswise=True", f"evaluation.clsswise: {UNREAD} evaluation.classwise?"),
        ("lr_config.policy=stpe", "lr_config.policy: unknown policy 'stpe'; did you mean 'step'?"),
    ],
)  # fmt: skip
def test_a_key_nothing_reads_names_the_closest_key(option, message):
    assert message in problems([option])


@pytest.mark.parametrize(
    "option, message",
    [
        ("optimizer.lr=0,01",
         "optimizer.lr: must be a positive number, got [0, '01'] (a list). A comma in "
         "--cfg-options separates list items: write 0.01 for a decimal"),
        ("data.imgs_per_gpu=two", "data.imgs_per_gpu: must be an integer >= 1, got 'two' (a str)"),
        ("data.workers_per_gpu=-1", "data.workers_per_gpu: must be an integer >= 0, got -1"),
        ("total_epochs=1.5", "total_epochs: must be an integer >= 1, got 1.5"),
        ("optimizer_config.grad_clip=dict(max_norm='x')",
         "optimizer_config.grad_clip.max_norm: must be a positive number"),
        ("lr_config.step=[8,eleven]",
         "lr_config.step: must be a positive integer or a list of them"),
    ],
)  # fmt: skip
def test_values_of_the_wrong_type_are_refused_at_start_up(option, message):
    assert message in problems([option])


CUSTOM = "optimizer.paramwise_cfg.custom_keys['backbone']"


@pytest.mark.parametrize(
    "option, message",
    [
        ("optimizer.paramwise_cfg=dict(custom_keys=dict(backbone=dict(lr_mul=0.1)))",
         f"{CUSTOM}.lr_mul: {UNREAD} {CUSTOM}.lr_mult?"),
        ("optimizer.constructor=LayerDecayOptimizerConstructor",
         "optimizer.constructor: 'LayerDecayOptimizerConstructor' is not in the "
         "OPTIMIZER_CONSTRUCTORS registry; did you mean 'LearningRateDecayOptimizerConstructor'?"),
        ("optimizer.constructor=LearningRateDecayOptimizerConstructor",
         "optimizer.paramwise_cfg: needs decay_rate, e.g. dict(decay_rate=0.95, "
         "decay_type='layer_wise', num_layers=6)"),
    ],
)  # fmt: skip
def test_optimizer_constructor_and_paramwise_cfg_are_checked(option, message):
    assert message in problems([option])


def test_layer_wise_decay_and_custom_keys_pass_the_check():
    for options in (
        ["optimizer.paramwise_cfg=dict(custom_keys=dict(backbone=dict(lr_mult=0.1)))"],
        ["optimizer.constructor=LearningRateDecayOptimizerConstructor",
         "optimizer.paramwise_cfg=dict(decay_rate=0.9, decay_type='stage_wise', num_layers=4)"],
    ):  # fmt: skip
        assert check_config(load_config(MASK_RCNN, options), MASK_RCNN) == []


def test_every_problem_is_listed_at_once():
    text = problems(["data.imgs_per_gpus=2", "optimizer.lr=x", "evaluation.metrc=mAP"])
    assert "3 problems in the config" in text
    assert text.count("\n  ") == 3


def test_mmdetection_v2_names_are_read_with_a_note():
    cfg = load_config(MASK_RCNN, ["data.samples_per_gpu=3",
                                  "runner=dict(type='EpochBasedRunner', max_epochs=12)",
                                  "evaluation.save_best=auto", "classes=('a','b')"])  # fmt: skip
    notes = check_config(cfg, MASK_RCNN)
    assert cfg.data.imgs_per_gpu == 3 and "samples_per_gpu" not in cfg.data
    assert cfg.total_epochs == 12 and "runner" not in cfg
    # the base config's imgs_per_gpu=2 and total_epochs=12: the v2 names replace them
    assert notes == [
        "data.samples_per_gpu is mmdetection v2's name: read as imgs_per_gpu=3 (replacing "
        "imgs_per_gpu=2)",
        "runner=dict(type='EpochBasedRunner', max_epochs=12) is mmdetection v2's: read as "
        "total_epochs=12",
    ]
    cfg = load_config(MASK_RCNN, ["runner=dict(type='EpochBasedRunner', max_epochs=3)"])
    assert "replacing total_epochs=12" in check_config(cfg, MASK_RCNN)[0]
    assert cfg.total_epochs == 3
    cfg = load_config(MASK_RCNN, ["runner=dict(type='IterBasedRunner', max_iters=100)"])
    assert check_config(cfg, MASK_RCNN) == [
        "runner=dict(type='IterBasedRunner', max_iters=100): training by iterations "
        "(total_epochs is not read); checkpoint_config, evaluation, lr_config count "
        "iterations (by_epoch=False)"
    ]
    assert cfg.runner == dict(type="IterBasedRunner", max_iters=100)
    assert cfg.checkpoint_config.by_epoch is False and cfg.lr_config.by_epoch is False
    for options, message in [
        (
            ["runner=dict(type='IterBasedRunner', max_epochs=100)"],
            "IterBasedRunner takes max_iters",
        ),
        (["runner=dict(type='IterRunner', max_iters=100)"], "one of 'EpochBasedRunner'"),
        (["runner=dict(max_epochs=3, max_iters=5)"], "runner takes max_epochs"),
    ]:
        with pytest.raises(ConfigCheckError, match=message):
            check_config(load_config(MASK_RCNN, options), MASK_RCNN)


def test_a_top_level_classes_is_a_helper_variable(recwarn):
    cfg = load_config(MASK_RCNN, ["classes=('a','b')"])
    assert check_config(cfg, MASK_RCNN) == []
    assert not [w for w in recwarn if "classes" in str(w.message)]


MODEL_UNREAD = "not a key the model reads; did you mean"


@pytest.mark.parametrize(
    "section, key, message",
    [
        ("train_cfg", "rpn.alowed_border",
         f"train_cfg.rpn.alowed_border: {MODEL_UNREAD} train_cfg.rpn.allowed_border?"),
        ("train_cfg", "rcnn.mask_sise",
         f"train_cfg.rcnn.mask_sise: {MODEL_UNREAD} train_cfg.rcnn.mask_size?"),
        ("train_cfg", "rpn_proposl.nms_pre",
         f"train_cfg.rpn_proposl: {MODEL_UNREAD} train_cfg.rpn_proposal?"),
        ("test_cfg", "rcnn.nms.iuo_thr",
         f"test_cfg.rcnn.nms.iuo_thr: {MODEL_UNREAD} test_cfg.rcnn.nms.iou_thr?"),
        ("test_cfg", "rpn.max_nun", f"test_cfg.rpn.max_nun: {MODEL_UNREAD} test_cfg.rpn.max_num?"),
    ],
)  # fmt: skip
def test_the_model_refuses_train_and_test_cfg_keys_it_does_not_read(section, key, message):
    cfg = load_config(MASK_RCNN, [f"{section}.{key}=1"])
    with pytest.raises(UnknownConfigKeyError) as info:
        build_detector(dict(cfg.model, pretrained=None), cfg.train_cfg, cfg.test_cfg)
    assert message in str(info.value)


def test_pipeline_values_of_the_wrong_type_name_the_step_and_the_form(tmp_path):
    from mmdet_like.datasets import build_dataset
    from tests.engine.cli_utils import load_tool

    files = load_tool("make_demo_dataset").make_dataset(str(tmp_path), 1, 1)
    options = ["data.train.pipeline.2.img_scale=320", f"data.train.ann_file={files['train']}",
               f"data.train.img_prefix={tmp_path / 'train'}"]  # fmt: skip
    cfg = load_config(DEMO, options)
    with pytest.raises(BuildError) as info:
        build_dataset(cfg.data.train, where="data.train")
    text = str(info.value)
    assert text.startswith("data.train: ")
    assert "pipeline[2] (Resize)" in text
    assert "img_scale must be a (long, short) pair of positive numbers" in text
    assert "got 320 (a int)" in text


def test_a_lr_hook_argument_forwarded_to_its_base_class_gets_a_suggestion():
    from mmdet_like.engine.hooks.lr_updater import build_lr_updater_hook

    with pytest.raises(BuildError, match="'warmup_iter' \\(did you mean 'warmup_iters'\\?\\)"):
        build_lr_updater_hook(dict(policy="step", step=[8], warmup_iter=500))


def test_train_tool_prints_the_problems_without_a_traceback(tmp_path):
    cmd = [PYTHON, str(ROOT / "tools" / "train.py"), MASK_RCNN, "--work-dir", str(tmp_path),
           "--cfg-options", "data.imgs_per_gpus=2", "optimizer.lr=0,01"]  # fmt: skip
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )  # fmt: skip
    rc, out = finish(proc)
    assert rc == 1, out
    assert "Traceback" not in out
    assert "train.py: error:" in out and "2 problems in the config" in out
    assert "did you mean data.imgs_per_gpu?" in out and "write 0.01 for a decimal" in out


def test_hook_configs_may_set_their_priority_and_nothing_else():
    ok = load_config(MASK_RCNN, ["custom_hooks=[dict(type='EmptyCacheHook', priority='LOW')]"])
    assert check_config(ok, MASK_RCNN) == []
    text = problems(["custom_hooks=[dict(type='EmptyCacheHook', priorty='LOW')]"])
    assert "custom_hooks[0].priorty: not a key mmdet_like reads" in text


def test_random_choice_sequences_are_checked():
    path = str(ROOT / "configs" / "detr" / "detr_r50_8x2_150e_coco.py")
    cfg = load_config(path)
    pipeline = cfg.data.train.pipeline
    assert pipeline[3]["type"] == "RandomChoice"
    pipeline[3]["transforms"][1][1]["crop_tpye"] = "absolute_range"
    cfg.data.train.pipeline = pipeline
    with pytest.raises(ConfigCheckError) as info:
        check_config(cfg, path)
    where = "data.train.pipeline[3].transforms[1][1]"
    assert f"{where}.crop_tpye: {UNREAD} {where}.crop_type?" in str(info.value)
