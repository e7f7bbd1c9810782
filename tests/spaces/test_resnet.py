import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from spaces.compress import ModelSpec, compress, quantizable_layers
from spaces.models import build_model


@pytest.mark.parametrize("width", [4, 8])
def test_forward_backward_shapes(width):
    model = build_model("resnet", num_mel_bins=40, base_width=width, blocks=(1, 1, 1, 1), embedding_dim=32)
    features = torch.randn(3, 120, 40, requires_grad=True)
    embeddings = model(features)
    assert embeddings.shape == (3, 32)
    embeddings.sum().backward()
    assert features.grad is not None and all(p.grad is not None for p in model.parameters())


def test_full_size_resnet34_matches_reference_parameter_count():
    model = build_model("resnet", num_mel_bins=80, base_width=32, blocks=(3, 4, 6, 3), embedding_dim=256)
    params = sum(p.numel() for p in model.parameters())
    assert abs(params - 6.63e6) / 6.63e6 < 0.03


def test_unknown_family_and_bad_blocks_are_clear_errors():
    with pytest.raises(ValueError, match="model.family='vgg'"):
        build_model("vgg")
    with pytest.raises(ValueError, match="model.blocks"):
        build_model("resnet", blocks=(1, 1))


def test_layer_groups_cover_every_quantizable_layer_once():
    model = build_model("resnet", num_mel_bins=40, base_width=4, blocks=(2, 1, 1, 1), embedding_dim=16)
    grouped = [name for names in model.layer_groups().values() for name in names]
    assert sorted(grouped) == sorted(quantizable_layers(model))
    assert list(model.layer_groups()) == ["stem", "layer1", "layer2", "layer3", "layer4", "embedding"]


def test_description_macs_match_flop_counter():
    spec = ModelSpec("resnet", dict(num_mel_bins=40, base_width=8, blocks=(1, 1, 1, 1), embedding_dim=32), 40, 100, 16000)
    model = spec.build().eval()
    description = compress(spec, model.state_dict(), {}).description
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(spec.one_second_input())
    assert abs(description.macs_per_second - counter.get_total_flops() / 2) / description.macs_per_second < 0.01
    assert {layer.kind for layer in description.layers} == {"layout", "conv2d", "batchnorm", "activation", "elementwise", "pooling", "linear"}


def test_forward_with_taps_gives_frame_level_taps_as_channels_by_time():
    model = build_model("resnet", num_mel_bins=40, base_width=4, blocks=(1, 1, 1, 1), embedding_dim=16).eval()
    features = torch.randn(2, 80, 40)
    embedding, taps = model.forward_with_taps(features)
    assert list(taps) == ["stem", "layer1", "layer2", "layer3", "layer4", "pooled", "embedding"]
    assert taps["stem"].shape == (2, 4 * 40, 80) and taps["layer4"].shape == (2, 32 * 5, 10)
    assert taps["pooled"].shape == (2, 2 * 32 * 5) and torch.equal(taps["embedding"], embedding)
    assert torch.allclose(embedding, model(features))
