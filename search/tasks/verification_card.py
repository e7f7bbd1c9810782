"""The model card's speaker-verification text: EER table and decision thresholds, front-end, usage.

The usage runs the bundle's own `runner.py` (numpy, onnxruntime, soundfile, soxr), so a card
never sends a deployer to this package's feature code; the PyTorch block feeds the model that
`load_bundle` rebuilds with the runner's features.
"""

from __future__ import annotations

from search.model_card import TaskCard, quality_table
from search.tasks.frontend_spec import frontend_words
from search.tasks.verification_threshold import EER_POINT, FALSE_ACCEPT_POINT
from spaces.bundle import POOLINGS, RUNNER_FILE, BundleConfig

POINT_WORDS = {EER_POINT: "EER point", FALSE_ACCEPT_POINT: "1% false accepts"}
"""Operating points of `decision.thresholds`, as the card's table names them."""


def _quality(config: BundleConfig) -> str:
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
    table = quality_table(metrics["eer_confidence"], rows, note)
    return f"{table}\n\n{_decision(config)}" if config.decision else table


def _decision(config: BundleConfig) -> str:
    """The thresholds and their error rates on the held-out speakers, which did not choose them."""
    decision = config.decision
    calibration, held_out = decision["calibration"], decision["held_out"]
    lines = [
        "### Decision threshold",
        "",
        f"Same speaker when the cosine score is at least the threshold. The thresholds were chosen on the "
        f"{calibration['trials']:,} trials ({calibration['target_trials']:,} same-speaker) among {calibration['speakers']} "
        f"speakers of `{decision['eval_set']}` ({decision['split']}); the error rates below are those of the other "
        f"{held_out['speakers']} speakers' {held_out['trials']:,} trials ({held_out['target_trials']:,} same-speaker), "
        "which the thresholds never saw. The EER and minDCF above need no threshold.",
        "",
        "| operating point | threshold | false accepts (held out) | false rejects (held out) |",
        "| --- | --- | --- | --- |",
    ]
    for point, threshold in decision["thresholds"].items():
        rates = held_out["error_rates"][point]
        default = " (default)" if point == decision["default"] else ""
        lines.append(
            f"| {POINT_WORDS[point]}{default} | {threshold:.4f} | {100 * rates['false_accept']:.2f}% "
            f"| {100 * rates['false_reject']:.2f}% |"
        )
    return "\n".join(lines)


def _inputs(config: BundleConfig) -> str:
    features = config.features
    text = (
        f"Features: {features.kind}; {features.num_mel_bins} mel bins, {features.frame_length_ms:g} ms windows, "
        f"{features.frame_shift_ms:g} ms hop, {config.sample_rate} Hz mono audio in [-1, 1]."
    )
    if features.frontend is not None:
        text = f"{text} {frontend_words(features.frontend)}"
    windows = features.windows
    if windows is None:
        return text
    return (
        f"{text} The model reads partial windows of {windows.frames} frames, one every {windows.step_frames} frames "
        f"(the waveform zero-padded to the end of the last window, kept when at least {100 * windows.min_coverage:g}% "
        f"of it is audio, an utterance's only window always), one embedding per window; an utterance's embedding is "
        f"{POOLINGS[windows.pooling]}."
    )


def _usage(config: BundleConfig) -> list[str]:
    """The runner from audio to a decision, then the PyTorch model on the runner's features."""
    dim = config.outputs[0].shape[-1]
    webrtcvad = "silence_trimming" in ((config.features.frontend or {}).get("preprocessing") or {})
    needs = "numpy, onnxruntime, soundfile and soxr" + (" (and webrtcvad-wheels for the silence trimming)" if webrtcvad else "")
    windows = config.features.windows
    shape = f"[windows, {windows.frames}, {config.features.num_mel_bins}]" if windows else f"[frames, {config.features.num_mel_bins}]"
    if windows is None:
        pytorch = ["with torch.no_grad():", f"    embedding = bundle.model(features[None])[0]  # [{dim}]"]
    else:
        pytorch = [
            "with torch.no_grad():",
            f"    window_embeddings = bundle.model(features)  # one per window: [windows, {dim}]",
            f"# the utterance's is {POOLINGS[windows.pooling]}:",
            "embedding = torch.nn.functional.normalize(window_embeddings.mean(dim=0), dim=0)",
        ]
    return [
        f"`{RUNNER_FILE}` computes the front-end in numpy from config.json and runs `model.onnx`; it needs {needs}, "
        "not this package:",
        "",
        "```python",
        "import sys",
        "",
        'sys.path.insert(0, "BUNDLE")',
        "import runner",
        "",
        'model = runner.load("BUNDLE")',
        f'a = model.embed_file("a.wav")  # [{dim}]; model.embed(samples, sample_rate) embeds a waveform',
        'b = model.embed_file("b.wav")',
        "score = model.score(a, b)  # cosine similarity",
        f'same = model.accepts(score)  # score >= the EER-point threshold; model.accepts(score, "{FALSE_ACCEPT_POINT}") is stricter',
        "```",
        "",
        f"From a shell: `python BUNDLE/{RUNNER_FILE} a.wav b.wav` prints the score and the decision (one file: its "
        "embedding as JSON); with this package installed, `search score BUNDLE a.wav b.wav` and "
        "`search embed BUNDLE a.wav ... --out embeddings.npy` do the same.",
        "",
        "The PyTorch model, rebuilt from config.json and weights.bin alone, reads the runner's features (`model` "
        "is the runner's above; `samples` a waveform at `sample_rate`):",
        "",
        "```python",
        "import torch",
        "from spaces import load_bundle",
        "",
        'bundle = load_bundle("BUNDLE")',
        f"features = torch.from_numpy(model.features(samples, sample_rate))  # {shape}",
        *pytorch,
        "```",
    ]


VERIFICATION_CARD = TaskCard(
    headline=lambda config: f"EER {100 * config.metrics['eer']:.2f}% on the test split",
    use="Two utterances are compared by the cosine similarity of their embeddings; a higher score means the "
    "same speaker.",
    quality=_quality,
    inputs=_inputs,
    usage=_usage,
)


__all__ = ["VERIFICATION_CARD"]
