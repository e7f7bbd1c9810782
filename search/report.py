"""Reports of one or several runs' Pareto fronts, each next to its FP32 reference row.

Every tabular format (terminal, Markdown, HTML) renders the same header and cells from
`front_grid`, so the formats never disagree; CSV and JSON carry the rows' raw values.
"""

from __future__ import annotations

import csv
import io
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from rich.console import Console
from rich.table import Table

from evaluators.sensitivity_estimators import SensitivityTable
from search.front_reasons import front_reasons
from search.pareto import Objective
from search.run_dir import PARETO, SENSITIVITY, RunDirectory, RunDirectoryError

FRONT_COLUMNS = ("trial", "size", "ratio", "EER %", "minDCF", "latency ms", "peak MB", "bits")
RUN_COLUMN = "run"
LEFT_ALIGNED = (RUN_COLUMN, "trial")
TENSORBOARD_HOST = "127.0.0.1"
"""TensorBoard has no authentication, so it only listens on the loopback interface."""

_EER_COLUMN = "EER %"
_EER_PREFIX = "eer@"
EXTRACTION_COLUMNS = {"si_sdri": "SI-SDRi dB", "sdri": "SDRi dB"}
"""Extraction runs show these (metric: column) in place of the EER and minDCF columns."""


class Front(NamedTuple):
    """One run's front as pareto.json holds it, named by its run directory."""

    name: str
    pareto: dict[str, Any]
    objectives: list[Objective]

    @property
    def rows(self) -> list[dict[str, Any]]:
        """The reference row, then the members from the smallest model up."""
        return [self.pareto["reference"], *sorted(self.pareto["members"], key=lambda row: row["size_bytes"])]


class GridRow(NamedTuple):
    """One table row's display cells; reference rows are highlighted by every format."""

    cells: list[str]
    reference: bool


class TrialSummary(NamedTuple):
    """Counts and timing of a run's finished trials."""

    trials: int
    failed: int
    total_seconds: float
    longest_seconds: float


def read_front(run_dir: RunDirectory) -> Front:
    """The run's pareto.json, checked for the keys every report needs so a damaged file is named, not a traceback."""
    pareto = run_dir.read_pareto()
    shape = {"objectives": list, "reference": dict, "members": list}
    problems = [
        f"{key!r} is not a {kind.__name__}"
        for key, kind in shape.items()
        if not isinstance(pareto, dict) or not isinstance(pareto.get(key), kind)
    ]
    members = [] if problems else pareto["members"]
    if not all(isinstance(row, dict) and {"trial", "size_bytes"} <= row.keys() for row in members):
        problems.append("a member lacks 'trial' or 'size_bytes'")
    objectives = []
    if not problems:
        try:
            objectives = [Objective.parse(_recorded_objective(item)) for item in pareto["objectives"]]
        except ValueError as error:
            problems.append(str(error))
    if problems:
        raise RunDirectoryError(f"{run_dir.path / PARETO}: corrupt ({'; '.join(problems)})")
    recorded = {row.get("trial") for row in run_dir.read_trials() if row.get("status") != "failed"}
    unrecorded = sorted(str(row["trial"]) for row in members if row["trial"] not in recorded)
    if unrecorded:
        raise RunDirectoryError(
            f"{run_dir.path / PARETO}: lists trial(s) {', '.join(unrecorded[:10])} that trials.jsonl does not record; "
            "the run's files disagree (`search run --resume` rewrites pareto.json from trials.jsonl)"
        )
    return Front(run_dir.path.name, pareto, objectives)


def _recorded_objective(item: Any) -> Any:
    """An objective as pareto.json records it; one without a resolution comes from a run that chose
    its front before objectives had resolutions, i.e. exactly, so it is read as exact."""
    return {"resolution": 0.0, **item} if isinstance(item, dict) else item


def bits_summary(row: Mapping[str, Any]) -> str:
    """Per-group bit widths in knob order, e.g. `8/4/4/3/3/6` (FP32 shown as `f`)."""
    knobs = [value for key, value in row.items() if key.startswith("bits.")]
    return "/".join("f" if int(bits) == 32 else str(int(bits)) for bits in knobs) or "fp32"


