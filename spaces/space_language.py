"""The `space:` block of a run config: YAML parsed into a validated `SpaceConfig`.

Two forms, which combine:

    space:
      quantizer: uniform        # quantizer of every layer no quantizer knob covers
      baselines: [8, 6, 4]      # uniform bit widths evaluated first
      bits: [2, 4, 8, 32]       # shorthand: one bits knob per stage (or per `granularity`)
      granularity: stage        #   of every quantizable layer, named bits.<stage>
      side_bits: 16             # scales, biases and norm terms of compressed models as float16 (default 32)
      knobs:                    # general form, in define-by-run order
        - name: bits.front
          layers: ["stem*", "layer1.*"]      # globs over quantizable layer names, or groups: [...]
          bits: [4, 6, 8, 32]
        - name: quantizer.back
          groups: [layer3, layer4]
          granularity: stage                 # one knob per stage: quantizer.back.layer3, ...
          quantizer: [uniform, pow2, kmeans]
        - name: activation_bits
          choices: [8, 32]
        - name: student.width
          range: {low: 0.25, high: 1.0, step: 0.25}
        - name: distill.weight
          range: {low: 0.1, high: 10, log: true}
          when: {student.width: {lt: 1.0}}   # exists only when an earlier knob allows it

The shorthand `bits`/`granularity` builds the bits knobs only when `knobs` declares none; with
bits knobs, a layer that none of them covers stays FP32. Checks that need the model (patterns,
groups, taps, bits per quantizer) happen in `spaces.space.SearchSpace`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from spaces.knobs import (
    BITS,
    MEMBERSHIP_OPERATORS,
    ORDERING_OPERATORS,
    QUANTIZER,
    UNSET,
    VALUE_KNOBS,
    Condition,
    Domain,
    KnobConfig,
    Range,
    SpaceError,
    check_quantizer,
    check_value,
    check_weight_bits,
    describe_domain,
    domain_member,
)
from spaces.quant import QUANTIZERS
from spaces.quant.base import SIDE_BITS

DEFAULT_BITS = (2, 3, 4, 5, 6, 8, 32)
"""Bits of the shorthand knobs when `space.bits` is not given."""

GRANULARITIES = ("stage", "block", "layer")
_SPACE_KEYS = ("bits", "granularity", "quantizer", "baselines", "side_bits", "knobs")
_KNOB_KEYS = ("name", "layers", "groups", "granularity", "bits", "quantizer", "choices", "range", "when", "default")
_VALUE_KEYS = (BITS, QUANTIZER, "choices", "range")
_RANGE_KEYS = ("low", "high", "step", "log")
_OPERATORS = ("eq", "ne", *ORDERING_OPERATORS, *MEMBERSHIP_OPERATORS)


@dataclass(frozen=True)
class SpaceConfig:
    """The `space:` block of a run config.

    Attributes:
        bits: Shorthand bit widths (32 = FP32); None means `DEFAULT_BITS` when the shorthand applies.
        granularity: Shorthand granularity ("stage", "block" or "layer"); None means "stage".
        quantizer: Weight quantizer of every layer that no quantizer knob covers.
        baselines: Uniform bit widths evaluated first, as reference points on the front.
        side_bits: Storage precision of compressed models' side data (scales, zero points,
            codebooks, biases of quantized layers, norm terms): 32, or 16 for float16, which
            roughly halves what low-bit models store beside their codes.
        knobs: The general form's knobs, in define-by-run order.
    """

    bits: tuple[int, ...] | None = None
    granularity: str | None = None
    quantizer: str = "uniform"
    baselines: tuple[int, ...] = ()
    side_bits: int = 32
    knobs: tuple[KnobConfig, ...] = ()

    def __post_init__(self) -> None:
        if self.bits is not None:
            object.__setattr__(self, "bits", tuple(self.bits))
            if not self.bits:
                raise SpaceError("space.bits: empty choice list")
        object.__setattr__(self, "baselines", tuple(self.baselines))
        object.__setattr__(self, "knobs", tuple(self.knobs))
        for key, values in (("bits", self.bits or ()), ("baselines", self.baselines)):
            for bits in values:
                check_weight_bits(f"space.{key}", bits)
        if self.granularity is not None and self.granularity not in GRANULARITIES:
            raise SpaceError(f"space.granularity={self.granularity!r}: expected one of {list(GRANULARITIES)}")
        check_quantizer("space.quantizer", self.quantizer)
        if self.side_bits not in SIDE_BITS:
            raise SpaceError(f"space.side_bits={self.side_bits!r}: expected one of {list(SIDE_BITS)}")
        allowed = (*QUANTIZERS[self.quantizer].allowed_bits, 32)
        for key, values in (("bits", self.bits or ()), ("baselines", self.baselines)):
            bad = [bits for bits in values if bits not in allowed]
            if bad:
                raise SpaceError(
                    f"space.{key}: {bad[0]} bits not supported by quantizer {self.quantizer!r}; allowed: {list(allowed)}"
                )
        if any(knob.role == BITS for knob in self.knobs):
            given = [key for key in ("bits", "granularity") if getattr(self, key) is not None]
            if given:
                raise SpaceError(
                    f"space.{given[0]}: the shorthand builds bits knobs only when `knobs` has none; "
                    "remove it or the bits knobs"
                )
        else:
            shorthand = self.bits or DEFAULT_BITS
            missing = [bits for bits in self.baselines if bits not in shorthand]
            if missing:
                raise SpaceError(f"space.baselines: {missing[0]} bits is not among space.bits {list(shorthand)}")
        _check_knob_order(self.knobs)

    @property
    def all_knobs(self) -> tuple[KnobConfig, ...]:
        """The knobs in define-by-run order, the shorthand's bits knob first when it applies."""
        if any(knob.role == BITS for knob in self.knobs):
            return self.knobs
        shorthand = KnobConfig(
            name=BITS,
            role=BITS,
            domain=self.bits or DEFAULT_BITS,
            layers=("*",),
            granularity=self.granularity or "stage",
        )
        return (shorthand, *self.knobs)

    def to_dict(self) -> dict[str, Any]:
        """The YAML form (only what was set), which `parse_space_config` reads back to an equal config."""
        block: dict[str, Any] = {"quantizer": self.quantizer, "baselines": list(self.baselines)}
        if self.bits is not None:
            block["bits"] = list(self.bits)
        if self.granularity is not None:
            block["granularity"] = self.granularity
        if self.side_bits != SpaceConfig.side_bits:
            block["side_bits"] = self.side_bits
        if self.knobs:
            block["knobs"] = [knob.to_dict() for knob in self.knobs]
        return block


