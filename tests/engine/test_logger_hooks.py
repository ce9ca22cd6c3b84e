"""Stopping a run early (``runner.request_stop``, EarlyStoppingHook) and the logger hooks:
``val`` workflow losses in the text / JSON log, TensorBoard read back, W&B offline and
MLflow on a file store (skipped without their packages)."""

import json
import logging
import subprocess
import sys

import pytest
import torch

from mmdet_like.engine import (
    EarlyStoppingHook,
    EvalHook,
    Hook,
    LoggerBackendError,
    MonitoredMetricError,
    NonFiniteLossError,
)
from mmdet_like.engine.hooks import early_stopping, experiment_loggers
from mmdet_like.registry import HOOKS, BuildError, build_from_cfg
from tests.engine.cli_utils import call_tool, write_config
from tests.engine.toy import ToyRegressionDataset, ToyRegressor, toy_loader, toy_runner

CONFIG_TEXT = (
    "optimizer = dict(type='SGD', lr=0.01)\ntotal_epochs = 1\nseed = 0\n"
    "pipeline = [dict(type='Resize', img_scale=(64, 32)), dict(type='Pad')]\n"
)


class ScriptedDataset(ToyRegressionDataset):
    """Evaluation returns the next of ``scores`` as ``score``, whatever the results."""

    def __init__(self, scores):
        super().__init__(num_samples=4)
        self.scores = list(scores)

    def evaluate(self, results, logger=None):
        return {"score": self.scores.pop(0), "other": 0.0}


def eval_hook(scores, interval=1):
    loader = torch.utils.data.DataLoader(
        ScriptedDataset(scores), batch_size=2, collate_fn=toy_loader().collate_fn
    )
    return EvalHook(loader, interval=interval)


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(f"{record.levelname} {record.getMessage()}")


def capture_log(runner):
    """The runner logs to a logger of its own; returns the list its lines go to."""
    logger = logging.getLogger(f"tests.logger_hooks.{id(runner)}")
    logger.propagate, logger.handlers = False, [_Lines()]
    logger.setLevel(logging.INFO)
    runner.logger = logger
    return logger.handlers[0].lines


def json_records(work_dir):
    (log_json,) = work_dir.glob("*.log.json")
    return [json.loads(line) for line in log_json.read_text().splitlines()]


# ------------------------------------------------------------------ runner.request_stop
class _StopAt(Hook):
    """Requests a stop at one training iteration (global, 0-based); records the stages."""

    def __init__(self, iteration):
        self.iteration = iteration
        self.stages = []

    def after_train_iter(self, runner):
        if runner.iter == self.iteration:
            runner.request_stop("asked by the test")
            runner.request_stop("a second request")  # the first reason is kept

    def after_train_epoch(self, runner):
        self.stages.append(("after_train_epoch", runner.epoch + 1))

    def after_val_epoch(self, runner):
        self.stages.append(("after_val_epoch", runner.epoch))

    def after_run(self, runner):
        self.stages.append(("after_run", runner.epoch))


def test_request_stop_ends_the_run_when_the_epoch_ends(tmp_path):
    runner = toy_runner(tmp_path, max_epochs=4, checkpoint_config={"interval": 1})
    lines = capture_log(runner)
    hook = runner.register_hook(_StopAt(iteration=5))  # epoch 2, its second iteration
    runner.run([toy_loader(16, 4), toy_loader(8, 4)], [("train", 1), ("val", 1)])
    # epoch 2 ends with all its hooks (its checkpoint too), then no further phase runs
    assert (runner.epoch, runner.iter) == (2, 8)
    assert hook.stages == [
        ("after_train_epoch", 1),
        ("after_val_epoch", 1),
        ("after_train_epoch", 2),
        ("after_run", 2),
    ]
    assert sorted(p.name for p in tmp_path.glob("epoch_*.pth")) == ["epoch_1.pth", "epoch_2.pth"]
    assert runner.stop_reason == "asked by the test"
    assert "INFO training stopped after epoch 2 of 4: asked by the test" in lines
    # a new run() starts without the request
    runner.run([toy_loader(16, 4)], [("train", 1)], max_epochs=3)
    assert runner.epoch == 3 and runner.stop_reason is None


