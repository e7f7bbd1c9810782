"""Integer (QDQ) export: every integer layer becomes an onnxruntime integer kernel, and the graph
computes what the in-run model computed."""

import numpy as np
import onnxruntime
import pytest
import torch
from onnx import numpy_helper
from torch import nn

from hwcost.runtimes import FLOAT_DECODED, INT8
from search.kernel_census import kernel_census
from search.onnx_export import export_onnx, weight_storage
from search.qdq_export import IntegerRecord
from spaces.compress import ModelSpec, compress, quantizable_layers, stored_quantized
from spaces.plan import CompressionPlan, LayerQuantization
from spaces.quant import QuantizedWeight, get_quantizer, unpack_weights
from spaces.quant.integer_activations import activation_points, attach_activation_quantizers, integer_layers

pytestmark = pytest.mark.usefixtures("single_thread")

BINS = 24
AXES = {"features": {0: "batch", 1: "frames"}, "embedding": {0: "batch"}}
FAMILIES = {
    "resnet": dict(base_width=4, blocks=(1, 1, 1, 1), embedding_dim=16),
    "xvector": dict(channels=16, pooling_channels=24, embedding_dim=16, frame_layers=3),
    "ecapa_tdnn": dict(channels=16, scale=4, se_channels=4, attention_channels=4, mfa_channels=32, embedding_dim=16, blocks=1),
}
MIXED = ((8, "uniform"), (4, "uniform"), (3, "pow2"), (1, "binary"), (6, "uniform-mse"))
"""Bits and quantizer given to the layers in turn: every family with an exact int8 form."""


def _spec(family: str) -> ModelSpec:
    return ModelSpec(family, dict(num_mel_bins=BINS, **FAMILIES[family]), BINS, 100, 16000)


def _teacher_state(spec: ModelSpec) -> dict[str, torch.Tensor]:
    """Random weights and batch-norm statistics, some scales negative (a folded norm then negates levels)."""
    torch.manual_seed(0)
    model = spec.build()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                channels = module.num_features
                module.running_mean.copy_(0.2 * torch.randn(channels, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(channels, generator=generator))
                module.weight.copy_(torch.randn(channels, generator=generator))
                module.bias.copy_(0.2 * torch.randn(channels, generator=generator))
    return model.state_dict()


def _in_run(spec: ModelSpec, plan: CompressionPlan, activation_bits: int = 8) -> tuple[nn.Module, dict[str, QuantizedWeight], bytes]:
    """The trial's model as a run builds it: compressed as the plan says, activations quantized
    where integer kernels need them, calibrated and frozen."""
    compressed = compress(spec, _teacher_state(spec), plan.layer_bits, plan.layer_quantizers)
    model = compressed.model
    example = torch.zeros(1, 100, BINS)
    points = activation_points(model, (example,), integer_layers(model, plan.layers))
    quantizers = attach_activation_quantizers(model, points, activation_bits)
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(4, 120, BINS, generator=generator))
    for quantizer in quantizers.values():
        quantizer.freeze()
    quantized = stored_quantized(unpack_weights(compressed.packed))
    return model, quantized, compressed.packed


def _agreement(graph, model: nn.Module) -> tuple[float, float]:
    """Smallest cosine and largest difference (over the largest output) of onnxruntime against PyTorch."""
    features = torch.randn(3, 137, BINS, generator=torch.Generator().manual_seed(3))  # another batch and length
    session = onnxruntime.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    (measured,) = session.run(None, {"features": features.numpy()})
    with torch.no_grad():
        expected = model(features).numpy()
    cosine = (measured * expected).sum(1) / np.linalg.norm(measured, axis=1) / np.linalg.norm(expected, axis=1)
    return float(cosine.min()), float(np.abs(measured - expected).max() / np.abs(expected).max())


def _export(model: nn.Module, quantized: dict[str, QuantizedWeight]):
    return export_onnx(model, quantized, {"features": torch.zeros(1, 100, BINS)}, ["embedding"], AXES)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_integer_layer_runs_on_an_integer_kernel_and_the_graph_equals_the_in_run_model(family):
    spec = _spec(family)
    layers = quantizable_layers(spec.build())
    plan = CompressionPlan({name: LayerQuantization(*MIXED[index % len(MIXED)]) for index, name in enumerate(layers)}, activation_bits=8)
    assert plan.layers[layers[0]].quantizer == "uniform-reduced"  # the 8-bit layers train on the kernels' range
    model, quantized, _ = _in_run(spec, plan)
    graph = _export(model, quantized)
    record = IntegerRecord.of(graph)
    assert set(record.integer) == set(layers) and record.weight_only == {}
    storage = weight_storage(graph)
    assert all(storage[layer].dtype == "INT8" and storage[layer].shape == tuple(quantized[layer].codes.shape) for layer in layers)
    census = kernel_census(graph, layers)
    assert {layer: census[layer].variant for layer in layers} == dict.fromkeys(layers, INT8)
    if family == "resnet":  # every norm follows a convolution: all folded
        assert "BatchNormalization" not in {node.op_type for node in graph.graph.node}
    cosine, largest = _agreement(graph, model)
    assert cosine >= 0.9998 and largest <= 0.02  # one output step: integer kernels round each bias to their accumulator's step