def parse_space_config(block: Any) -> SpaceConfig:
    """Validate a `space:` YAML block (None: every default) into a `SpaceConfig`."""
    if block is None:
        return SpaceConfig()
    if not isinstance(block, Mapping):
        raise SpaceError(f"space: must be a mapping, got {type(block).__name__}")
    _check_keys("space", block, _SPACE_KEYS)
    for key in ("bits", "baselines", "knobs"):
        if block.get(key) is not None and not isinstance(block[key], list):
            raise SpaceError(f"space.{key}={block[key]!r}: expected a list")
    for key in ("granularity", "quantizer"):
        if block.get(key) is not None and not isinstance(block[key], str):
            raise SpaceError(f"space.{key}={block[key]!r}: expected a string")
    knobs: list[KnobConfig] = []
    for index, entry in enumerate(block.get("knobs") or ()):
        knobs.append(_parse_knob(index, entry, {knob.name: knob for knob in knobs}))
    return SpaceConfig(
        bits=tuple(block["bits"]) if block.get("bits") is not None else None,
        granularity=block.get("granularity"),
        quantizer=block.get("quantizer") or SpaceConfig.quantizer,
        baselines=tuple(block.get("baselines") or ()),
        side_bits=block.get("side_bits", SpaceConfig.side_bits),
        knobs=tuple(knobs),
    )


def _parse_knob(index: int, entry: Any, earlier: Mapping[str, KnobConfig]) -> KnobConfig:
    if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str) or not entry["name"]:
        raise SpaceError(f"space.knobs[{index}]: each knob is a mapping with a `name`, got {entry!r}")
    name = entry["name"]
    label = f"space.knobs[{name}]"
    _check_keys(label, entry, _KNOB_KEYS)
    given = [key for key in _VALUE_KEYS if key in entry]
    if len(given) != 1:
        raise SpaceError(f"{label}: needs exactly one of {list(_VALUE_KEYS)}; got {given or 'none'}")
    role = _role(label, name, given[0])
    layers, groups, granularity = _targets(label, name, role, entry)
    domain = _domain(f"{label}.{given[0]}", role, given[0], entry[given[0]])
    default = UNSET
    if "default" in entry:
        found, default = domain_member(domain, _check_one(f"{label}.default", role, entry["default"]))
        if not found:
            raise SpaceError(f"{label}.default: {entry['default']!r} is not in the knob's domain {describe_domain(domain)}")
    return KnobConfig(
        name=name,
        role=role,
        domain=domain,
        layers=layers,
        groups=groups,
        granularity=granularity,
        when=_conditions(f"{label}.when", entry.get("when"), earlier),
        default=default,
    )