# ------------------------------------------------------------------- EarlyStoppingHook
@pytest.mark.parametrize(
    "options, scores, stopped_after, best",
    [
        # best 0.3 at epoch 2; 0.2, then 0.3 again (no better): two evaluations without gain
        (dict(patience=2), [0.1, 0.3, 0.2, 0.3, 0.9, 0.9], 4, "best 0.3000 at epoch 2"),
        # 0.14 and 0.12 do not beat 0.1 by more than min_delta=0.05
        (
            dict(patience=2, min_delta=0.05),
            [0.1, 0.14, 0.12, 0.5, 0.9, 0.9],
            3,
            "best 0.1000 at epoch 1",
        ),
        # the same scores without min_delta: 0.14 improves, 0.5 too: no stop
        (dict(patience=2), [0.1, 0.14, 0.12, 0.5, 0.6, 0.7], None, None),
        # lower is better: best 0.4 at epoch 2, then 0.45 and 0.41
        (
            dict(patience=2, rule="less"),
            [0.5, 0.4, 0.45, 0.41, 0.1, 0.1],
            4,
            "best 0.4000 at epoch 2",
        ),
        # the same scores, higher is better: best 0.5 at epoch 1
        (dict(patience=2), [0.5, 0.4, 0.45, 0.41, 0.1, 0.1], 3, "best 0.5000 at epoch 1"),
        # a NaN never improves
        (dict(patience=1), [0.5, float("nan"), 0.9], 2, "best 0.5000 at epoch 1"),
    ],
)
def test_early_stopping_stops_at_the_right_epoch(tmp_path, options, scores, stopped_after, best):
    runner = toy_runner(tmp_path, max_epochs=len(scores), checkpoint_config={"interval": 1})
    lines = capture_log(runner)
    runner.register_hook(eval_hook(scores))
    hook = runner.register_hook(build_from_cfg(dict(type="EarlyStoppingHook", monitor="score",
                                                    **options), HOOKS))  # fmt: skip
    runner.run([toy_loader(8, 4)], [("train", 1)])
    stops = [line for line in lines if "training stopped" in line]
    if stopped_after is None:
        assert runner.epoch == len(scores) and not stops
        return
    assert runner.epoch == stopped_after
    (stop,) = stops
    assert stop.startswith(f"INFO training stopped after epoch {stopped_after} of {len(scores)}: ")
    assert (
        f"early stopping: score has not improved by more than {options.get('min_delta', 0):g} "
        f"({options.get('rule', 'greater')}) in {options['patience']} evaluations ({best})" in stop
    )
    # the last epoch's checkpoint is written as usual, and holds the hook's state
    assert (tmp_path / "latest.pth").resolve().name == f"epoch_{stopped_after}.pth"
    assert hook.wait_count == options["patience"]


def test_early_stopping_counts_evaluations_not_epochs(tmp_path):
    runner = toy_runner(tmp_path, max_epochs=10)
    runner.register_hook(eval_hook([0.5, 0.4, 0.3, 0.9, 0.9], interval=2))
    runner.register_hook(EarlyStoppingHook(monitor="score", patience=2))
    runner.run([toy_loader(8, 4)], [("train", 1)])
    assert runner.epoch == 6  # evaluations at epochs 2 (best), 4 and 6


