import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from spaces.compress import ModelSpec, compress, quantizable_layers
from spaces.models import build_model

FRAME_TAPS = ("frame1", "frame2", "frame3", "frame4", "frame5")


@pytest.mark.parametrize(("channels", "pooling_channels"), [(8, 12), (16, 24)])
def test_forward_backward_shapes(channels, pooling_channels):
    model = build_model(
        "xvector", num_mel_bins=20, channels=channels, pooling_channels=pooling_channels, embedding_dim=16
    )
    features = torch.randn(3, 50, 20, requires_grad=True)
    embeddings = model(features)
    assert embeddings.shape == (3, 16) and model.embedding_dim == 16
    embeddings.sum().backward()
    assert features.grad is not None and all(p.grad is not None for p in model.parameters())


def test_full_size_matches_wespeaker_parameter_count():
    model = build_model("xvector", num_mel_bins=80, channels=512, pooling_channels=1500, embedding_dim=512)
    params = sum(p.numel() for p in model.parameters())
    assert abs(params - 4.61e6) / 4.61e6 < 0.03


def test_taps_have_documented_names_and_shapes():
    model = build_model("xvector", num_mel_bins=20, channels=8, pooling_channels=12, embedding_dim=16).eval()
    embedding, taps = model.forward_with_taps(torch.randn(2, 30, 20))
    assert list(taps) == [*FRAME_TAPS, "pooled", "segment1", "embedding"]
    assert all(taps[name].shape == (2, 8, 30) for name in FRAME_TAPS[:4]) and taps["frame5"].shape == (2, 12, 30)
    assert taps["pooled"].shape == (2, 24) and taps["segment1"].shape == (2, 16)
    assert torch.equal(taps["embedding"], embedding) and embedding.shape == (2, 16)


def test_layer_groups_cover_every_quantizable_layer_once():
    model = build_model("xvector", num_mel_bins=20, channels=8, pooling_channels=12, embedding_dim=16)
    groups = model.layer_groups()
    grouped = [name for names in groups.values() for name in names]
    assert sorted(grouped) == sorted(quantizable_layers(model)) and len(set(grouped)) == len(grouped)
    assert list(groups) == [*FRAME_TAPS, "segment1", "embedding"]


def test_description_macs_match_flop_counter():
    kwargs = dict(num_mel_bins=20, channels=16, pooling_channels=24, embedding_dim=16)
    spec = ModelSpec("xvector", kwargs, 20, 100, 16000)
    model = spec.build().eval()
    description = compress(spec, model.state_dict(), {}).description
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(spec.one_second_input())
    assert abs(description.macs_per_second - counter.get_total_flops() / 2) / description.macs_per_second < 0.01
    assert {layer.kind for layer in description.layers} == {"layout", "conv1d", "batchnorm", "activation", "pooling", "linear"}


@pytest.mark.parametrize("argument", ["num_mel_bins", "channels", "pooling_channels", "embedding_dim"])
def test_bad_arguments_are_clear_errors(argument):
    with pytest.raises(ValueError, match=f"model.{argument}=0"):
        build_model("xvector", **{argument: 0})
