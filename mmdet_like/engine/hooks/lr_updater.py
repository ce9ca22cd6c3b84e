"""Learning-rate schedules as hooks: step, cosine, poly, exp; linear/constant/exp warmup.

The regular LR is computed from the base LR (each group's ``initial_lr``) and the progress:
the epoch (``by_epoch=True``, updated at each epoch start) or the iteration
(``by_epoch=False``). Warmup always runs per iteration over the first ``warmup_iters``
iterations (or ``warmup_epochs`` epochs) and multiplies the regular LR by a factor that
goes from ``warmup_ratio`` to 1.
"""

import math

from mmdet_like.engine.hooks.hook import Hook
from mmdet_like.registry import HOOKS, build_from_cfg

LR_POLICIES = {
    "step": "StepLrUpdaterHook",
    "cosine": "CosineLrUpdaterHook",
    "cosineannealing": "CosineLrUpdaterHook",
    "poly": "PolyLrUpdaterHook",
    "exp": "ExpLrUpdaterHook",
    "fixed": "FixedLrUpdaterHook",
}


def build_lr_updater_hook(lr_config):
    """``lr_config=dict(policy="step", step=[8, 11], warmup="linear", ...)`` -> a hook.

    ``type=...`` may name any registered hook instead of ``policy``.
    """
    cfg = dict(lr_config)
    if "type" not in cfg:
        policy = str(cfg.pop("policy", "fixed"))
        if policy.lower() not in LR_POLICIES:
            raise ValueError(
                f"lr_config: unknown policy {policy!r}; one of "
                f"{', '.join(sorted(set(LR_POLICIES) - {'cosineannealing'}))}"
            )
        cfg["type"] = LR_POLICIES[policy.lower()]
    return build_from_cfg(cfg, HOOKS)


class LrUpdaterHook(Hook):
    """Base of the LR schedules; subclasses give :meth:`get_lr` (progress -> LR).

    Args:
        by_epoch: the schedule's progress is the epoch (True) or the iteration (False).
        warmup: None, "constant", "linear" or "exp".
        warmup_iters: length of the warmup in iterations (ignored with ``warmup_epochs``).
        warmup_ratio: LR factor at the first iteration (0 allowed for a linear warmup: it
            starts from LR 0, as torchvision's reference scripts with ``warmup_factor=0``).
        warmup_epochs: length of the warmup in epochs (converted with the loader length).
    """

    priority = "VERY_HIGH"

    def __init__(
        self, by_epoch=True, warmup=None, warmup_iters=0, warmup_ratio=0.1, warmup_epochs=None
    ):
        if warmup not in (None, "constant", "linear", "exp"):
            raise ValueError(f"warmup must be None, 'constant', 'linear' or 'exp', got {warmup!r}")
        if warmup == "linear" and not 0 <= warmup_ratio <= 1:
            raise ValueError(f"linear warmup: warmup_ratio must be in [0, 1], got {warmup_ratio}")
        if warmup in ("constant", "exp") and not 0 < warmup_ratio <= 1:
            raise ValueError(
                f"{warmup} warmup: warmup_ratio must be in (0, 1], got {warmup_ratio} "
                "(0 would hold the LR at 0)"
            )
        self.by_epoch = by_epoch
        self.warmup = warmup
        self.warmup_iters = warmup_iters
        self.warmup_ratio = warmup_ratio
        self.warmup_epochs = warmup_epochs
        self.base_lr = []
        self._loaded_base_lr = None

    def get_lr(self, runner, base_lr):
        """The regular (post-warmup) LR for ``base_lr`` at the runner's progress."""
        raise NotImplementedError

    def progress(self, runner):
        """(progress, max progress): epochs or iterations."""
        if self.by_epoch:
            return runner.epoch, runner.max_epochs
        return runner.iter, runner.max_iters

    def warmup_factor(self, cur_iter):
        """Factor in [warmup_ratio, 1] applied to the regular LR at iteration ``cur_iter``."""
        if self.warmup is None or cur_iter >= self.warmup_iters:
            return 1.0
        if self.warmup == "constant":
            return self.warmup_ratio
        if self.warmup == "linear":
            return 1 - (1 - cur_iter / self.warmup_iters) * (1 - self.warmup_ratio)
        return self.warmup_ratio ** (1 - cur_iter / self.warmup_iters)

    def _set_lr(self, runner, factor=1.0):
        for group, base_lr in zip(runner.optimizer.param_groups, self.base_lr):
            group["lr"] = self.get_lr(runner, base_lr) * factor

    def before_run(self, runner):
        groups = runner.optimizer.param_groups
        if self._loaded_base_lr is not None and len(self._loaded_base_lr) == len(groups):
            for group, lr in zip(groups, self._loaded_base_lr):
                group["initial_lr"] = lr
        for group in groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_lr = [group["initial_lr"] for group in groups]

    def before_train_epoch(self, runner):
        if self.warmup_epochs is not None:
            self.warmup_iters = self.warmup_epochs * len(runner.data_loader)
        if self.by_epoch:
            self._set_lr(runner)

    def before_train_iter(self, runner):
        if not self.by_epoch or (self.warmup is not None and runner.iter <= self.warmup_iters):
            self._set_lr(runner, self.warmup_factor(runner.iter))

    def state_dict(self):
        return {"base_lr": list(self.base_lr)}

    def load_state_dict(self, state):
        self._loaded_base_lr = list(state["base_lr"])


