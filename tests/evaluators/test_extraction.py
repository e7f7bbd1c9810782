import numpy as np
import pytest
import torch
from torch import nn

from evaluators.data.mixtures import MixtureConfig, SpeakerPool, training_batch
from evaluators.extraction import ExtractionEvaluator
from evaluators.extraction_training import (
    ExtractorTrainingConfig,
    LossTerms,
    extraction_loss,
    extraction_metrics,
    target_activity,
    train_extractor,
    training_step,
)
from evaluators.si_sdr import si_sdr
from search.config import _parse
from spaces.models.extractor import SpeakerExtractor
from search.tasks.extraction_setup import extraction_setup

RATE = 8000
TINY_MODEL = dict(filters=16, window=16, bottleneck=16, hidden=24, skip_channels=16, blocks=2, stacks=2, embedding_dim=8,
                  voiceprint_blocks=1)  # fmt: skip


def _pool() -> SpeakerPool:
    """Two harmonic 'voices' an octave apart, three utterances each."""
    times = np.arange(int(0.4 * RATE)) / RATE

    def voice(f0: float, phase: float) -> np.ndarray:
        return sum(np.sin(2 * np.pi * f0 * k * times + phase * k) / k for k in range(1, 4)).astype(np.float32) * 0.2

    return SpeakerPool(RATE, {"low": [voice(150, p) for p in (0, 1, 2)], "high": [voice(300, p) for p in (0, 1, 2)]})


def test_target_activity_marks_the_frames_where_the_target_sounds():
    target = torch.cat([torch.zeros(1, 64), torch.ones(1, 64)], dim=1)
    activity = target_activity(target, window=16, stride=8)
    assert activity.shape == (1, 15)
    assert activity[0, :7].sum() == 0 and activity[0, 8:].min() == 1


def test_a_short_training_run_raises_si_sdri_on_a_fixed_batch():
    torch.manual_seed(0)
    model = SpeakerExtractor(**TINY_MODEL)
    batch = training_batch(_pool(), np.random.default_rng(0), 4, 2400, 1600, (-3.0, 3.0))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    terms = LossTerms(cue_weight=0.1)
    before = (si_sdr(model(batch.mixture, batch.enrollment), batch.target) - si_sdr(batch.mixture, batch.target)).mean()
    for _ in range(40):
        training_step(model, batch, optimizer, terms, clip_norm=5.0)
    with torch.no_grad():
        after = (si_sdr(model(batch.mixture, batch.enrollment), batch.target) - si_sdr(batch.mixture, batch.target)).mean()
    assert after > before + 5.0 and after > 0.0


def test_the_speaker_and_distillation_terms_add_to_the_loss():
    torch.manual_seed(0)
    model = SpeakerExtractor(**TINY_MODEL)
    batch = training_batch(_pool(), np.random.default_rng(0), 2, 1600, 1600, (0.0, 0.0))
    assert batch.speaker.tolist() and set(batch.speaker.tolist()) <= {0, 1}
    plain = extraction_loss(model, batch, LossTerms()).item()
    head = nn.Linear(8, 2)
    with_speaker = extraction_loss(model, batch, LossTerms(speaker_head=head, speaker_weight=1.0)).item()
    assert with_speaker > plain  # cross-entropy is positive
    itself = extraction_loss(model, batch, LossTerms(teacher=model, distill_weight=1.0)).item()
    assert itself < plain - 50.0  # matching its own estimate is worth about -80 dB of loss


def test_train_extractor_follows_its_seed_and_reports_every_step():
    results = []
    for _ in range(2):
        torch.manual_seed(0)
        model = SpeakerExtractor(**TINY_MODEL)
        losses = []
        config = ExtractorTrainingConfig(steps=3, batch_size=2)
        train_extractor(model, _pool(), MixtureConfig(segment_seconds=0.2, enrollment_seconds=0.2), RATE, config, seed=1,
                        on_step=lambda step, loss: losses.append(loss))  # fmt: skip
        results.append((losses, model.state_dict()["mask.weight"].clone()))
    assert len(results[0][0]) == 3 and results[0][0] == results[1][0]
    assert torch.equal(results[0][1], results[1][1])


