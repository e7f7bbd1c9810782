import pytest
import torch

from evaluators.finetune_data import sample_crops
from evaluators.finetune_loss import FineTuneLoss, speaker_centroids
from evaluators.sensitivity import layer_sensitivities
from spaces.compress import ModelSpec, quantizable_layers

pytestmark = pytest.mark.usefixtures("single_thread")

SPEC = ModelSpec("resnet", dict(num_mel_bins=16, base_width=4, blocks=(1, 1, 1, 1), embedding_dim=16), 16, 100, 16000)


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = SPEC.build()
    generator = torch.Generator().manual_seed(0)
    features = [torch.randn(50, 16, generator=generator) + index % 3 for index in range(9)]
    labels = [index % 3 for index in range(9)]
    loss = FineTuneLoss(speaker_centroids(model, features, labels), margin=0.2, scale=30.0, distillation_weight=5.0)
    crops, crop_labels = sample_crops(features, torch.tensor(labels), 16, 30, generator)
    return model.state_dict(), loss, crops, crop_labels


def test_one_sensitivity_per_quantizable_layer_in_forward_order(setup):
    state, loss, crops, labels = setup
    sensitivities = layer_sensitivities(SPEC, state, loss, crops, labels, "uniform", 4)
    assert list(sensitivities) == quantizable_layers(SPEC.build())
    assert layer_sensitivities(SPEC, state, loss, crops, labels, "uniform", 4) == sensitivities  # weights restored


def test_fewer_bits_hurt_more(setup):
    state, loss, crops, labels = setup
    two = layer_sensitivities(SPEC, state, loss, crops, labels, "uniform", 2)
    eight = layer_sensitivities(SPEC, state, loss, crops, labels, "uniform", 8)
    assert sum(two.values()) > 10 * sum(abs(value) for value in eight.values())
    assert max(abs(value) for value in eight.values()) < 0.05 * max(two.values())
