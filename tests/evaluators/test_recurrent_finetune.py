"""Fine-tuning, sensitivities and MSFT on an LSTM encoder's gate matrices (GE2E), with and without labels."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from evaluators.features import FeatureSet
from evaluators.finetune import FineTuner
from evaluators.finetune_data import prepare_fine_tuning
from evaluators.finetune_loss import FineTuneLoss
from evaluators.msft import msft_stages
from evaluators.student_training import DistillationConfig, StudentTrainer
from evaluators.utterance_features import single_windows
from evaluators.verification_fidelity import VerificationFidelity
from spaces.compress import ModelSpec, compress, quantizable_layers
from spaces.plan import CompressionPlan, DistillationPlan, LayerQuantization
from spaces.quant.qat import fake_quantized_layers

pytestmark = pytest.mark.usefixtures("single_thread")

SPEC = ModelSpec("ge2e", dict(num_mel_bins=40, hidden_size=24, embedding_dim=16, num_layers=2), 40, 208, 16000)
WINDOW = 32
LABEL_FREE = VerificationFidelity(
    steps=(0, 40), learning_rate=3e-3, batch_size=8, crop_frames=WINDOW, classification_weight=0.0,
    distillation_weight=1.0, sensitivity_crops=16,
)


@pytest.fixture(scope="module")
def teacher():
    torch.manual_seed(0)
    return SPEC.build().state_dict()


def _utterances(count: int, seed: int) -> FeatureSet:
    """Utterances as a windowed front-end gives them: `[windows, frames, bins]` each."""
    generator = torch.Generator().manual_seed(seed)
    features = [torch.rand(2 + index % 3, WINDOW, 40, generator=generator) for index in range(count)]
    return FeatureSet(features, [index % 4 for index in range(count)], [f"s{index % 4}" for index in range(count)],
                      [f"u{index}" for index in range(count)])


def _distance(model: torch.nn.Module, reference: torch.nn.Module, windows: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return (1 - F.cosine_similarity(model(windows), reference(windows))).mean().item()


def test_single_windows_keep_each_window_with_its_speaker():
    utterances = _utterances(5, 0)
    windows = single_windows(utterances)
    assert len(windows) == sum(len(features) for features in utterances.features)
    assert all(window.shape == (WINDOW, 40) for window in windows.features)
    assert torch.equal(windows.features[2], utterances.features[1][0])  # utterance 0 has 2 windows
    assert windows.labels[:3] == [0, 0, 1] and windows.utterance_ids[:3] == ["u0#0", "u0#1", "u1#0"]


def test_label_free_fine_tuning_needs_no_centroids_and_repairs_3_bit_lstm_matrices(teacher, tmp_path):
    train = single_windows(_utterances(12, 1))
    data, sensitivities = prepare_fine_tuning(SPEC, teacher, "key", train, LABEL_FREE, tmp_path, seed=0)
    assert data.centroids is None and not list(tmp_path.glob("centroids-*"))  # no head: labels unused
    layers = {name: LayerQuantization(3) for name in quantizable_layers(SPEC.build())}
    reference = SPEC.build()
    reference.load_state_dict(teacher)
    held_out = torch.stack(single_windows(_utterances(6, 2)).features)
    post_training = compress(SPEC, teacher, {name: 3 for name in layers}).model
    tuner = FineTuner(SPEC, teacher, layers, data, LABEL_FREE, seed=0, sensitivities=sensitivities)
    tuner.train_to(40)
    assert set(fake_quantized_layers(tuner.student)) == set(layers)
    assert _distance(tuner.compressed().model, reference, held_out) < 0.7 * _distance(post_training, reference, held_out)


def test_sensitivities_cover_every_gate_matrix_and_msft_stages_follow_the_lstm_layers(teacher, tmp_path):
    train = single_windows(_utterances(8, 3))
    _, sensitivities = prepare_fine_tuning(
        SPEC, teacher, "key", train, VerificationFidelity(steps=(0,), classification_weight=0.0, crop_frames=WINDOW,
                                                          sensitivity_crops=16, sensitivity_bits=2), tmp_path, seed=0
    )
    assert list(sensitivities) == quantizable_layers(SPEC.build())
    assert all(value > 0 for value in sensitivities.values())  # 2-bit weights move every embedding
    groups = SPEC.build().layer_groups()
    stages = msft_stages(groups, list(sensitivities), sensitivities)
    assert sorted(map(tuple, stages)) == sorted(map(tuple, groups.values()))
    totals = [sum(sensitivities[layer] for layer in stage) for stage in stages]
    assert totals == sorted(totals)


def test_the_loss_without_a_classification_term_is_the_distance_to_the_teacher():
    embeddings, targets = F.normalize(torch.randn(4, 8)), F.normalize(torch.randn(4, 8))
    loss = FineTuneLoss(None, margin=0.2, scale=30.0, distillation_weight=2.0, classification_weight=0.0)
    assert loss.head is None and not list(loss.parameters())
    expected = 2.0 * (1 - (embeddings * targets).sum(dim=1)).mean()
    assert torch.isclose(loss(embeddings, torch.zeros(4, dtype=torch.long), targets), expected)
    with pytest.raises(ValueError, match="needs speaker centroids"):
        FineTuneLoss(None, margin=0.2, scale=30.0, distillation_weight=1.0)


def test_a_fidelity_block_without_any_loss_is_refused():
    with pytest.raises(ValueError, match="both 0: fine-tuning has no loss"):
        VerificationFidelity(steps=(0, 10), classification_weight=0.0, distillation_weight=0.0)
    with pytest.raises(ValueError, match="classification_weight=-1"):
        VerificationFidelity(classification_weight=-1)


def test_fine_tune_data_is_kept_only_when_the_ladder_trains(teacher, tmp_path):
    train = single_windows(_utterances(4, 4))
    data, _ = prepare_fine_tuning(
        SPEC, teacher, "key", train, VerificationFidelity(classification_weight=0.0, crop_frames=WINDOW,
                                                          sensitivity_crops=4), tmp_path, seed=0
    )
    assert data is None


def test_multi_level_distillation_trains_a_quantized_copy_of_a_family_without_scaling_rules(teacher, tmp_path):
    """GE2E has no student scaling rules: its own architecture is the student, matched at the LSTM's frames too."""
    train = single_windows(_utterances(12, 5))
    data, _ = prepare_fine_tuning(SPEC, teacher, "key", train, LABEL_FREE, tmp_path, seed=0)
    layers = {name: LayerQuantization(3) for name in quantizable_layers(SPEC.build())}
    plan = CompressionPlan(layers=layers, distillation=DistillationPlan(("lstm", "embedding")))
    distillation = DistillationConfig(learning_rate=3e-3, task_weight=0.0)
    trainer = StudentTrainer(SPEC, teacher, plan, data, LABEL_FREE, distillation, seed=0)
    assert trainer.spec == SPEC
    reference = SPEC.build()
    reference.load_state_dict(teacher)
    held_out = torch.stack(single_windows(_utterances(6, 6)).features)

    def frame_error(model: torch.nn.Module) -> float:  # the LSTM's per-frame outputs, a tap it matches
        model.eval()
        with torch.no_grad():
            return F.mse_loss(model.forward_with_taps(held_out)[1]["lstm"], reference.forward_with_taps(held_out)[1]["lstm"]).item()

    before = frame_error(trainer.compressed().model)
    trainer.train_to(40)
    assert frame_error(trainer.compressed().model) < 0.7 * before