def eval_set_names(fronts: Sequence[Front]) -> list[str]:
    """The evaluation sets whose EERs the runs report (`eer@<set>` in the reference rows), in order."""
    keys = (key for front in fronts for key in front.pareto["reference"] if key.startswith(_EER_PREFIX))
    return list(dict.fromkeys(key[len(_EER_PREFIX):] for key in keys))


def is_extraction(fronts: Sequence[Front]) -> bool:
    """Whether the runs are extraction runs (their reference rows carry SI-SDRi, not EER).

    Raises:
        RunDirectoryError: Extraction and verification runs are mixed (their columns differ).
    """
    kinds = {"si_sdri" in front.pareto["reference"] for front in fronts}
    if len(kinds) > 1:
        raise RunDirectoryError("cannot tabulate extraction and verification runs together; report them separately")
    return kinds == {True}


def front_columns(eval_sets: Sequence[str] = (), extraction: bool = False) -> list[str]:
    """`FRONT_COLUMNS`, the EER column split into one per evaluation set when there are several;
    extraction runs show SI-SDRi and SDRi instead of EER and minDCF."""
    if extraction:
        at = FRONT_COLUMNS.index(_EER_COLUMN)
        return [*FRONT_COLUMNS[:at], *EXTRACTION_COLUMNS.values(), *FRONT_COLUMNS[at + 2:]]
    if len(eval_sets) < 2:
        return list(FRONT_COLUMNS)
    at = FRONT_COLUMNS.index(_EER_COLUMN)
    return [*FRONT_COLUMNS[:at], *(f"{_EER_COLUMN} {name}" for name in eval_sets), *FRONT_COLUMNS[at + 1:]]


def front_cells(row: Mapping[str, Any], eval_sets: Sequence[str] = (), extraction: bool = False) -> list[str]:
    """One row's display cells, in `front_columns(eval_sets, extraction)` order ("-" for an EER the row lacks)."""
    eer_keys = ["eer"] if len(eval_sets) < 2 else [f"{_EER_PREFIX}{name}" for name in eval_sets]
    if extraction:
        quality = [f"{row[key]:.2f}" for key in EXTRACTION_COLUMNS]
    else:
        eers = (f"{100 * row[key]:.2f}" if row.get(key) is not None else "-" for key in eer_keys)
        quality = [*eers, f"{row['min_dcf']:.3f}"]
    return [
        str(row["trial"]),
        _bytes(row["size_bytes"]),
        f"{row.get('compression_ratio', 1.0):.2f}x",
        *quality,
        f"{row['latency_ms']:.2f}",
        f"{row['peak_memory_bytes'] / 1e6:.2f}",
        bits_summary(row),
    ]


def front_grid(fronts: Sequence[Front]) -> tuple[list[str], list[GridRow]]:
    """Header and rows shared by every tabular format; several fronts get a leading run column.

    Runs evaluated on several sets get one EER column per set, side by side.
    """
    several = len(fronts) > 1
    eval_sets = eval_set_names(fronts)
    extraction = is_extraction(fronts)
    columns = front_columns(eval_sets, extraction)
    header = [RUN_COLUMN, *columns] if several else columns
    rows = [
        GridRow([front.name] * several + front_cells(row, eval_sets, extraction), reference=index == 0)
        for front in fronts
        for index, row in enumerate(front.rows)
    ]
    return header, rows


def front_title(fronts: Sequence[Front]) -> str:
    """Which runs and objectives the table shows."""
    objectives = dict.fromkeys(
        ", ".join(f"{o.metric} ({o.direction})" for o in front.objectives) for front in fronts
    )
    plural = "s" if len(fronts) > 1 else ""
    return f"Pareto front{plural} of {', '.join(front.name for front in fronts)}: {' | '.join(objectives)}"


