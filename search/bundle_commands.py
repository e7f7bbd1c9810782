"""`search embed BUNDLE WAV...` and `search score BUNDLE A.wav B.wav`: a bundle used from audio files.

Both run the bundle as a deployer does, through `spaces.bundle_runner` (the code every
verification bundle carries as runner.py: numpy front-end, onnxruntime model, calibrated
thresholds), so what the commands print is what a deployment computes. A missing or unreadable
bundle or audio file is one `error:` line and exit code 2 (as a `BundleError`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
from rich.console import Console

from spaces.bundle import BundleError

EMBEDDING_FORMATS = (".npy", ".json")
"""File endings `search embed --out` writes: a `[files, dim]` float32 array, or JSON of files and embeddings."""


@contextlib.contextmanager
def _runner() -> Iterator[ModuleType]:
    """The runner module (imported on use: onnxruntime and soundfile stay out of every other command),
    its errors (bad bundle, bad audio) raised as `BundleError`, which the CLI prints as one line."""
    from spaces import bundle_runner

    try:
        yield bundle_runner
    except bundle_runner.RunnerError as error:
        raise BundleError(str(error)) from None


def _embed(args: argparse.Namespace, console: Console) -> int:
    out = Path(args.out) if args.out else None
    if out is not None and out.suffix not in EMBEDDING_FORMATS:
        raise BundleError(f"--out {out}: expected a file ending in {' or '.join(EMBEDDING_FORMATS)}")
    with _runner() as runner:
        model = runner.load(args.bundle)
        embeddings = np.stack([model.embed_file(path) for path in args.wavs]).astype(np.float32)
    if out is None:
        for path, embedding in zip(args.wavs, embeddings):
            print(json.dumps({"file": path, "embedding": [float(value) for value in embedding]}))
        return 0
    if out.suffix == ".npy":
        np.save(out, embeddings)
    else:
        out.write_text(json.dumps({"files": args.wavs, "embeddings": embeddings.tolist()}) + "\n")
    console.print(f"{len(args.wavs)} embedding(s) of {embeddings.shape[1]} values: {out}")
    return 0


def _score(args: argparse.Namespace, console: Console) -> int:
    with _runner() as runner:
        model = runner.load(args.bundle)
        threshold = model.threshold(args.point)
        score = model.score(model.embed_file(args.first), model.embed_file(args.second))
    point = args.point or model.decision["default"]
    verdict = "same speaker" if score >= threshold else "different speakers"
    console.print(f"score {score:.4f}, threshold {threshold:.4f} ({point}): {verdict}")
    return 0


def add_parsers(commands: argparse._SubParsersAction) -> None:
    """`embed` and `score` under the `search` command's subcommands."""
    embed = commands.add_parser(
        "embed",
        help="embed audio files with a verification bundle (numpy front-end + onnxruntime, as runner.py)",
        description="Print (or write) the speaker embedding of each audio file, computed as the bundle's runner.py "
        "computes it: the front-end config.json states, then model.onnx.",
    )
    embed.add_argument("bundle", metavar="BUNDLE", help="bundle folder written by `search export`")
    embed.add_argument("wavs", nargs="+", metavar="WAV", help="audio files soundfile reads (WAV, FLAC, OGG...)")
    embed.add_argument("--out", metavar="FILE", help="write the embeddings to FILE.npy ([files, dim]) or FILE.json instead")
    embed.set_defaults(handler=_embed)
    score = commands.add_parser(
        "score",
        help="score two audio files with a verification bundle and decide: same speaker or not",
        description="Cosine score of two files' embeddings and the decision at the bundle's calibrated threshold.",
    )
    score.add_argument("bundle", metavar="BUNDLE", help="bundle folder written by `search export`")
    score.add_argument("first", metavar="A", help="audio file")
    score.add_argument("second", metavar="B", help="audio file")
    score.add_argument("--point", help="operating point of the threshold (default: the bundle's, the EER point)")
    score.set_defaults(handler=_score)


__all__ = ["add_parsers"]
