"""MODEL_CARD.md of a bundle, rendered from its config.json and model description alone.

Every number on the card is a field of config.json (metrics measured at export, costs predicted
by `hwcost`), so the card can be re-rendered, and checked, from the bundle itself. What a task
says differently (its headline metric, quality table, inputs and usage) is its `TaskCard`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from spaces.bundle import CONFIG_FILE, MODEL_CARD_FILE, ONNX_FILE, WEIGHTS_FILE, BundleConfig
from spaces.description import FLOAT_BITS, ModelDescription

COST_KEYS = ("latency_ms", "real_time_factor", "peak_memory_bytes")
"""Per-target metrics the card lists, stored in config.json as `<key>@<target>`."""


def render_model_card(config: BundleConfig, description: ModelDescription, card: TaskCard) -> str:
    """The model card as Markdown, with the task's text from `card`."""
    sections = [
        _title(config, card),
        _model_section(config, description, card),
        card.quality(config),
        _cost_section(config),
        _data_section(config, card),
        _usage_section(config, card),
        _limitations_section(config),
    ]
    return "\n\n".join(sections) + "\n"


def _title(config: BundleConfig, card: TaskCard) -> str:
    """The title names the run by its folder's name: config.json keeps the full path, which means
    nothing on the machine the bundle is deployed to."""
    source = config.source
    run = PurePath(str(source.get("run", ""))).name
    return (
        f"# {config.family} speaker-{config.task} model, trial {source.get('trial')} of run `{run}`\n\n"
        f"{_bits_summary(config)}; {int(config.size_bytes):,} bytes stored, {card.headline(config)}. "
        f"Selected with `{source.get('selection')}`."
    )


def _model_section(config: BundleConfig, description: ModelDescription, card: TaskCard) -> str:
    metrics = config.metrics
    reference = config.evaluation.get("reference", {})
    ratio = reference.get("size_bytes", config.size_bytes) / config.size_bytes
    inputs = ", ".join(f"`{spec.name}` {list(spec.shape)}" for spec in config.inputs)
    outputs = ", ".join(f"`{spec.name}` {list(spec.shape)}" for spec in config.outputs)
    lines = [
        "## Model",
        "",
        f"- Task: speaker {config.task}. Inputs: {inputs}; outputs: {outputs}. {card.use}",
        f"- Family: `{config.family}` with arguments `{json.dumps(config.model_arguments)}`"
        + (", repeated blocks sharing weights" if config.share_repeated_blocks else "") + ".",
        f"- Parameters: {description.params:,}. Stored size (`{WEIGHTS_FILE}`, header included): "
        f"{config.size_bytes:,} bytes, {ratio:.2f}x smaller than the FP32 teacher ({int(reference.get('size_bytes', 0)):,} bytes).",
        f"- Activations: {'FP32' if config.activation_bits == FLOAT_BITS else f'{config.activation_bits}-bit'}.",
        f"- Candidate (the search's knobs): `{json.dumps(config.source.get('candidate', {}))}`.",
        f"- Mean bits per weight: {metrics.get('mean_weight_bits', float('nan')):.2f}.",
        "",
        "| layer | kind | weights | bits | quantizer |",
        "| --- | --- | --- | --- | --- |",
    ]
    for layer in description.layers:
        if not layer.params:
            continue
        quantization = config.layers.get(layer.name)
        bits, quantizer = (quantization.bits, quantization.quantizer) if quantization else (FLOAT_BITS, "none (FP32)")
        shared = f" (shares {layer.shared_with})" if layer.shared_with else ""
        lines.append(f"| {layer.name}{shared} | {layer.kind} | {layer.params:,} | {bits} | {quantizer} |")
    return "\n".join(lines)


def quality_table(confidence: float, rows: list[str], note: str) -> str:
    """The quality section: metric rows (value, interval, FP32 teacher) and how they were measured."""
    header = [
        "## Quality",
        "",
        f"| metric | value | {100 * confidence:.0f}% confidence interval | FP32 teacher |",
        "| --- | --- | --- | --- |",
    ]
    return "\n".join([*header, *rows, "", note])


def _cost_section(config: BundleConfig) -> str:
    targets = config.evaluation.get("cost_targets", [])
    lines = [
        "## Cost per target",
        "",
        "Predicted by the `hwcost` roofline model for one second of audio on one core (not measured on "
        "the devices; `search verify` measures onnxruntime on the machine it runs on).",
        "",
        "| target | latency ms | real-time factor | peak memory MB |",
        "| --- | --- | --- | --- |",
    ]
    for target in targets:
        latency, factor, memory = (config.metrics[f"{key}@{target}"] for key in COST_KEYS)
        lines.append(f"| {target} | {latency:.3f} | {factor:.5f} | {memory / 1e6:.2f} |")
    return "\n".join(lines)


def _data_section(config: BundleConfig, card: TaskCard) -> str:
    train, tests = _data_sources(config.evaluation.get("data", {}))
    return "\n".join(
        [
            "## Data",
            "",
            f"- Teacher training data: {train}.",
            f"- Test data (the metrics above): {tests}.",
            f"- {card.inputs(config)}",
            f"- Teacher training: `{json.dumps(config.evaluation.get('teacher', {}))}`.",
        ]
    )