@HOOKS.register()
class FixedLrUpdaterHook(LrUpdaterHook):
    """The base LR throughout (warmup still applies)."""

    def get_lr(self, runner, base_lr):
        return base_lr


@HOOKS.register()
class StepLrUpdaterHook(LrUpdaterHook):
    """LR = base_lr * gamma ** (number of steps passed), not below ``min_lr``.

    ``step``: an int (decay every ``step``) or a list of epochs/iterations.
    """

    def __init__(self, step, gamma=0.1, min_lr=None, **kwargs):
        if isinstance(step, list | tuple):
            if any(s <= 0 for s in step) or list(step) != sorted(step):
                raise ValueError(f"step must be increasing positive values, got {step}")
        elif not (isinstance(step, int) and step > 0):
            raise ValueError(f"step must be a positive int or a list, got {step!r}")
        self.step = step
        self.gamma = gamma
        self.min_lr = min_lr
        super().__init__(**kwargs)

    def get_lr(self, runner, base_lr):
        progress, _ = self.progress(runner)
        if isinstance(self.step, int):
            exp = progress // self.step
        else:
            exp = sum(1 for s in self.step if progress >= s)
        lr = base_lr * self.gamma**exp
        return max(lr, self.min_lr) if self.min_lr is not None else lr


@HOOKS.register()
class CosineLrUpdaterHook(LrUpdaterHook):
    """Cosine annealing from base_lr to ``min_lr`` (or base_lr * ``min_lr_ratio``).

    By default the cosine spans the whole run and the warmup factor scales its first values
    (mmcv's schedule). ``anneal_after_warmup=True`` (per-iteration schedules only) starts the
    cosine at the warmup's end instead: base_lr right after the warmup, then down to the
    target over the remaining iterations (torchvision's and mmengine's warmup followed by a
    cosine scheduler that begins where the warmup ends).
    """

    def __init__(self, min_lr=None, min_lr_ratio=None, anneal_after_warmup=False, **kwargs):
        if (min_lr is None) == (min_lr_ratio is None):
            raise ValueError("CosineLrUpdaterHook: set exactly one of min_lr, min_lr_ratio")
        self.min_lr = min_lr
        self.min_lr_ratio = min_lr_ratio
        self.anneal_after_warmup = anneal_after_warmup
        super().__init__(**kwargs)
        if anneal_after_warmup and (self.by_epoch or self.warmup_epochs is not None):
            raise ValueError(
                "CosineLrUpdaterHook: anneal_after_warmup needs by_epoch=False and warmup_iters "
                "(not warmup_epochs)"
            )

    def get_lr(self, runner, base_lr):
        progress, max_progress = self.progress(runner)
        if self.anneal_after_warmup and self.warmup is not None:
            start = min(self.warmup_iters, max_progress - 1)
            progress, max_progress = max(progress - start, 0), max_progress - start
        target = self.min_lr if self.min_lr is not None else base_lr * self.min_lr_ratio
        return target + 0.5 * (base_lr - target) * (1 + math.cos(math.pi * progress / max_progress))


@HOOKS.register()
class PolyLrUpdaterHook(LrUpdaterHook):
    """LR = (base_lr - min_lr) * (1 - progress / max_progress) ** power + min_lr."""

    def __init__(self, power=1.0, min_lr=0.0, **kwargs):
        self.power = power
        self.min_lr = min_lr
        super().__init__(**kwargs)

    def get_lr(self, runner, base_lr):
        progress, max_progress = self.progress(runner)
        coeff = (1 - progress / max_progress) ** self.power
        return (base_lr - self.min_lr) * coeff + self.min_lr


@HOOKS.register()
class ExpLrUpdaterHook(LrUpdaterHook):
    """LR = base_lr * gamma ** progress."""

    def __init__(self, gamma, **kwargs):
        self.gamma = gamma
        super().__init__(**kwargs)

    def get_lr(self, runner, base_lr):
        progress, _ = self.progress(runner)
        return base_lr * self.gamma**progress
