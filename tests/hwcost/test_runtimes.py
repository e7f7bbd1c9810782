"""Runtimes: which kernel each layer runs on, what each fuses, what is added, what weights occupy."""

from __future__ import annotations

import dataclasses

import pytest

from hwcost import CostModel, get_runtime, profile_from_dict, register_runtime
from hwcost.estimator import FUSED
from hwcost.kernels import DEQUANTIZE_OP, INFERENCE_OP, QUANTIZE_OP
from hwcost.runtimes import FLOAT, FLOAT_DECODED, INT8, RUNTIMES, GraphRuntime
from spaces.description import LAYER_KINDS, OPERATIONS, LayerDescription, ModelDescription
from hand_profile import HAND_CPU

ORT_RUNTIMES = ("onnxruntime-fp32", "onnxruntime-int8", "onnxruntime-weight-only")
BASE = HAND_CPU


def _profile(runtime: str):
    return profile_from_dict({**BASE, "runtime": runtime}, source="hand-cpu")


def _conv(
    name: str = "conv", kind: str = "conv1d", bits: int = 32, activation_bits: int = 32, decoding: str = "linear"
) -> LayerDescription:
    quantized = bits < 32
    return LayerDescription(
        name, kind, params=64 * 64 * 3, extra_params=64, macs_per_second=64 * 64 * 3 * 100,
        input_elements_per_second=6400, output_elements_per_second=6400, weight_bits=bits, activation_bits=activation_bits,
        quantizer="uniform" if quantized else "none", weight_decoding=decoding if quantized else "",
    )  # fmt: skip


def _free(name: str, kind: str, operation: str = "", activation_bits: int = 32) -> LayerDescription:
    return LayerDescription(
        name, kind, input_elements_per_second=6400, output_elements_per_second=6400, operation=operation,
        activation_bits=activation_bits,
    )  # fmt: skip


def _lower(runtime: str, *layers: LayerDescription, quantized_float_io: bool = False):
    description = ModelDescription("toy", layers, quantized_float_io=quantized_float_io)
    return {lowered.layer.name: lowered for lowered in get_runtime(runtime).lower(description).layers}


def test_float_runtime_folds_batch_norm_and_fuses_relu_into_the_convolution():
    lowered = _lower("onnxruntime-fp32", _conv(), _free("bn", "batchnorm"), _free("relu", "activation", "relu"))
    assert lowered["conv"].variant == FLOAT and len(lowered["conv"].kernels) == 1
    assert lowered["bn"].fused_into == "conv" and lowered["relu"].fused_into == "conv"
    model = ModelDescription("toy", tuple(lowered_layer.layer for lowered_layer in lowered.values()))
    costs = {cost.name: cost for cost in CostModel().estimate(model, _profile("onnxruntime-fp32")).layers}
    assert costs["bn"].bound == FUSED and costs["bn"].latency_ms == 0
    assert costs["conv"].latency_ms > 0


def test_prelu_is_not_fused_and_batch_norm_after_an_activation_is_not_folded():
    lowered = _lower(
        "onnxruntime-fp32", _conv(), _free("prelu", "activation", "prelu"), _conv("conv2"), _free("relu", "activation", "relu"),
        _free("bn", "batchnorm"),
    )  # fmt: skip
    assert not lowered["prelu"].fused_into and lowered["prelu"].kernels
    assert lowered["relu"].fused_into == "conv2"
    assert not lowered["bn"].fused_into  # conv, ReLU, then BN (a TDNN block): BN cannot fold


def test_only_2d_convolutions_absorb_a_residual_add():
    layers = (_free("bn", "batchnorm"), _free("add", "elementwise", "add"), _free("relu", "activation", "relu"))
    in_2d = _lower("onnxruntime-fp32", _conv(kind="conv2d"), *layers)
    in_1d = _lower("onnxruntime-fp32", _conv(), *layers)
    assert [in_2d[name].fused_into for name in ("bn", "add", "relu")] == ["conv", "conv", "conv"]
    assert [in_1d[name].fused_into for name in ("bn", "add", "relu")] == ["conv", "", ""]