def _data_sources(data: Mapping[str, Any]) -> tuple[str, str]:
    """What the teacher trained on and what the metrics were measured on, in words.

    The run's `data:` block is either one synthetic corpus (train and test speakers disjoint by
    construction) or a `train` source and named `eval` sources, each synthetic or on disk.
    """
    if "train" not in data:
        corpus = ", ".join(f"{key} {_plain(value)}" for key, value in data.items() if key != "corpus")
        return (
            f"the built-in synthetic corpus (`{data.get('corpus', 'synthetic')}`: {corpus}), its train speakers",
            "its test speakers, disjoint from the train speakers",
        )
    tests = [f"`{entry.get('name')}`: {_source_words(entry)}" for entry in data.get("eval", [])]
    return _source_words(data["train"]), "; ".join(tests) or "none recorded"


def _source_words(source: Mapping[str, Any]) -> str:
    corpus = source.get("corpus", "synthetic")
    if corpus == "synthetic":
        return "the built-in synthetic corpus"
    side = source.get("speakers", "all")
    speakers = "all speakers" if side == "all" else f"the {side} side of a seeded speaker-disjoint split"
    return f"{corpus} corpus at `{source.get('path')}` ({speakers})"


def _usage_section(config: BundleConfig, card: TaskCard) -> str:
    return "\n".join(
        [
            "## How to load and run",
            "",
            f"Files: `{CONFIG_FILE}` (everything on this card), `{WEIGHTS_FILE}` (the packed weights, "
            f"{config.size_bytes:,} bytes), `{ONNX_FILE}` (quantized layers as integer weights with "
            f"DequantizeLinear or a Gather over their codebook), `{MODEL_CARD_FILE}`.",
            "",
            *card.usage(config),
            "",
            "`search verify BUNDLE` checks that both agree on the test split and measures onnxruntime's latency.",
        ]
    )


def usage_blocks(imports: list[str], run: list[str], onnx_feed: str, onnx_after: Sequence[str] = ()) -> list[str]:
    """The PyTorch block (load_bundle, then `run`) and the onnxruntime block feeding `onnx_feed`,
    then `onnx_after` (what turns the outputs into the result, e.g. pooling window embeddings)."""
    return [
        "```python",
        *imports,
        "from spaces import load_bundle",
        "",
        'bundle = load_bundle("BUNDLE")  # rebuilt from config.json + weights.bin alone',
        *run,
        "```",
        "",
        "```python",
        "import onnxruntime",
        "",
        'session = onnxruntime.InferenceSession("BUNDLE/model.onnx")',
        f"{onnx_feed})",
        *onnx_after,
        "```",
    ]


@dataclass(frozen=True)
class TaskCard:
    """What the card says differently per task (each `search.tasks.Task` provides one).

    Attributes:
        headline: The title's quality figure.
        use: How the output is used (after the inputs and outputs).
        quality: The quality section.
        inputs: The data section's line on what the model reads.
        usage: Code blocks loading and running the bundle.
    """

    headline: Callable[[BundleConfig], str]
    use: str
    quality: Callable[[BundleConfig], str]
    inputs: Callable[[BundleConfig], str]
    usage: Callable[[BundleConfig], list[str]]


def _limitations_section(config: BundleConfig) -> str:
    return "\n".join(
        [
            "## Limitations",
            "",
            f"- {_data_limitation(config.evaluation.get('data', {}))}",
            "- Latencies are model predictions per target profile; onnxruntime has no sub-8-bit, lookup-table or "
            "binary kernels, so its measured latency says how fast the float and int8 paths run, not the packed "
            "kernels the cost model prices.",
        ]
    )


def _data_limitation(data: Mapping[str, Any]) -> str:
    """What the measured quality does not cover, given the data the run used."""
    sources = [data] if "train" not in data else [data["train"], *data.get("eval", [])]
    if all(source.get("corpus", "synthetic") == "synthetic" for source in sources):
        return "Trained and evaluated on a synthetic corpus: quality on real speech is unknown until measured."
    return "Quality was measured on the test data above only: other speakers, languages, channels or noise may differ."


def _bits_summary(config: BundleConfig) -> str:
    """e.g. "4-bit uniform weights" or "mixed 2-8-bit weights (uniform, kmeans)"."""
    if not config.layers:
        return "FP32 weights"
    bits = sorted({layer.bits for layer in config.layers.values()})
    quantizers = ", ".join(sorted({layer.quantizer for layer in config.layers.values()}))
    width = f"{bits[0]}-bit" if len(bits) == 1 else f"mixed {bits[0]}-{bits[-1]}-bit"
    return f"{width} {quantizers} weights"


def _plain(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "-".join(_plain(item) for item in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


__all__ = ["COST_KEYS", "TaskCard", "quality_table", "render_model_card", "usage_blocks"]
