import pytest

from search.bundle_runtime import bundle_runtime
from spaces.description import LayerDescription, ModelDescription


def _description(weight_bits: int) -> ModelDescription:
    layers = (
        LayerDescription("conv", "conv1d", params=64, weight_bits=weight_bits, quantizer="uniform"),
        LayerDescription("relu", "activation", operation="relu"),
    )
    return ModelDescription("toy", layers)


@pytest.mark.parametrize(
    "weight_bits, activation_bits, runtime",
    [(4, 32, "onnxruntime-weight-only"), (8, 8, "onnxruntime-int8"), (8, 4, "onnxruntime-weight-only"), (32, 32, "onnxruntime-fp32")],
)
def test_the_runtime_follows_what_the_bundle_quantizes(weight_bits, activation_bits, runtime):
    assert bundle_runtime(_description(weight_bits), activation_bits) == runtime