@pytest.mark.parametrize(
    ("runtime", "kind", "bits", "activation_bits", "decoding", "blocked"),
    [
        ("onnxruntime-fp32", "conv2d", 32, 32, "linear", True),
        ("onnxruntime-fp32", "conv1d", 32, 32, "linear", False),
        ("onnxruntime-weight-only", "conv2d", 8, 32, "linear", False),
        ("onnxruntime-weight-only", "conv2d", 4, 32, "table", True),
        ("onnxruntime-int8", "conv2d", 8, 8, "linear", False),
    ],
)
def test_only_float_2d_convolutions_on_constant_weights_run_blocked(runtime, kind, bits, activation_bits, decoding, blocked):
    """NchwcTransformer takes 2-D convolutions whose weights are constant: float ones, and table
    codes folded at load; not 1-D ones, weights decoded on every run, or integer kernels."""
    conv = _conv(kind=kind, bits=bits, activation_bits=activation_bits, decoding=decoding)
    assert _lower(runtime, conv)["conv"].kernels[-1].blocked is blocked


def test_weight_only_decodes_uniform_codes_every_run_and_folds_table_codes():
    decoded = _lower(
        "onnxruntime-weight-only", _conv(bits=8), _free("bn", "batchnorm"), _conv("conv2", bits=4), _free("relu", "activation", "relu")
    )
    folded = _lower("onnxruntime-weight-only", _conv(bits=4, decoding="table"), _free("bn", "batchnorm"))
    assert decoded["conv"].variant == FLOAT_DECODED
    assert not decoded["bn"].fused_into  # no batch-norm folding into non-constant weights
    assert decoded["relu"].fused_into == "conv2"  # activation fusion does not need constant weights
    assert folded["conv"].variant == FLOAT and folded["bn"].fused_into == "conv"


def test_only_codes_a_runtime_decodes_from_4_bit_containers_count_as_nibble_weights():
    params = 64 * 64 * 3
    nibbles = {
        (runtime, bits): _lower(runtime, _conv(bits=bits))["conv"].kernels[-1].features["nibble_weights"]
        for runtime in ("onnxruntime-weight-only", "onnxruntime-fp32")
        for bits in (4, 5)
    }
    assert nibbles == {
        ("onnxruntime-weight-only", 4): params, ("onnxruntime-weight-only", 5): 0,
        ("onnxruntime-fp32", 4): 0, ("onnxruntime-fp32", 5): 0,
    }  # fmt: skip


def test_weight_only_memory_holds_codes_for_decoded_layers_and_floats_for_folded_ones():
    runtime = get_runtime("onnxruntime-weight-only")
    params, extras = 64 * 64 * 3, 64
    four_bit = _lower("onnxruntime-weight-only", _conv(bits=4))["conv"]
    five_bit = _lower("onnxruntime-weight-only", _conv(bits=5))["conv"]
    folded = _lower("onnxruntime-weight-only", _conv(bits=4, decoding="table"))["conv"]
    assert runtime.resident_weight_bits(four_bit) == params * 4 + extras * 32  # UINT4 container
    assert runtime.resident_weight_bits(five_bit) == params * 8 + extras * 32  # UINT8 container
    assert runtime.resident_weight_bits(folded) == (params + extras) * 32
    assert runtime.decoded_weight_bits(four_bit) == params * 32 and runtime.decoded_weight_bits(folded) == 0


@pytest.mark.parametrize("quantized_float_io", [False, True])
def test_int8_runs_integer_kernels_and_leaves_transposed_convolution_prelu_and_lstm_in_float(quantized_float_io):
    lowered = _lower(
        "onnxruntime-int8",
        _conv(bits=8, activation_bits=8),
        _free("prelu", "activation", "prelu", activation_bits=8),
        _conv("conv2", bits=8, activation_bits=8),
        _conv("decoder", kind="conv_transpose1d", bits=8, activation_bits=8),
        dataclasses.replace(_conv("lstm.l0.ih", kind="lstm_input", bits=8, activation_bits=8)),
        _free("add", "elementwise", "add", activation_bits=8),
        quantized_float_io=quantized_float_io,
    )
    variants = {name: layer.variant for name, layer in lowered.items()}
    assert variants == {
        "conv": INT8, "prelu": FLOAT, "conv2": INT8, "decoder": FLOAT_DECODED, "lstm.l0.ih": FLOAT, "add": INT8,
    }  # fmt: skip
    conversions = {name: [kernel.op for kernel in layer.kernels if kernel.layer is None] for name, layer in lowered.items()}
    # float input -> int8 conv, int8 -> float PReLU, float -> int8 conv, int8 -> float decoder, float -> int8 add;
    # under static quantization also the decoder's quantized output (a ConvTranspose) -> float LSTM
    assert conversions == {
        "conv": [QUANTIZE_OP], "prelu": [DEQUANTIZE_OP], "conv2": [QUANTIZE_OP], "decoder": [DEQUANTIZE_OP],
        "lstm.l0.ih": [QUANTIZE_OP, DEQUANTIZE_OP] if quantized_float_io else [], "add": [QUANTIZE_OP],
    }  # fmt: skip