def test_layers_without_an_exact_int8_form_keep_the_weight_only_decode_and_say_why():
    spec = _spec("xvector")
    layers = quantizable_layers(spec.build())  # frame1..3, segment1, embedding
    formats = [(4, "kmeans"), (1, "binary-adaptive"), (5, "pow2"), (4, "uniform"), (8, "uniform")]
    plan = CompressionPlan({name: LayerQuantization(*layer) for name, layer in zip(layers, formats)}, activation_bits=8)
    model, quantized, _ = _in_run(spec, plan)
    full_range = get_quantizer("uniform").quantize(model.embedding.weight, 8)  # an 8-bit layer not trained on the range
    with torch.no_grad():
        model.embedding.weight.copy_(get_quantizer("uniform").dequantize(full_range))
    graph = _export(model, {**quantized, "embedding": full_range})
    record = IntegerRecord.of(graph)
    assert record.integer == ("segment1",)
    assert record.weight_only == {
        "frame1.conv": "4-bit kmeans has no exact int8 form",
        "frame2.conv": "1-bit binary-adaptive has no exact int8 form",
        "frame3.conv": "5-bit pow2 has no exact int8 form",
        "embedding": "8-bit uniform levels reach ±127, beyond the kernels' ±64",
    }
    storage = weight_storage(graph)
    assert [storage[layer].dtype for layer in layers] == ["UINT4", "UINT4", "UINT8", "INT8", "UINT8"]
    census = kernel_census(graph, layers)
    assert census["segment1"].variant == INT8 and census["frame1.conv"].variant != INT8
    assert census["embedding"].variant in (INT8, FLOAT_DECODED)  # fused u8 x u8 where its pairs allow, never approximated
    cosine, largest = _agreement(graph, model)
    assert cosine >= 0.9998 and largest <= 0.02


def test_sub_8_bit_codes_are_int8_levels_in_the_graph_and_packed_at_their_bits_in_weights_bin():
    spec = _spec("resnet")
    layers = quantizable_layers(spec.build())
    packed = {}
    for bits in (8, 4):
        model, quantized, packed[bits] = _in_run(spec, CompressionPlan(dict.fromkeys(layers, LayerQuantization(bits)), activation_bits=8))
    weights = sum(quantized[layer].codes.numel() for layer in layers)
    suffix = len("-reduced") * len(layers)  # the 8-bit layers' quantizer name, recorded per layer
    assert len(packed[8]) - len(packed[4]) == weights // 2 + suffix  # half a byte less per weight
    graph = _export(model, quantized)
    levels = next(numpy_helper.to_array(tensor) for tensor in graph.graph.initializer if tensor.name == "layer1.0.conv1.weight.levels")
    assert levels.dtype == np.int8 and np.abs(levels).max() <= 7
    codes = quantized["layer1.0.conv1"].codes.numpy().astype(np.int16) - 7  # the 4-bit grid's centre
    assert np.array_equal(np.abs(levels), np.abs(codes))  # the same levels, negated where a folded norm's scale is


def test_signed_activations_are_written_as_uint8_and_narrower_activations_keep_todays_export():
    spec = _spec("xvector")
    layers = quantizable_layers(spec.build())
    plan = CompressionPlan(dict.fromkeys(layers, LayerQuantization(8)), activation_bits=8)
    model, quantized, _ = _in_run(spec, plan)
    graph = _export(model, quantized)
    zero_points = {
        numpy_helper.to_array(tensor).dtype
        for tensor in graph.graph.initializer
        if any(node.op_type == "QuantizeLinear" and node.input[2] == tensor.name for node in graph.graph.node)
    }
    assert zero_points == {np.dtype(np.uint8)}  # the features' signed grid too: zero point 128
    narrow, quantized, _ = _in_run(spec, CompressionPlan(dict.fromkeys(layers, LayerQuantization(8)), activation_bits=4), 4)
    graph = _export(narrow, quantized)
    assert IntegerRecord.of(graph) is None and {item.dtype for item in weight_storage(graph).values()} == {"UINT8"}