def _role(label: str, name: str, key: str) -> str:
    """"bits" or "quantizer" for layer knobs (by their value key), else the value knob's name."""
    prefix = name.split(".")[0]
    if key in (BITS, QUANTIZER):
        if prefix != key:
            raise SpaceError(f"{label}: a {key} knob is named `{key}` or `{key}.<label>`")
        return key
    if name in VALUE_KNOBS:
        return name
    if prefix in (BITS, QUANTIZER):
        raise SpaceError(f"{label}: a {prefix} knob lists its values under `{prefix}:` and addresses `layers:` or `groups:`")
    raise SpaceError(
        f"{label}: unknown knob; a knob sets bits (`bits:` with `layers:`/`groups:`), a quantizer "
        f"(`quantizer:` with `layers:`/`groups:`), or is one of {list(VALUE_KNOBS)}"
    )


def _targets(label: str, name: str, role: str, entry: Mapping[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...], str | None]:
    """The layer patterns, group names and granularity of a layer knob (value knobs have none)."""
    granularity = entry.get("granularity")
    if role not in (BITS, QUANTIZER):
        present = [key for key in ("layers", "groups", "granularity") if key in entry]
        if present:
            raise SpaceError(f"{label}.{present[0]}: only bits and quantizer knobs address layers")
        return (), (), None
    layers = _strings(f"{label}.layers", entry.get("layers"))
    groups = _strings(f"{label}.groups", entry.get("groups"))
    if not layers and not groups:
        raise SpaceError(f"{label}: a {role} knob addresses layers by `layers:` (glob patterns) or `groups:`")
    if granularity is not None and granularity not in GRANULARITIES:
        raise SpaceError(f"{label}.granularity={granularity!r}: expected one of {list(GRANULARITIES)}")
    if name == role and granularity is None:
        raise SpaceError(f"{label}: name it `{role}.<label>`, or give a granularity to get `{role}.<stage|block|layer>`")
    return layers, groups, granularity


