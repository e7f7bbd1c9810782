"""Descriptions record what runtimes run differently: the operation of a parameter-free layer, how
a quantized layer's codes are decoded and which layers' outputs each layer reads; descriptions
written before any of them load unchanged."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from spaces.compress import ModelSpec, compress
from spaces.describe import describe_model
from spaces.description import LayerDescription, ModelDescription
from spaces.models.layers import Add, GlobalContext, Multiply, PReLU, StatisticsPooling


class _Layers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(8, 8, 3, padding=1)
        self.relu = nn.ReLU()
        self.prelu = PReLU()
        self.sigmoid = nn.Sigmoid()
        self.add = Add()
        self.gate = Multiply()
        self.context = GlobalContext()
        self.pool = StatisticsPooling()
        self.average = nn.AdaptiveAvgPool1d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.prelu(self.relu(self.conv(x)))
        y = self.gate(self.add(y, x), self.sigmoid(self.average(y)))
        return self.pool(self.context(y))


def test_parameter_free_layers_record_their_operation():
    description = describe_model(_Layers(), "toy", torch.zeros(1, 8, 20), 16000)
    operations = {layer.name: (layer.kind, layer.operation) for layer in description.layers}
    assert operations == {
        "conv": ("conv1d", ""),
        "relu": ("activation", "relu"),
        "prelu": ("activation", "prelu"),  # the project's PReLU subclass inherits nn.PReLU's
        "add": ("elementwise", "add"),
        "average": ("pooling", "average"),
        "sigmoid": ("activation", "sigmoid"),
        "gate": ("elementwise", "multiply"),
        "context": ("pooling", "global_context"),
        "pool": ("pooling", "statistics"),
    }


@pytest.mark.parametrize(
    ("quantizer", "bits", "decoding"), [("uniform", 8, "linear"), ("uniform", 4, "linear"), ("kmeans", 4, "table"), ("pow2", 4, "table")]
)
def test_quantized_layers_record_how_their_codes_are_decoded(quantizer, bits, decoding):
    spec = ModelSpec("xvector", {"num_mel_bins": 24, "channels": 16, "pooling_channels": 32, "embedding_dim": 8}, 24, 100, 16000)
    model = spec.build()
    description = compress(spec, model.state_dict(), {"frame1.conv": bits}, quantizer).description
    decodings = {layer.name: layer.weight_decoding for layer in description.layers if layer.params}
    assert decodings["frame1.conv"] == decoding
    assert {value for name, value in decodings.items() if name != "frame1.conv"} == {""}


def test_an_operation_must_belong_to_its_kind():
    with pytest.raises(ValueError, match="operation='prelu'; a pooling layer records one of"):
        LayerDescription("pool", "pooling", operation="prelu")
    with pytest.raises(ValueError, match="weight_decoding='huffman'"):
        LayerDescription("conv", "conv1d", params=4, weight_bits=4, weight_decoding="huffman")


def test_descriptions_written_before_operations_and_decodings_load_unchanged():
    old = {
        "family": "toy",
        "layers": [
            {"name": "relu", "kind": "activation", "input_elements_per_second": 10.0, "output_elements_per_second": 10.0},
            {"name": "conv", "kind": "conv1d", "params": 4, "weight_bits": 4, "quantizer": "uniform"},
        ],
    }
    description = ModelDescription.from_dict(old)
    assert [(layer.operation, layer.weight_decoding) for layer in description.layers] == [("", ""), ("", "")]
    assert [layer.input_layers for layer in description.layers] == [(), ()]
    assert [layer.input_channels for layer in description.layers] == [0, 0]
    assert ModelDescription.from_dict(description.to_dict()) == description


class _Convolutions(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv2d = nn.Conv2d(1, 24, 3, padding=1)
        self.grouped = nn.Conv2d(24, 48, 1, groups=4)
        self.depthwise = nn.Conv1d(96, 96, 3, padding=1, groups=96)
        self.transposed = nn.ConvTranspose1d(96, 1, 4, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.grouped(self.conv2d(x)).flatten(1, 2)
        return self.transposed(self.depthwise(y))


def test_convolutions_record_their_input_channels_per_group():
    """What a runtime that blocks channels pads (`hwcost.kernels`, blocked convolutions)."""
    description = describe_model(_Convolutions(), "toy", torch.zeros(1, 1, 2, 20), 16000)
    channels = {layer.name: layer.input_channels for layer in description.layers}
    assert channels == {"conv2d": 1, "grouped": 6, "depthwise": 1, "transposed": 96}


def test_layers_record_the_layers_whose_outputs_they_read():
    description = describe_model(_Layers(), "toy", torch.zeros(1, 8, 20), 16000)
    names = [layer.name for layer in description.layers]
    reads = {layer.name: tuple(names[source] for source in layer.input_layers) for layer in description.layers}
    assert reads == {
        "conv": (),  # the model's input
        "relu": ("conv",),
        "prelu": ("relu",),
        "add": ("prelu",),  # and the model's input
        "average": ("prelu",),
        "sigmoid": ("average",),
        "gate": ("add", "sigmoid"),
        "context": ("gate",),
        "pool": ("context",),
    }
    assert ModelDescription.from_dict(json.loads(description.to_json())) == description


def test_a_layer_reads_only_layers_before_it():
    first = LayerDescription("a", "activation", operation="relu")
    with pytest.raises(ValueError, match="layer 'b' \\(position 1\\): input_layers=\\(1,\\)"):
        ModelDescription("toy", (first, LayerDescription("b", "activation", operation="relu", input_layers=(1,))))


def test_negative_input_channels_are_an_error_naming_the_layer():
    with pytest.raises(ValueError, match="'conv': input_channels=-1"):
        LayerDescription("conv", "conv2d", input_channels=-1)
