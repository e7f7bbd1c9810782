import pytest
import torch

from evaluators.finetune import FineTuner
from evaluators.verification_fidelity import VerificationFidelity
from evaluators.finetune_data import FineTuneData
from evaluators.finetune_loss import speaker_centroids
from evaluators.msft import msft_stages, stage_start_steps
from spaces.compress import ModelSpec, quantizable_layers
from spaces.plan import LayerQuantization
from spaces.quant.qat import fake_quantized_layers

pytestmark = pytest.mark.usefixtures("single_thread")

GROUPS = {"stem": ["stem.0"], "layer1": ["layer1.a", "layer1.b"], "layer2": ["layer2.a"], "head": ["embedding"]}
SENSITIVITIES = {"stem.0": 0.5, "layer1.a": 0.05, "layer1.b": 0.1, "layer2.a": 0.2, "embedding": 0.01}
SPEC = ModelSpec("resnet", dict(num_mel_bins=24, base_width=4, blocks=(1, 1, 1, 1), embedding_dim=16), 24, 100, 16000)


def test_least_sensitive_group_is_quantized_first():
    stages = msft_stages(GROUPS, set(SENSITIVITIES), SENSITIVITIES)
    assert stages == [["embedding"], ["layer1.a", "layer1.b"], ["layer2.a"], ["stem.0"]]


def test_forward_and_backward_orders_follow_the_groups():
    layers = set(SENSITIVITIES)
    assert msft_stages(GROUPS, layers, {}, "forward") == [["stem.0"], ["layer1.a", "layer1.b"], ["layer2.a"], ["embedding"]]
    assert msft_stages(GROUPS, layers, {}, "backward")[0] == ["embedding"]


def test_fp32_layers_are_in_no_stage_and_empty_groups_are_dropped():
    stages = msft_stages(GROUPS, {"layer1.b", "embedding"}, SENSITIVITIES)
    assert stages == [["embedding"], ["layer1.b"]]


@pytest.mark.parametrize(
    "layers, sensitivities, order, message",
    [
        ({"stem.0"}, SENSITIVITIES, "random", "msft order 'random'"),
        ({"stem.0", "layer9.x"}, SENSITIVITIES, "sensitivity", r"layers \['layer9.x'\] belong to no layer group"),
        ({"stem.0", "layer2.a"}, {"stem.0": 1.0}, "sensitivity", r"no sensitivity for layers \['layer2.a'\]"),
    ],
)
def test_bad_msft_input_is_a_clear_error(layers, sensitivities, order, message):
    with pytest.raises(ValueError, match=message):
        msft_stages(GROUPS, layers, sensitivities, order)


def test_stages_start_evenly_over_the_budget():
    assert stage_start_steps(4, 10) == [0, 2, 5, 7]
    assert stage_start_steps(3, 0) == [0, 0, 0]


def _tiny_data() -> tuple[dict, FineTuneData]:
    torch.manual_seed(0)
    model = SPEC.build()
    generator = torch.Generator().manual_seed(0)
    features = [torch.randn(40 + 5 * index, 24, generator=generator) for index in range(8)]
    labels = [index // 2 for index in range(8)]
    return model.state_dict(), FineTuneData(features, labels, speaker_centroids(model, features, labels))


def test_msft_quantizes_every_group_by_the_end_of_the_first_rung():
    teacher, data = _tiny_data()
    layers = {name: LayerQuantization(2, "uniform") for name in quantizable_layers(SPEC.build())}
    sensitivities = {**{name: 1.0 for name in layers}, "embedding": 0.0, "stem.0": 100.0}
    config = VerificationFidelity(steps=(0, 6, 8), batch_size=2, crop_frames=20, msft=True)
    tuner = FineTuner(SPEC, teacher, layers, data, config, seed=0, sensitivities=sensitivities)
    assert len(tuner.stages) == 6 and tuner.stages[0] == ["embedding"] and tuner.stages[-1] == ["stem.0"]
    tuner.train_to(0)
    assert sorted(fake_quantized_layers(tuner.student)) == ["embedding"]
    tuner.train_to(3)
    assert 1 < len(fake_quantized_layers(tuner.student)) < len(layers)
    snapshot = tuner.compressed().description  # layers not yet staged are quantized post-training
    assert {layer.name: layer.weight_bits for layer in snapshot.layers if layer.name in layers} == {name: 2 for name in layers}
    tuner.train_to(6)
    assert sorted(fake_quantized_layers(tuner.student)) == sorted(layers)
    assert sorted(tuner.quantized_layers) == sorted(layers)
