import pytest

from hwcost.runtimes import FLOAT_DECODED, INT8, get_runtime
from search.bundle_runtime import bundle_runtime, executed_description
from spaces.description import LayerDescription, ModelDescription


def _description(weight_bits: int) -> ModelDescription:
    layers = (
        LayerDescription("conv", "conv1d", params=64, weight_bits=weight_bits, quantizer="uniform"),
        LayerDescription("relu", "activation", operation="relu"),
    )
    return ModelDescription("toy", layers)


@pytest.mark.parametrize(
    "weight_bits, activation_bits, runtime",
    [(4, 32, "onnxruntime-weight-only"), (8, 8, "onnxruntime-int8"), (32, 32, "onnxruntime-fp32")],
)
def test_the_runtime_follows_what_the_bundle_quantizes(weight_bits, activation_bits, runtime):
    assert bundle_runtime(_description(weight_bits), activation_bits) == runtime


@pytest.mark.parametrize("activation_bits, variant", [(8, INT8), (32, FLOAT_DECODED)])
def test_a_bundle_s_activation_bits_decide_whether_its_8_bit_layers_are_priced_as_integer_kernels(activation_bits, variant):
    description = _description(8)
    executed = executed_description(description, activation_bits)
    assert {layer.activation_bits for layer in executed.layers} == {activation_bits}
    lowered = get_runtime(bundle_runtime(description, activation_bits)).lower(executed)
    assert lowered.layers[0].variant == variant
