"""Paper-default search spaces with `space=` and `fixed=` overrides."""

import copy
import numbers

from keras_dynfilt.tuning._dependencies import require_keras_tuner

kt = require_keras_tuner()

_KINDS = ("Choice", "Float", "Int", "Boolean")


def _check_spec(name, kind, kwargs):
    if kind not in _KINDS:
        raise ValueError(
            f"Hyperparameter {name!r}: kind must be one of {_KINDS}. "
            f"Received: {kind!r}"
        )
    if kind == "Choice" and not kwargs.get("values"):
        raise ValueError(
            f"Hyperparameter {name!r}: a Choice needs a non-empty `values` "
            f"list. Received: {kwargs!r}"
        )


def _override(name, kind, kwargs, value):
    """Applies one `space=` entry to a `(kind, kwargs)` spec."""
    kwargs = dict(kwargs)
    default = kwargs.get("default")
    if isinstance(value, dict):
        kind = value.get("kind", kind)
        kwargs.update({k: v for k, v in value.items() if k != "kind"})
        if kind == "Choice" and "values" in value and "default" not in value:
            kwargs["default"] = (
                default if default in value["values"] else value["values"][0]
            )
    elif isinstance(value, (list, tuple)):
        if kind == "Choice":
            if not value:
                raise ValueError(
                    f"`space[{name!r}]` must not be empty. Received: {value!r}"
                )
            kwargs["values"] = list(value)
            kwargs["default"] = default if default in value else value[0]
        elif kind in ("Float", "Int") and len(value) == 2:
            low, high = value
            kwargs["min_value"], kwargs["max_value"] = low, high
            if default is not None and not low <= default <= high:
                kwargs["default"] = low
        else:
            raise ValueError(
                f"`space[{name!r}]` for a {kind} hyperparameter must be "
                + (
                    "(min_value, max_value) or a dict of "
                    f"keras_tuner.HyperParameters.{kind} arguments"
                    if kind in ("Float", "Int")
                    else "a dict"
                )
                + f". Received: {value!r}"
            )
    else:
        raise TypeError(
            f"`space[{name!r}]` must be a list of values (Choice), a "
            "(min_value, max_value) pair (Float, Int) or a dict of "
            "keras_tuner.HyperParameters arguments. Received: "
            f"{value!r} of type {type(value).__name__}"
        )
    _check_spec(name, kind, kwargs)
    return kind, kwargs


class PaperHyperModel(kt.HyperModel):
    """A `keras_tuner.HyperModel` whose defaults are a paper's settings.

    Subclasses list their hyperparameters in `SEARCH_SPACE`, a dict mapping
    each name to `(kind, kwargs)` where `kind` is a
    `keras_tuner.HyperParameters` method (`"Choice"`, `"Float"`, `"Int"`,
    `"Boolean"`) and `kwargs` its arguments, with the paper's value as
    `default`. Every hyperparameter is declared in `build`, so
    `build(keras_tuner.HyperParameters())` uses the paper's settings.

    Args:
        space: Optional dict overriding the range of some hyperparameters:
            a list of values for a Choice (`{"alpha": [0.5, 1.0]}`), a
            `(min_value, max_value)` pair for a Float or Int, or a dict of
            `keras_tuner.HyperParameters` arguments (`{"pruning_rate":
            {"min_value": 0.2, "max_value": 0.5, "step": 0.05}}`). Where the
            paper's value falls outside the new range, the first value (or
            `min_value`) becomes the default.
        fixed: Optional dict pinning hyperparameters to one value
            (`hp.Fixed`), e.g. `{"criterion": "fpgm"}`.
        name: Optional name of the hypermodel (also the default project
            name of `make_tuner`).
    """

    SEARCH_SPACE = {}

    def __init__(self, space=None, fixed=None, name=None, tunable=True):
        super().__init__(name=name, tunable=tunable)
        known = list(self.SEARCH_SPACE)
        for argument, given in (("space", space), ("fixed", fixed)):
            if given is None:
                continue
            if not isinstance(given, dict):
                raise TypeError(
                    f"`{argument}` must be a dict keyed by hyperparameter "
                    f"name. Received: {argument}={given!r}"
                )
            unknown = sorted(set(given) - set(known))
            if unknown:
                raise ValueError(
                    f"`{argument}` names unknown hyperparameters {unknown}. "
                    f"{type(self).__name__} tunes: {known}"
                )
        self.space = {}
        for name_, (kind, kwargs) in self.SEARCH_SPACE.items():
            if space and name_ in space:
                kind, kwargs = _override(name_, kind, kwargs, space[name_])
            self.space[name_] = (kind, copy.deepcopy(kwargs))
        self.fixed = dict(fixed or {})
        for name_, value in self.fixed.items():
            if not isinstance(value, (str, bool, numbers.Real)):
                raise TypeError(
                    f"`fixed[{name_!r}]` must be a string, boolean or "
                    f"number. Received: {value!r}"
                )

    @classmethod
    def paper_defaults(cls):
        """The paper's value of every hyperparameter, as a dict."""
        return {
            name: kwargs.get("default", False if kind == "Boolean" else None)
            for name, (kind, kwargs) in cls.SEARCH_SPACE.items()
        }

    def hyperparameter(self, hp, name):
        """Declares (or reads) hyperparameter `name` on `hp`; returns it."""
        if name in self.fixed:
            return hp.Fixed(name, self.fixed[name])
        kind, kwargs = self.space[name]
        return getattr(hp, kind)(name, **kwargs)

    def declare(self, hp, names=None):
        """Declares `names` (default: all) and returns their values."""
        return {
            name: self.hyperparameter(hp, name)
            for name in (names or self.space)
        }