def test_early_stopping_state_goes_into_checkpoints_and_resumes(tmp_path):
    runner = toy_runner(tmp_path / "a", max_epochs=3, checkpoint_config={"interval": 1})
    runner.register_hook(eval_hook([0.5, 0.4, 0.45]))
    runner.register_hook(EarlyStoppingHook(monitor="score", patience=3))
    runner.run([toy_loader(8, 4)], [("train", 1)])
    # an epoch's checkpoint is written before its evaluation (CheckpointHook runs before the
    # evaluation hook): epoch_3.pth counts the evaluations of epochs 1 and 2
    meta = torch.load(tmp_path / "a" / "epoch_3.pth", weights_only=True)["meta"]
    state = meta["hook_states"]["EarlyStoppingHook"]
    assert state == {
        "monitor": "score",
        "rule": "greater",
        "best_score": 0.5,
        "best_epoch": 1,
        "wait_count": 1,
    }

    def resumed(work_dir, monitor="score"):
        runner = toy_runner(work_dir, max_epochs=6, checkpoint_config={"interval": 1})
        lines = capture_log(runner)
        runner.register_hook(eval_hook([0.3, 0.2, 0.1]))  # epochs 4, 5, 6
        hook = runner.register_hook(EarlyStoppingHook(monitor=monitor, patience=3))
        runner.resume(str(tmp_path / "a" / "epoch_3.pth"))
        runner.run([toy_loader(8, 4)], [("train", 1)])
        return runner, hook, lines

    # resumed, it goes on counting: epochs 4 and 5 make 3 evaluations without improvement
    runner, hook, lines = resumed(tmp_path / "b")
    assert runner.epoch == 5
    assert any("(best 0.5000 at epoch 1)" in line for line in lines)
    # a hook watching another metric starts afresh (0.3 becomes its best: no stop)
    with pytest.warns(UserWarning, match="counting starts afresh"):
        runner, hook, _ = resumed(tmp_path / "c", monitor="other")
    assert runner.epoch == 6 and hook.best_epoch == 4


def test_missing_metric_is_an_error_naming_the_metrics_or_a_warning(tmp_path):
    runner = toy_runner(tmp_path / "strict", max_epochs=3)
    runner.register_hook(eval_hook([0.5, 0.4, 0.3]))
    runner.register_hook(EarlyStoppingHook(monitor="bbox_mAP", strict=True))
    with pytest.raises(MonitoredMetricError) as error:
        runner.run([toy_loader(8, 4)], [("train", 1)])
    assert runner.epoch == 0  # at the first evaluation
    assert str(error.value) == (
        "EarlyStoppingHook: the evaluation gave no metric 'bbox_mAP'; it gave "
        "['other', 'score']. Set the hook's monitor to one of them"
    )

    runner = toy_runner(tmp_path / "lenient", max_epochs=3)
    lines = capture_log(runner)
    runner.register_hook(eval_hook([0.5, 0.4, 0.3]))
    runner.register_hook(EarlyStoppingHook(monitor="bbox_mAP", patience=1))
    runner.run([toy_loader(8, 4)], [("train", 1)])
    assert runner.epoch == 3
    warnings = [line for line in lines if line.startswith("WARNING")]
    assert warnings == [
        "WARNING EarlyStoppingHook: the evaluation gave no metric 'bbox_mAP'; it gave "
        "['other', 'score']. Set the hook's monitor to one of them; early stopping is off "
        "for this run"
    ]


def test_early_stopping_without_evaluation_warns_and_bad_options_are_refused(tmp_path):
    runner = toy_runner(tmp_path, max_epochs=1)
    lines = capture_log(runner)
    runner.register_hook(EarlyStoppingHook())
    runner.run([toy_loader(8, 4)], [("train", 1)])
    assert any("has no evaluation hook" in line for line in lines)
    for option, value in [("rule", "max"), ("patience", 0), ("min_delta", -0.1)]:
        with pytest.raises(BuildError, match=f"EarlyStoppingHook: {option} must be"):
            build_from_cfg({"type": "EarlyStoppingHook", option: value}, HOOKS)


