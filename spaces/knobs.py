"""The vocabulary of the search-space language: knobs, their value domains and their conditions.

A knob is one searched setting. Layer knobs set the weight bits (`bits.*`) or the quantizer kind
(`quantizer.*`) of the layers they address; value knobs set one field of the `CompressionPlan`
(`activation_bits`, `student.*`, `distill.*`, `share`). A knob's domain is either a tuple of
choices (an Optuna categorical) or a `Range` (an Optuna int or float), and it may exist only
`when` earlier knobs have given values (a define-by-run condition).

Everything here is checked without a model; `spaces.space` checks the layers, taps and the bits
each quantizer allows once the model is known.
"""

from __future__ import annotations

import enum
import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Union

from spaces.description import FLOAT_BITS
from spaces.models import MODEL_FAMILIES
from spaces.quant import QUANTIZERS, SUPPORTED_WEIGHT_BITS
from spaces.quant.activation import ActivationQuantizer


class SpaceError(ValueError):
    """A search space that cannot be built; the message names the knob, key and value."""


class Unset(enum.Enum):
    """Marks a knob without an explicit `default:` (None is a real value: "no student")."""

    UNSET = "unset"


UNSET = Unset.UNSET

BITS, QUANTIZER = "bits", "quantizer"
"""Roles of the layer knobs; a value knob's role is its own name."""

TAP_SEPARATOR = "+"
"""Joins the tap names of one `distill.taps` choice: Optuna choices must be scalars."""

DISTILLATION_MODES = ("sum", "concat")
ACTIVATION_BITS = (*ActivationQuantizer.allowed_bits, FLOAT_BITS)


@dataclass(frozen=True)
class Range:
    """A numeric domain from `low` to `high` (inclusive), optionally stepped or log-scaled.

    Stepped float values are rounded to 12 decimals, so `0.25 + 2 * 0.25` compares equal to `0.75`.
    """

    low: float
    high: float
    step: float | None = None
    log: bool = False
    integer: bool = False

    @property
    def count(self) -> float:
        """Number of distinct values (`math.inf` for a continuous float range)."""
        if self.low == self.high:
            return 1
        if self.integer:
            return (int(self.high) - int(self.low)) // int(self.step or 1) + 1
        if self.step is None:
            return math.inf
        return round((self.high - self.low) / self.step) + 1

    def values(self) -> tuple[float, ...]:
        """Every value of a discrete range, in increasing order."""
        if math.isinf(self.count):
            raise SpaceError(f"a continuous range {self.low}..{self.high} has no finite list of values")
        step = self.step or 1
        return tuple(self.normalize(self.low + index * step) for index in range(int(self.count)))

    def normalize(self, value: float) -> float:
        if self.integer:
            return int(round(value))
        return round(float(value), 12) if self.step else float(value)

    def contains(self, value: Any) -> bool:
        if not _is_number(value) or not self.low - 1e-9 <= value <= self.high + 1e-9:
            return False
        if self.integer and value != int(value):
            return False
        step = self.step if self.step is not None else (1 if self.integer else None)
        return step is None or abs((value - self.low) / step - round((value - self.low) / step)) < 1e-6

    def suggest(self, trial: Any, name: str) -> float:
        if self.integer:
            return trial.suggest_int(name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return self.normalize(trial.suggest_float(name, self.low, self.high, step=self.step, log=self.log))

    def to_dict(self) -> dict[str, Any]:
        return {"low": self.low, "high": self.high, **({"step": self.step} if self.step else {}), **({"log": True} if self.log else {})}


Domain = Union[tuple[Any, ...], Range]
"""The values a parameter may take: a tuple of choices, or a numeric range."""


def domain_count(domain: Domain) -> float:
    """Number of distinct values of a domain (`math.inf` when continuous)."""
    return domain.count if isinstance(domain, Range) else len(domain)


def domain_values(domain: Domain) -> tuple[Any, ...]:
    return domain.values() if isinstance(domain, Range) else domain


def domain_default(domain: Domain) -> Any:
    """The first choice, or the low end of a range."""
    return domain.normalize(domain.low) if isinstance(domain, Range) else domain[0]


def domain_member(domain: Domain, value: Any) -> tuple[bool, Any]:
    """Whether `value` is in the domain, and the domain's own spelling of it (`4.0` -> choice `4`)."""
    if isinstance(domain, Range):
        return (True, domain.normalize(value)) if domain.contains(value) else (False, value)
    for choice in domain:
        if choice == value and isinstance(choice, bool) == isinstance(value, bool):
            return True, choice
    return False, value


def suggest_value(trial: Any, name: str, domain: Domain) -> Any:
    """Ask an Optuna trial for parameter `name` over `domain`."""
    if isinstance(domain, Range):
        return domain.suggest(trial, name)
    return trial.suggest_categorical(name, list(domain))


def describe_domain(domain: Domain) -> str:
    """`[2, 4, 8]`, or `0.25..1.0 step 0.25`, `0.1..10 log` for ranges."""
    if isinstance(domain, Range):
        suffix = f" step {domain.step:g}" if domain.step else (" log" if domain.log else "")
        return f"{domain.low:g}..{domain.high:g}{suffix}"
    return "[" + ", ".join("null" if choice is None else str(choice) for choice in domain) + "]"


_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "lt": operator.lt,
    "le": operator.le,
    "gt": operator.gt,
    "ge": operator.ge,
    "in": lambda value, operand: value in operand,
    "not_in": lambda value, operand: value not in operand,
}
_SYMBOLS = {"eq": "=", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">=", "in": "in", "not_in": "not in"}
ORDERING_OPERATORS = ("lt", "le", "gt", "ge")
MEMBERSHIP_OPERATORS = ("in", "not_in")


