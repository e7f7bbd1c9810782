import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from spaces.compress import ModelSpec, compress, quantizable_layers
from spaces.models import build_model

SMALL = dict(num_mel_bins=20, embedding_dim=16, scale=4, se_channels=8, attention_channels=8, mfa_channels=24)


@pytest.mark.parametrize("channels", [8, 16])
@pytest.mark.parametrize("global_context", [True, False])
def test_forward_backward_shapes(channels, global_context):
    model = build_model("ecapa_tdnn", channels=channels, global_context=global_context, **SMALL)
    features = torch.randn(3, 50, 20, requires_grad=True)
    embeddings = model(features)
    assert embeddings.shape == (3, 16) and model.embedding_dim == 16
    embeddings.sum().backward()
    assert features.grad is not None and all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize(("channels", "reference"), [(512, 6.19e6), (1024, 14.65e6)])
def test_full_size_matches_wespeaker_parameter_count(channels, reference):
    model = build_model("ecapa_tdnn", num_mel_bins=80, channels=channels, embedding_dim=192)
    params = sum(p.numel() for p in model.parameters())
    assert abs(params - reference) / reference < 0.03


def test_taps_have_documented_names_and_shapes():
    model = build_model("ecapa_tdnn", channels=16, **SMALL).eval()
    embedding, taps = model.forward_with_taps(torch.randn(2, 30, 20))
    assert list(taps) == ["tdnn", "block1", "block2", "block3", "mfa", "pooled", "embedding"]
    assert all(taps[name].shape == (2, 16, 30) for name in ("tdnn", "block1", "block2", "block3"))
    assert taps["mfa"].shape == (2, 24, 30) and taps["pooled"].shape == (2, 48)
    assert torch.equal(taps["embedding"], embedding) and embedding.shape == (2, 16)


def test_layer_groups_cover_every_quantizable_layer_once():
    model = build_model("ecapa_tdnn", channels=16, **SMALL)
    groups = model.layer_groups()
    grouped = [name for names in groups.values() for name in names]
    assert sorted(grouped) == sorted(quantizable_layers(model)) and len(set(grouped)) == len(grouped)
    assert list(groups) == ["tdnn", "block1", "block2", "block3", "mfa", "pooling", "embedding"]


def test_description_macs_match_flop_counter():
    spec = ModelSpec("ecapa_tdnn", dict(channels=16, **SMALL), 20, 100, 16000)
    model = spec.build().eval()
    description = compress(spec, model.state_dict(), {}).description
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(spec.one_second_input())
    assert abs(description.macs_per_second - counter.get_total_flops() / 2) / description.macs_per_second < 0.01
    assert {layer.kind for layer in description.layers} == {
        "layout", "conv1d", "batchnorm", "activation", "elementwise", "pooling", "linear"
    }


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [(dict(channels=0), "model.channels=0"), (dict(scale=3), "model.scale=3"), (dict(scale=1), "model.scale=1"),
     (dict(mfa_channels=0), "model.mfa_channels=0"), (dict(se_channels=-1), "model.se_channels=-1")],
)
def test_bad_arguments_are_clear_errors(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        build_model("ecapa_tdnn", **kwargs)