def bits_caption(fronts: Sequence[Front]) -> str | None:
    """What the slashes of the bits column stand for (runs of different model families differ)."""
    orders = dict.fromkeys(
        "/".join(key[len("bits."):] for key in front.pareto["members"][0] if key.startswith("bits."))
        for front in fronts
        if front.pareto["members"]
    )
    orders.pop("", None)
    return f"bits: {' | '.join(orders)} (f = FP32)" if orders else None


def reason_lines(front: Front) -> list[str]:
    """Why each member is on the front, in the table's order, after a line stating the resolution
    of each objective (the differences the front ignores), so a surprising member can be traced."""
    resolutions = ", ".join(f"{objective.metric} {objective.resolution}" for objective in front.objectives)
    members = front.rows[1:]
    reasons = front_reasons(members, front.objectives)
    return [
        f"Why on the front of {front.name} (resolution: {resolutions}):",
        *(f"  trial {member['trial']}: {reason}" for member, reason in zip(members, reasons)),
    ]


def front_table(run_dirs: Sequence[RunDirectory]) -> Table:
    """The fronts (each sorted by size) as a rich table, each run's FP32 reference first."""
    fronts = [read_front(run_dir) for run_dir in run_dirs]
    header, rows = front_grid(fronts)
    table = Table(title=front_title(fronts), caption=bits_caption(fronts))
    widest_bits = max((len(row.cells[-1]) for row in rows), default=4)
    for column in header:
        bits = column == FRONT_COLUMNS[-1]
        justify = "left" if column in LEFT_ALIGNED else "right"
        table.add_column(column, justify=justify, no_wrap=bits, min_width=widest_bits if bits else None)
    for row in rows:
        table.add_row(*row.cells, style="bold cyan" if row.reference else None)
    return table


def front_markdown(run_dirs: Sequence[RunDirectory]) -> str:
    """The terminal table as GitHub Markdown, for pasting into issues and papers."""
    fronts = [read_front(run_dir) for run_dir in run_dirs]
    header, rows = front_grid(fronts)
    align = [":---" if column in LEFT_ALIGNED else "---:" for column in header]
    lines = [f"**{_markdown_cell(front_title(fronts))}**", "", _markdown_row(header), _markdown_row(align)]
    lines += [_markdown_row(row.cells) for row in rows]
    caption = bits_caption(fronts)
    return "\n".join([*lines, *(["", caption] if caption else [])]) + "\n"