@dataclass(frozen=True)
class Condition:
    """`knob <operator> operand`; a knob that is itself inactive satisfies no condition."""

    knob: str
    operator: str
    operand: Any

    def holds(self, values: Mapping[str, Any]) -> bool:
        if self.knob not in values:
            return False
        value = values[self.knob]
        if self.operator in ORDERING_OPERATORS and not _is_number(value):
            return False
        return _OPERATORS[self.operator](value, self.operand)

    def describe(self) -> str:
        """`student.width < 1.0`, `quantizer.back in ['uniform', 'pow2']`."""
        operand = list(self.operand) if self.operator in MEMBERSHIP_OPERATORS else self.operand
        return f"{self.knob} {_SYMBOLS[self.operator]} {'null' if operand is None else operand}"


@dataclass(frozen=True)
class KnobConfig:
    """One entry of `space.knobs`, validated without a model.

    Attributes:
        name: Knob name (`bits.front`, `student.width`...); a knob with a granularity is
            expanded into `<name>.<stage|block|layer>` knobs once the model is known.
        role: "bits", "quantizer", or the plan field a value knob sets (its name).
        domain: Choices (bit widths, quantizer names, values) or a `Range`.
        layers: Glob patterns over quantizable layer names (layer knobs).
        groups: Names of the model's layer groups (layer knobs).
        granularity: None for one knob over all addressed layers, else "stage", "block" or "layer".
        when: Conditions on earlier knobs; the knob exists only when all hold.
        default: The value baselines and filled-in candidates use (UNSET: first choice / low end).
    """

    name: str
    role: str
    domain: Domain
    layers: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    granularity: str | None = None
    when: tuple[Condition, ...] = ()
    default: Any = UNSET

    @property
    def is_layer_knob(self) -> bool:
        return self.role in (BITS, QUANTIZER)

    @property
    def default_value(self) -> Any:
        return domain_default(self.domain) if self.default is UNSET else self.default

    def to_dict(self) -> dict[str, Any]:
        """The YAML form this knob is parsed from (the resolved config saved with a run)."""
        entry: dict[str, Any] = {"name": self.name}
        entry.update({key: list(value) for key, value in (("layers", self.layers), ("groups", self.groups)) if value})
        if self.granularity:
            entry["granularity"] = self.granularity
        if isinstance(self.domain, Range):
            entry["range"] = self.domain.to_dict()
        else:
            entry[self.role if self.is_layer_knob else "choices"] = list(self.domain)
        if self.when:
            conditions: dict[str, dict[str, Any]] = {}
            for condition in self.when:
                operand = list(condition.operand) if condition.operator in MEMBERSHIP_OPERATORS else condition.operand
                conditions.setdefault(condition.knob, {})[condition.operator] = operand
            entry["when"] = conditions
        if self.default is not UNSET:
            entry["default"] = self.default
        return entry


