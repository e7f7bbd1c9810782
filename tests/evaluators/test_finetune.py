import dataclasses
from pathlib import Path

import pytest
import torch

from evaluators.finetune import FineTuner
from evaluators.verification_fidelity import VerificationFidelity
from evaluators.finetune_data import FineTuneData, sample_crops
from evaluators.finetune_loss import speaker_centroids
from evaluators.training import TrainingError
from evaluators.verification import VerificationEvaluator
from search.config import load_config
from spaces.compress import ModelSpec, compress, quantizable_layers
from spaces.plan import LayerQuantization
from search.tasks.verification_setup import verification_setup

pytestmark = pytest.mark.usefixtures("single_thread")

BINS = 16
SPEC = ModelSpec("resnet", dict(num_mel_bins=BINS, base_width=4, blocks=(1, 1, 1, 1), embedding_dim=16), BINS, 100, 16000)
LAYERS = quantizable_layers(SPEC.build())


def _voices(speakers: int = 4, utterances: int = 4) -> tuple[list[torch.Tensor], list[int]]:
    """Utterances whose speaker is a fixed spectral shape plus noise."""
    generator = torch.Generator().manual_seed(0)
    shapes = 2.0 * torch.randn(speakers, BINS, generator=generator)
    features = [shapes[s] + torch.randn(40 + 5 * u, BINS, generator=generator) for s in range(speakers) for u in range(utterances)]
    return features, [s for s in range(speakers) for _ in range(utterances)]


@pytest.fixture(scope="module")
def teacher() -> tuple[dict, FineTuneData]:
    torch.manual_seed(0)
    model = SPEC.build()
    features, labels = _voices()
    return {key: value.clone() for key, value in model.state_dict().items()}, FineTuneData(
        features, labels, speaker_centroids(model, features, labels)
    )


def _tuner(teacher, bits: int = 2, quantizer: str = "uniform", **fidelity) -> FineTuner:
    state, data = teacher
    config = VerificationFidelity(**{"steps": (0, 8), "batch_size": 4, "crop_frames": 30, **fidelity})
    return FineTuner(SPEC, state, {name: LayerQuantization(bits, quantizer) for name in LAYERS}, data, config, seed=0)


def test_default_ladder_is_post_training_only():
    config = VerificationFidelity()
    assert config.steps == (0,) and not config.trains
    assert VerificationFidelity(steps=[0, 50]).steps == (0, 50) and VerificationFidelity(steps=(0, 50)).trains


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(steps=()), "fidelity.steps=\\(\\): expected a non-empty list"),
        (dict(steps=100), "fidelity.steps=100: expected a non-empty list"),
        (dict(steps=(0, -5)), "step counts must be integers >= 0"),
        (dict(steps=(0, 2.5)), "step counts must be integers >= 0"),
        (dict(steps=(100, 50)), "must be strictly increasing"),
        (dict(batch_size=0), "fidelity.batch_size=0"),
        (dict(learning_rate=0.0), "fidelity.learning_rate=0.0"),
        (dict(distillation_weight=-1.0), "fidelity.distillation_weight=-1.0"),
        (dict(msft_order="random"), "fidelity.msft_order='random'"),
        (dict(sensitivity_quantizer="ternary"), "fidelity.sensitivity_quantizer='ternary': unknown"),
        (dict(sensitivity_bits=1), "fidelity.sensitivity_bits=1: not supported by 'uniform'"),
        (dict(temperature_start=0.1, temperature_end=0.5), "fidelity.temperature_end=0.5"),
        (dict(max_grad_norm=-1.0), "fidelity.max_grad_norm=-1.0: must be >= 0"),
    ],
)
def test_bad_fidelity_settings_name_the_key(settings, message):
    with pytest.raises(ValueError, match=message):
        VerificationFidelity(**settings)


