"""Activation quantizers go where onnxruntime's integer kernels need them, one per tensor."""

import pytest
import torch
from torch import nn

from spaces.models import build_model
from spaces.plan import LayerQuantization
from spaces.quant import ActivationQuantizer
from spaces.quant.integer_activations import (
    ActivationPlacementError,
    ActivationPoint,
    activation_points,
    attach_activation_quantizers,
    integer_layers,
)

pytestmark = pytest.mark.usefixtures("single_thread")

FEATURES = (torch.randn(1, 30, 16, generator=torch.Generator().manual_seed(0)),)


def _points(family: str, **kwargs) -> set[str]:
    model = build_model(family, num_mel_bins=16, **kwargs)
    layers = [name for name, module in model.named_modules() if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Linear))]
    return {str(point) for point in activation_points(model, FEATURES, layers)}


def test_a_residual_block_is_quantized_after_its_norms_relus_and_sum():
    points = _points("resnet", base_width=4, blocks=(1, 1, 1, 1), embedding_dim=8)
    assert {"stem.0[input 0]", "stem.2"} <= points  # the transposed features have no producer; conv -> BN -> ReLU
    block = {point.removeprefix("layer2.0.") for point in points if point.startswith("layer2.0.")}
    assert block == {"relu1", "bn2", "shortcut.1", "relu2"}  # conv2 -> BN meets the sum; the sum -> ReLU
    assert {"pooling", "embedding"} <= points  # statistics feed the embedding, whose output is quantized too
    assert not any(point.endswith(("conv1", "conv2", "bn1", "add")) for point in points)  # never before a folded norm or ReLU


def test_a_tdnn_block_is_quantized_after_its_relu_and_its_float_norm():
    points = _points("xvector", channels=8, pooling_channels=12, embedding_dim=8, frame_layers=2)
    # the first convolution's input is quantized where the features are turned channels first
    assert points == {
        "channels_first", "frame1.relu", "frame1.norm", "frame2.relu", "pooling",
        "segment1_relu", "segment1_norm", "embedding",
    }  # fmt: skip


def test_the_points_skip_layers_that_are_not_integer_and_lstms():
    model = build_model("ge2e", num_mel_bins=16, hidden_size=8, embedding_dim=8, num_layers=1)
    plan = {"lstm.l0.ih": LayerQuantization(8, "uniform-reduced"), "linear": LayerQuantization(8, "uniform-reduced")}
    assert integer_layers(model, plan) == ["lstm.l0.ih", "linear"]  # a linear layer to the export, never called
    points = activation_points(model, FEATURES, integer_layers(model, plan))
    assert points == [ActivationPoint("linear", 0), ActivationPoint("relu")]
    unreachable = {"linear": LayerQuantization(8, "uniform"), "lstm.l0.hh": LayerQuantization(4, "kmeans")}
    assert integer_layers(model, unreachable) == []  # levels to ±127, a codebook


def test_attached_quantizers_calibrate_then_quantize_every_reader_of_their_tensor():
    model = build_model("resnet", num_mel_bins=16, base_width=4, blocks=(1, 1, 1, 1), embedding_dim=8).eval()
    layers = integer_layers(model, {name: LayerQuantization(4) for name in ("stem.0", "layer1.0.conv1", "layer1.0.conv2")})
    quantizers = attach_activation_quantizers(model, activation_points(model, FEATURES, layers))
    assert {"stem.0[input 0]", "stem.2", "layer1.0.relu1", "layer1.0.bn2", "layer1.0.relu2"} <= set(map(str, quantizers))
    assert "embedding" not in set(map(str, quantizers))  # a float layer (every residual sum is quantized, though)
    with torch.no_grad():
        before = model(*FEATURES)
        assert all(quantizer.mode == "calibrate" for quantizer in quantizers.values())
        for quantizer in quantizers.values():
            quantizer.freeze()
        after = model(*FEATURES)
    assert not torch.equal(before, after)
    stem = model.stem(FEATURES[0].transpose(1, 2).unsqueeze(1))
    step = quantizers[ActivationPoint("stem.2")].step.detach()
    assert torch.allclose(stem / step, (stem / step).round(), atol=1e-4)  # the stem's output, as every block reads it
    assert isinstance(model.stem[2].activation_output, ActivationQuantizer)  # a submodule: saved and exported with the model


def test_a_point_quantized_twice_or_of_an_unknown_module_is_an_error():
    model = build_model("xvector", num_mel_bins=16, channels=8, pooling_channels=12, embedding_dim=8, frame_layers=2)
    attach_activation_quantizers(model, [ActivationPoint("frame1.relu")])
    with pytest.raises(ActivationPlacementError, match=r"frame1.relu: its output is already quantized"):
        attach_activation_quantizers(model, [ActivationPoint("frame1.relu")])
    with pytest.raises(ActivationPlacementError, match=r"no module 'frame9' in the model"):
        attach_activation_quantizers(model, [ActivationPoint("frame9", 0)])