def test_training_config_errors_name_the_key():
    with pytest.raises(ValueError, match="teacher.steps=0"):
        ExtractorTrainingConfig(steps=0)
    with pytest.raises(ValueError, match="teacher.speaker_weight=-1"):
        ExtractorTrainingConfig(speaker_weight=-1)


TINY_RUN = {
    "name": "tiny-extraction",
    "task": "extraction",
    "data": {"train_speakers": 3, "test_speakers": 3, "utterances_per_speaker": 3, "min_seconds": 0.4, "max_seconds": 0.6},
    "model": {"family": "extractor", **TINY_MODEL},
    "teacher": {"steps": 4, "batch_size": 2},
    "mixtures": {"test_mixtures": 4, "segment_seconds": 0.3, "enrollment_seconds": 0.3},
    "fidelity": {"steps": [0, 2], "batch_size": 2, "distillation_weight": 0.0},
    "space": {
        "quantizer": "uniform",
        "knobs": [
            {"name": "bits", "layers": ["*"], "granularity": "stage", "bits": [3, 8, 32]},
            {"name": "activation_bits", "choices": [8, 32]},
            {"name": "share", "choices": [False, True]},
            {"name": "distill.weight", "choices": [0.0, 1.0]},
            {"name": "distill.taps", "choices": ["estimate"]},
        ],
    },
}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    config = _parse({**TINY_RUN, "cache_dir": str(tmp_path_factory.mktemp("cache"))})
    return config, ExtractionEvaluator().prepare(extraction_setup(config))


def _candidate(space, **values):
    candidate = {name: domain[0] for name, domain in space.knobs.items()}
    return {**candidate, **values}


def test_prepare_caches_the_teacher_and_fixes_the_test_set(prepared):
    config, first = prepared
    second = ExtractionEvaluator().prepare(extraction_setup(config))
    assert all(torch.equal(first.teacher_state[key], second.teacher_state[key]) for key in first.teacher_state)
    assert len(first.test_set) == 4 and all(np.array_equal(a.mixture, b.mixture) for a, b in zip(first.test_set, second.test_set))
    assert first.spec.sample_rate == RATE == config.data.sample_rate


def test_the_reference_is_the_fp32_teacher_scored_in_db(prepared):
    _, state = prepared
    reference = ExtractionEvaluator().evaluate_reference(state)
    assert set(reference.metrics) == {"si_sdri", "sdri", "size_bytes", "params", "mean_weight_bits"}
    assert reference.metrics["mean_weight_bits"] == 32.0
    assert reference.metrics["si_sdri"] == pytest.approx(extraction_metrics(reference.compressed.model, state.test_set)["si_sdri"])


def test_a_candidate_is_measured_after_each_rung_on_the_model_that_ships(prepared):
    _, state = prepared
    evaluator = ExtractionEvaluator()
    candidate = _candidate(state.space, **{name: 3 for name in state.space.groups}, activation_bits=8)
    rungs = list(evaluator.evaluate_ladder(candidate, state))
    assert [steps for steps, _ in rungs] == [0, 2]
    reference = evaluator.evaluate_reference(state)
    for _, evaluation in rungs:
        assert evaluation.metrics["mean_weight_bits"] == 3.0
        assert evaluation.metrics["size_bytes"] < 0.6 * reference.metrics["size_bytes"]
        assert {layer.activation_bits for layer in evaluation.compressed.description.layers if layer.params} == {8}
    assert evaluator.evaluate(candidate, state).metrics == pytest.approx(rungs[-1][1].metrics)


def test_sharing_the_stacks_shrinks_the_packed_model(prepared):
    _, state = prepared
    evaluator = ExtractionEvaluator()
    plain = evaluator.evaluate(_candidate(state.space, share=False), state)
    shared = evaluator.evaluate(_candidate(state.space, share=True), state)
    assert shared.metrics["size_bytes"] < plain.metrics["size_bytes"] and shared.metrics["params"] < plain.metrics["params"]


