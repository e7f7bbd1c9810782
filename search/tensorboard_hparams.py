"""TensorBoard's HParams view of the trials: one session per trial, filterable to the Pareto front.

The summaries come from `tensorboard.plugins.hparams.summary_v2`'s `*_pb` helpers, the only
ones that work without TensorFlow (`hparams.api` and `hparams.summary` import it); the
session-end summary that carries a trial's status has no TensorFlow-free helper, so it is built
from the plugin's own protobuf messages.

What the dashboard does with the data decides its shape:
- it prints every number with five significant digits (8 bits as `8.0000`), so integer knobs
  are sent as text, right-aligned with spaces so that text order is numeric order (HTML hides
  the leading spaces);
- it sorts and groups sessions by name as text, so trial numbers are zero-padded;
- it lists knobs by name and ticks only the first five knob and metric columns, so a `bits`
  column (sorting before `bits/<group>`) summarises every bit width, and the front's `on_front`
  and `front_rank` lead the metrics, then the objectives;
- it takes a session's metric from its scalar of that tag, which Time Series also plots: each
  trial's scalars sit at the trial's number as step, so they spread along the x axis in trial
  order instead of stacking at step 0.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tensorboard.compat.proto import summary_pb2
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
from tensorboard.plugins.hparams import summary_v2 as hparams_api
from torch.utils.tensorboard import SummaryWriter

from search.front_rank import FRONT_RANK
from search.pareto import Objective
from search.report import bits_summary
from search.trial_columns import BITS_PREFIX, MetricLabel, knob_keys, metric_keys, metric_labels, shown_labels
from search.trial_rows import COMPLETE, STOPPED

ON_FRONT = "on_front"
FRONT_RANK_TAG = "front_rank"
BITS_SUMMARY = "bits"
"""HParam of a trial's bit widths in knob order, e.g. `8/4/2/2/4/8` (f: FP32)."""

_FP32_BITS = 32
_MISSING_TEXT = "none"
_SESSION_DIGITS = 4
_STATUS = {COMPLETE: api_pb2.STATUS_SUCCESS, STOPPED: api_pb2.STATUS_UNKNOWN}
"""Session status per row status; any other (failed) is a failure. A stopped trial is neither:
it reported the metrics of a cheaper rung."""


def write_hparams(
    parent: Path,
    trials: Sequence[Mapping[str, Any]],
    reference: Mapping[str, Any],
    objectives: Sequence[Objective],
    ranks: Sequence[int | None],
) -> None:
    """One experiment summary in `parent`, one session per trial in `parent/trial-NNNN`.

    Args:
        trials: The rows of trials.jsonl.
        reference: The FP32 reference row: its columns are the run's metrics.
        objectives: The run's objectives, the first metric columns after the front's.
        ranks: Each trial's `search.front_rank.front_ranks`.
    """
    metrics = metric_keys(reference)
    labels = shown_labels(metric_labels(metrics, [reference, *trials]), [objective.metric for objective in objectives])
    table, declared = _knob_table(trials, knob_keys(trials, metrics))
    front_metrics = [
        hparams_api.Metric(ON_FRONT, display_name="on front", description="1 when pareto.json lists the trial, else 0"),
        hparams_api.Metric(
            FRONT_RANK_TAG, display_name="front rank",
            description="1: on the front; 2: on the front once it is removed; ... (empty: may not enter the front)",
        ),
    ]
    metric_infos = [*front_metrics, *(_metric_info(label) for label in labels)]
    with SummaryWriter(str(parent)) as writer:
        writer.file_writer.add_summary(hparams_api.hparams_config_pb(declared, metric_infos))
    digits = max([_SESSION_DIGITS, *(len(str(row["trial"])) for row in trials)])
    for row, knob_values, rank in zip(trials, table, ranks):
        name = f"{row['trial']:0{digits}d}"
        status = _STATUS.get(row.get("status"), api_pb2.STATUS_FAILURE)
        with SummaryWriter(str(parent / f"trial-{name}")) as writer:
            writer.file_writer.add_summary(hparams_api.hparams_pb(knob_values, trial_id=name))
            if status != api_pb2.STATUS_FAILURE:
                step = row["trial"]
                writer.add_scalar(ON_FRONT, float(rank == FRONT_RANK), step)
                if rank is not None:
                    writer.add_scalar(FRONT_RANK_TAG, float(rank), step)
                for label in labels:
                    value = label.value(row.get(label.key))
                    if value is not None:
                        writer.add_scalar(label.text, value, step)
            writer.file_writer.add_summary(_session_end(status))


def _metric_info(label: MetricLabel) -> hparams_api.Metric:
    """A metric column, titled with its unit, its description naming the trials.csv column."""
    scaled = "" if label.scale == 1 else f" x {label.scale:g}" if label.scale > 1 else f" / {1 / label.scale:g}"
    return hparams_api.Metric(label.text, display_name=label.text, description=f"trials.csv `{label.key}`{scaled}")


def _hparam_value(value: Any) -> bool | float | str | None:
    """A knob value as an HParams value; lists and other JSON become their JSON text."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    return json.dumps(value)


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _knob_column(knob: str, values: Sequence[Any]) -> list[Any]:
    """One knob's values as HParams values, every trial with one.

    The dashboard renders sessions with differing keys poorly: a missing bit width is FP32 (the
    group is not quantized); any other column with gaps or mixed types becomes text with "none"
    for the gaps. Integers become right-aligned text (see the module's docstring).
    """
    if knob.startswith(BITS_PREFIX):
        values = [_FP32_BITS if value is None else value for value in values]
    if all(_is_integer(value) for value in values):
        width = max(len(str(value)) for value in values)
        return [str(value).rjust(width) for value in values]
    column = [_hparam_value(value) for value in values]
    if None in column or len({type(value) for value in column}) > 1:
        column = [_MISSING_TEXT if value is None else str(value) for value in column]
    return column


def _knob_table(trials: Sequence[Mapping[str, Any]], knobs: Sequence[str]) -> tuple[list[dict[str, Any]], list[Any]]:
    """Each trial's value for every knob (after the bits summary, when bits are searched) and the
    HParam declaring each one's domain."""
    bits = [knob for knob in knobs if knob.startswith(BITS_PREFIX)]
    summaries = [bits_summary({knob: row.get(knob, _FP32_BITS) for knob in bits}) for row in trials]
    columns = {BITS_SUMMARY: summaries} if bits else {}
    columns.update((knob.replace(".", "/"), _knob_column(knob, [row.get(knob) for row in trials])) for knob in knobs)
    table: list[dict[str, Any]] = [{} for _ in trials]
    declared = []
    for name, column in columns.items():  # `bits.stem` -> `bits/stem`: TensorBoard groups names by slash
        for values, value in zip(table, column):
            values[name] = value
        declared.append(hparams_api.HParam(name, hparams_api.Discrete(set(column))))
    return table, declared


def _session_end(status: int) -> summary_pb2.Summary:
    """The HParams session-end summary carrying a trial's status."""
    data = plugin_data_pb2.HParamsPluginData(
        session_end_info=plugin_data_pb2.SessionEndInfo(status=status, end_time_secs=time.time())
    )
    summary = summary_pb2.Summary()
    summary.value.add(
        tag=metadata.SESSION_END_INFO_TAG, metadata=metadata.create_summary_metadata(data), tensor=metadata.NULL_TENSOR
    )
    return summary
