import pytest
import torch
from torch import nn

from spaces.compress import ModelSpec, finalize_compressed, load_packed_model
from spaces.plan import LayerQuantization
from spaces.quant import QUANTIZERS, QuantizationError, get_quantizer
from spaces.quant.centroid_qat import CentroidQuantizer
from spaces.quant.fake_quant import StraightThroughQuantizer
from spaces.quant.lsq import LearnedStepQuantizer
from spaces.quant.qat import (
    QatOptions,
    after_step,
    attach_fake_quantizers,
    export_quantized,
    fake_quantized_layers,
    fake_quantizer,
    without_fake_quantizers,
)
from spaces.quant.soft_step import annealed_temperature, soft_step

pytestmark = pytest.mark.usefixtures("single_thread")

CASES = [(name, bits) for name, quantizer in QUANTIZERS.items() for bits in sorted({*quantizer.allowed_bits[:2], 4, 8} & set(quantizer.allowed_bits))]
SPEC = ModelSpec("resnet", dict(num_mel_bins=24, base_width=4, blocks=(1, 1, 1, 1), embedding_dim=16), 24, 100, 16000)


def _heavy_tailed(*shape: int, seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.distributions.StudentT(3.0).sample(shape)


def _latent(weight: torch.Tensor) -> torch.Tensor:
    return weight.clone().requires_grad_()


@pytest.mark.parametrize("name, bits", CASES)
def test_export_before_training_equals_post_training_quantization(name, bits):
    weight = _heavy_tailed(8, 3, 3, 3, seed=bits)
    expected = get_quantizer(name).quantize(weight, bits)
    exported = fake_quantizer(name, bits, weight).export(weight)
    assert exported.quantizer == name and exported.bits == bits
    assert torch.equal(exported.codes, expected.codes)
    assert exported.side.keys() == expected.side.keys()
    assert all(torch.equal(exported.side[key], expected.side[key]) for key in expected.side)


@pytest.mark.parametrize("name, bits", CASES)
def test_forward_is_what_the_exported_codes_dequantize_to(name, bits):
    weight = _heavy_tailed(6, 40, seed=bits)
    quantizer = fake_quantizer(name, bits, weight)
    with torch.no_grad():
        for parameter in quantizer.parameters():  # move off the PTQ initialisation
            parameter.mul_(1.1)
        latent = weight * 0.9
        forward = quantizer(latent)
    dequantized = get_quantizer(name).dequantize(quantizer.export(latent))
    assert torch.allclose(forward, dequantized, rtol=0, atol=1e-5)


def test_each_family_gets_its_learned_fake_quantizer():
    weight = _heavy_tailed(4, 10)
    kinds = {name: type(fake_quantizer(name, QUANTIZERS[name].allowed_bits[0], weight)).__name__ for name in QUANTIZERS}
    assert kinds == {
        "uniform": "LearnedStepQuantizer", "uniform-asym": "LearnedStepQuantizer",
        "uniform-mse": "LearnedStepQuantizer", "uniform-tensor": "LearnedStepQuantizer",
        "uniform-reduced": "LearnedStepQuantizer", "uniform-mse-reduced": "LearnedStepQuantizer",
        "uniform-tensor-reduced": "LearnedStepQuantizer",
        "kmeans": "CentroidQuantizer", "kmeans-group4": "CentroidQuantizer",
        "binary-adaptive": "LearnedBinaryQuantizer",
        "pow2": "StraightThroughQuantizer", "binary": "StraightThroughQuantizer",
    }


@pytest.mark.parametrize("name, bits", [("pow2", 3), ("binary", 1), ("uniform", 4)])
def test_straight_through_gradient_reaches_the_latent_weight_unchanged(name, bits):
    weight = _heavy_tailed(5, 12)
    latent = _latent(weight)
    upstream = torch.randn(weight.shape, generator=torch.Generator().manual_seed(1))
    quantized = StraightThroughQuantizer(get_quantizer(name), bits)(latent)
    assert torch.equal(quantized.detach(), get_quantizer(name).fake_quantize(weight, bits))
    (quantized * upstream).sum().backward()
    assert torch.equal(latent.grad, upstream)


def test_lsq_gradients_reach_weights_inside_the_grid_and_the_step():
    weight = torch.tensor([[0.1, -0.35, 0.62, 1.0, -2.0]])
    quantizer = LearnedStepQuantizer(get_quantizer("uniform"), 3, weight[:, :4])  # step 1/3: 2.0 is clipped
    latent = _latent(weight)
    quantizer(latent).sum().backward()
    assert torch.equal(latent.grad, torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.0]]))
    step = quantizer.scale.detach()
    scaled = weight / step
    inside = (scaled.round() - scaled)[:, :4].sum() + (-3.0)  # LSQ: round(w/s) - w/s inside, the clip level outside
    expected = inside / (5 * 3) ** 0.5
    assert quantizer.scale.grad.item() == pytest.approx(expected.item(), rel=1e-5)