def test_gradient_clipping_bounds_every_step_and_is_off_by_default(teacher, monkeypatch):
    norms = []
    original = torch.optim.Adam.step

    def recording_step(optimizer, *args, **kwargs):
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))
        return original(optimizer, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", recording_step)
    _tuner(teacher, learning_rate=1e-2).train_to(4)
    free = list(norms)
    assert max(free) > 1e-3
    bound = min(free) / 4
    norms.clear()
    clipped = _tuner(teacher, learning_rate=1e-2, max_grad_norm=bound)
    clipped.train_to(4)
    assert len(norms) == 4 and max(norms) <= bound * (1 + 1e-5) < max(free)


def test_zero_steps_is_post_training_quantization(teacher):
    expected = compress(SPEC, teacher[0], {name: 2 for name in LAYERS}, "uniform")
    tuner = _tuner(teacher)
    tuner.train_to(0)
    assert tuner.compressed().packed == expected.packed


def test_short_qat_lowers_the_loss_of_a_2_bit_model(teacher):
    state, data = teacher
    crops, labels = sample_crops(data.features, torch.tensor(data.labels), 32, 30, torch.Generator().manual_seed(9))
    reference = SPEC.build()
    reference.load_state_dict(state)
    reference.eval()
    tuner = _tuner(teacher, steps=(0, 30), learning_rate=3e-3)

    @torch.no_grad()
    def held_out_loss() -> float:  # the training objective (its head trains too) on crops it never saw
        return tuner.loss(tuner.compressed().model(crops), labels, reference(crops)).item()

    before = held_out_loss()
    tuner.train_to(30)
    assert held_out_loss() < 0.8 * before


def test_continuing_a_rung_equals_training_straight_to_its_budget(teacher):
    stepwise = _tuner(teacher, quantizer="kmeans", bits=2, reassign_every=3)
    stepwise.train_to(3)
    stepwise.compressed()  # a snapshot must not disturb training
    stepwise.train_to(6)
    straight = _tuner(teacher, quantizer="kmeans", bits=2, reassign_every=3)
    straight.train_to(6)
    assert stepwise.steps_done == straight.steps_done == 6
    assert stepwise.compressed().packed == straight.compressed().packed
    assert stepwise.compressed().packed != _tuner(teacher, quantizer="kmeans", bits=2).compressed().packed


def test_soft_step_fine_tuning_exports_hard_codes(teacher):
    tuner = _tuner(teacher, quantizer="kmeans", bits=2, soft_step=True)
    tuner.train_to(4)
    model = tuner.compressed().model
    for name in LAYERS:
        assert model.get_submodule(name).weight.unique().numel() <= 4


def test_non_finite_loss_is_a_clear_error(teacher):
    state, data = teacher
    poisoned = FineTuneData([torch.full_like(f, float("nan")) for f in data.features], data.labels, data.centroids)
    tuner = FineTuner(SPEC, state, {"embedding": LayerQuantization(4, "uniform")}, poisoned, VerificationFidelity(steps=(2,), batch_size=2, crop_frames=20), 0)
    with pytest.raises(TrainingError, match="fine-tuning: non-finite loss nan at step 0; lower fidelity.learning_rate"):
        tuner.train_to(2)


def test_fine_tuning_cannot_go_back(teacher):
    tuner = _tuner(teacher)
    tuner.train_to(2)
    with pytest.raises(ValueError, match="cannot fine-tune back to 1 steps: 2 already done"):
        tuner.train_to(1)


TINY = """
name: tiny
seed: 1
cache_dir: {cache}
data: {{train_speakers: 4, test_speakers: 3, utterances_per_speaker: 3, min_seconds: 0.6, max_seconds: 0.8}}
features: {{num_mel_bins: 16}}
model: {{family: resnet, base_width: 4, blocks: [1, 1, 1, 1], embedding_dim: 16}}
teacher: {{steps: 5, batch_size: 4, crop_frames: 40}}
space: {{bits: [2, 4, 32]}}
fidelity: {{steps: [0, 3, 6], batch_size: 4, crop_frames: 40, sensitivity_crops: 8}}
"""


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("finetune")
    path = root / "tiny.yaml"
    path.write_text(TINY.format(cache=root / "cache"))
    config = load_config(path)
    return config, VerificationEvaluator().prepare(verification_setup(config))


def test_prepare_caches_one_sensitivity_per_quantizable_layer(prepared):
    config, first = prepared
    assert list(first.sensitivities) == quantizable_layers(first.spec.build())
    assert all(isinstance(value, float) for value in first.sensitivities.values())
    cached = [path.name.split("-")[0] for path in Path(config.cache_dir).glob("*.pt")]
    assert cached.count("sensitivities") == 1 and cached.count("centroids") == 1
    again = VerificationEvaluator().prepare(verification_setup(config))
    assert again.sensitivities == first.sensitivities
    assert torch.equal(again.fine_tune_data.centroids, first.fine_tune_data.centroids)


def test_post_training_ladder_keeps_no_training_data(prepared):
    config, _ = prepared
    ptq_only = VerificationEvaluator().prepare(verification_setup(dataclasses.replace(config, fidelity=dataclasses.replace(config.fidelity, steps=(0,)))))
    assert ptq_only.fine_tune_data is None and ptq_only.sensitivities


def test_ladder_yields_every_rung_and_evaluate_returns_the_last(prepared):
    _, ready = prepared
    candidate = ready.space.uniform_candidate(2)
    rungs = list(VerificationEvaluator().evaluate_ladder(candidate, ready))
    assert [steps for steps, _ in rungs] == [0, 3, 6]
    post_training = compress(ready.spec, ready.teacher_state, ready.space.plan(candidate).layer_bits, "uniform")
    assert rungs[0][1].compressed.packed == post_training.packed
    assert rungs[1][1].compressed.packed != rungs[2][1].compressed.packed
    final = VerificationEvaluator().evaluate(candidate, ready)
    assert final.metrics == rungs[-1][1].metrics
    assert final.compressed.packed == rungs[-1][1].compressed.packed
