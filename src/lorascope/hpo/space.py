"""Hyperparameter search spaces as data: one validated description per method.

A space maps ``TrainConfig`` setting names to one of three kinds of parameter:

- ``FloatRange``: a float sampled between ``low`` and ``high`` (optionally on a log scale);
- ``Choice``: one of a list of values (categorical);
- ``Fixed``: a constant, applied to every trial and never sampled.

In YAML a parameter is written as ``{low: 1e-5, high: 1e-3, log: true}``, ``{choices: [4, 8]}``
(or just ``[4, 8]``), ``{value: 8}`` (or just ``8``); ``null`` drops a default parameter so the
base training setting is used instead. Every value is checked against ``TrainConfig`` up front,
so a typo or an out-of-range bound fails before the first trial, not in the middle of a search.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union

from pydantic import ValidationError

from lorascope.config import describe_validation_error
from lorascope.errors import ConfigError

if TYPE_CHECKING:  # only the trial type; importing optuna costs a quarter second at start-up
    import optuna
from lorascope.train.config import TrainConfig

Scalar = Union[bool, int, float, str]

# The search decides these per study; searching over them would compare different experiments.
NOT_SEARCHABLE = {"task", "method", "model", "save_model", "data_dir"}


@dataclass(frozen=True)
class FloatRange:
    """A float between ``low`` and ``high``; ``log`` samples uniformly in log space."""

    low: float
    high: float
    log: bool = False

    def suggest(self, trial: optuna.Trial, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high, log=self.log)

    def candidates(self) -> list[Scalar]:
        return [self.low, self.high]

    def to_dict(self) -> dict[str, Any]:
        return {"low": self.low, "high": self.high, "log": self.log}


@dataclass(frozen=True)
class Choice:
    """One of ``choices``, sampled as a categorical parameter."""

    choices: tuple[Scalar, ...]

    def suggest(self, trial: optuna.Trial, name: str) -> Scalar:
        # optuna types the choice as any categorical value (None too); it is one of ``choices``.
        return typing.cast(Scalar, trial.suggest_categorical(name, list(self.choices)))

    def candidates(self) -> list[Scalar]:
        return list(self.choices)

    def to_dict(self) -> dict[str, Any]:
        return {"choices": list(self.choices)}


@dataclass(frozen=True)
class Fixed:
    """A constant setting for every trial of the search (e.g. LoRA rank 8)."""

    value: Any

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        return self.value

    def candidates(self) -> list[Any]:
        return [self.value]

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value}


Param = Union[FloatRange, Choice, Fixed]

# docs/protocol.md §2. LoRA's rank is fixed so that every trial adapts the same number of parameters.
DEFAULT_SPACES: dict[str, dict[str, Param]] = {
    "full": {
        "lr": FloatRange(1e-6, 5e-5, log=True),
        "batch_size": Choice((1, 2, 4)),
        "warmup_ratio": FloatRange(0.0, 0.2),
        "weight_decay": FloatRange(0.0, 0.01),
        "epochs": Choice((2, 3, 4)),
    },
    "lora": {
        "lr": FloatRange(5e-5, 5e-3, log=True),
        "batch_size": Choice((4, 8, 16)),
        "warmup_ratio": FloatRange(0.0, 0.3),
        "weight_decay": FloatRange(0.0, 0.1),
        "epochs": Choice((2, 3, 4)),
        "lora_alpha": Choice((8, 16, 32, 64)),
        "lora_dropout": FloatRange(0.0, 0.3),
        "lora_r": Fixed(8),
    },
}


@dataclass(frozen=True)
class SearchSpace:
    """The validated parameters of one method's search, in a fixed order."""

    method: str
    params: dict[str, Param]

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """Sample every parameter for ``trial`` (fixed ones included) as TrainConfig settings."""
        return {name: p.suggest(trial, name) for name, p in self.params.items()}

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {name: p.to_dict() for name, p in self.params.items()}