def test_lsq_learns_a_step_with_less_weight_error_than_min_max():
    weight = _heavy_tailed(4, 500)
    quantizer = LearnedStepQuantizer(get_quantizer("uniform"), 2, weight)
    optimizer = torch.optim.Adam(quantizer.parameters(), lr=0.1)

    def error() -> torch.Tensor:
        return (quantizer(weight) - weight).square().mean()

    before = error().item()
    for _ in range(100):
        optimizer.zero_grad()
        error().backward()
        optimizer.step()
    assert error().item() < 0.8 * before


def test_asymmetric_lsq_exports_integer_zero_points():
    weight = torch.rand(3, 30, generator=torch.Generator().manual_seed(0)) + 0.2
    quantizer = fake_quantizer("uniform-asym", 3, weight)
    with torch.no_grad():
        quantizer.zero_point.add_(0.3)
    exported = quantizer.export(weight)
    assert torch.equal(exported.side["zero_point"], exported.side["zero_point"].round())
    assert int(exported.codes.max()) <= 7


def test_centroid_gradient_is_the_sum_of_its_weights_gradients():
    weight = _heavy_tailed(6, 20)
    quantizer = fake_quantizer("kmeans", 2, weight)
    latent = _latent(weight)
    upstream = torch.randn(weight.shape, generator=torch.Generator().manual_seed(2))
    (quantizer(latent) * upstream).sum().backward()
    codes = quantizer.codes.reshape(weight.shape)
    expected = torch.stack([upstream[codes == k].sum() for k in range(4)])
    assert torch.allclose(quantizer.codebook.grad[0], expected, atol=1e-5)
    assert torch.equal(latent.grad, upstream)


def test_group_codebooks_get_only_their_groups_gradients():
    weight = _heavy_tailed(8, 10)
    quantizer = fake_quantizer("kmeans-group4", 2, weight)
    upstream = torch.zeros(weight.shape)
    upstream[:2] = 1.0  # first group only
    (quantizer(_latent(weight)) * upstream).sum().backward()
    assert quantizer.codebook.grad[0].sum().item() == pytest.approx(20.0)
    assert torch.equal(quantizer.codebook.grad[1:], torch.zeros(3, 4))


def test_codes_move_to_the_nearest_centroid_every_reassign_period():
    weight = torch.tensor([[-1.0, -0.9, 0.0, 0.1, 1.0, 1.1]])
    quantizer = CentroidQuantizer(get_quantizer("kmeans"), 2, weight, reassign_every=5)
    moved = weight.clone()
    moved[0, 0] = 0.95  # now nearest the top centroid
    quantizer.after_step(moved, step=4, anneal=0.4)
    assert quantizer.codes[0, 0].item() == 0
    quantizer.after_step(moved, step=5, anneal=0.5)
    top = int(quantizer.codebook[0].argmax())
    assert quantizer.codes[0, 0].item() == top


def test_export_sorts_a_reordered_codebook_without_changing_the_weights():
    weight = _heavy_tailed(4, 30)
    quantizer = fake_quantizer("kmeans", 2, weight)
    with torch.no_grad():
        quantizer.codebook.copy_(torch.tensor([[0.5, -0.2, 0.1, -1.0]]))
        forward = quantizer(weight)
    exported = quantizer.export(weight)
    assert exported.side["codebook"].tolist() == pytest.approx([-1.0, -0.2, 0.1, 0.5])
    assert torch.equal(get_quantizer("kmeans").dequantize(exported), forward)


