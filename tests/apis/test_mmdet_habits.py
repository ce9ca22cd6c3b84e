"""mmdetection habits a user brings (issue 27): ``init_cfg=dict(type="Pretrained", ...)`` on a
backbone (with and without ``prefix``) and on the whole model, initialiser ``init_cfg``s,
``auto_scale_lr`` and the train tool's ``--auto-scale-lr``, ``--amp`` and ``--resume``
flags (the last used to be taken as an abbreviation of ``--resume-from``)."""

import pytest
import torch

from mmdet_like.apis import build_detector
from mmdet_like.apis.config_check import ConfigCheckError, check_config
from mmdet_like.apis.train import apply_auto_scale_lr
from mmdet_like.engine import load_config
from mmdet_like.engine.config import ConfigError
from mmdet_like.models.init_cfg import InitCfgError
from tests.engine.cli_utils import ROOT, call_tool, log_records, write_config

DEMO_CONFIG = str(ROOT / "configs" / "demo" / "mask_rcnn_r18_fpn_demo.py")


def _demo_model_cfg(**backbone_changes):
    cfg = load_config(str(ROOT / "configs" / "demo" / "mask_rcnn_r18_fpn_demo.py"))
    cfg.model.backbone.update(backbone_changes)
    return cfg


@pytest.mark.parametrize("with_prefix", [False, True])
def test_a_backbone_init_cfg_pretrained_loads_its_weights(tmp_path, with_prefix):
    """Used to be refused ("did you mean 'norm_cfg'"): the backbone's weights from a
    backbone file, or under ``prefix`` from a whole detector's checkpoint."""
    cfg = _demo_model_cfg()
    torch.manual_seed(1)
    source = build_detector(cfg.model, cfg.train_cfg, cfg.test_cfg)
    path = tmp_path / "weights.pth"
    if with_prefix:
        torch.save({"state_dict": source.state_dict()}, path)
        init_cfg = dict(type="Pretrained", checkpoint=str(path), prefix="backbone.")
    else:
        torch.save(source.backbone.state_dict(), path)
        init_cfg = dict(type="Pretrained", checkpoint=str(path))
    cfg = _demo_model_cfg(init_cfg=init_cfg)
    notes = check_config(cfg, "user.py")
    assert any("model.backbone.init_cfg=dict(type='Pretrained', ...)" in n for n in notes)
    torch.manual_seed(2)
    model = build_detector(cfg.model, cfg.train_cfg, cfg.test_cfg)
    model.init_weights()
    for name, value in source.backbone.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[name], value), name
    # the API path (build_detector on a dict that still holds the init_cfg) reads it too
    raw = _demo_model_cfg(init_cfg=init_cfg)
    model = build_detector(raw.model, raw.train_cfg, raw.test_cfg)
    model.init_weights()
    assert torch.equal(model.backbone.conv1.weight, source.backbone.conv1.weight)


def test_a_bad_prefix_says_what_the_file_holds(tmp_path):
    cfg = _demo_model_cfg()
    path = tmp_path / "detector.pth"
    torch.save({"state_dict": build_detector(cfg.model).state_dict()}, path)
    cfg = _demo_model_cfg(init_cfg=dict(type="Pretrained", checkpoint=str(path), prefix="body"))
    model = build_detector(cfg.model, cfg.train_cfg, cfg.test_cfg)
    with pytest.raises(Exception, match=r"no weights under the prefix 'body\.'.*fix init_cfg"):
        model.init_weights()