def _conversion_ops(lowering) -> list[str]:
    kernels = [*(kernel for layer in lowering.layers for kernel in layer.kernels), *lowering.fixed]
    return [kernel.op for kernel in kernels if kernel.op in (QUANTIZE_OP, DEQUANTIZE_OP)]


def test_under_static_quantization_int8_enters_and_leaves_a_norm_through_conversions_even_between_float_kernels():
    """A batch norm's input and output are quantized by onnxruntime's static quantizer though it
    runs in float: a chain of them pays a quantize and a dequantize between every two and at both
    of the graph's float ends. A chain of PReLUs (an op the quantizer leaves alone) pays none, and
    neither chain does in a graph quantized only around its integer layers (the project's export)."""
    runtime = get_runtime("onnxruntime-int8")
    norms = tuple(_free(f"bn{index}", "batchnorm", activation_bits=8) for index in range(3))
    static = runtime.lower(ModelDescription("toy", norms, quantized_float_io=True))
    pairs = [[kernel.op for kernel in layer.kernels if kernel.layer is None] for layer in static.layers]
    assert pairs == [[QUANTIZE_OP, DEQUANTIZE_OP]] * 3
    assert [kernel.op for kernel in static.fixed] == [INFERENCE_OP, QUANTIZE_OP, DEQUANTIZE_OP]
    assert not _conversion_ops(runtime.lower(ModelDescription("toy", norms)))
    prelus = tuple(_free(f"p{index}", "activation", "prelu", activation_bits=8) for index in range(3))
    assert not _conversion_ops(runtime.lower(ModelDescription("toy", prelus, quantized_float_io=True)))


def test_int8_drops_the_relu_after_a_quantized_residual_add():
    """The static quantizer removes a Relu whose input is quantized (its range starts at zero), so
    a ResNet block's sum and ReLU is one QLinearAdd, with no float region between it and the next
    convolution."""
    lowered = _lower(
        "onnxruntime-int8", _conv(kind="conv2d", bits=8, activation_bits=8), _free("add", "elementwise", "add", activation_bits=8),
        _free("relu", "activation", "relu", activation_bits=8), _conv("next", kind="conv2d", bits=8, activation_bits=8),
    )  # fmt: skip
    assert lowered["add"].variant == INT8 and lowered["relu"].fused_into == "add"
    assert not any(kernel.op in (QUANTIZE_OP, DEQUANTIZE_OP) for name in ("add", "next") for kernel in lowered[name].kernels)


def test_int8_needs_8_bit_weights_and_activations():
    float_activations = _lower("onnxruntime-int8", _conv(bits=8), _free("add", "elementwise", "add"))
    four_bit = _lower("onnxruntime-int8", _conv(bits=4, activation_bits=8))
    assert float_activations["conv"].variant == FLOAT_DECODED and float_activations["add"].variant == FLOAT
    assert four_bit["conv"].variant == FLOAT_DECODED


def test_int8_runs_narrower_codes_that_export_as_exact_int8_levels():
    """The integer export writes 4-bit symmetric codes as int8 levels: they run on the int8 kernel."""
    exact = dataclasses.replace(_conv(bits=4, activation_bits=8), integer_weights=True)
    lowered = _lower("onnxruntime-int8", exact)
    assert lowered["conv"].variant == INT8
    assert get_runtime("onnxruntime-int8").resident_weight_bits(lowered["conv"]) == exact.params * 8 + exact.extra_params * 32


def test_float_runtime_prices_quantized_layers_as_float():
    assert _lower("onnxruntime-fp32", _conv(bits=4, activation_bits=8))["conv"].variant == FLOAT