@dataclass(frozen=True)
class ValueKnobKind:
    """What a value knob's values must be: its Python type and the check of one value."""

    value_type: type
    check: Callable[[Any], str | None]
    """Returns why a value is not allowed, or None."""
    ranges: bool = True


def _positive(value: Any) -> str | None:
    return None if value > 0 else "must be > 0"


def _non_negative(value: Any) -> str | None:
    return None if value >= 0 else "must be >= 0"


def _activation_bits(value: Any) -> str | None:
    return None if value in ACTIVATION_BITS else f"activation bits must be one of {list(ACTIVATION_BITS)}"


def _family(value: Any) -> str | None:
    if value is None or value in MODEL_FAMILIES:
        return None
    return f"unknown family; families: {sorted(MODEL_FAMILIES)} (null: compress the teacher itself)"


def _mode(value: Any) -> str | None:
    return None if value in DISTILLATION_MODES else f"expected one of {list(DISTILLATION_MODES)}"


def _taps(value: Any) -> str | None:
    taps = value.split(TAP_SEPARATOR)
    if not all(taps) or len(set(taps)) != len(taps):
        return "a tap set is a non-empty list of distinct tap names"
    return None


VALUE_KNOBS: dict[str, ValueKnobKind] = {
    "activation_bits": ValueKnobKind(int, _activation_bits),
    "student.family": ValueKnobKind(str, _family, ranges=False),
    "student.width": ValueKnobKind(float, _positive),
    "student.depth": ValueKnobKind(float, _positive),
    "distill.taps": ValueKnobKind(str, _taps, ranges=False),
    "distill.weight": ValueKnobKind(float, _non_negative),
    "distill.mode": ValueKnobKind(str, _mode, ranges=False),
    "share": ValueKnobKind(bool, lambda value: None, ranges=False),
}
"""Every value knob, by name: the `CompressionPlan` field it compiles into."""


def check_weight_bits(label: str, bits: Any) -> int:
    """A bit width of a bits knob: an int of `SUPPORTED_WEIGHT_BITS` (32 = FP32)."""
    if not isinstance(bits, int) or isinstance(bits, bool) or bits not in SUPPORTED_WEIGHT_BITS:
        raise SpaceError(f"{label}: impossible bit width {bits!r}; allowed: {list(SUPPORTED_WEIGHT_BITS)}")
    return bits


def check_quantizer(label: str, name: Any) -> str:
    if name not in QUANTIZERS:
        raise SpaceError(f"{label}={name!r}: unknown quantizer; available: {sorted(QUANTIZERS)}")
    return name


def check_value(label: str, role: str, value: Any) -> Any:
    """One value of a value knob, converted to the knob's type (YAML `1` is a float width 1.0)."""
    kind = VALUE_KNOBS[role]
    if role == "student.family" and value is None:
        return None
    if role == "distill.taps" and isinstance(value, (list, tuple)):
        value = TAP_SEPARATOR.join(str(tap) for tap in value)
    if kind.value_type is float and _is_number(value):
        value = float(value)
    if not isinstance(value, kind.value_type) or (kind.value_type is int and isinstance(value, bool)):
        raise SpaceError(f"{label}: {value!r}: expected {kind.value_type.__name__}")
    problem = kind.check(value)
    if problem:
        raise SpaceError(f"{label}: {value!r}: {problem}")
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
