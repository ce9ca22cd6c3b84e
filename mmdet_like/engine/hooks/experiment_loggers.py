"""Experiment-tracker logger hooks: Weights & Biases and MLflow (optional extras).

Both log what :class:`~mmdet_like.engine.hooks.logger.TextLoggerHook` writes (losses,
``lr``, times, counters, evaluation metrics and ``val`` workflow losses) as scalars
``{mode}/{key}`` at step = global iteration, and the run's config (``runner.meta["config"]``,
the merged config text that tools/train.py puts there). Only rank 0 talks to the tracker.
"""

import atexit
import importlib
import os
import os.path as osp
import time

from mmdet_like.engine.hooks.logger import LoggerHook
from mmdet_like.errors import ProjectError
from mmdet_like.registry import HOOKS

MLFLOW_PARAM_LENGTH = 6000  # the longest param value MLflow stores


class LoggerBackendError(ProjectError, RuntimeError):
    """An experiment tracker's package is missing or its store cannot be opened."""


def require_extra(module, hook, extra):
    """Import ``module`` for ``hook``, or say which extra of mmdet_like installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise LoggerBackendError(
            f"{hook} needs the {module} package, which is not installed ({exc}): pip install "
            f"'mmdet_like[{extra}]' (or remove {hook} from log_config.hooks)"
        ) from exc


def config_dict(runner):
    """The run's config as a plain dict: ``runner.meta["config"]`` (a config's text, as
    tools/train.py stores it, or a dict); ``{}`` when the run has none.

    Raises :class:`LoggerBackendError` if the text cannot be read back as a config.
    """
    config = runner.meta.get("config")
    if config is None:
        return {}
    if isinstance(config, dict):
        return dict(config)
    from mmengine.config import Config

    try:
        return Config.fromstring(str(config), ".py").to_dict()
    except Exception as exc:  # mmengine raises whatever executing the text raised
        raise LoggerBackendError(
            f"the run's config (runner.meta['config']) cannot be read back as a Python "
            f"config: {type(exc).__name__}: {exc}. Set the logger hook's log_config=False to "
            "log no config"
        ) from exc


def flatten_config(config, prefix=""):
    """``{"a.b.0.c": value}`` from nested dicts and lists of dicts; other lists and tuples
    stay one value (e.g. ``"img_scale": (1333, 800)``)."""
    flat = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten_config(value, f"{name}."))
        elif isinstance(value, list | tuple) and any(isinstance(v, dict) for v in value):
            flat.update(flatten_config(dict(enumerate(value)), f"{name}."))
        else:
            flat[name] = value
    return flat


def work_dir_files(runner, suffixes):
    """The files of the work dir whose names end with one of ``suffixes``, sorted."""
    if not runner.work_dir or not osp.isdir(runner.work_dir):
        return []
    return sorted(
        osp.join(runner.work_dir, name)
        for name in os.listdir(runner.work_dir)
        if name.endswith(tuple(suffixes)) and osp.isfile(osp.join(runner.work_dir, name))
    )


def _param_value(value):
    """``value`` as an MLflow param: its text, cut to the length MLflow stores."""
    text = str(value)
    if len(text) > MLFLOW_PARAM_LENGTH:
        text = text[: MLFLOW_PARAM_LENGTH - 3] + "..."
    return text


@HOOKS.register()
class WandbLoggerHook(LoggerHook):
    """Logs to Weights & Biases (``pip install 'mmdet_like[wandb]'``).

    ``init_kwargs`` go to ``wandb.init`` (``project``, ``entity``, ``name``, ``mode``,
    ``tags``, ...); its ``dir`` defaults to the work dir (unless ``WANDB_DIR`` is set).
    ``log_config``: the run's config dict becomes the W&B run config (``init_kwargs``'
    ``config`` entries win). ``log_artifact``: at the end of the run, the work dir's files
    ending with ``out_suffix`` (logs, dumped config) are logged as one artifact of type
    ``logs``. Offline: ``WANDB_MODE=offline`` (``wandb sync`` uploads later).
    """

    def __init__(
        self,
        init_kwargs=None,
        interval=50,
        ignore_last=False,
        log_config=True,
        log_artifact=True,
        out_suffix=(".log.json", ".log", ".py"),
    ):
        super().__init__(interval, ignore_last)
        if init_kwargs is not None and not isinstance(init_kwargs, dict):
            raise ValueError(
                f"WandbLoggerHook: init_kwargs must be a dict of wandb.init arguments, got "
                f"{init_kwargs!r}"
            )
        self.init_kwargs = dict(init_kwargs or {})
        self.log_config = log_config
        self.log_artifact = log_artifact
        self.out_suffix = (out_suffix,) if isinstance(out_suffix, str) else tuple(out_suffix)
        self.wandb = None
        self.run = None

    def before_run(self, runner):
        if runner.rank != 0:
            return
        self.wandb = require_extra("wandb", "WandbLoggerHook", "wandb")
        kwargs = dict(self.init_kwargs)
        if runner.work_dir and "dir" not in kwargs and not os.environ.get("WANDB_DIR"):
            kwargs["dir"] = runner.work_dir
        if self.log_config:
            kwargs["config"] = {**config_dict(runner), **dict(kwargs.get("config") or {})}
        self.run = self.wandb.init(**kwargs)

    def write(self, runner, record):
        self.run.log(self.scalars(record), step=self.global_step(runner, record))

    def after_run(self, runner):
        if self.run is None:
            return
        files = work_dir_files(runner, self.out_suffix) if self.log_artifact else []
        if files:
            artifact = self.wandb.Artifact(name=f"run-{self.run.id}-files", type="logs")
            for path in files:
                artifact.add_file(path)
            self.run.log_artifact(artifact)
        self.run.finish()
        self.run = None


@HOOKS.register()
class MLflowLoggerHook(LoggerHook):
    """Logs to MLflow (``pip install 'mmdet_like[mlflow]'``: the ``mlflow-skinny`` client).

    One MLflow run per training run, in experiment ``exp_name`` (created if missing;
    default ``"Default"``), named ``run_name``, with ``tags``. ``tracking_uri``: the store
    (``http://host:5000``, ``file:/path/mlruns``, ``sqlite:///mlflow.db`` with the full
    ``mlflow`` package, ...); None takes MLflow's own (``MLFLOW_TRACKING_URI``). Recent
    MLflow refuses a ``file:`` store unless ``MLFLOW_ALLOW_FILE_STORE=true`` is set.

    Params: ``params`` and, with ``log_config``, the run's config flattened to
    ``"optimizer.lr"``-style keys (values longer than MLflow's 6000 characters are cut);
    the config text is also logged as the artifact ``config.py``. At the end of the run:
    with ``log_artifact``, the work dir's files ending with ``out_suffix`` (logs, dumped
    config) under ``work_dir/``; with ``log_checkpoint``, the last checkpoint written under
    ``checkpoints/``. A run that ends with an exception is marked ``FAILED`` when the
    process exits.
    """

    def __init__(
        self,
        exp_name=None,
        run_name=None,
        tracking_uri=None,
        tags=None,
        params=None,
        interval=50,
        ignore_last=False,
        log_config=True,
        log_artifact=True,
        out_suffix=(".log.json", ".log", ".py"),
        log_checkpoint=False,
    ):
        super().__init__(interval, ignore_last)
        for name, value in (("tags", tags), ("params", params)):
            if value is not None and not isinstance(value, dict):
                raise ValueError(f"MLflowLoggerHook: {name} must be a dict, got {value!r}")
        self.exp_name = exp_name or "Default"
        self.run_name = run_name
        self.tracking_uri = tracking_uri
        self.tags = {str(k): str(v) for k, v in (tags or {}).items()}
        self.params = dict(params or {})
        self.log_config = log_config
        self.log_artifact = log_artifact
        self.out_suffix = (out_suffix,) if isinstance(out_suffix, str) else tuple(out_suffix)
        self.log_checkpoint = log_checkpoint
        self.client = None
        self.run_id = None

    def before_run(self, runner):
        if runner.rank != 0:
            return
        require_extra("mlflow", "MLflowLoggerHook", "mlflow")
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        try:
            self.client = MlflowClient(self.tracking_uri)
            experiment = self.client.get_experiment_by_name(self.exp_name)
        except Exception as exc:  # MLflow's store errors have no common base class
            uri = self.tracking_uri or "MLflow's default (MLFLOW_TRACKING_URI)"
            raise LoggerBackendError(
                f"MLflowLoggerHook cannot open the tracking store {uri}: "
                f"{type(exc).__name__}: {str(exc).strip()} Set the hook's tracking_uri (e.g. "
                "'http://host:5000', or 'file:/path/mlruns' with MLFLOW_ALLOW_FILE_STORE=true)"
            ) from exc
        if experiment is None:
            experiment_id = self.client.create_experiment(self.exp_name)
        else:
            experiment_id = experiment.experiment_id
        run = self.client.create_run(experiment_id, tags=self.tags, run_name=self.run_name)
        self.run_id = run.info.run_id
        atexit.register(self._end_run, "FAILED")  # unless after_run ends it first
        params = dict(self.params)
        config_text = runner.meta.get("config")
        if self.log_config:
            params = {**flatten_config(config_dict(runner)), **params}
            if isinstance(config_text, str):
                self.client.log_text(self.run_id, config_text, "config.py")
        items = [Param(str(k), _param_value(v)) for k, v in params.items()]
        for start in range(0, len(items), 100):  # MLflow takes 100 params a batch
            self.client.log_batch(self.run_id, params=items[start : start + 100])

    def write(self, runner, record):
        from mlflow.entities import Metric

        step = self.global_step(runner, record)
        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, step) for k, v in self.scalars(record).items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def after_run(self, runner):
        if self.run_id is None:
            return
        if self.log_artifact:
            for path in work_dir_files(runner, self.out_suffix):
                self.client.log_artifact(self.run_id, path, "work_dir")
        checkpoint = runner.last_checkpoint
        if self.log_checkpoint and checkpoint and osp.isfile(checkpoint):
            self.client.log_artifact(self.run_id, osp.realpath(checkpoint), "checkpoints")
        self._end_run("FINISHED")

    def _end_run(self, status):
        """Mark the MLflow run ended with ``status`` (once)."""
        atexit.unregister(self._end_run)
        if self.run_id is not None:
            run_id, self.run_id = self.run_id, None
            self.client.set_terminated(run_id, status)


HOOKS.register(name="MlflowLoggerHook")(MLflowLoggerHook)  # mmcv's spelling