def test_half_side_data_shrinks_a_trial_and_keeps_the_cached_teacher(prepared):
    config, state = prepared
    half_config = _parse({**TINY_RUN, "cache_dir": config.cache_dir, "space": {**TINY_RUN["space"], "side_bits": 16}})
    stages = []
    half = ExtractionEvaluator().prepare(extraction_setup(half_config), lambda stage, done, total: stages.append(stage))
    assert stages == ["mixtures", "mixtures"]  # the teacher came from the cache: no training steps reported
    assert all(torch.equal(half.teacher_state[key], value) for key, value in state.teacher_state.items())
    evaluator = ExtractionEvaluator()
    candidate = _candidate(state.space, **{name: 3 for name in state.space.groups})
    full, halved = evaluator.evaluate(candidate, state), evaluator.evaluate(candidate, half)
    assert halved.metrics["size_bytes"] < full.metrics["size_bytes"]
    assert {layer.extra_bits for layer in halved.compressed.description.layers} == {16}
    assert evaluator.evaluate_reference(half).metrics["size_bytes"] == evaluator.evaluate_reference(state).metrics["size_bytes"]


def test_distillation_toward_the_teacher_changes_fine_tuning(prepared):
    _, state = prepared
    evaluator = ExtractionEvaluator()
    bits = {name: 3 for name in state.space.groups}
    without = evaluator.evaluate(_candidate(state.space, **bits, **{"distill.weight": 0.0}), state)
    distilled = evaluator.evaluate(_candidate(state.space, **bits, **{"distill.weight": 1.0}), state)
    assert without.metrics["si_sdri"] != distilled.metrics["si_sdri"]


def test_an_extractor_distils_its_output_only(prepared):
    from dataclasses import replace

    from evaluators.extraction_finetune import ExtractorFineTuner
    from spaces.plan import CompressionPlan, DistillationPlan

    _, state = prepared
    plan = CompressionPlan(distillation=DistillationPlan(taps=("mask",), weight=1.0))
    with pytest.raises(ValueError, match=r"distill.taps=\['mask'\]: an extractor distils its output only"):
        ExtractorFineTuner(state.spec, state.teacher_state, plan, state.training, state.mixtures, state.fidelity,
                           state.teacher, state.seed)  # fmt: skip
    assert replace(plan, distillation=None).distillation is None


def test_shared_stacks_follow_the_first_stack_bits(prepared):
    _, state = prepared
    candidate = _candidate(state.space, share=True, **{"bits.stack0": 3, "bits.stack1": 8})
    evaluation = ExtractionEvaluator().evaluate(candidate, state)
    layers = {layer.name: layer for layer in evaluation.compressed.description.layers}
    assert layers["stacks.1.blocks.0.conv_in"].shared_with == "stacks.0.blocks.0.conv_in"
    assert layers["stacks.1.blocks.0.conv_in"].weight_bits == layers["stacks.0.blocks.0.conv_in"].weight_bits == 3


def test_a_narrower_student_is_sliced_from_the_teacher(prepared):
    from evaluators.extraction_finetune import ExtractorFineTuner
    from spaces.plan import CompressionPlan, StudentPlan

    _, state = prepared
    plan = CompressionPlan(student=StudentPlan("extractor", width=0.5))
    tuner = ExtractorFineTuner(state.spec, state.teacher_state, plan, state.training, state.mixtures, state.fidelity,
                               state.teacher, state.seed)  # fmt: skip
    assert tuner.spec.kwargs["hidden"] == TINY_MODEL["hidden"] // 2
    teacher_params = sum(value.numel() for value in state.teacher_state.values())
    assert tuner.compressed().description.params < 0.5 * teacher_params
    assert torch.equal(tuner.student.encoder.weight, state.teacher_state["encoder.weight"][:8])