def test_early_stopping_in_a_process_group_follows_rank_0(tmp_path, monkeypatch):
    """Rank 0 (the one that evaluates) decides; the decision is broadcast to every rank."""
    sent = []
    monkeypatch.setattr(early_stopping, "is_distributed", lambda: True)
    monkeypatch.setattr(early_stopping, "broadcast_object", lambda obj: sent.append(obj) or obj)
    runner = toy_runner(tmp_path / "rank0", max_epochs=5)
    runner.register_hook(eval_hook([0.5, 0.4, 0.3, 0.2, 0.1]))
    runner.register_hook(EarlyStoppingHook(monitor="score", patience=2))
    runner.run([toy_loader(8, 4)], [("train", 1)])
    assert runner.epoch == 3
    assert sent[:2] == [None, None] and sent[2][0] == "stop"

    # another rank evaluates nothing and receives rank 0's decisions
    received = iter([None, sent[2]])
    monkeypatch.setattr(early_stopping, "broadcast_object", lambda obj: next(received))
    runner = toy_runner(tmp_path / "rank1", max_epochs=5)
    runner.rank = 1
    hook = runner.register_hook(EarlyStoppingHook(monitor="score", patience=2))
    runner.run([toy_loader(8, 4)], [("train", 1)])
    assert runner.epoch == 2 and runner.stop_reason == sent[2][1]
    assert hook.best_score is None  # the state lives on rank 0 (which saves checkpoints)

    error = ("error", "EarlyStoppingHook: the evaluation gave no metric 'x'; it gave []")
    monkeypatch.setattr(early_stopping, "broadcast_object", lambda obj: error)
    runner = toy_runner(tmp_path / "rank1_error", max_epochs=5)
    runner.rank = 1
    runner.register_hook(EarlyStoppingHook(monitor="x", strict=True))
    with pytest.raises(MonitoredMetricError, match="no metric 'x'"):
        runner.run([toy_loader(8, 4)], [("train", 1)])


def test_early_stopping_from_a_config_through_tools_train(tmp_path):
    extra = (
        "evaluation = dict(interval=1)\n"
        # every evaluation after the first misses the best by less than min_delta
        "custom_hooks = [dict(type='EarlyStoppingHook', monitor='mse', rule='less', "
        "patience=2, min_delta=100.0)]\n"
    )
    config = write_config(tmp_path / "toy.py", extra, num_samples=8)
    run = call_tool("train.py", config, "--work-dir", tmp_path / "work", "--seed", "0",
                    cwd=tmp_path)  # fmt: skip
    assert run.status == 0, run.output
    assert "training stopped after epoch 3 of 4: early stopping: mse has not improved by " in (
        run.output
    )
    assert "in 2 evaluations (best " in run.output and " at epoch 1)" in run.output
    assert (tmp_path / "work" / "latest.pth").resolve().name == "epoch_3.pth"
    assert [r["epoch"] for r in json_records(tmp_path / "work") if "mse" in r] == [1, 2, 3]


# ------------------------------------------------------------------------ logger hooks
def test_val_workflow_losses_in_the_text_and_json_log(tmp_path):
    runner = toy_runner(tmp_path, max_epochs=2, log_config={"interval": 2})
    lines = capture_log(runner)
    runner.register_hook(eval_hook([0.5, 0.6]))
    runner.run([toy_loader(16, 4), toy_loader(8, 4)], [("train", 1), ("val", 1)])
    val = [r for r in json_records(tmp_path) if r["mode"] == "val"]
    # per epoch: the evaluation's metrics, then the val workflow's losses (2 iterations)
    assert [(r["epoch"], "score" in r, "loss_mse" in r) for r in val] == [
        (1, True, False),
        (1, False, True),
        (2, True, False),
        (2, False, True),
    ]
    losses = val[1]
    assert list(losses)[:7] == ["mode", "epoch", "iter", "lr", "memory", "time", "data_time"]
    assert losses["iter"] == 2 and losses["loss"] == pytest.approx(losses["loss_mse"])
    val_lines = [line for line in lines if "Epoch(val)" in line]
    assert len(val_lines) == 4
    assert val_lines[1].startswith("INFO Epoch(val) [1][2]\tmemory: ")
    assert f"loss_mse: {losses['loss_mse']:.4f}" in val_lines[1]
    assert "score: 0.5000" in val_lines[0]


