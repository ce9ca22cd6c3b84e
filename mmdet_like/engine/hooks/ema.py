"""An exponential moving average (EMA) of the weights: ``EMAHook`` and its averaging rules.

``custom_hooks = [dict(type="EMAHook", ema_type="ExpMomentumEMA", momentum=0.0002,
gamma=2000, update_buffers=True, priority=49)]`` (mmdetection 3's YOLOX / RTMDet line)
keeps, beside the weights the optimizer trains, their running average, updated after every
optimizer step: ``averaged = averaged * (1 - w) + source * w`` where ``w`` (the weight of the
new weights, mmengine's *momentum*) comes from the ``ema_type``:

=========================== ======================================================= =========
``ema_type``                ``w`` at update ``t`` (``t`` = optimizer steps before)   first
=========================== ======================================================= =========
``ExponentialMovingAverage`` ``momentum``                                           copy
``ExpMomentumEMA``          ``(1 - momentum) * exp(-(1 + t) / gamma) + momentum``   copy
``MomentumAnnealingEMA``    ``max(momentum, gamma / (gamma + t))``                  copy
``DecayWarmupEMA``          ``1 - decay * (1 - exp(-(1 + t) / warmups))``           formula
=========================== ======================================================= =========

The first three are mmengine's / mmdetection's classes of those names: their first update
(``t = 0``) copies the weights. ``DecayWarmupEMA`` is RT-DETR's (and YOLOX's own)
``ModelEMA`` (``decay=0.9999, warmups=2000``), written with its ``decay`` (the weight of the
average): the average starts as a copy of the weights at the start of training and every
update, the first too, follows the formula.

Checkpoints of a run with the hook hold (all tensors on the CPU, read with
``weights_only=True``)::

    state_dict         the averaged weights: parameters, and buffers with update_buffers=True
                       (else the model's own buffers). tools/test.py, init_detector, the
                       export tools and load_from read this one.
    source_state_dict  the weights the optimizer trains: resume_from goes on from them.
    meta.hook_states.EMAHook = {"steps": optimizer steps averaged so far, "ema_type": ...}

so a resumed run has the average, the trained weights and the step count of the
uninterrupted one, bit for bit. Evaluation during training (the ``evaluation`` config) and
the ``val`` workflow run on the averaged weights: they are swapped into the model for the
pass and swapped back after it.
"""

import abc
import math
import numbers
from collections import OrderedDict

import torch

from mmdet_like.engine.checkpoint import CheckpointError
from mmdet_like.engine.config import ConfigError
from mmdet_like.engine.hooks.checkpoint import CheckpointHook
from mmdet_like.engine.hooks.evaluation import EvalHook
from mmdet_like.engine.hooks.hook import Hook
from mmdet_like.engine.hooks.optimizer import OptimizerHook
from mmdet_like.registry import (
    HOOKS,
    WEIGHT_AVERAGERS,
    BuildError,
    RegistryError,
    build_from_cfg,
)

WHERE = "custom_hooks EMAHook"


