"""The `space:` block compiled against a model: define-by-run sampling, and Candidate -> CompressionPlan.

A Candidate is the flat JSON dict the sampler proposed (`{"bits.layer1": 4, ...}`); everything
downstream is a pure function of it, so it is all a trial needs to be re-run or exported.

`suggest(trial)` walks the knobs in declaration order and asks the Optuna trial only for those
whose `when:` conditions hold, so conditional knobs are plain define-by-run. `plan(candidate)`
replays the same walk reading the candidate instead, so a candidate is valid exactly when the
sampler could have proposed it.

Bits under a searched quantizer. Quantizers allow different widths (binary 1 bit, uniform 2-8,
k-means 1-8). When the quantizers of a bits knob's layers come from quantizer knobs and the widths
they allow differ, the bits are suggested after the quantizer, under one parameter per set of
quantizers in use, named `<knob>@<quantizer>[+<quantizer>...]` (e.g. `bits.back@binary` with
choices [1], `bits.back@uniform` with [2, 4, 8]). Optuna needs a fixed domain per parameter name,
so this is the sound way to make a domain depend on an earlier choice; it also keeps each
quantizer's bit statistics apart in the sampler. Such a bits knob must be declared after the
quantizer knob it depends on; one whose allowed widths do not depend on the quantizer keeps its
plain name and may come anywhere.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import torch
from torch import nn

from spaces.description import FLOAT_BITS
from spaces.knobs import (
    BITS,
    QUANTIZER,
    TAP_SEPARATOR,
    UNSET,
    Condition,
    Domain,
    KnobConfig,
    SpaceError,
    describe_domain,
    domain_count,
    domain_default,
    domain_member,
    domain_values,
    suggest_value,
)
from spaces.compress import ModelSpec
from spaces.layer_patterns import addressed_layers, split_by_granularity
from spaces.plan import CompressionPlan, DistillationPlan, LayerQuantization, StudentPlan
from spaces.quant import QUANTIZERS
from spaces.space_language import GRANULARITIES, SpaceConfig, parse_space_config

Candidate = dict[str, Any]
"""Exactly what the sampler proposed: parameter name -> JSON value."""

DEFAULT_TAPS = ("embedding",)
"""Teacher taps distilled when distillation knobs exist but `distill.taps` is not searched."""

_STUDENT, _DISTILL = "student.", "distill."


@dataclass(frozen=True)
class Knob:
    """A knob compiled against the model: layer knobs expanded per granularity, bits per quantizer.

    Attributes:
        name: Its name in candidates (bits knobs that depend on a quantizer get `@` suffixes).
        source: The name of the declared knob it comes from (`bits` for `bits.layer1`).
        role: "bits", "quantizer", or the plan field it sets.
        domain: Its declared values.
        when: Conditions on earlier knobs.
        default: The value of baselines and filled-in candidates.
        layers: The layers it sets (layer knobs).
        allowed_bits: Bits knobs only: the allowed widths per set of quantizers its layers may
            use; one entry keyed None when the widths do not depend on a quantizer knob.
    """

    name: str
    source: str
    role: str
    domain: Domain
    when: tuple[Condition, ...] = ()
    default: Any = None
    layers: tuple[str, ...] = ()
    allowed_bits: Mapping[frozenset[str] | None, tuple[int, ...]] = field(default_factory=dict)

    @property
    def depends_on_quantizer(self) -> bool:
        return None not in self.allowed_bits and bool(self.allowed_bits)


@dataclass(frozen=True)
class _Walk:
    """One pass over the knobs: values of the active knobs, and the candidate they form."""

    values: dict[str, Any]
    candidate: Candidate


Ask = Callable[[Knob, str, Domain], Any]
"""Gives the value of one parameter: (knob, parameter name, its domain) -> value."""


class SearchSpace:
    """The knobs of a run over one model, with define-by-run sampling and plan compilation.

    Args:
        config: The validated `space:` block.
        layer_groups: Quantizable layer names grouped by stage, from the model family.
        family: The teacher's family: the default student family and the name in messages.
        taps: The teacher's distillation taps (`forward_with_taps` names).

    Raises:
        SpaceError: Patterns or groups matching nothing, layers set by two knobs, bits a
            quantizer does not allow, unknown taps, or baselines the knobs cannot take.
    """

    def __init__(
        self,
        config: SpaceConfig,
        layer_groups: Mapping[str, Sequence[str]],
        family: str | None = None,
        taps: Sequence[str] = (),
    ) -> None:
        self.config = config
        self.layer_groups = {group: tuple(layers) for group, layers in layer_groups.items()}
        self.family = family
        self.taps = tuple(taps)
        self.layers = tuple(layer for layers in self.layer_groups.values() for layer in layers)
        expanded = [knob for declared in config.all_knobs for knob in self._expand(declared)]
        _check_unique_names(expanded)
        self._bits_knob_of = _owners(expanded, BITS)
        self._quantizer_knob_of = _owners(expanded, QUANTIZER)
        self.compiled_knobs = tuple(self._with_allowed_bits(knob, expanded) for knob in expanded)
        self.groups = {knob.name: list(knob.layers) for knob in self.compiled_knobs if knob.role == BITS}
        """Bits-knob name -> the layers it sets."""
        self._check_quantizer_knobs()
        self._check_value_knobs()
        for bits in config.baselines:
            try:
                self.uniform_candidate(bits)
            except SpaceError as error:
                raise SpaceError(f"space.baselines: uniform {bits} bits: {error}") from None

    @classmethod
    def for_model(cls, config: SpaceConfig, spec: ModelSpec, model: nn.Module | None = None) -> SearchSpace:
        """The space over the model `spec` builds (or `model`, built from it): its layer groups and taps."""
        model = spec.build() if model is None else model
        return cls(config, model.layer_groups(), spec.family, model_taps(model, spec.example_inputs(model)))

    @property
    def knobs(self) -> dict[str, Domain]:
        """Every parameter the sampler may be asked for -> its choices (a tuple) or a `Range`."""
        parameters: dict[str, Domain] = {}
        for knob in self.compiled_knobs:
            if knob.depends_on_quantizer:
                parameters.update({_variant(knob.name, kinds): bits for kinds, bits in knob.allowed_bits.items()})
            else:
                parameters[knob.name] = knob.allowed_bits.get(None, knob.domain)
        return parameters

    @property
    def fp32_layers(self) -> tuple[str, ...]:
        """Quantizable layers no bits knob covers: they stay FP32 in every candidate."""
        return tuple(layer for layer in self.layers if layer not in self._bits_knob_of)

    @cached_property
    def size(self) -> float:
        """Number of distinct candidates (`math.inf` when a continuous range is searched).

        Conditions make the count branch: knobs are split into groups that share no condition or
        quantizer dependency, and each group is counted over the values its later knobs look at.
        """
        return math.prod(self._count(component) for component in self._components())

    def bits_knob_of(self, layer: str) -> str | None:
        return self._bits_knob_of.get(layer)

    def quantizer_knob_of(self, layer: str) -> str | None:
        return self._quantizer_knob_of.get(layer)

    def suggest(self, trial: Any) -> None:
        """Define-by-run function for Optuna / OptunaSearch: ask for every active knob."""
        self._walk(lambda knob, name, domain: suggest_value(trial, name, domain))

    def uniform_candidate(self, bits: int | Mapping[str, int], quantizer: str | None = None) -> Candidate:
        """A candidate with the given weight bits and every other knob at its default.

        Args:
            bits: One width for every bits knob (a uniform baseline), or one per bits knob (`groups` names).
            quantizer: The value of every quantizer knob (default: each knob's default, which is
                `space.quantizer` when it is among the knob's choices).
        """
        if isinstance(bits, Mapping):
            unknown = sorted(set(bits) - set(self.groups))
            if unknown:
                raise SpaceError(f"unknown bits knobs {unknown}; bits knobs: {list(self.groups)}")

        def ask(knob: Knob, name: str, domain: Domain) -> Any:
            if knob.role == BITS:
                if isinstance(bits, Mapping) and knob.name not in bits:
                    raise SpaceError(f"no bits given for {knob.name}")
                value = bits[knob.name] if isinstance(bits, Mapping) else bits
            else:
                value = quantizer if knob.role == QUANTIZER and quantizer is not None else knob.default
            found, value = domain_member(domain, value)
            if not found:
                raise SpaceError(f"{name}: {value!r} is not among its choices {describe_domain(domain)}")
            return value

        return self._walk(ask).candidate

    def default_activation_bits(self) -> int:
        """The activation bits of a candidate with every knob at its default: those the ILP,
        which chooses weights only, prices every candidate at."""
        walk = self._walk(lambda knob, name, domain: domain_member(domain, knob.default)[1])
        return walk.values.get("activation_bits", FLOAT_BITS)

    def candidate_from_row(self, row: Mapping[str, Any]) -> Candidate:
        """The candidate of a trials row (its parameters; metrics and bookkeeping dropped)."""
        parameters = self.knobs
        return {key: value for key, value in row.items() if key in parameters and value != ""}

    def layer_bits(self, candidate: Mapping[str, Any]) -> dict[str, int]:
        """Bits of every layer a bits knob covers (32 = FP32); a mismatched candidate is a clear error."""
        values = self._read(candidate).values
        return {
            layer: values[self._bits_knob_of[layer]]
            for layer in self.layers
            if self._bits_knob_of.get(layer) in values
        }

    def plan(self, candidate: Mapping[str, Any]) -> CompressionPlan:
        """What the candidate builds: quantization per layer (FP32 layers left out), activations,
        student, distillation and sharing."""
        layer_bits = self.layer_bits(candidate)
        values = self._read(candidate).values
        return CompressionPlan(
            layers={
                layer: LayerQuantization(bits, self._quantizer(layer, values))
                for layer, bits in layer_bits.items()
                if bits != FLOAT_BITS
            },
            activation_bits=values.get("activation_bits", FLOAT_BITS),
            student=self._student(values),
            distillation=self._distillation(values),
            share=values.get("share", False),
        )

    def _walk(self, ask: Ask) -> _Walk:
        values: dict[str, Any] = {}
        candidate: Candidate = {}
        for knob in self.compiled_knobs:
            if all(condition.holds(values) for condition in knob.when):
                name, domain = self._parameter(knob, values)
                values[knob.name] = candidate[name] = ask(knob, name, domain)
        return _Walk(values, candidate)

    def _read(self, candidate: Mapping[str, Any]) -> _Walk:
        """Replay the walk on a candidate; missing, unknown and out-of-domain values are errors."""
        missing: list[str] = []

        def ask(knob: Knob, name: str, domain: Domain) -> Any:
            if name not in candidate:
                missing.append(name)
                return knob.default if domain_member(domain, knob.default)[0] else domain_default(domain)
            found, value = domain_member(domain, candidate[name])
            if not found:
                raise SpaceError(f"candidate {name}={candidate[name]!r}: not among the choices {describe_domain(domain)}")
            return value

        walk = self._walk(ask)
        unknown = sorted(set(candidate) - set(walk.candidate))
        if missing or unknown:
            raise SpaceError(f"candidate does not match the space: missing {sorted(missing)}, unknown {unknown}")
        return walk

    def _parameter(self, knob: Knob, values: Mapping[str, Any]) -> tuple[str, Domain]:
        """The parameter name and domain of a knob, given the values of the knobs before it."""
        if knob.role != BITS:
            return knob.name, knob.domain
        if not knob.depends_on_quantizer:
            return knob.name, knob.allowed_bits[None]
        kinds = frozenset(self._quantizer(layer, values) for layer in knob.layers)
        return _variant(knob.name, kinds), knob.allowed_bits[kinds]

    def _quantizer(self, layer: str, values: Mapping[str, Any]) -> str:
        return values.get(self._quantizer_knob_of.get(layer, ""), self.config.quantizer)

    def _student(self, values: Mapping[str, Any]) -> StudentPlan | None:
        if not any(name.startswith(_STUDENT) for name in values):
            return None
        family = values.get("student.family", self.family)
        if family is None:
            return None
        return StudentPlan(family, values.get("student.width", 1.0), values.get("student.depth", 1.0))

    def _distillation(self, values: Mapping[str, Any]) -> DistillationPlan | None:
        if not any(name.startswith(_DISTILL) for name in values):
            return None
        taps = tuple(values["distill.taps"].split(TAP_SEPARATOR)) if "distill.taps" in values else DEFAULT_TAPS
        return DistillationPlan(taps, values.get("distill.weight", 1.0), values.get("distill.mode", "sum"))

    def _expand(self, declared: KnobConfig) -> list[Knob]:
        """One compiled knob per stage/block/layer of a layer knob's granularity; value knobs as they are."""
        default = declared.default_value
        if declared.role == QUANTIZER and declared.default is UNSET and self.config.quantizer in declared.domain:
            default = self.config.quantizer
        if not declared.is_layer_knob:
            return [Knob(declared.name, declared.name, declared.role, declared.domain, declared.when, default)]
        layers = addressed_layers(declared, self.layer_groups, self.family or "the model")
        units = split_by_granularity(layers, self.layer_groups, declared.granularity)
        return [
            Knob(
                f"{declared.name}.{unit}" if unit else declared.name,
                declared.name,
                declared.role,
                declared.domain,
                declared.when,
                default,
                unit_layers,
            )
            for unit, unit_layers in units.items()
        ]

    def _with_allowed_bits(self, knob: Knob, knobs: Sequence[Knob]) -> Knob:
        """A bits knob with the widths each reachable set of quantizers allows (checked to be usable)."""
        if knob.role != BITS:
            return knob
        label = f"space.knobs[{knob.source}].bits"
        by_name = {other.name: other for other in knobs}
        sources = {self._quantizer_knob_of[layer] for layer in knob.layers if layer in self._quantizer_knob_of}
        reachable = self._reachable_quantizers(knob, [by_name[source] for source in sorted(sources)])
        quantized = [bits for bits in knob.domain if bits != FLOAT_BITS]
        allowed = {kinds: _allowed(knob.domain, kinds) for kinds in reachable}
        for kinds, widths in allowed.items():
            if quantized and not [bits for bits in widths if bits != FLOAT_BITS]:
                raise SpaceError(
                    f"{label}: quantizer {_kinds_text(kinds)} allows none of {quantized}; "
                    f"{_allowed_text(kinds)}{_source_text(sources)}"
                )
        for bits in quantized:
            if not any(bits in widths for widths in allowed.values()):
                kinds = frozenset().union(*reachable)
                raise SpaceError(
                    f"{label}: {bits} bits not supported by quantizer {_kinds_text(kinds)}; {_allowed_text(kinds)}"
                )
        if len(set(allowed.values())) == 1:
            return _replace_allowed(knob, {None: next(iter(allowed.values()))})
        later = [source for source in sorted(sources) if knobs.index(by_name[source]) > knobs.index(knob)]
        if later:
            raise SpaceError(
                f"space.knobs[{knob.source}]: its bit widths depend on the quantizer chosen by {later[0]}; "
                f"declare {by_name[later[0]].source} before it"
            )
        return _replace_allowed(knob, dict(sorted(allowed.items(), key=lambda item: sorted(item[0]))))

    def _reachable_quantizers(self, knob: Knob, sources: Sequence[Knob]) -> set[frozenset[str]]:
        """The sets of quantizers a bits knob's layers may use together: one choice of each quantizer
        knob over them (or the default, when that knob is conditional or some layer has none)."""
        uses_default = any(layer not in self._quantizer_knob_of for layer in knob.layers)
        reachable = {frozenset([self.config.quantizer])} if uses_default else {frozenset()}
        for source in sources:
            options = set(source.domain) | ({self.config.quantizer} if source.when else set())
            reachable = {kinds | {kind} for kinds in reachable for kind in options}
        return reachable

    def _check_quantizer_knobs(self) -> None:
        for knob in self.compiled_knobs:
            if knob.role == QUANTIZER and not any(layer in self._bits_knob_of for layer in knob.layers):
                raise SpaceError(
                    f"space.knobs[{knob.source}]: no bits knob covers its layers {list(knob.layers)}, "
                    "so they stay FP32 and the quantizer has no effect"
                )

    def _check_value_knobs(self) -> None:
        names = {knob.name: knob for knob in self.compiled_knobs}
        model = self.family or "the model"
        if any(name.startswith(_STUDENT) for name in names) and "student.family" not in names and not self.family:
            raise SpaceError("space.knobs[student.*]: the teacher's family is unknown; add a student.family knob")
        if not any(name.startswith(_DISTILL) for name in names):
            return
        if not self.taps:
            raise SpaceError(f"space.knobs[distill.*]: {model} exposes no distillation taps (forward_with_taps)")
        taps_knob = names.get("distill.taps")
        tap_sets = [choice.split(TAP_SEPARATOR) for choice in taps_knob.domain] if taps_knob else [DEFAULT_TAPS]
        label = "space.knobs[distill.taps].choices" if taps_knob else "space.knobs[distill.*] (default taps)"
        for taps in tap_sets:
            unknown = [tap for tap in taps if tap not in self.taps]
            if unknown:
                raise SpaceError(f"{label}: unknown tap {unknown[0]!r} of {model}; taps: {list(self.taps)}")

    def _components(self) -> list[list[Knob]]:
        """Knobs split into groups with no condition or quantizer dependency between groups."""
        parent = {knob.name: knob.name for knob in self.compiled_knobs}

        def root(name: str) -> str:
            while parent[name] != name:
                name = parent[name]
            return name

        for knob in self.compiled_knobs:
            for other in self._dependencies(knob):
                parent[root(other)] = root(knob.name)
        components: dict[str, list[Knob]] = defaultdict(list)
        for knob in self.compiled_knobs:
            components[root(knob.name)].append(knob)
        return list(components.values())

    def _dependencies(self, knob: Knob) -> set[str]:
        """Names of the earlier knobs whose values decide whether and over what `knob` is asked."""
        names = {condition.knob for condition in knob.when}
        if knob.depends_on_quantizer:
            names |= {self._quantizer_knob_of[layer] for layer in knob.layers if layer in self._quantizer_knob_of}
        return names

    def _count(self, knobs: Sequence[Knob]) -> float:
        """Candidates of one component: a walk over the states of the values later knobs look at."""
        needed_later = [set().union(*(self._dependencies(knob) for knob in knobs[index + 1:])) for index in range(len(knobs))]
        states: dict[tuple[tuple[str, Any], ...], float] = {(): 1}
        for knob, keep in zip(knobs, needed_later):
            following: dict[tuple[tuple[str, Any], ...], float] = defaultdict(int)
            for state, count in states.items():
                values = dict(state)
                kept = tuple(pair for pair in state if pair[0] in keep)
                if not all(condition.holds(values) for condition in knob.when):
                    following[kept] += count
                    continue
                domain = self._parameter(knob, values)[1]
                if knob.name not in keep:
                    following[kept] += count * domain_count(domain)
                    continue
                if math.isinf(domain_count(domain)):
                    return math.inf
                for value in domain_values(domain):
                    following[tuple(sorted((*kept, (knob.name, value)), key=lambda pair: pair[0]))] += count
            states = following
        return sum(states.values())


def model_taps(model: nn.Module, example: torch.Tensor | tuple[torch.Tensor, ...]) -> tuple[str, ...]:
    """Names of a model's distillation taps, read from one `forward_with_taps` pass (none without it).

    Read from the model rather than declared, since they follow its depth (`frame1..frameN`).
    """
    if not hasattr(model, "forward_with_taps"):
        return ()
    training = model.training
    model.eval()
    with torch.no_grad():
        taps = model.forward_with_taps(*(example if isinstance(example, tuple) else (example,)))[1]
    model.train(training)
    return tuple(taps)


def _check_unique_names(knobs: Sequence[Knob]) -> None:
    """Knob names stay unique after granularity expansion (`bits` per stage gives `bits.layer1`)."""
    sources: dict[str, str] = {}
    for knob in knobs:
        if knob.name in sources:
            raise SpaceError(
                f"space.knobs[{knob.source}]: knob name {knob.name!r} is already used by space.knobs[{sources[knob.name]}]"
            )
        sources[knob.name] = knob.source


def _owners(knobs: Sequence[Knob], role: str) -> dict[str, str]:
    """Layer -> the knob of `role` ("bits" or "quantizer") that sets it; a layer takes each from one knob."""
    owners: dict[str, str] = {}
    for knob in knobs:
        if knob.role != role:
            continue
        for layer in knob.layers:
            if layer in owners:
                raise SpaceError(
                    f"space.knobs[{knob.source}]: layer {layer!r} is also set by {role} knob {owners[layer]!r}; "
                    f"a layer takes its {role} from one knob"
                )
            owners[layer] = knob.name
    return owners


def _allowed(domain: Iterable[int], kinds: Iterable[str]) -> tuple[int, ...]:
    return tuple(bits for bits in domain if bits == FLOAT_BITS or all(bits in QUANTIZERS[kind].allowed_bits for kind in kinds))


def _variant(name: str, kinds: frozenset[str]) -> str:
    return f"{name}@{'+'.join(sorted(kinds))}"


def _replace_allowed(knob: Knob, allowed: Mapping[frozenset[str] | None, tuple[int, ...]]) -> Knob:
    return Knob(knob.name, knob.source, knob.role, knob.domain, knob.when, knob.default, knob.layers, dict(allowed))


def _kinds_text(kinds: Iterable[str]) -> str:
    return " + ".join(repr(kind) for kind in sorted(kinds))


def _allowed_text(kinds: Iterable[str]) -> str:
    return "; ".join(f"{kind} allows {list(QUANTIZERS[kind].allowed_bits)}" for kind in sorted(kinds))


def _source_text(sources: Iterable[str]) -> str:
    return f" (quantizers chosen by {', '.join(sorted(sources))})" if sources else ""


__all__ = ["Candidate", "GRANULARITIES", "Knob", "SearchSpace", "SpaceConfig", "SpaceError", "model_taps", "parse_space_config"]
