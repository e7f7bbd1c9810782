"""`search` command line: `search run [CONFIG]`, `search report RUN [RUN ...]`, `search space [CONFIG]`,
`search export RUN`, `search verify BUNDLE`, `search hwcost show [CONFIG]`, `search init NAME`.

CONFIG is a file or the name of a ready config shipped in the package (`demo`); `--set KEY=VALUE`
overrides any of its keys.

Errors a user can fix (bad config, unwritable output, missing run files) print one line and
exit with code 2; a bundle failing a `verify` check exits with code 1; anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console

from evaluators.data.corpora import CorpusError
from evaluators.data.trial_lists import TrialListError
from evaluators.evaluation import Evaluator
from hwcost import target_error
from search.config import SAMPLERS, ConfigError, load_config
from search.export import ExportError
from search.name_clash import name_clashes, version
from search.onnx_export import OnnxExportError
from search.overrides import parse_setting, settings_dict
from search.ready_configs import ready_config_names
from search.run_dir import RunDirectory, RunDirectoryError
from search.samplers import SAMPLER_KINDS, SamplerError
from search.selection import SelectionError
from spaces.bundle import BundleError
from spaces.checkpoints import CheckpointError

USER_ERRORS = (
    ConfigError, SamplerError, RunDirectoryError, CorpusError, TrialListError, SelectionError, ExportError, CheckpointError,
    OnnxExportError, BundleError,
)
EXIT_CHECK_FAILED = 1
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130
"""Stopped by Ctrl-C or SIGTERM (128 + SIGINT, the shell's convention)."""


def main(argv: Sequence[str] | None = None, evaluator: Evaluator | None = None) -> int:
    """The `search` command line; `evaluator` replaces the run task's own in `search run` (for tests)."""
    for clash in name_clashes():
        print(clash.warning(), file=sys.stderr)
    parser = _parser()
    args = parser.parse_args(argv)
    args.evaluator = evaluator
    console = Console() if sys.stdout.isatty() else Console(width=120)  # tables stay whole in logs
    try:
        return args.handler(args, console)
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR


def _run(args: argparse.Namespace, console: Console) -> int:
    flags = {
        key: value
        for key, value in {
            "search.trials": args.trials,
            "search.workers": args.workers,
            "search.cpus_per_trial": args.cpus_per_trial,
            "search.sampler": args.sampler,
            "search.storage": args.storage,
            "seed": args.seed,
        }.items()
        if value is not None
    }
    settings = settings_dict(args.set)
    if args.resume is not None:
        if args.config is not None or flags or settings:
            given = ["CONFIG"] * (args.config is not None) + [f"--{key.split('.')[-1].replace('_', '-')}" for key in flags]
            given += ["--set"] * bool(settings)
            raise ConfigError(f"--resume {args.resume}: continues with the run's saved config; drop {', '.join(given)}")
        run_dir = RunDirectory.existing(args.resume)
        run_dir.check_writable()
        config = None
    else:
        config = load_config(args.config, _overrides(settings, flags))
        run_dir = RunDirectory.create(args.out, config.name)
    from search.api import removed_if_nothing_ran  # Ray, Optuna and torch load once the config is known good
    from search.engine import resume_search, run_search
    from search.progress import RichDisplay
    from search.report import print_report

    console.print(f"run directory: {run_dir.path}")
    # Failed trials are reported by the display and trials.csv; Tune's own summary would repeat them.
    logging.getLogger("ray.tune").setLevel(logging.CRITICAL)
    try:
        with RichDisplay() as display:
            if config is None:
                resume_search(run_dir, address=args.address, listener=display, evaluator=args.evaluator)
            else:
                with removed_if_nothing_ran(run_dir):
                    run_search(config, run_dir, address=args.address, listener=display, evaluator=args.evaluator)
    except KeyboardInterrupt:
        print(f"interrupted: finished trials are kept; continue with `search run --resume {run_dir.path}`", file=sys.stderr)
        return EXIT_INTERRUPTED
    print_report(run_dir, console)
    return 0


def _overrides(settings: dict[str, Any], flags: dict[str, Any]) -> dict[str, Any]:
    """`--set` settings and the flags that set a key (`--trials`); one key set both ways is an error."""
    for key in settings.keys() & flags.keys():
        flag = f"--{key.split('.')[-1].replace('_', '-')}"
        raise ConfigError(f"{flag} and --set {key} both set {key}; give one")
    return {**settings, **flags}


def _report(args: argparse.Namespace, console: Console) -> int:
    from search.report import TEXT_FORMATS, print_report, serve_tensorboard, tensorboard_argv
    from search.report_html import write_comparison_html, write_html_report

    run_dirs = [RunDirectory.existing(path) for path in args.run_dirs]
    tensorboard = tensorboard_argv(run_dirs, args.port) if args.tensorboard else None  # a missing folder fails first
    pages = [write_html_report(run_dir) for run_dir in run_dirs]
    if args.html:
        pages.append(write_comparison_html(run_dirs, args.html))
    if args.format in TEXT_FORMATS:
        sys.stdout.write(TEXT_FORMATS[args.format](run_dirs))
    else:
        print_report(run_dirs, console)
    # stderr, so that md, csv and json on stdout stay clean for pipes
    print("\n".join(f"HTML report: {page}" for page in pages), file=sys.stderr)
    if tensorboard:
        from tensorboard.program import TensorBoardServerException

        try:
            serve_tensorboard(tensorboard, console)
        except TensorBoardServerException as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_USER_ERROR
    return 0


def _init(args: argparse.Namespace, console: Console) -> int:
    from search.config_init import write_starting_config

    path = write_starting_config(args.name, args.source)
    console.print(f"wrote {path} (from the ready config {args.source}); run it with: search run {path}")
    return 0


def _space(args: argparse.Namespace, console: Console) -> int:
    from search.space_report import print_space

    print_space(load_config(args.config, settings_dict(args.set)), console)
    return 0


def _export(args: argparse.Namespace, console: Console) -> int:
    from search.export import export_bundle
    from search.progress import RichDisplay

    with RichDisplay() as display:
        exported = export_bundle(args.run_dir, trial=args.trial, pick=args.pick, out=args.out, progress=display.stage)
    console.print(exported.summary())
    console.print(f"bundle: {exported.path}\ncheck it with: search verify {exported.path}")
    return 0


def _teacher_export(args: argparse.Namespace, console: Console) -> int:
    from search.progress import RichDisplay
    from search.teacher_export import export_teacher

    with RichDisplay() as display:
        path = export_teacher(args.source, args.out, progress=display.stage)
    console.print(f"teacher: {path}\nload it with: teacher: {{checkpoint: {path}, format: native}}")
    return 0


def _verify(args: argparse.Namespace, console: Console) -> int:
    from search.progress import RichDisplay
    from search.verify import print_verification, verify_bundle

    if (problem := target_error(args.target)) is not None:
        raise ConfigError(f"--target: {problem}")
    with RichDisplay() as display:
        report = verify_bundle(args.bundle, data=args.data, target=args.target, progress=display.stage, accuracy=args.accuracy)
    print_verification(report, console)
    if not report.passed:
        names = "; ".join(check.name for check in report.failures)
        print(f"error: {report.bundle}: {len(report.failures)} check(s) failed: {names}", file=sys.stderr)
        return EXIT_CHECK_FAILED
    return 0


def _hwcost_show(args: argparse.Namespace, console: Console) -> int:
    from search.cost_report import cost_table, estimate_candidate, parse_candidate

    config = load_config(args.config, settings_dict(args.set))
    candidate = parse_candidate(args.candidate)
    for target in [args.target] if args.target else config.targets:
        if (problem := target_error(target)) is not None:
            raise ConfigError(f"--target: {problem}")
        label = "candidate" if candidate else "FP32 teacher"
        console.print(cost_table(estimate_candidate(config, candidate, target), f"{label} on {target}", console.width))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="search", description="Search compressed speaker models on a Pareto front of quality, size and latency."
    )
    parser.add_argument("--version", action="version", version=f"search (speaker-compress) {version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run a compression search", description="Run a compression search.")
    _config_arguments(run)
    run.add_argument("--trials", type=int, help="number of trials (overrides search.trials)")
    run.add_argument("--workers", type=int, help="trials run at once (overrides search.workers)")
    run.add_argument("--address", help="Ray cluster to join (e.g. auto or HOST:PORT); local Ray when absent")
    run.add_argument("--cpus-per-trial", type=int, help="CPUs each trial holds (overrides search.cpus_per_trial)")
    run.add_argument(
        "--sampler",
        choices=SAMPLERS,
        help="proposal method (overrides search.sampler): "
        + "; ".join(f"{kind.name}: {kind.help}" for kind in SAMPLER_KINDS.values()),
    )
    run.add_argument(
        "--storage", help="Ray Tune experiment folder every node can reach (overrides search.storage; default RUN/ray)"
    )
    run.add_argument(
        "--resume", metavar="RUN_DIR", help="continue an interrupted run to its trial budget, with its saved config"
    )
    run.add_argument("--out", default="results", help="folder for the run directory (default: results)")
    run.add_argument("--seed", type=int, help="random seed (overrides seed)")
    run.set_defaults(handler=_run)
    report = commands.add_parser(
        "report",
        help="print runs' Pareto fronts and write each run's report.html",
        description="Print the Pareto fronts of one or several runs and write RUN/report.html for each.",
    )
    report.add_argument("run_dirs", nargs="+", metavar="RUN", help="run directories written by `search run`")
    report.add_argument(
        "--format", choices=("table", "md", "csv", "json"), default="table", help="output on stdout (default: table)"
    )
    report.add_argument("--html", metavar="PATH", help="also write one page overlaying the runs' fronts to PATH")
    report.add_argument(
        "--tensorboard", action="store_true", help="then serve the runs' TensorBoard on 127.0.0.1 until Ctrl-C"
    )
    report.add_argument("--port", type=int, default=6006, help="TensorBoard port (default: 6006)")
    report.set_defaults(handler=_report)
    space = commands.add_parser(
        "space",
        help="print a config's search space: knobs, choices, matched layers, size",
        description="Print the knobs of a config's search space, their choices, the layers each pattern "
        "matches and the number of candidates.",
    )
    _config_arguments(space)
    space.set_defaults(handler=_space)
    export = commands.add_parser(
        "export",
        help="write a trial's deployment bundle (weights.bin, model.onnx, config.json, MODEL_CARD.md)",
        description="Rebuild one trial of a run and write its deployment bundle.",
    )
    export.add_argument("run_dir", metavar="RUN", help="run directory written by `search run`")
    chosen = export.add_mutually_exclusive_group(required=True)
    chosen.add_argument("--trial", type=int, help="trial number")
    chosen.add_argument(
        "--pick", metavar="SELECTION", help="'knee', or e.g. 'min eer where size_bytes <= 500000' (and-ed conditions)"
    )
    export.add_argument("--out", help="bundle folder (default: RUN/bundles/trial-NNNN)")
    export.set_defaults(handler=_export)
    verify = commands.add_parser(
        "verify",
        help="check a bundle's ONNX model against its PyTorch model and time it",
        description="Compare onnxruntime with the PyTorch model rebuilt from the bundle on the run's test data "
        "(speaker verification: embedding cosine per utterance and EER within 0.1 points; speaker extraction: "
        "SI-SDRi on the test mixtures within 0.1 dB, with the largest sample difference of the estimates), "
        "check that quantized layers are integer weights in the graph, and measure onnxruntime's latency for "
        "one second of audio beside the cost model's prediction for the runtime the bundle runs on (a gap beyond "
        "the cost model's stated accuracy is a warning).",
    )
    verify.add_argument("bundle", metavar="BUNDLE", help="bundle folder written by `search export`")
    verify.add_argument("--data", metavar="CONFIG", help="run config or run directory with the evaluation set or test mixtures (default: the bundle's run)")
    verify.add_argument("--target", default="x86-avx2", help="cost-model profile (name or file) priced with the bundle's runtime beside the measured latency (default: x86-avx2)")
    verify.add_argument(
        "--accuracy", metavar="VALIDATION_JSON",
        help="`search hwcost validate --target TARGET --runtime RUNTIME --json` output: its largest error on the bundle's "
        "family is the gap allowed before a warning (default: the widest bound validation counts models within)",
    )  # fmt: skip
    verify.set_defaults(handler=_verify)
    hwcost = commands.add_parser("hwcost", help="inspect the hardware cost model", description="Inspect the cost model.")
    hwcost_commands = hwcost.add_subparsers(dest="hwcost_command", required=True)
    show = hwcost_commands.add_parser(
        "show", help="per-layer cost of a config's model", description="Per-layer cost breakdown on each target."
    )
    _config_arguments(show)
    show.add_argument("--target", help="one target profile (default: the config's targets)")
    show.add_argument("--candidate", help='knobs as JSON or a JSON file, e.g. \'{"bits.stem": 8, ...}\' (default: FP32)')
    show.set_defaults(handler=_hwcost_show)
    from search.hwcost_commands import add_hwcost_commands  # calibrate, validate

    add_hwcost_commands(hwcost_commands)
    teacher = commands.add_parser("teacher", help="work with a run's teacher", description="Work with a run's teacher.")
    teacher_commands = teacher.add_subparsers(dest="teacher_command", required=True)
    teacher_export = teacher_commands.add_parser(
        "export",
        help="write the teacher as a checkpoint other configs load",
        description="Write a run's (or config's) teacher as a native checkpoint: load it elsewhere with "
        "teacher: {checkpoint: FILE, format: native}. Trains it first when it is not cached.",
    )
    teacher_export.add_argument("source", metavar="RUN_OR_CONFIG", help="run directory or run config YAML")
    teacher_export.add_argument("--out", required=True, metavar="FILE", help="checkpoint file to write (must not exist)")
    teacher_export.set_defaults(handler=_teacher_export)
    init = commands.add_parser(
        "init",
        help="write a starting config file from a ready config",
        description="Write NAME.yaml (run name NAME) in the working directory from a ready config, "
        "comments included; relative paths in it are made absolute so they keep their meaning.",
    )
    init.add_argument("name", metavar="NAME", help="run name, or the config file to write (NAME.yaml)")
    init.add_argument(
        "--from", dest="source", default="demo", choices=ready_config_names(), help="ready config to start from (default: demo)"
    )
    init.set_defaults(handler=_init)
    from search.bundle_commands import add_parsers as add_bundle_commands  # embed, score

    add_bundle_commands(commands)
    from search.sensitivity_command import add_parser as add_sensitivity_command  # sensitivity

    add_sensitivity_command(commands)
    return parser


def _config_arguments(command: argparse.ArgumentParser) -> None:
    """CONFIG (a file or a ready config's name) and the repeatable `--set KEY=VALUE`."""
    command.add_argument(
        "config", nargs="?", default=None, help=f"run config YAML, or a ready config: {', '.join(ready_config_names())} (default: demo)"
    )
    command.add_argument(
        "--set",
        action="append",
        default=[],
        type=_setting,
        metavar="KEY=VALUE",
        help="override a config key (dotted, e.g. search.trials=4 or teacher.steps=100; the value is YAML); repeatable",
    )


def _setting(text: str) -> tuple[str, Any]:
    """argparse type of `--set`: a bad setting is a usage error naming it."""
    try:
        return parse_setting(text)
    except ConfigError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


if __name__ == "__main__":
    sys.exit(main())
