"""MODEL_CARD.md of a bundle, rendered from its config.json and model description alone.

Every number on the card is a field of config.json (metrics measured at export, costs predicted
by `hwcost`), so the card can be re-rendered, and checked, from the bundle itself. What a task
says differently (its headline metric, quality table, inputs and usage) is a `_TaskCard`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from spaces.bundle import CONFIG_FILE, MODEL_CARD_FILE, ONNX_FILE, WEIGHTS_FILE, BundleConfig
from spaces.description import FLOAT_BITS, ModelDescription

COST_KEYS = ("latency_ms", "real_time_factor", "peak_memory_bytes")
"""Per-target metrics the card lists, stored in config.json as `<key>@<target>`."""


def render_model_card(config: BundleConfig, description: ModelDescription) -> str:
    """The model card as Markdown."""
    sections = [
        _title(config),
        _model_section(config, description),
        _TASK_CARDS[config.task].quality(config),
        _cost_section(config),
        _data_section(config),
        _usage_section(config),
        _limitations_section(config),
    ]
    return "\n\n".join(sections) + "\n"


def _title(config: BundleConfig) -> str:
    source = config.source
    return (
        f"# {config.family} speaker-{config.task} model, trial {source.get('trial')} of `{source.get('run')}`\n\n"
        f"{_bits_summary(config)}; {int(config.size_bytes):,} bytes stored, {_TASK_CARDS[config.task].headline(config)}. "
        f"Selected with `{source.get('selection')}`."
    )


def _model_section(config: BundleConfig, description: ModelDescription) -> str:
    metrics = config.metrics
    reference = config.evaluation.get("reference", {})
    ratio = reference.get("size_bytes", config.size_bytes) / config.size_bytes
    inputs = ", ".join(f"`{spec.name}` {list(spec.shape)}" for spec in config.inputs)
    outputs = ", ".join(f"`{spec.name}` {list(spec.shape)}" for spec in config.outputs)
    lines = [
        "## Model",
        "",
        f"- Task: speaker {config.task}. Inputs: {inputs}; outputs: {outputs}. {_TASK_CARDS[config.task].use}",
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


def _quality_table(confidence: float, rows: list[str], note: str) -> str:
    """The quality section: metric rows (value, interval, FP32 teacher) and how they were measured."""
    header = [
        "## Quality",
        "",
        f"| metric | value | {100 * confidence:.0f}% confidence interval | FP32 teacher |",
        "| --- | --- | --- | --- |",
    ]
    return "\n".join([*header, *rows, "", note])


def _verification_quality(config: BundleConfig) -> str:
    metrics, evaluation = config.metrics, config.evaluation
    reference = evaluation.get("reference", {})
    rows = [
        f"| EER | {100 * metrics['eer']:.2f}% | {100 * metrics['eer_low']:.2f}% to {100 * metrics['eer_high']:.2f}% "
        f"| {100 * reference.get('eer', float('nan')):.2f}% |",
        f"| minDCF (p_target 0.01, C_miss = C_fa = 1) | {metrics['min_dcf']:.3f} | not estimated "
        f"| {reference.get('min_dcf', float('nan')):.3f} |",
    ]
    note = (
        f"Cosine scores of {int(metrics['scored_trials']):,} trials ({int(metrics['target_trials']):,} same-speaker) "
        f"between utterances of the test split (seed {evaluation.get('seed')}). The interval is a percentile "
        f"bootstrap over trials ({evaluation.get('bootstrap_replicates')} replicates, same-speaker and "
        "different-speaker trials resampled separately); it covers trial sampling only, not a change of speakers "
        "or recording conditions."
    )
    return _quality_table(metrics["eer_confidence"], rows, note)


def _extraction_quality(config: BundleConfig) -> str:
    metrics, evaluation = config.metrics, config.evaluation
    reference = evaluation.get("reference", {})
    rows = [
        f"| SI-SDRi | {metrics['si_sdri']:.2f} dB | {metrics['si_sdri_low']:.2f} to {metrics['si_sdri_high']:.2f} dB "
        f"| {reference.get('si_sdri', float('nan')):.2f} dB |",
        f"| SDRi | {metrics['sdri']:.2f} dB | not estimated | {reference.get('sdri', float('nan')):.2f} dB |",
    ]
    note = (
        f"Mean improvement over the unprocessed mixture on {int(metrics['test_mixtures']):,} test mixtures "
        f"(seed {evaluation.get('seed')}); SDRi is the plain, scale-dependent SDR (no BSS-eval distortion "
        f"filter). The interval is a percentile bootstrap over mixtures ({evaluation.get('bootstrap_replicates')} "
        "replicates); it covers the choice of mixtures only, not a change of speakers or recording conditions."
    )
    return _quality_table(metrics["si_sdri_confidence"], rows, note)


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


def _data_section(config: BundleConfig) -> str:
    data = config.evaluation.get("data", {})
    corpus = ", ".join(f"{key} {_plain(value)}" for key, value in data.items() if key != "corpus")
    return "\n".join(
        [
            "## Data",
            "",
            f"- Corpus: `{data.get('corpus', 'unknown')}` ({corpus}). The teacher was trained on the train split; "
            "the metrics above come from the test split, whose speakers are disjoint from the train speakers.",
            f"- {_TASK_CARDS[config.task].inputs(config)}",
            f"- Teacher training: `{json.dumps(config.evaluation.get('teacher', {}))}`.",
        ]
    )


def _feature_inputs(config: BundleConfig) -> str:
    features = config.features
    return (
        f"Features: {features.kind}; {features.num_mel_bins} mel bins, {features.frame_length_ms:g} ms windows, "
        f"{features.frame_shift_ms:g} ms hop, {config.sample_rate} Hz mono audio in [-1, 1]."
    )


def _audio_inputs(config: BundleConfig) -> str:
    mixtures = config.evaluation.get("mixtures", {})
    return (
        f"Inputs: raw {config.sample_rate} Hz mono audio in [-1, 1], no front end. Mixtures: "
        f"`{json.dumps(mixtures)}`."
    )


def _usage_section(config: BundleConfig) -> str:
    return "\n".join(
        [
            "## How to load and run",
            "",
            f"Files: `{CONFIG_FILE}` (everything on this card), `{WEIGHTS_FILE}` (the packed weights, "
            f"{config.size_bytes:,} bytes), `{ONNX_FILE}` (quantized layers as integer weights with "
            f"DequantizeLinear or a Gather over their codebook), `{MODEL_CARD_FILE}`.",
            "",
            *_TASK_CARDS[config.task].usage(config),
            "",
            "`search verify BUNDLE` checks that both agree on the test split and measures onnxruntime's latency.",
        ]
    )


def _usage_blocks(imports: list[str], run: list[str], onnx_feed: str) -> list[str]:
    """The PyTorch block (load_bundle, then `run`) and the onnxruntime block feeding `onnx_feed`."""
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
        "```",
    ]


def _verification_usage(config: BundleConfig) -> list[str]:
    (features,) = [spec.name for spec in config.inputs]
    (output,) = [spec.name for spec in config.outputs]
    features_call = (
        f"FbankConfig(num_mel_bins={config.features.num_mel_bins}, frame_length_ms={config.features.frame_length_ms:g}, "
        f"frame_shift_ms={config.features.frame_shift_ms:g}, sample_rate={config.sample_rate})"
    )
    return _usage_blocks(
        ["from evaluators.features import FbankConfig, compute_fbank"],
        [
            f"features = compute_fbank(audio, {features_call})  # audio: float samples in [-1, 1]",
            f"embedding = bundle.model(features.unsqueeze(0))  # [1, {config.outputs[0].shape[-1]}]",
        ],
        f'({output},) = session.run(None, {{"{features}": features.unsqueeze(0).numpy()}}',
    )


def _extraction_usage(config: BundleConfig) -> list[str]:
    mixture, enrollment = [spec.name for spec in config.inputs]
    (output,) = [spec.name for spec in config.outputs]
    return _usage_blocks(
        [],
        [
            f"# {mixture}, {enrollment}: float32 tensors [1, samples] at {config.sample_rate} Hz in [-1, 1], any lengths",
            f"{output} = bundle.model({mixture}, {enrollment})  # [1, samples of the {mixture}]",
        ],
        f'({output},) = session.run(None, {{"{mixture}": {mixture}.numpy(), "{enrollment}": {enrollment}.numpy()}}',
    )


@dataclass(frozen=True)
class _TaskCard:
    """What the card says differently per task.

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