def test_soft_step_hardens_to_the_nearest_centroid_as_the_temperature_falls():
    values = torch.linspace(-1.2, 1.2, 41)[None, :]
    codebook = torch.tensor([[-1.0, -0.2, 0.3, 1.0]])
    midpoints = (codebook[0, 1:] + codebook[0, :-1]) / 2
    hard = codebook[0][torch.searchsorted(midpoints, values[0])]
    cold = soft_step(values, codebook, 1e-4)[0]
    warm = soft_step(values, codebook, 0.5)[0]
    near_threshold = (values[0, :, None] - midpoints).abs().min(dim=1).values < 1e-3
    assert torch.allclose(cold[~near_threshold], hard[~near_threshold], atol=1e-4)
    assert (warm - hard).abs().max() > 0.1


def test_soft_step_passes_gradients_to_weights_and_centroids():
    values = torch.randn(2, 30, generator=torch.Generator().manual_seed(0)).requires_grad_()
    codebook = torch.tensor([[-1.0, 0.0, 1.0, 2.0], [-0.5, 0.0, 0.5, 1.0]], requires_grad=True)
    soft_step(values, codebook, 0.3).sum().backward()
    assert values.grad.abs().sum() > 0 and codebook.grad.abs().sum() > 0


def test_soft_step_temperature_anneals_geometrically_to_its_end():
    assert annealed_temperature(0.5, 0.01, 0.0) == pytest.approx(0.5)
    assert annealed_temperature(0.5, 0.01, 0.5) == pytest.approx((0.5 * 0.01) ** 0.5)
    assert annealed_temperature(0.5, 0.01, 3.0) == pytest.approx(0.01)
    weight = _heavy_tailed(4, 30)
    quantizer = fake_quantizer("kmeans", 3, weight, QatOptions(soft_step=True))
    quantizer.after_step(weight, step=10, anneal=1.0)
    assert quantizer.temperature == pytest.approx(0.01)
    assert torch.equal(get_quantizer("kmeans").dequantize(quantizer.export(weight)), get_quantizer("kmeans").fake_quantize(weight, 3))


def test_learned_binary_levels_get_signed_and_summed_gradients():
    weight = _heavy_tailed(3, 16)
    quantizer = fake_quantizer("binary-adaptive", 1, weight)
    latent = _latent(weight)
    upstream = torch.randn(weight.shape, generator=torch.Generator().manual_seed(3))
    (quantizer(latent) * upstream).sum().backward()
    signs = torch.where(weight >= quantizer.beta.detach()[:, None], 1.0, -1.0)
    assert torch.allclose(quantizer.alpha.grad, (upstream * signs).sum(dim=1), atol=1e-5)
    assert torch.allclose(quantizer.beta.grad, upstream.sum(dim=1), atol=1e-5)
    assert torch.equal(latent.grad, upstream)


MIXED = {
    "stem.0": LayerQuantization(8, "uniform"),
    "layer1.0.conv1": LayerQuantization(3, "kmeans"),
    "layer2.0.conv1": LayerQuantization(2, "pow2"),
    "layer3.0.conv2": LayerQuantization(4, "uniform-asym"),
    "layer4.0.conv2": LayerQuantization(1, "binary-adaptive"),
    "layer4.0.conv1": LayerQuantization(2, "kmeans-group4"),
    "embedding": LayerQuantization(1, "binary"),
}


def _trained_model() -> nn.Module:
    torch.manual_seed(0)
    model = SPEC.build()
    attach_fake_quantizers(model, MIXED)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for step in range(1, 4):
        loss = model(torch.randn(2, 50, 24)).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        after_step(model, step, step / 3)
    return model.eval()