def resolve_space(method: str, overrides: dict[str, Any] | None = None) -> SearchSpace:
    """The protocol's space for ``method`` with ``overrides`` applied and everything validated.

    Args:
        method: ``lora`` or ``full``.
        overrides: parameter name -> YAML form (see the module docstring); ``None`` drops one.

    Returns:
        The resolved space.

    Raises:
        ConfigError: a name that is not a ``TrainConfig`` setting, a malformed parameter, or a
            value that ``TrainConfig`` would reject; the message names the parameter.
    """
    if method not in DEFAULT_SPACES:
        raise ConfigError(f"method: expected one of {sorted(DEFAULT_SPACES)} (got {method!r})")
    params = dict(DEFAULT_SPACES[method])
    for name, raw in (overrides or {}).items():
        if raw is None:
            params.pop(name, None)
        else:
            params[name] = parse_param(name, raw)
    for name, param in params.items():
        _check_against_train_config(method, name, param)
    return SearchSpace(method, params)


def parse_param(name: str, raw: Any) -> Param:
    """One parameter from its YAML form; errors name ``space.<name>``."""
    key = f"space.{name}"
    if isinstance(raw, list):
        raw = {"choices": raw}
    elif not isinstance(raw, dict):
        raw = {"value": raw}
    kinds = [k for k in ("low", "choices", "value") if k in raw]
    if len(kinds) != 1:
        raise ConfigError(f"{key}: expected {{low, high[, log]}}, {{choices: [...]}} or {{value: x}} (got {raw!r})")
    allowed = {"low": {"low", "high", "log"}, "choices": {"choices"}, "value": {"value"}}[kinds[0]]
    extra = sorted(set(raw) - allowed)
    if extra:
        raise ConfigError(f"{key}: unknown key '{extra[0]}' (allowed: {', '.join(sorted(allowed))})")
    if kinds[0] == "value":
        return Fixed(raw["value"])
    if kinds[0] == "choices":
        return _parse_choices(key, raw["choices"])
    return _parse_range(key, raw)


def _parse_choices(key: str, choices: Any) -> Choice:
    if not isinstance(choices, list) or not choices:
        raise ConfigError(f"{key}.choices: expected a non-empty list (got {choices!r})")
    for c in choices:
        # Optuna stores categorical values in its database; only scalars survive the round trip.
        if c is None or not isinstance(c, (bool, int, float, str)):
            raise ConfigError(f"{key}.choices: each choice must be a number, string or boolean (got {c!r})")
    return Choice(tuple(choices))


def _parse_range(key: str, raw: dict[str, Any]) -> FloatRange:
    if "high" not in raw:
        raise ConfigError(f"{key}: a range needs both low and high")
    bounds = {}
    for bound in ("low", "high"):
        value = raw[bound]
        if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}.{bound}: expected a number (got {raw[bound]!r})")
        bounds[bound] = float(value)
    log = raw.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{key}.log: expected true or false (got {log!r})")
    if bounds["low"] >= bounds["high"]:
        raise ConfigError(
            f"{key}: low must be below high (got {bounds['low']:g} >= {bounds['high']:g}); use {{value: x}} for a constant"
        )
    if log and bounds["low"] <= 0:
        raise ConfigError(f"{key}: a log-scale range needs low > 0 (got {bounds['low']:g})")
    return FloatRange(bounds["low"], bounds["high"], log)


def _check_against_train_config(method: str, name: str, param: Param) -> None:
    key = f"space.{name}"
    field = TrainConfig.model_fields.get(name)
    if field is None:
        raise ConfigError(f"{key}: unknown parameter '{name}' (not a training setting; see `lorascope train --help`)")
    if name in NOT_SEARCHABLE:
        raise ConfigError(f"{key}: '{name}' is set per search (--{name.replace('_', '-')}), not searched")
    if isinstance(param, FloatRange) and not _accepts_float(field.annotation):
        raise ConfigError(f"{key}: '{name}' is not a float setting; search it with {{choices: [...]}}")
    for value in param.candidates():
        try:
            TrainConfig.model_validate({"method": method, name: value})
        except ValidationError as err:
            raise ConfigError(describe_validation_error(err, f"{key} (value {value!r})")) from None


def _accepts_float(annotation: Any) -> bool:
    return annotation is float or float in typing.get_args(annotation)