def _number(name, value, low, high, ema_type, low_open=True, high_open=True, hint=""):
    """``value`` as a float in the interval; a :class:`ConfigError` naming the field
    otherwise."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (
            high is None or (value < high if high_open else value <= high)
        )
    if not ok:
        interval = (
            f"{'(' if low_open else '['}{low}, "
            f"{'inf)' if high is None else f'{high}' + (')' if high_open else ']')}"
        )
        raise ConfigError(
            f"{WHERE} (ema_type={ema_type!r}): {name}={value!r} must be a number in "
            f"{interval}{hint}"
        )
    return float(value)


class WeightAverager(abc.ABC):
    """An averaging rule of :class:`EMAHook`: ``source_weight(t)`` is ``w`` of
    ``averaged = averaged * (1 - w) + source * w`` at the update after ``t`` optimizer
    steps. ``copies_first_update``: the update at ``t = 0`` copies the weights instead."""

    copies_first_update = True

    @abc.abstractmethod
    def source_weight(self, steps):
        """``w`` of the update after ``steps`` optimizer steps (each rule defines it)."""


_MOMENTUM_HINT = (
    ": the weight of the new weights in averaged = averaged * (1 - momentum) + source * "
    "momentum (mmdetection's YOLOX and RTMDet configs use 0.0002; for RT-DETR's "
    "decay=0.9999 use ema_type='DecayWarmupEMA')"
)


@WEIGHT_AVERAGERS.register()
class ExponentialMovingAverage(WeightAverager):
    """``w = momentum`` at every update (mmengine's ``ExponentialMovingAverage``)."""

    def __init__(self, momentum=0.0002):
        self.momentum = _number(
            "momentum", momentum, 0, 1, type(self).__name__, hint=_MOMENTUM_HINT
        )

    def source_weight(self, steps):
        return self.momentum


@WEIGHT_AVERAGERS.register()
class ExpMomentumEMA(ExponentialMovingAverage):
    """``w = (1 - momentum) * exp(-(1 + t) / gamma) + momentum``: close to 1 at first,
    down to ``momentum`` over a few ``gamma`` steps (mmdetection's ``ExpMomentumEMA``,
    YOLOX's schedule)."""

    def __init__(self, momentum=0.0002, gamma=2000):
        super().__init__(momentum)
        self.gamma = _number("gamma", gamma, 0, None, type(self).__name__)

    def source_weight(self, steps):
        return (1 - self.momentum) * math.exp(-(1 + steps) / self.gamma) + self.momentum


@WEIGHT_AVERAGERS.register()
class MomentumAnnealingEMA(ExponentialMovingAverage):
    """``w = max(momentum, gamma / (gamma + t))`` (mmengine's ``MomentumAnnealingEMA``)."""

    def __init__(self, momentum=0.0002, gamma=100):
        super().__init__(momentum)
        self.gamma = _number("gamma", gamma, 0, None, type(self).__name__)

    def source_weight(self, steps):
        return max(self.momentum, self.gamma / (self.gamma + steps))


@WEIGHT_AVERAGERS.register()
class DecayWarmupEMA(WeightAverager):
    """RT-DETR's ``ModelEMA``: the average keeps ``d = decay * (1 - exp(-(1 + t) /
    warmups))`` of itself (``w = 1 - d``), so ``d`` rises from about 0 to ``decay`` over a
    few ``warmups`` steps (``warmups=0``: ``d = decay`` from the start). Every update uses
    the formula (the average starts as a copy of the weights when training starts)."""

    copies_first_update = False

    def __init__(self, decay=0.9999, warmups=2000):
        name = type(self).__name__
        self.decay = _number(
            "decay", decay, 0, 1, name, hint=": the weight of the average (RT-DETR: 0.9999)"
        )
        self.warmups = _number("warmups", warmups, 0, None, name, low_open=False)

    def source_weight(self, steps):
        if self.warmups == 0:
            return 1 - self.decay
        return 1 - self.decay * (1 - math.exp(-(1 + steps) / self.warmups))


def _whole(name, value, minimum):
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{WHERE}: {name} must be a whole number >= {minimum}, got {value!r}")
    return value


def tracked_tensors(model, update_buffers):
    """``[(names, tensor)]``: the model's parameters (and, with ``update_buffers``, its
    buffers that its state dict holds), each once with every state-dict name it has (tied
    weights have several)."""
    param_ids = {id(p) for p in model.parameters()}
    groups = OrderedDict()
    for name, tensor in model.state_dict(keep_vars=True).items():
        if id(tensor) in param_ids or update_buffers:
            groups.setdefault(id(tensor), ([], tensor))[0].append(name)
    return [(tuple(names), tensor) for names, tensor in groups.values()]


@HOOKS.register()
class EMAHook(Hook):
    """Keep an exponential moving average of the weights; evaluate and save it.

    Args:
        ema_type: the averaging rule, a name in ``WEIGHT_AVERAGERS`` (module docstring):
            ``ExponentialMovingAverage`` (default), ``ExpMomentumEMA``,
            ``MomentumAnnealingEMA`` or ``DecayWarmupEMA``.
        interval: average at every ``interval``-th optimizer step (the others count in
            ``t`` all the same, as mmengine's ``interval``).
        update_buffers: average the buffers too (batch-norm running statistics); False
            keeps the model's own buffers with the averaged parameters.
        begin_iter, begin_epoch: until iteration ``begin_iter`` and epoch ``begin_epoch``
            (1-based; 0: from the start) the average is a copy of the weights and ``t``
            stays 0 (mmengine's options).
        momentum, gamma, decay, warmups: the rule's own arguments (``momentum`` and
            ``gamma``, or ``decay`` and ``warmups``; left out: the rule's defaults). A rule
            registered in ``WEIGHT_AVERAGERS`` takes some of these.

    The average is updated after each optimizer step (``runner.outputs["optimizer_step"]``,
    so gradient accumulation and skipped steps count once or not at all), on every rank
    alike. It must run after ``OptimizerHook`` (priority 40) and before hooks that save or
    evaluate after iterations (``CheckpointHook`` 50, the evaluation hook 70): priority 49,
    as mmdetection's configs give it, is the default; another order is refused at the start.

    ``averaged_weights()`` gives the average (``{state-dict name: tensor}``).
    """

    priority = 49

    def __init__(
        self,
        ema_type="ExponentialMovingAverage",
        momentum=None,
        gamma=None,
        decay=None,
        warmups=None,
        interval=1,
        update_buffers=False,
        begin_iter=0,
        begin_epoch=0,
    ):
        if not isinstance(ema_type, str):
            raise ConfigError(
                f"{WHERE}: ema_type must be a name ({', '.join(WEIGHT_AVERAGERS.names)}), got "
                f"{ema_type!r}"
            )
        given = dict(momentum=momentum, gamma=gamma, decay=decay, warmups=warmups)
        ema_args = {k: v for k, v in given.items() if v is not None}
        try:
            self.averager = build_from_cfg(dict(type=ema_type, **ema_args), WEIGHT_AVERAGERS)
        except (RegistryError, BuildError) as exc:
            raise ConfigError(f"{WHERE}: ema_type={ema_type!r}: {exc}") from exc
        self.ema_type = ema_type
        self.interval = _whole("interval", interval, 1)
        if not isinstance(update_buffers, bool):
            raise ConfigError(
                f"{WHERE}: update_buffers must be True or False, got {update_buffers!r}"
            )
        self.update_buffers = update_buffers
        self.begin_iter = _whole("begin_iter", begin_iter, 0)
        self.begin_epoch = _whole("begin_epoch", begin_epoch, 0)
        self.steps = 0
        self._tracked = None  # [(names, model tensor)], set in before_run
        self._sources = None  # their detached views
        self._float_pairs = ([], [])  # (averages, sources) of the floating tensors
        self._other_pairs = []  # (average, source) of the others
        self._averaged = None  # the average of each, same order
        self._swapped = False  # the model holds the average (and _averaged its weights)
        self._loaded_average = None  # the checkpoint's state_dict, from after_load_checkpoint
        self._loaded_type = None

    # ---------------------------------------------------------------------- set-up
    def _check_order(self, runner):
        hooks = runner.hooks
        me = hooks.index(self)
        fix = (
            "Fix: priority=49 in its custom_hooks entry (after the optimizer step, priority 40; "
            "before checkpoints, 50, and evaluation, 70)"
        )
        for hook in hooks[me + 1 :]:
            if isinstance(hook, OptimizerHook):
                raise ConfigError(
                    f"{WHERE} (priority {self.priority}) runs before {type(hook).__name__} "
                    f"(priority {hook.priority}): it would average the weights before each "
                    f"step. {fix}"
                )
        for hook in hooks[:me]:
            by_iter = isinstance(hook, CheckpointHook | EvalHook) and not hook.by_epoch
            if by_iter:
                raise ConfigError(
                    f"{WHERE} (priority {self.priority}) runs after {type(hook).__name__} "
                    f"(priority {hook.priority}), which saves or evaluates after iterations "
                    f"(by_epoch=False): it would miss that iteration's average. {fix}"
                )

    def before_run(self, runner):
        self._check_order(runner)
        self._tracked = tracked_tensors(runner.unwrapped_model, self.update_buffers)
        loaded, self._loaded_average = self._loaded_average, None
        with torch.no_grad():
            if loaded is None:
                self._averaged = [t.detach().clone() for _, t in self._tracked]
                if runner.iter > 0:
                    runner.logger.info(
                        "EMAHook: the checkpoint resumed has no averaged weights; the average "
                        "starts from its weights"
                    )
            else:
                self._averaged = [self._from_checkpoint(loaded, n, t) for n, t in self._tracked]
        self._swapped = False
        # detached views of the model's tensors (optimizer steps update them in place)
        self._sources = [t.detach() for _, t in self._tracked]
        floats = [i for i, avg in enumerate(self._averaged) if avg.is_floating_point()]
        self._float_pairs = (
            [self._averaged[i] for i in floats],
            [self._sources[i] for i in floats],
        )
        self._other_pairs = [
            (avg, src)
            for avg, src in zip(self._averaged, self._sources)
            if not avg.is_floating_point()  # e.g. batch norm's num_batches_tracked
        ]
        if self._loaded_type not in (None, self.ema_type):
            runner.logger.warning(
                "EMAHook: the checkpoint's average was made with ema_type=%r; it goes on with "
                "%r from step %d",
                self._loaded_type,
                self.ema_type,
                self.steps,
            )

    @staticmethod
    def _from_checkpoint(state, names, tensor):
        value = state.get(names[0])
        if value is None or tuple(value.shape) != tuple(tensor.shape):
            got = "lacks it" if value is None else f"has shape {tuple(value.shape)}"
            raise CheckpointError(
                f"EMAHook: the checkpoint's averaged weights (state_dict) do not fit the model: "
                f"{names[0]} {tuple(tensor.shape)}: the checkpoint {got}. Resume with the config "
                "the run was trained with"
            )
        return value.detach().to(device=tensor.device, dtype=tensor.dtype).clone()

    # --------------------------------------------------------------------- averaging
    def _started(self, runner):
        return runner.iter + 1 >= self.begin_iter and runner.epoch + 1 >= self.begin_epoch

    def after_train_iter(self, runner):
        if not (runner.outputs or {}).get("optimizer_step", True):
            return
        with torch.no_grad():
            if not self._started(runner):
                self._copy_weights()
                return
            if self.steps % self.interval == 0:
                if self.steps == 0 and self.averager.copies_first_update:
                    self._copy_weights()
                else:
                    self._average(self.averager.source_weight(self.steps))
        self.steps += 1

    def _copy_weights(self):
        for avg, src in zip(self._averaged, self._sources):
            avg.copy_(src)

    def _average(self, weight):
        """``averaged += (source - averaged) * weight`` for the floating tensors (one
        multi-tensor kernel); the others (integer buffers) take the model's values."""
        averaged, sources = self._float_pairs
        if averaged:
            torch._foreach_lerp_(averaged, sources, weight)
        for avg, src in self._other_pairs:
            avg.copy_(src)

    def averaged_weights(self):
        """``{state-dict name: tensor}`` of the average (the tensors the hook keeps)."""
        if self._tracked is None:
            raise RuntimeError("EMAHook: no average before the run starts")
        models = [t for _, t in self._tracked]
        values = models if self._swapped else self._averaged
        return OrderedDict(
            (name, value.detach())
            for (names, _), value in zip(self._tracked, values)
            for name in names
        )

    # ---------------------------------------------------------- evaluating the average
    def _swap(self):
        with torch.no_grad():
            for (_, tensor), avg in zip(self._tracked, self._averaged):
                kept = tensor.detach().clone()
                tensor.copy_(avg)
                avg.copy_(kept)
        self._swapped = not self._swapped

    def _swap_in(self):
        if self._tracked is not None and not self._swapped:
            self._swap()

    def _swap_out(self):
        if self._swapped:
            self._swap()

    def before_evaluation(self, runner):
        self._swap_in()

    def after_evaluation(self, runner):
        self._swap_out()

    def before_val_epoch(self, runner):
        self._swap_in()

    def after_val_epoch(self, runner):
        self._swap_out()

    # ------------------------------------------------------------------ checkpoints
    def before_save_checkpoint(self, runner, checkpoint):
        if self._tracked is None:
            return
        model_state = checkpoint["state_dict"]
        other = OrderedDict(model_state)
        for (names, _), value in zip(self._tracked, self._averaged):
            value = value.detach().cpu()
            for name in names:
                other[name] = value
        averaged, source = (model_state, other) if self._swapped else (other, model_state)
        checkpoint["state_dict"] = averaged
        checkpoint["source_state_dict"] = source

    def after_load_checkpoint(self, runner, checkpoint):
        if "source_state_dict" not in checkpoint:
            self._loaded_average = None
            return
        self._loaded_average = checkpoint["state_dict"]
        checkpoint["state_dict"] = checkpoint.pop("source_state_dict")

    def state_dict(self):
        return {"steps": int(self.steps), "ema_type": self.ema_type}

    def load_state_dict(self, state):
        self.steps = int(state.get("steps", 0))
        self._loaded_type = state.get("ema_type")