def _strings(label: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise SpaceError(f"{label}={value!r}: expected a list of names")
    if not value:
        raise SpaceError(f"{label}: empty list")
    return tuple(value)


def _domain(label: str, role: str, key: str, raw: Any) -> Domain:
    if key == "range":
        return _range(label, role, raw)
    if not isinstance(raw, list):
        raise SpaceError(f"{label}={raw!r}: expected a list of choices")
    if not raw:
        raise SpaceError(f"{label}: empty choice list")
    choices: list[Any] = []
    for value in raw:
        value = _check_one(label, role, value)
        if domain_member(tuple(choices), value)[0]:
            raise SpaceError(f"{label}: duplicate choice {value!r}")
        choices.append(value)
    return tuple(choices)


def _check_one(label: str, role: str, value: Any) -> Any:
    if role == BITS:
        return check_weight_bits(label, value)
    if role == QUANTIZER:
        return check_quantizer(label, value)
    return check_value(label, role, value)


def _range(label: str, role: str, raw: Any) -> Range:
    if role not in VALUE_KNOBS or not VALUE_KNOBS[role].ranges:
        raise SpaceError(f"{label}: {role} takes a list of choices, not a range")
    if not isinstance(raw, Mapping) or "low" not in raw or "high" not in raw:
        raise SpaceError(f"{label}={raw!r}: expected a mapping with low and high (and optionally step, log)")
    _check_keys(label, raw, _RANGE_KEYS)
    integer = VALUE_KNOBS[role].value_type is int
    number = (int,) if integer else (int, float)
    for key in ("low", "high", "step"):
        value = raw.get(key)
        if key in raw and (not isinstance(value, number) or isinstance(value, bool)):
            raise SpaceError(f"{label}.{key}={value!r}: expected {'an int' if integer else 'a number'}")
    low, high, step, log = raw["low"], raw["high"], raw.get("step"), raw.get("log", False)
    if not isinstance(log, bool):
        raise SpaceError(f"{label}.log={log!r}: expected true or false")
    if low > high:
        raise SpaceError(f"{label}: low={low} > high={high}")
    if step is not None and step <= 0:
        raise SpaceError(f"{label}.step={step}: must be > 0")
    if step is not None and log:
        raise SpaceError(f"{label}: step and log cannot be combined")
    if log and low <= 0:
        raise SpaceError(f"{label}: a log range needs low > 0, got low={low}")
    if step is not None and abs((high - low) / step - round((high - low) / step)) > 1e-9:
        raise SpaceError(f"{label}: high - low = {high - low:g} is not a multiple of step={step}")
    domain = Range(low if integer else float(low), high if integer else float(high), step, log, integer)
    for value in domain.values() if integer else (domain.low, domain.high):
        check_value(label, role, value)
    return domain


def _conditions(label: str, raw: Any, earlier: Mapping[str, KnobConfig]) -> tuple[Condition, ...]:
    """`when:` as conditions; operands are spelled as the referenced knob's values (`[a, b]` taps -> `a+b`)."""
    if raw is None:
        return ()
    if not isinstance(raw, Mapping) or not raw:
        raise SpaceError(f"{label}: expected a mapping of earlier knob -> condition")
    conditions = []
    for knob, spec in raw.items():
        if isinstance(spec, Mapping):
            pairs = list(spec.items())
        else:
            pairs = [("in" if isinstance(spec, list) else "eq", spec)]
        for operator_name, operand in pairs:
            if operator_name not in _OPERATORS:
                raise SpaceError(f"{label}.{knob}: unknown operator {operator_name!r}; operators: {list(_OPERATORS)}")
            conditions.append(Condition(knob, operator_name, _operand(f"{label}.{knob}", earlier.get(knob), operator_name, operand)))
    return tuple(conditions)


def _operand(label: str, knob: KnobConfig | None, operator_name: str, operand: Any) -> Any:
    """Check an operand against the referenced knob's values (an unknown knob is reported by SpaceConfig)."""
    if operator_name in ORDERING_OPERATORS:
        if not isinstance(operand, (int, float)) or isinstance(operand, bool):
            raise SpaceError(f"{label}: {operator_name} needs a number, got {operand!r}")
        return operand
    if operator_name in MEMBERSHIP_OPERATORS:
        if not isinstance(operand, list) or not operand:
            raise SpaceError(f"{label}: {operator_name} needs a non-empty list, got {operand!r}")
        return tuple(_value_of(label, knob, value) for value in operand)
    return _value_of(label, knob, operand)


def _value_of(label: str, knob: KnobConfig | None, value: Any) -> Any:
    if knob is None:
        return value
    found, spelled = domain_member(knob.domain, _check_one(label, knob.role, value))
    if not found:
        raise SpaceError(f"{label}: {value!r} is never a value of {knob.name} {describe_domain(knob.domain)}")
    return spelled


def _check_knob_order(knobs: tuple[KnobConfig, ...]) -> None:
    """Unique names; conditions name earlier knobs that are not expanded per stage/block/layer."""
    seen: dict[str, KnobConfig] = {}
    for knob in knobs:
        label = f"space.knobs[{knob.name}]"
        if knob.name in seen:
            raise SpaceError(f"{label}: duplicate knob name")
        for condition in knob.when:
            target = seen.get(condition.knob)
            if target is None:
                raise SpaceError(
                    f"{label}.when: unknown knob {condition.knob!r}; a condition names a knob declared "
                    f"before it: {list(seen)}"
                )
            if target.granularity:
                raise SpaceError(f"{label}.when: {condition.knob!r} is expanded per {target.granularity}; name a knob without a granularity")
            if condition.operator in ORDERING_OPERATORS and not _numeric(target.domain):
                raise SpaceError(f"{label}.when.{condition.knob}: {condition.operator} needs a numeric knob")
        seen[knob.name] = knob


def _numeric(domain: Domain) -> bool:
    return isinstance(domain, Range) or all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in domain)


def _check_keys(label: str, block: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(block) - set(allowed), key=str)
    if unknown:
        raise SpaceError(f"{label}: unknown key {unknown[0]!r}; allowed keys: {list(allowed)}")