def test_tensorboard_steps_of_train_val_and_evaluation_records(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log_config = {"interval": 2, "hooks": [{"type": "TensorboardLoggerHook"}]}
    runner = toy_runner(tmp_path, max_epochs=2, log_config=log_config)
    runner.register_hook(eval_hook([0.5, 0.6]))
    runner.run([toy_loader(16, 4), toy_loader(8, 4)], [("train", 1), ("val", 1)])
    events = EventAccumulator(str(tmp_path / "tf_logs"))
    events.Reload()

    def steps(tag):
        return [(e.step, round(e.value, 6)) for e in events.Scalars(tag)]

    assert [s for s, _ in steps("train/loss")] == [2, 4, 6, 8]
    assert steps("train/lr") == [(2, 0.01), (4, 0.01), (6, 0.01), (8, 0.01)]
    # evaluation metrics and val workflow losses at the epoch's last training iteration
    assert steps("val/score") == [(4, 0.5), (8, 0.6)]
    assert [s for s, _ in steps("val/loss_mse")] == [4, 8]


@pytest.fixture
def wandb_offline(tmp_path, monkeypatch):
    """wandb in offline mode, its cache, staging and settings under tmp_path (and its runs
    in the work dir: the hook's default ``dir``)."""
    wandb = pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_DIR", raising=False)
    for name in ("WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_CONFIG_DIR"):
        monkeypatch.setenv(name, str(tmp_path / "wandb_home"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONSOLE", "off")
    (tmp_path / "wandb_home").mkdir()
    return wandb


def wandb_records(run_dir):
    """The records of an offline run, as ``wandb leet inspect --json`` prints them."""
    out = subprocess.run(
        [sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(run_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def test_wandb_logger_hook_offline(tmp_path, wandb_offline):
    hook_cfg = {"type": "WandbLoggerHook", "init_kwargs": {"project": "toy", "tags": ["t"]}}
    log_config = {"interval": 2, "hooks": [{"type": "TextLoggerHook"}, hook_cfg]}
    runner = toy_runner(tmp_path / "work", max_epochs=1, log_config=log_config)
    runner.meta["config"] = CONFIG_TEXT
    runner.register_hook(eval_hook([0.5]))
    runner.run([toy_loader(16, 4), toy_loader(8, 4)], [("train", 1), ("val", 1)])

    (run_dir,) = (tmp_path / "work" / "wandb").glob("offline-run-*")
    records = wandb_records(run_dir)
    history = {r["history"]["step"]["num"]: r["history"]["item"] for r in records
               if r["type"] == "history"}  # fmt: skip
    assert sorted(history) == [2, 4]
    logged = [r for r in json_records(tmp_path / "work") if r["mode"] == "train"]
    for record, step in zip(logged, (2, 4)):
        assert history[step]["train/loss"] == pytest.approx(record["loss"])
        assert history[step]["train/lr"] == pytest.approx(0.01)
        assert history[step]["train/memory"] == record["memory"]
    # the epoch's evaluation and the val workflow's losses: at its last iteration, 4
    assert history[4]["val/score"] == pytest.approx(0.5)
    assert history[4]["val/loss_mse"] > 0 and "val/loss" in history[4]
    (run,) = [r["run"] for r in records if r["type"] == "run"]
    config = run["config"]["update"]
    assert config["optimizer"] == {"type": "SGD", "lr": 0.01} and config["seed"] == 0
    assert config["pipeline"][0] == {"type": "Resize", "img_scale": [64, 32]}
    assert run["project"] == "toy" and run["tags"] == ["t"]
    (artifact,) = [r["artifact"] for r in records if r["type"] == "artifact"]
    assert artifact["type"] == "logs"
    (log_json,) = (tmp_path / "work").glob("*.log.json")
    assert {e["path"] for e in artifact["manifest"]["contents"]} == {
        log_json.name,
    }


@pytest.fixture
def mlflow_store(tmp_path, monkeypatch):
    """An MLflow client on a file store in tmp_path (``tracking_uri``, ``client``)."""
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 asks for a database
    uri = f"file:{tmp_path / 'mlruns'}"
    return uri, MlflowClient(uri)


def test_mlflow_logger_hook_on_a_file_store(tmp_path, mlflow_store):
    uri, client = mlflow_store
    hook_cfg = {
        "type": "MlflowLoggerHook",  # mmcv's spelling, the same hook
        "exp_name": "toy",
        "run_name": "first",
        "tracking_uri": uri,
        "tags": {"team": "a"},
        "params": {"note": "tiny", "long": "x" * 7000},
        "log_checkpoint": True,
    }
    log_config = {"interval": 2, "hooks": [{"type": "TextLoggerHook"}, hook_cfg]}
    runner = toy_runner(tmp_path / "work", max_epochs=1, log_config=log_config,
                        checkpoint_config={})  # fmt: skip
    runner.meta["config"] = CONFIG_TEXT
    runner.register_hook(eval_hook([0.5]))
    runner.run([toy_loader(16, 4), toy_loader(8, 4)], [("train", 1), ("val", 1)])

    experiment = client.get_experiment_by_name("toy")
    (run,) = client.search_runs([experiment.experiment_id])
    run_id = run.info.run_id
    assert run.info.status == "FINISHED" and run.info.run_name == "first"
    assert run.data.tags["team"] == "a"

    def history(key):
        return [(m.step, m.value) for m in client.get_metric_history(run_id, key)]

    logged = [r for r in json_records(tmp_path / "work") if r["mode"] == "train"]
    assert [s for s, _ in history("train/loss")] == [2, 4]
    for (_, value), record in zip(history("train/loss"), logged):
        assert value == pytest.approx(record["loss"])
    assert history("train/lr") == [(2, pytest.approx(0.01)), (4, pytest.approx(0.01))]
    assert history("val/score") == [(4, pytest.approx(0.5))]
    assert [s for s, _ in history("val/loss_mse")] == [4]
    params = run.data.params
    assert params["optimizer.lr"] == "0.01" and params["optimizer.type"] == "SGD"
    assert params["total_epochs"] == "1" and params["note"] == "tiny"
    # lists of dicts flattened by index, other lists and tuples kept as one value
    assert params["pipeline.0.type"] == "Resize" and params["pipeline.1.type"] == "Pad"
    assert params["pipeline.0.img_scale"] == "(64, 32)"
    assert params["long"] == "x" * 5997 + "..."  # MLflow stores 6000 characters at most
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"config.py", "work_dir", "checkpoints"} <= artifacts
    config_file = client.download_artifacts(run_id, "config.py", str(tmp_path))
    assert open(config_file).read() == CONFIG_TEXT
    names = {a.path for a in client.list_artifacts(run_id, "work_dir")}
    (log_json,) = (tmp_path / "work").glob("*.log.json")
    assert f"work_dir/{log_json.name}" in names
    assert [a.path for a in client.list_artifacts(run_id, "checkpoints")] == [
        "checkpoints/epoch_1.pth"
    ]


def test_mlflow_logger_hook_from_tools_train_logs_the_config(tmp_path, mlflow_store):
    uri, client = mlflow_store
    extra = f"log_config = dict(interval=4, hooks=[dict(type='MLflowLoggerHook', " \
            f"tracking_uri='{uri}', log_artifact=False)])\ntotal_epochs = 1\n"  # fmt: skip
    config = write_config(tmp_path / "toy.py", extra, num_samples=8)
    run = call_tool("train.py", config, "--work-dir", tmp_path / "work", "--seed", "3",
                    cwd=tmp_path)  # fmt: skip
    assert run.status == 0, run.output
    (found,) = client.search_runs([client.get_experiment_by_name("Default").experiment_id])
    params = found.data.params
    assert params["seed"] == "3" and params["data.train.type"] == "ToyRegressionDataset"
    assert params["log_config.hooks.0.type"] == "MLflowLoggerHook"
    config_file = client.download_artifacts(found.info.run_id, "config.py", str(tmp_path))
    assert open(config_file).read() == (tmp_path / "work" / "toy.py").read_text()
    assert [a.path for a in client.list_artifacts(found.info.run_id)] == ["config.py"]
    assert [m.step for m in client.get_metric_history(found.info.run_id, "train/loss")] == [2]


class _ExitHandlers:
    """Stands for the ``atexit`` module: records the handlers; :meth:`exit` runs them."""

    def __init__(self):
        self.handlers = []

    def register(self, func, *args):
        self.handlers.append((func, args))

    def unregister(self, func):
        self.handlers = [(f, a) for f, a in self.handlers if f != func]

    def exit(self):
        for func, args in reversed(self.handlers):
            func(*args)


def test_mlflow_run_that_fails_is_marked_failed_when_the_process_exits(
    tmp_path, mlflow_store, monkeypatch
):
    uri, client = mlflow_store
    handlers = _ExitHandlers()
    monkeypatch.setattr(experiment_loggers, "atexit", handlers)
    log_config = {"interval": 1, "hooks": [{"type": "MLflowLoggerHook", "tracking_uri": uri}]}
    for name, model in [("ok", ToyRegressor()), ("nan", ToyRegressor(nan_after=2))]:
        runner = toy_runner(tmp_path / name, model=model, max_epochs=1, log_config=log_config)
        if name == "ok":
            runner.run([toy_loader(8, 4)], [("train", 1)])
            assert handlers.handlers == []  # ended by the hook
        else:
            with pytest.raises(NonFiniteLossError):
                runner.run([toy_loader(8, 4)], [("train", 1)])
    ok, failed = sorted(
        client.search_runs([client.get_experiment_by_name("Default").experiment_id]),
        key=lambda run: run.info.start_time,
    )
    assert ok.info.status == "FINISHED" and failed.info.status == "RUNNING"
    handlers.exit()
    assert client.get_run(failed.info.run_id).info.status == "FAILED"
    assert [m.step for m in client.get_metric_history(failed.info.run_id, "train/loss")] == [1]


def test_missing_package_or_store_is_a_one_line_error(tmp_path, monkeypatch):
    for hook_type, module, extra in [
        ("WandbLoggerHook", "wandb", "wandb"),
        ("MLflowLoggerHook", "mlflow", "mlflow"),
    ]:
        monkeypatch.setitem(sys.modules, module, None)  # import raises ImportError
        runner = toy_runner(tmp_path, max_epochs=1, log_config={"hooks": [{"type": hook_type}]})
        with pytest.raises(LoggerBackendError) as error:
            runner.run([toy_loader(8, 4)], [("train", 1)])
        message = str(error.value)
        assert message.startswith(f"{hook_type} needs the {module} package, which is not ")
        assert message.endswith(f"pip install 'mmdet_like[{extra}]' (or remove {hook_type} "
                                "from log_config.hooks)")  # fmt: skip


def test_mlflow_store_that_cannot_be_opened_is_named(tmp_path):
    pytest.importorskip("mlflow")
    hook = {"type": "MLflowLoggerHook", "tracking_uri": "nosuchscheme://x"}
    runner = toy_runner(tmp_path, max_epochs=1, log_config={"hooks": [hook]})
    with pytest.raises(LoggerBackendError, match="cannot open the tracking store nosuchscheme://x"):
        runner.run([toy_loader(8, 4)], [("train", 1)])
