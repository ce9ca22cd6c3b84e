"""Registries: the one way a config's ``type`` becomes a class.

Every built-in part registers itself with ``@REGISTRY.register()`` in its own module, and
each package's ``__init__.py`` imports its modules, so ``import mmdet_like`` registers all
built-ins. :func:`build_from_cfg` turns ``dict(type="Name", **kwargs)`` into an object.
"""

import difflib
import inspect

from mmdet_like.errors import ProjectError


class RegistryError(ProjectError, KeyError):
    """A ``type`` that no registry entry answers to, or a registration clash."""

    def __str__(self):  # KeyError would print the message in quotes
        return str(self.args[0]) if self.args else ""


class BuildError(ProjectError, TypeError):
    """A registered class could not be built from the config it was given."""


class Registry:
    """A name -> class (or function) table, e.g. ``BACKBONES``."""

    def __init__(self, name):
        self.name = name
        self._entries = {}

    def __repr__(self):
        return f"Registry(name={self.name!r}, entries={sorted(self._entries)})"

    def __contains__(self, key):
        return key in self._entries

    def __len__(self):
        return len(self._entries)

    @property
    def names(self):
        return sorted(self._entries)

    def register(self, name=None, force=False):
        """Decorator: ``@BACKBONES.register()`` registers a class under its own name."""

        def decorator(obj):
            key = name or obj.__name__
            if key in self._entries and self._entries[key] is not obj and not force:
                raise RegistryError(
                    f"{key!r} is already registered in {self.name} by "
                    f"{self._entries[key].__module__}; pick another name or pass force=True"
                )
            self._entries[key] = obj
            return obj

        return decorator

    def get(self, key):
        """The entry registered as ``key``; an unknown key names the closest entries."""
        if key in self._entries:
            return self._entries[key]
        close = difflib.get_close_matches(key, self._entries, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise RegistryError(
            f"type {key!r} is not in the {self.name} registry.{hint} "
            f"Registered: {', '.join(self.names) or '(none)'}."
        )

    def build(self, cfg, default_args=None):
        return build_from_cfg(cfg, self, default_args)

    def names_in_order(self):
        """The names in registration order."""
        return list(self._entries)

    def instance(self, key):
        """One shared instance of the (argument-free) class registered as ``key``."""
        cache = self.__dict__.setdefault("_instances", {})
        cls = self.get(key)
        if cache.get(key, (None,))[0] is not cls:
            cache[key] = (cls, cls())
        return cache[key][1]


def build_from_cfg(cfg, registry, default_args=None):
    """Build ``registry[cfg["type"]](**rest of cfg, **default_args)``.

    ``default_args`` fill in arguments the config does not set. A missing ``type`` or a
    wrong argument raises with the registry, the class and the argument named.
    """
    if not isinstance(cfg, dict):
        raise BuildError(
            f"{registry.name}: expected a config dict with a 'type' key, got "
            f"{type(cfg).__name__}: {cfg!r}"
        )
    if "type" not in cfg:
        raise BuildError(
            f"{registry.name}: config has no 'type' key: {dict(cfg)!r}. Add type='<name>', one "
            f"of: {', '.join(registry.names)}."
        )
    args = dict(cfg)
    obj_type = args.pop("type")
    for key, value in (default_args or {}).items():
        args.setdefault(key, value)
    if isinstance(obj_type, str):
        obj_cls = registry.get(obj_type)
    elif inspect.isclass(obj_type) or callable(obj_type):
        obj_cls = obj_type
    else:
        raise BuildError(
            f"{registry.name}: 'type' must be a registered name or a class, got {obj_type!r}"
        )
    _check_arguments(obj_cls, args, registry)
    # A plain TypeError/ValueError (a bad argument or value) is wrapped to name the registry
    # and the class; project errors that subclass them (e.g. DatasetError) pass through
    # unchanged, since they already name the file and field, and callers catch them by type.
    try:
        return obj_cls(**args)
    except (TypeError, ValueError) as exc:
        if type(exc) not in (TypeError, ValueError):
            raise
        raise BuildError(f"{registry.name}: building {_name(obj_cls)} failed: {exc}") from exc


def _name(obj):
    return getattr(obj, "__name__", repr(obj))


def accepted_arguments(obj_cls):
    """``(names, open)``: the keyword arguments ``obj_cls`` takes, following ``**kwargs`` up
    its classes' ``__init__`` (a subclass that passes them on to its base takes the base's
    too); ``open`` is true when some ``**kwargs`` goes nowhere we can see (then any name
    may be taken). ``None`` when there is no signature to read."""
    try:
        signature = inspect.signature(obj_cls)
    except (TypeError, ValueError):  # builtins without a signature
        return None
    names, params = set(), signature.parameters
    classes = list(inspect.getmro(obj_cls)[1:]) if inspect.isclass(obj_cls) else []
    while True:
        names |= {
            n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        }
        if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
            return names, False
        # **kwargs: the next base class with an __init__ of its own takes them
        while classes and "__init__" not in vars(classes[0]):
            classes.pop(0)
        if not classes or classes[0] is object:
            return names, True
        params = inspect.signature(classes.pop(0).__init__).parameters
        names.discard("self")


def unknown_argument_hints(obj_cls, args):
    """Messages for the keys of ``args`` that ``obj_cls`` does not take, each with the
    closest name it takes (``[]`` when all are taken or any name may be)."""
    accepted = accepted_arguments(obj_cls)
    if accepted is None or accepted[1]:
        return []
    named = accepted[0] - {"self"}
    hints = []
    for key in args:
        if key not in named:
            close = difflib.get_close_matches(key, named, n=1, cutoff=0.6)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return hints


def _check_arguments(obj_cls, args, registry):
    """Name the unknown and the missing arguments before the constructor runs."""
    try:
        signature = inspect.signature(obj_cls)
    except (TypeError, ValueError):  # builtins without a signature
        return
    hints = unknown_argument_hints(obj_cls, args)
    if hints:
        named = sorted(accepted_arguments(obj_cls)[0] - {"self"})
        raise BuildError(
            f"{registry.name}: {_name(obj_cls)} got unexpected argument(s) "
            f"{', '.join(hints)}. It accepts: {', '.join(named) or '(none)'}."
        )
    params = signature.parameters
    missing = [
        n
        for n, p in params.items()
        if p.default is p.empty
        and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        and n not in args
    ]
    if missing:
        raise BuildError(
            f"{registry.name}: {_name(obj_cls)} is missing required argument(s) "
            f"{', '.join(repr(m) for m in missing)}; add them to its config dict."
        )


# Models
BACKBONES = Registry("BACKBONES")
NECKS = Registry("NECKS")
HEADS = Registry("HEADS")
ROI_EXTRACTORS = Registry("ROI_EXTRACTORS")
ROI_LAYERS = Registry("ROI_LAYERS")  # RoI pooling ops used by the RoI extractors
SHARED_HEADS = Registry("SHARED_HEADS")
PLUGIN_LAYERS = Registry("PLUGIN_LAYERS")  # modules inserted into backbones (plugins=)
LOSSES = Registry("LOSSES")
DETECTORS = Registry("DETECTORS")
# Task modules used by heads
# where a dense head's priors come from: anchors (AnchorGenerator) or points (MlvlPointGenerator)
PRIOR_GENERATORS = Registry("PRIOR_GENERATORS")
ANCHOR_GENERATORS = PRIOR_GENERATORS  # the same registry, under its earlier name
BBOX_CODERS = Registry("BBOX_CODERS")  # box <-> regression target (deltas, distances)
BBOX_ASSIGNERS = Registry("BBOX_ASSIGNERS")
BBOX_SAMPLERS = Registry("BBOX_SAMPLERS")
IOU_CALCULATORS = Registry("IOU_CALCULATORS")
MATCH_COSTS = Registry("MATCH_COSTS")  # costs of one-to-one (Hungarian) assignment
# Layers chosen by config (norm_cfg, conv_cfg)
NORM_LAYERS = Registry("NORM_LAYERS")
# positional encodings of transformer detectors (SinePositionalEncoding, LearnedPositionalEncoding)
POSITIONAL_ENCODINGS = Registry("POSITIONAL_ENCODINGS")
# Data
DATASETS = Registry("DATASETS")
PIPELINES = Registry("PIPELINES")
FIELD_KINDS = Registry("FIELD_KINDS")  # how each kind of geometric field moves with the image
SAMPLERS = Registry("SAMPLERS")
# transforms of a whole training batch, between the data loader and the model
BATCH_AUGMENTS = Registry("BATCH_AUGMENTS")
# Evaluation
METRICS = Registry("METRICS")
# Engine
HOOKS = Registry("HOOKS")
OPTIMIZERS = Registry("OPTIMIZERS")
# how an optimizer config's paramwise_cfg becomes parameter groups (optimizer.constructor)
OPTIMIZER_CONSTRUCTORS = Registry("OPTIMIZER_CONSTRUCTORS")
RUNNERS = Registry("RUNNERS")
# how EMAHook averages the weights (its ema_type): ExpMomentumEMA, ...
WEIGHT_AVERAGERS = Registry("WEIGHT_AVERAGERS")