def _frame_error(model: torch.nn.Module, reference: torch.nn.Module, windows: torch.Tensor) -> float:
    """Relative squared error of the last LSTM layer's outputs over every frame."""
    model.eval()
    with torch.no_grad():
        frames, expected = model.forward_with_taps(windows)[1]["lstm"], reference.forward_with_taps(windows)[1]["lstm"]
    return ((frames - expected).square().sum() / expected.square().sum()).item()


def test_distilling_the_frame_tap_brings_every_frame_closer_than_the_embedding_alone(teacher, tmp_path):
    """The embedding is one vector per crop; the 'lstm' tap adds a target per frame."""
    train = single_windows(_utterances(12, 1))
    data, _ = prepare_fine_tuning(SPEC, teacher, "key", train, LABEL_FREE, tmp_path, seed=0)
    layers = {name: LayerQuantization(3) for name in quantizable_layers(SPEC.build())}
    reference = SPEC.build()
    reference.load_state_dict(teacher)
    held_out = torch.stack(single_windows(_utterances(6, 2)).features)
    errors = {}
    for taps in ((), ("lstm",)):
        fidelity = dataclasses.replace(LABEL_FREE, distillation_taps=taps, tap_weight=5.0)
        tuner = FineTuner(SPEC, teacher, layers, data, fidelity, seed=0)
        tuner.train_to(40)
        errors[taps] = _frame_error(tuner.compressed().model, reference, held_out)
    assert errors[("lstm",)] < 0.8 * errors[()]


def test_distillation_taps_are_validated():
    with pytest.raises(ValueError, match="a tap is named twice"):
        VerificationFidelity(distillation_taps=("lstm", "lstm"))
    with pytest.raises(ValueError, match="tap_weight=-1"):
        VerificationFidelity(tap_weight=-1.0)