def front_csv(run_dirs: Sequence[RunDirectory]) -> str:
    """Every key of every front row (trial, status, knobs, metrics), each run's reference first."""
    fronts = [read_front(run_dir) for run_dir in run_dirs]
    several = len(fronts) > 1
    keys = dict.fromkeys(key for front in fronts for row in [*front.rows[1:], front.rows[0]] for key in row)
    columns = [RUN_COLUMN, *keys] if several else list(keys)
    stream = io.StringIO()
    writer = csv.DictWriter(stream, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    for front in fronts:
        writer.writerows({RUN_COLUMN: front.name, **row} if several else row for row in front.rows)
    return stream.getvalue()


def front_json(run_dirs: Sequence[RunDirectory]) -> str:
    """pareto.json unchanged for one run; for several, a list of them, each with its run name."""
    fronts = [read_front(run_dir) for run_dir in run_dirs]
    payload: Any = fronts[0].pareto if len(fronts) == 1 else [{RUN_COLUMN: f.name, **f.pareto} for f in fronts]
    return json.dumps(payload, indent=2) + "\n"


TEXT_FORMATS: dict[str, Callable[[Sequence[RunDirectory]], str]] = {
    "md": front_markdown,
    "csv": front_csv,
    "json": front_json,
}
"""`search report --format` choices printed as plain text (the default `table` is rich)."""


def read_sensitivity(run_dir: RunDirectory) -> SensitivityTable | None:
    """The sensitivity table the run's sampler read (recorded, never recomputed); None when it read none."""
    entry = run_dir.read_sensitivity()
    if entry is None:
        return None
    try:
        return SensitivityTable.from_entry(entry)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise RunDirectoryError(f"{run_dir.path / SENSITIVITY}: corrupt ({type(error).__name__}: {error})") from None


def sensitivity_line(table: SensitivityTable | None) -> str:
    """Which estimator, with which settings, priced the run's layers, or that no sampler of the run read a table."""
    if table is None:
        return (
            "Per-layer sensitivities: none recorded; this run's sampler read no sensitivity table "
            "(ilp, nsga2 and predictor-screened read one when the ILP can price the space)."
        )
    settings = ", ".join(f"{key}={value}" for key, value in table.settings.items())
    return (
        f"Per-layer sensitivities: {table.estimator}{f' ({settings})' if settings else ''}, "
        f"{len(table.layers)} layers x {len(table.choices())} choices, as the run's sampler read them."
    )


def summarise_trials(trials: Sequence[Mapping[str, Any]]) -> TrialSummary:
    """How many trials ran, how many failed and how long they took (failed trials may have no time)."""
    seconds = [float(row["seconds"]) for row in trials if isinstance(row.get("seconds"), (int, float))]
    return TrialSummary(
        trials=len(trials),
        failed=sum(1 for row in trials if row.get("status") == "failed"),  # not trials stopped at a lower rung
        total_seconds=sum(seconds),
        longest_seconds=max(seconds, default=0.0),
    )


def print_report(run_dirs: RunDirectory | Sequence[RunDirectory], console: Console | None = None) -> None:
    """The fronts table, why each member is on its front, then per run a line with its trial
    count and final hypervolume and one naming its per-layer sensitivities (drawn in report.html)."""
    run_dirs = [run_dirs] if isinstance(run_dirs, RunDirectory) else list(run_dirs)
    console = console or Console()
    console.print(front_table(run_dirs))
    for run_dir in run_dirs:
        for line in reason_lines(read_front(run_dir)):
            console.print(line, markup=False, highlight=False)
    for run_dir in run_dirs:
        summary = summarise_trials(run_dir.read_trials())
        hypervolume = run_dir.read_hypervolume()
        final = f"{hypervolume[-1]:.4f}" if hypervolume else "n/a"
        counts = f"{summary.trials} trials ({summary.failed} failed)"
        console.print(f"{counts}, hypervolume {final}; files in {run_dir.path}")
        console.print(sensitivity_line(read_sensitivity(run_dir)), markup=False, highlight=False)


def tensorboard_argv(run_dirs: Sequence[RunDirectory], port: int) -> list[str]:
    """TensorBoard's command line for the runs' folders, listening on the loopback interface only.

    Several runs are named by their directories through `--logdir_spec`.
    """
    for run_dir in run_dirs:
        if not run_dir.tensorboard_dir.is_dir():
            raise RunDirectoryError(f"{run_dir.tensorboard_dir}: missing; this run has no TensorBoard summaries")
    if len(run_dirs) == 1:
        logdir = ["--logdir", str(run_dirs[0].tensorboard_dir)]
    else:
        logdir = ["--logdir_spec", ",".join(f"{run_dir.path.name}:{run_dir.tensorboard_dir}" for run_dir in run_dirs)]
    return ["tensorboard", *logdir, "--host", TENSORBOARD_HOST, "--port", str(port)]


def serve_tensorboard(argv: Sequence[str], console: Console) -> None:
    """Serve TensorBoard in this process with `tensorboard_argv`'s flags and print its URL, until Ctrl-C.

    Raises:
        tensorboard.program.TensorBoardServerException: the port is taken or cannot be bound.
    """
    from tensorboard import program

    board = program.TensorBoard()
    board.configure(argv=list(argv))
    console.print(f"TensorBoard at {board.launch()} (Ctrl-C to stop)")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        console.print("TensorBoard stopped")


def _markdown_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(_markdown_cell(cell) for cell in cells) + " |"


def _markdown_cell(text: str) -> str:
    """A pipe would end the cell early."""
    return text.replace("|", "\\|")


def _bytes(size: float) -> str:
    return f"{size / 1e3:.1f} kB" if size < 1e6 else f"{size / 1e6:.2f} MB"