def test_whole_model_init_cfg_is_load_from_and_initialisers_are_noted():
    cfg = _demo_model_cfg()
    cfg.model.init_cfg = dict(type="Pretrained", checkpoint="work_dirs/x/epoch_12.pth")
    cfg.model.neck.init_cfg = dict(type="Xavier", layer="Conv2d", distribution="uniform")
    cfg.model.rpn_head.init_cfg = [dict(type="Normal", layer="Conv2d", std=0.01)]
    notes = check_config(cfg, "user.py")
    assert cfg.load_from == "work_dirs/x/epoch_12.pth" and "init_cfg" not in cfg.model
    assert any("read as load_from='work_dirs/x/epoch_12.pth'" in n for n in notes)
    assert sum("(type 'Xavier') is not read" in n or "(type 'Normal') is not read" in n
               for n in notes) == 2  # fmt: skip
    build_detector(cfg.model, cfg.train_cfg, cfg.test_cfg)  # nothing left that it refuses

    cfg = _demo_model_cfg()
    cfg.model.init_cfg = dict(type="Pretrained", checkpoint="a.pth", prefix="backbone.")
    with pytest.raises(InitCfgError, match="a prefix on the whole model's Pretrained"):
        check_config(cfg, "user.py")
    cfg = _demo_model_cfg()
    cfg.model.init_cfg = dict(type="Pretrained", checkpoint="a.pth")
    cfg.load_from = "b.pth"
    with pytest.raises(ConfigCheckError, match="keep one"):
        check_config(cfg, "user.py")
    cfg = _demo_model_cfg()
    cfg.model.neck.init_cfg = dict(type="Pretrained", checkpoint="a.pth")
    with pytest.raises(InitCfgError, match="'FPN' does not load pretrained weights"):
        check_config(cfg, "user.py")
    cfg = _demo_model_cfg()
    cfg.model.neck.init_cfg = dict(type="Orthogonal")
    with pytest.raises(InitCfgError, match="unknown type 'Orthogonal'"):
        check_config(cfg, "user.py")


def test_auto_scale_lr_scales_by_the_real_batch():
    cfg = load_config(DEMO_CONFIG)
    cfg.optimizer.lr = 0.02
    cfg.data.imgs_per_gpu = 2
    assert apply_auto_scale_lr(cfg, 1) is None  # no auto_scale_lr: nothing to do
    cfg.auto_scale_lr = dict(enable=False, base_batch_size=16)
    assert "off (enable=False)" in apply_auto_scale_lr(cfg, 1) and cfg.optimizer.lr == 0.02
    note = apply_auto_scale_lr(cfg, 4, enable=True)  # --auto-scale-lr, 4 processes
    assert cfg.optimizer.lr == pytest.approx(0.02 * 8 / 16)
    assert note == (
        "auto_scale_lr: batch 8 (4 process(es) x 2 images) against base_batch_size 16: "
        "optimizer.lr 0.02 -> 0.01"
    )
    cfg.pop("auto_scale_lr")
    with pytest.raises(ConfigError, match="no auto_scale_lr=dict"):
        apply_auto_scale_lr(cfg, 1, enable=True)
    cfg.auto_scale_lr = dict(enabled=True, base_batch_size=0)
    with pytest.raises(ConfigCheckError) as info:
        check_config(cfg, "user.py")
    assert "auto_scale_lr.enabled: not a key" in str(info.value)
    assert "did you mean auto_scale_lr.enable?" in str(info.value)
    assert "auto_scale_lr.base_batch_size: must be an integer >= 1" in str(info.value)


def test_train_tool_auto_scale_lr_amp_and_resume_flags(tmp_path):
    config = write_config(
        tmp_path / "toy.py", "auto_scale_lr = dict(enable=True, base_batch_size=16)\n"
    )  # fmt: skip
    work = tmp_path / "work"
    run = call_tool("train.py", config, "--work-dir", work, "--amp", "--seed", "0", cwd=ROOT)
    assert run.status == 0, run.output
    assert "optimizer.lr 0.01 -> 0.0025" in run.output  # 4 images a step against 16
    assert "--amp: mixed precision, fp16={'dtype': 'bfloat16'}" in run.output
    ckpt = torch.load(work / "epoch_4.pth", weights_only=True)
    assert ckpt["optimizer"]["param_groups"][0]["initial_lr"] == pytest.approx(0.0025)
    assert log_records(work)[0]["mode"] == "train"
    # --resume alone: the newest checkpoint of the work dir (was: --resume-from, no value)
    run = call_tool("train.py", config, "--work-dir", work, "--resume", "--seed", "0",
                    "--cfg-options", "total_epochs=5", cwd=ROOT)  # fmt: skip
    assert run.status == 0, run.output
    assert "auto-resume: newest valid checkpoint is" in run.output and "epoch_4.pth" in run.output
    assert (work / "epoch_5.pth").is_file()
    # --resume CHECKPOINT: that one
    run = call_tool("train.py", config, "--work-dir", tmp_path / "other", "--resume",
                    work / "epoch_4.pth", "--seed", "0", cwd=ROOT)  # fmt: skip
    assert run.status == 0, run.output
    assert f"resumed from {work / 'epoch_4.pth'}: epoch 4" in run.output
    # abbreviations are not guessed
    run = call_tool("train.py", config, "--work", tmp_path / "w", cwd=ROOT)
    assert run.status == 2 and "unrecognized arguments: --work" in run.output