_TASK_CARDS = {
    "verification": _TaskCard(
        headline=lambda config: f"EER {100 * config.metrics['eer']:.2f}% on the test split",
        use="Two utterances are compared by the cosine similarity of their embeddings; a higher score means the "
        "same speaker.",
        quality=_verification_quality,
        inputs=_feature_inputs,
        usage=_verification_usage,
    ),
    "extraction": _TaskCard(
        headline=lambda config: f"SI-SDRi {config.metrics['si_sdri']:.2f} dB on the test mixtures",
        use="The estimate is the voice of the enrollment's speaker taken out of the mixture (as long as the "
        "mixture); the enrollment is another utterance of that speaker.",
        quality=_extraction_quality,
        inputs=_audio_inputs,
        usage=_extraction_usage,
    ),
}


def _limitations_section(config: BundleConfig) -> str:
    return "\n".join(
        [
            "## Limitations",
            "",
            "- Trained and evaluated on a synthetic corpus: quality on real speech is unknown until measured.",
            "- Latencies are model predictions per target profile; onnxruntime has no sub-8-bit, lookup-table or "
            "binary kernels, so its measured latency says how fast the float and int8 paths run, not the packed "
            "kernels the cost model prices.",
        ]
    )


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


__all__ = ["COST_KEYS", "render_model_card"]
