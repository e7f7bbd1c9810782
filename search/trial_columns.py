"""What each column of a trial row is (knob, metric or bookkeeping) and how people read a metric.

Rows keep raw values (EER as a fraction, sizes in bytes) so every file agrees with the
measurement; TensorBoard and the HTML report show them as people compare them: EER in %, sizes
in kB or MB, latency in ms on a named target. Both read the names and units from here so they
never label the same number differently.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from search.trial import NODE, REUSED_FROM, RUNG, STEPS

BOOKKEEPING = ("trial", "status", "error", "attempts", "feasible", STEPS, NODE, REUSED_FROM, RUNG)
"""Row columns that describe how a trial ran, neither a knob nor a metric (trials.csv keeps them)."""
TRIAL_SECONDS = "seconds"
BITS_PREFIX = "bits."

_BYTES = "bytes"
"""Unit placeholder of byte counts: shown in kB or MB, whichever suits the values."""
_NAMES: dict[str, tuple[str, str, float]] = {
    "eer": ("EER", "%", 100.0),
    "min_dcf": ("minDCF", "", 1.0),
    "size_bytes": ("size", _BYTES, 1.0),
    "params": ("parameters", "", 1.0),
    "mean_weight_bits": ("mean weight bits", "", 1.0),
    "compression_ratio": ("compression", "x", 1.0),
    "latency_ms": ("latency", "ms", 1.0),
    "peak_memory_bytes": ("peak memory", _BYTES, 1.0),
    "real_time_factor": ("real-time factor", "", 1.0),
    "si_sdri": ("SI-SDRi", "dB", 1.0),
    "sdri": ("SDRi", "dB", 1.0),
    TRIAL_SECONDS: ("trial time", "s", 1.0),
}
"""Metric key (without its `@target` or `@set` suffix) -> (name, unit, factor from the raw value)."""
_KILO, _MEGA = 1e3, 1e6
_WHOLE = 1e4


@dataclass(frozen=True)
class MetricLabel:
    """How one metric is shown.

    Attributes:
        key: The row's column, e.g. `latency_ms@x86-avx2`.
        name: What it measures, e.g. "latency".
        unit: Unit of the shown value ("" for none).
        scale: Shown value = raw value x scale.
        where: The target or evaluation set it was measured on ("" when not known).
    """

    key: str
    name: str
    unit: str = ""
    scale: float = 1.0
    where: str = ""

    @property
    def title(self) -> str:
        """What and where, e.g. `latency on cortex-a72`."""
        return f"{self.name} on {self.where}" if self.where else self.name

    @property
    def text(self) -> str:
        """Axis or column title, e.g. `latency on cortex-a72 (ms)`."""
        return f"{self.title} ({self.unit})" if self.unit else self.title

    def value(self, raw: Any) -> float | None:
        """The raw value in this label's unit; None when missing or not a finite number."""
        number = finite(raw)
        return None if number is None else number * self.scale

    def number(self, raw: Any) -> str:
        """The value in this unit as text ("" when missing): four significant digits, or the
        whole number from 10,000 up (parameter counts read 22948, not 2.295e+04)."""
        value = self.value(raw)
        if value is None:
            return ""
        return f"{value:.0f}" if abs(value) >= _WHOLE else f"{value:.4g}"

    def format(self, raw: Any) -> str:
        """`number` with the unit, e.g. `0.757 ms`."""
        text = self.number(raw)
        return f"{text} {self.unit}" if text and self.unit else text


def finite(value: Any) -> float | None:
    """A metric as a finite float, or None (failed trials store None for NaN; booleans are no metric)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def metric_keys(reference: Mapping[str, Any]) -> list[str]:
    """The run's metrics: the reference row's columns (it reports every one), then the trial time."""
    return [key for key in reference if key not in BOOKKEEPING] + [TRIAL_SECONDS]


def knob_keys(rows: Sequence[Mapping[str, Any]], metrics: Iterable[str]) -> list[str]:
    """Every searched or fixed knob in order of first appearance: whatever a row holds besides
    metrics and bookkeeping."""
    excluded = {*metrics, *BOOKKEEPING}
    return list(dict.fromkeys(key for row in rows for key in row if key not in excluded))


def metric_labels(keys: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> dict[str, MetricLabel]:
    """The label of each metric key.

    Runs store each cost per target (`latency_ms@<target>`) and each quality per evaluation set
    (`eer@<set>`), and the first target's or set's value once more without the suffix. A
    suffixed key equal to its unsuffixed key in every row is that copy: the unsuffixed label
    names its target or set, so both read the same (`shown_labels` shows them once).

    Args:
        keys: Metric keys.
        rows: The rows whose values are shown (the reference and the trials): byte counts are
            shown in MB when any value reaches 1 MB, in kB otherwise.
    """
    copies: dict[str, str] = {}
    for key in keys:
        base, _, where = key.partition("@")
        if where and base in keys and base not in copies and all(row.get(key) == row.get(base) for row in rows):
            copies[base] = where
    return {
        key: _label(key, base, where or copies.get(base, ""), [row.get(key) for row in rows])
        for key in keys
        for base, _, where in [key.partition("@")]
    }


def shown_labels(labels: Mapping[str, MetricLabel], first: Sequence[str] = ()) -> list[MetricLabel]:
    """The labels to show, each title once (a copy reads as its original): the keys `first` (the
    objectives) lead, then the others in order."""
    shown: dict[str, MetricLabel] = {}
    for label in [*(labels[key] for key in first if key in labels), *labels.values()]:
        shown.setdefault(label.text, label)
    return list(shown.values())


def _label(key: str, base: str, where: str, values: Sequence[Any]) -> MetricLabel:
    name, unit, scale = _NAMES.get(base, (base, "", 1.0))
    if unit == _BYTES:
        largest = max((abs(value) for value in map(finite, values) if value is not None), default=0.0)
        unit, scale = ("MB", 1 / _MEGA) if largest >= _MEGA else ("kB", 1 / _KILO)
    return MetricLabel(key, name, unit, scale, where)
