"""Helpers of the training-recipe hook tests (EMA, gradient accumulation, pipeline switch):
runners on the toy model with a chosen optimizer, loaders in a fixed order, a log
capture and a hook that records the weights after every optimizer step."""

import logging

import torch

from mmdet_like.engine import EpochBasedRunner, Hook, IterBasedRunner, build_optimizer
from tests.engine.toy import ToyRegressionDataset, ToyRegressor, toy_loader

OPTIMIZERS = {
    "sgd": {"type": "SGD", "lr": 0.05, "momentum": 0.9, "weight_decay": 1e-3},
    "adamw": {"type": "AdamW", "lr": 0.01, "weight_decay": 0.05},
}


class LogLines(logging.Handler):
    """Keeps the messages logged to it."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())

    def text(self):
        return "\n".join(self.lines)


def captured_logger(name):
    """A logger of its own (nothing printed) and the handler keeping its lines."""
    logger = logging.getLogger(f"tests.recipe.{name}")
    logger.handlers.clear()
    logger.propagate = False
    logger.setLevel(logging.INFO)
    lines = LogLines()
    logger.addHandler(lines)
    return logger, lines


def make_runner(
    work_dir,
    optimizer="sgd",
    max_epochs=2,
    max_iters=None,
    model_cls=ToyRegressor,
    optimizer_config=None,
    lr_config=None,
    checkpoint_config=None,
    custom_hooks=None,
    log_name="runner",
):
    """An epoch-based (or, with ``max_iters``, iteration-based) runner on a ``model_cls()``
    built after ``torch.manual_seed(0)`` (the same weights each time), with the standard
    hooks; ``runner.log_lines`` keeps its log."""
    torch.manual_seed(0)
    model = model_cls()
    optim = build_optimizer(model, dict(OPTIMIZERS[optimizer]))
    logger, lines = captured_logger(log_name)
    if max_iters is not None:
        runner = IterBasedRunner(model, optim, str(work_dir), logger, max_iters=max_iters)
    else:
        runner = EpochBasedRunner(model, optim, str(work_dir), logger, max_epochs=max_epochs)
    runner.register_training_hooks(
        lr_config, optimizer_config or {}, checkpoint_config, None, custom_hooks
    )
    runner.log_lines = lines
    return runner


def ordered_loader(num_samples, batch_size, batch_sampler=None, **dataset_kwargs):
    """The toy samples in their order (no shuffle) in batches of ``batch_size``, or as
    ``batch_sampler`` (lists of indices) says."""
    dataset = ToyRegressionDataset(num_samples=num_samples, **dataset_kwargs)
    collate_fn = toy_loader().collate_fn
    if batch_sampler is not None:
        return torch.utils.data.DataLoader(
            dataset, batch_sampler=batch_sampler, collate_fn=collate_fn
        )
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_fn
    )


def snapshot(module):
    """Every floating tensor of ``module``'s state dict, as a float64 copy."""
    return {
        k: v.detach().double().clone()
        for k, v in module.state_dict().items()
        if v.is_floating_point()
    }


class RecordSteps(Hook):
    """Between the optimizer step (priority 40) and ``EMAHook`` (49): ``initial`` = the
    weights before training, ``after_steps`` = the weights after each real optimizer step,
    ``steps`` = ``runner.outputs["optimizer_step"]`` of each iteration, ``lrs`` = the
    learning rate of each real step."""

    priority = 45

    def __init__(self):
        self.initial = None
        self.after_steps = []
        self.steps = []
        self.lrs = []

    def before_run(self, runner):
        self.initial = snapshot(runner.unwrapped_model)

    def after_train_iter(self, runner):
        stepped = bool(runner.outputs["optimizer_step"])
        self.steps.append(stepped)
        if stepped:
            self.after_steps.append(snapshot(runner.unwrapped_model))
            self.lrs.append(runner.current_lr()[0])
