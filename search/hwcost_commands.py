"""`search hwcost calibrate` and `search hwcost validate`: ground the cost model on this machine.

    search hwcost calibrate --runtime onnxruntime-fp32 --out host-fp32.yaml
    search hwcost validate --target host-fp32.yaml [--json]
    search hwcost validate --target x86-avx2 --runtime onnxruntime-int8     # the modelled figures

`calibrate` times micro-benchmarks of every layer kind over a grid of shapes with the runtime, on
one thread, and writes a target profile with the fitted costs (`hwcost.calibration`). `validate`
times a fixed set of whole models of every family with the target's runtime and sets the cost
model's predictions beside the measurements. Both need torch and onnxruntime, so they are
imported only when a command runs; both export through `search.onnx_export`, handed to
`hwcost.calibration` (which sits below the search package and may not import it).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from rich.console import Console

from hwcost import RUNTIMES, ProfileError, load_target
from search.config import ConfigError

DEFAULT_PROFILE_FOLDER = Path("results") / "hwcost"
"""Where `calibrate` writes its profile when --out is not given."""


def add_hwcost_commands(hwcost_commands: argparse._SubParsersAction) -> None:
    """Add `calibrate` and `validate` to the `search hwcost` subcommands."""
    runtimes = sorted(RUNTIMES)
    runtime_help = "; ".join(f"{name}: {RUNTIMES[name].summary}" for name in runtimes)
    calibrate = hwcost_commands.add_parser(
        "calibrate",
        help="fit a runtime's kernel costs on this machine and write a target profile",
        description="Time micro-benchmarks of every layer kind over a grid of shapes with a runtime (one thread, "
        "per-thread CPU time, repeated; noise reported), measure their peak memory in fresh processes, fit the "
        "kernel costs and memory terms, and write a target profile with a measured: section. Use the profile "
        "file wherever a target is accepted.",
    )
    calibrate.add_argument("--runtime", required=True, choices=runtimes, help=f"runtime to calibrate ({runtime_help})")
    calibrate.add_argument(
        "--out", type=Path, help=f"profile YAML to write (default: {DEFAULT_PROFILE_FOLDER}/host-RUNTIME.yaml)"
    )
    calibrate.add_argument("--grid", choices=("full", "small"), default="full", help="shape grid (default: full)")
    calibrate.add_argument("--base", default="x86-avx2", help="profile whose hardware figures it keeps (default: x86-avx2)")
    calibrate.add_argument("--name", help="profile name (default: host-RUNTIME)")
    calibrate.set_defaults(handler=_calibrate)
    validate = hwcost_commands.add_parser(
        "validate",
        help="the cost model against measured onnxruntime latency and peak memory on a fixed model set",
        description="Export a fixed set of models of every family (several widths and depths) for the target's "
        "runtime, time each on one thread and measure its peak memory, and print predicted beside measured per "
        "model with the summary: fraction within +-10% and +-25%, Spearman rank correlation, worst layer kinds.",
    )
    validate.add_argument("--target", required=True, help="target name or profile YAML file")
    validate.add_argument("--runtime", choices=runtimes, help="runtime to validate the profile for (default: its own)")
    validate.add_argument("--set", dest="model_set", choices=("full", "tiny"), default="full", help="validation set (default: full)")
    validate.add_argument(
        "--json", action="store_true", help="print one JSON object (within_10pct, within_25pct, spearman, models, ...)"
    )
    validate.set_defaults(handler=_validate)


def _calibrate(args: argparse.Namespace, console: Console) -> int:
    from hwcost.calibration.backends import BackendError, get_backend
    from hwcost.calibration.calibrate import calibrate, write_profile
    from hwcost.calibration.cases import GRIDS
    from search.onnx_export import export_onnx
    from search.progress import RichDisplay

    out = args.out or DEFAULT_PROFILE_FOLDER / f"host-{args.runtime}.yaml"
    try:
        backend = get_backend(args.runtime, export_onnx)
        with RichDisplay() as display:
            calibration = calibrate(backend, GRIDS[args.grid], args.grid, args.base, args.name, progress=display.stage)
    except (BackendError, ProfileError) as error:
        raise ConfigError(str(error)) from None
    path = write_profile(calibration, out)
    noise, fit = calibration.noise, calibration.profile["measured"]["fit"]
    console.print(
        f"{len(calibration.measurements)} micro-benchmarks; noise (relative IQR of the runs): median "
        f"{noise['median_relative_iqr']:.1%}, worst {noise['worst_relative_iqr']:.1%} ({noise['worst_case']}); "
        f"spread of the round medians: median {noise['median_round_spread']:.1%}; {noise['timed_again']} timed again "
        "until most of their rounds agreed"
    )
    console.print(
        f"fit on its own cases: latency median error {fit['latency_median_abs_error']:.1%}, worst "
        f"{fit['latency_worst_abs_error']:.1%} ({fit['latency_worst_case']}); peak memory median error "
        f"{fit.get('memory_median_abs_error', float('nan')):.1%}"
    )
    console.print(f"profile: {path}\ncheck it with: search hwcost validate --target {path}")
    return 0


def _validate(args: argparse.Namespace, console: Console) -> int:
    from hwcost.calibration.backends import BackendError, get_backend
    from hwcost.calibration.validation import VALIDATION_SETS, ValidationError, check_host, measure_set, print_report, validate
    from search.onnx_export import export_onnx
    from search.progress import RichDisplay

    cases = VALIDATION_SETS[args.model_set]
    try:
        profile = load_target(args.target)
        if args.runtime:
            profile = dataclasses.replace(profile, runtime=args.runtime)
        check_host(profile)
        backend = get_backend(profile.runtime, export_onnx)
        with RichDisplay() as display:
            report = validate(profile, measure_set(backend, cases, progress=display.stage), cases)
    except (BackendError, ProfileError, ValidationError) as error:
        raise ConfigError(str(error)) from None
    if args.json:
        sys.stdout.write(report.to_json() + "\n")
    else:
        print_report(report)
    return 0


__all__ = ["add_hwcost_commands"]