@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
def test_every_kind_and_operation_is_priced_under_every_runtime(runtime):
    layers = [
        _free(f"{kind}.{operation}", kind, operation)
        for kind, operations in OPERATIONS.items()
        for operation in operations
    ]
    for kind in LAYER_KINDS:
        parameter_free = kind in OPERATIONS or kind in ("batchnorm", "groupnorm", "layernorm", "layout")
        layer = _free(f"{kind}-layer", kind) if parameter_free else _conv(f"{kind}-layer", kind=kind)
        layers.append(dataclasses.replace(layer, sequential_steps_per_second=100.0 if "lstm" in kind else 0.0))
    # an average pooling after each layer, so that no layer is fused into the one before
    separators = [_free(f"sep{index}", "pooling", "average") for index in range(len(layers))]
    separated = [layer for pair in zip(layers, separators) for layer in pair]
    estimate = CostModel().estimate(ModelDescription("toy", tuple(separated)), _profile(runtime))
    assert [cost.name for cost in estimate.layers] == [layer.name for layer in separated]
    assert all(cost.latency_ms >= 0 for cost in estimate.layers)
    assert estimate.latency_ms > 0 and estimate.peak_memory_bytes > 0


def test_a_runtime_registered_by_name_is_what_a_profile_prices():
    runtime = GraphRuntime("test-no-fusion", "float kernels, no fusion", lambda layer, quantized: FLOAT, {})
    register_runtime(runtime)
    try:
        with pytest.raises(ValueError, match="already registered"):
            register_runtime(runtime)
        layers = (_conv(), _free("bn", "batchnorm"))
        unfused = CostModel().estimate(ModelDescription("toy", layers), _profile("test-no-fusion"))
        fused = CostModel().estimate(ModelDescription("toy", layers), _profile("onnxruntime-fp32"))
        assert unfused.runtime == "test-no-fusion"
        assert unfused.layers[1].latency_ms > 0 and fused.layers[1].latency_ms == 0
    finally:
        del RUNTIMES["test-no-fusion"]


def test_an_unknown_runtime_names_the_registered_ones():
    with pytest.raises(KeyError, match="onnxruntime-fp32"):
        get_runtime("tflite")


def test_an_int8_graph_output_is_dequantized_and_a_float_one_is_not():
    """The graph's output is float: an int8 last kernel has it dequantized, with the last layer's
    output elements; a model ending in float, or a float runtime, has no conversion after it."""
    int8 = get_runtime("onnxruntime-int8")
    ends_int8 = ModelDescription("toy", (_conv(bits=8, activation_bits=8),))
    ends_float = ModelDescription("toy", (*ends_int8.layers, _free("prelu", "activation", "prelu", activation_bits=8)))
    tail = [kernel for kernel in int8.lower(ends_int8).fixed if kernel.op == DEQUANTIZE_OP]
    assert len(tail) == 1 and tail[0].features["elements"] == ends_int8.layers[-1].output_elements_per_second
    assert not any(kernel.op == DEQUANTIZE_OP for kernel in int8.lower(ends_float).fixed)
    assert not any(kernel.op == DEQUANTIZE_OP for kernel in get_runtime("onnxruntime-fp32").lower(ends_int8).fixed)


def test_int8_cancels_the_layout_change_before_a_1d_convolution_and_runs_it_before_a_2d_one():
    """A channels-last int8 1-D convolution reads filterbank frames as they come, so the model's
    change to channels first costs nothing, and the quantize before it moves to the convolution;
    a 2-D one needs the transpose; a float graph runs it before either."""
    layout = _free("frames", "layout", activation_bits=8)
    into_1d = _lower("onnxruntime-int8", layout, _conv(bits=8, activation_bits=8))
    into_2d = _lower("onnxruntime-int8", layout, _conv(kind="conv2d", bits=8, activation_bits=8))
    in_float = _lower("onnxruntime-fp32", layout, _conv())
    assert into_1d["frames"].fused_into == "conv" and not into_1d["frames"].kernels
    assert [kernel.op for kernel in into_1d["conv"].kernels] == [QUANTIZE_OP, "conv1d"]
    assert [kernel.key for kernel in into_2d["frames"].kernels] == [f"{QUANTIZE_OP}/int8", "layout/int8"]
    assert [kernel.op for kernel in into_2d["conv"].kernels] == ["conv2d"]
    assert [kernel.key for kernel in in_float["frames"].kernels] == ["layout/fp32"]