def test_trained_model_packs_bit_exactly_and_computes_what_it_trained_with():
    model = _trained_model()
    assert sorted(fake_quantized_layers(model)) == sorted(MIXED)
    features = torch.randn(2, 60, 24, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        trained_output = model(features)
    compressed = finalize_compressed(SPEC, without_fake_quantizers(model), export_quantized(model))
    unpacked = load_packed_model(SPEC, compressed.packed)
    with torch.no_grad():
        assert torch.equal(unpacked(features), compressed.model(features))
        assert torch.allclose(compressed.model(features), trained_output, atol=1e-4)
    for name, layer in MIXED.items():
        described = next(entry for entry in compressed.description.layers if entry.name == name)
        assert described.weight_bits == layer.bits and described.quantizer == layer.quantizer


def test_latent_weights_stay_float_after_the_fake_quantizers_are_removed():
    model = _trained_model()
    plain = without_fake_quantizers(model)
    assert not fake_quantized_layers(plain) and fake_quantized_layers(model)
    latent = model.get_submodule("layer2.0.conv1").parametrizations.weight.original
    assert torch.equal(plain.get_submodule("layer2.0.conv1").weight, latent)
    assert plain.get_submodule("layer2.0.conv1").weight.unique().numel() > 2**2


def test_attached_latent_weight_is_the_parameter_an_optimiser_already_holds():
    model = SPEC.build()
    weight = model.get_submodule("layer1.0.conv1").weight
    new = attach_fake_quantizers(model, {"layer1.0.conv1": LayerQuantization(4, "uniform")})
    assert model.get_submodule("layer1.0.conv1").parametrizations.weight.original is weight
    assert [tuple(parameter.shape) for parameter in new] == [(4,)]


@pytest.mark.parametrize(
    "layers, message",
    [
        ({"layer9.conv": LayerQuantization(4, "uniform")}, "unknown layer name 'layer9.conv'"),
        ({"stem.0": LayerQuantization(4, "ternary")}, "unknown quantizer 'ternary'"),
        ({"stem.0": LayerQuantization(9, "uniform")}, "quantizer 'uniform': bits=9 not supported"),
        ({"stem.0": LayerQuantization(32, "kmeans")}, "quantizer 'kmeans': bits=32 not supported"),
        ({"stem.0": LayerQuantization(1, "uniform")}, "quantizer 'uniform': bits=1 not supported"),
    ],
)
def test_bad_layer_quantization_is_a_clear_error(layers, message):
    with pytest.raises(QuantizationError, match=message):
        attach_fake_quantizers(SPEC.build(), layers)


def test_a_layer_cannot_get_two_fake_quantizers():
    model = SPEC.build()
    attach_fake_quantizers(model, {"stem.0": LayerQuantization(4, "uniform")})
    with pytest.raises(QuantizationError, match="'stem.0' already has a fake-quantizer"):
        attach_fake_quantizers(model, {"stem.0": LayerQuantization(4, "uniform")})


@pytest.mark.parametrize("name", ["kmeans", "kmeans-group4", "uniform", "uniform-asym", "pow2", "binary-adaptive"])
def test_fewer_distinct_weights_than_levels_train_and_export(name):
    weight = torch.tensor([[0.5, -0.25, 0.5, 0.0], [0.5, 0.5, 0.5, 0.5], [0.0, 0.0, 0.0, 0.0]])
    bits = QUANTIZERS[name].allowed_bits[-1] if name != "binary-adaptive" else 1
    quantizer = fake_quantizer(name, bits, weight)
    latent = _latent(weight)
    quantizer(latent).sum().backward()
    quantizer.after_step(weight, step=10, anneal=1.0)
    exported = get_quantizer(name).dequantize(quantizer.export(weight))
    assert torch.isfinite(exported).all() and torch.isfinite(latent.grad).all()
    if name.startswith("kmeans"):  # documented fallback: the distinct values are kept exactly
        assert torch.equal(exported, weight)


@pytest.mark.parametrize(
    "options, message",
    [(dict(reassign_every=0), "reassign_every=0"), (dict(temperature_start=0.1, temperature_end=0.2), "0 < end <= start")],
)
def test_bad_qat_options_rejected(options, message):
    with pytest.raises(QuantizationError, match=message):
        QatOptions(**options)
