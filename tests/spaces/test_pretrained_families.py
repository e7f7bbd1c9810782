"""The pretrained-model families (wespeaker_resnet, wespeaker_ecapa, speechbrain_ecapa, ge2e) work with
the engine's generic machinery: description, quantization, layer groups, taps and ONNX export.

Equality with the upstream implementations is checked in tests/pretrained.
"""

import numpy as np
import onnxruntime
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from search.onnx_export import export_onnx
from spaces.compress import ModelSpec, compress, quantizable_layers
from spaces.models import build_model
from spaces.models.wespeaker_resnet import TemporalStatisticsPooling

pytestmark = pytest.mark.usefixtures("single_thread")

BINS = 24
SMALL = {
    "wespeaker_resnet": dict(m_channels=4, num_blocks=(1, 2, 1, 1), embedding_dim=16, two_emb_layer=True),
    "wespeaker_ecapa": dict(
        channels=16, scale=4, se_channels=8, attention_channels=8, mfa_channels=24, embedding_dim=16,
        global_context=True, emb_bn=True,
    ),
    "speechbrain_ecapa": dict(
        channels=(16, 16, 16, 16, 48), attention_channels=8, res2net_scale=4, se_channels=8, embedding_dim=16
    ),
    "ge2e": dict(hidden_size=16, embedding_dim=16, num_layers=2),
}
GROUPS = {
    "wespeaker_resnet": ["conv1", "layer1", "layer2", "layer3", "layer4", "seg_1", "seg_2"],
    "wespeaker_ecapa": ["layer1", "layer2", "layer3", "layer4", "conv", "pool", "linear"],
    "speechbrain_ecapa": ["blocks", "mfa", "asp", "fc"],
    "ge2e": ["lstm.l0", "lstm.l1", "linear"],
}
TAPS = {
    "wespeaker_resnet": ["conv1", "layer1", "layer2", "layer3", "layer4", "pooled", "embedding"],
    "wespeaker_ecapa": ["layer1", "layer2", "layer3", "layer4", "conv", "pooled", "embedding"],
    "speechbrain_ecapa": ["tdnn", "block1", "block2", "block3", "mfa", "pooled", "embedding"],
    "ge2e": ["lstm", "embedding"],
}
CONV_FAMILIES = ("wespeaker_resnet", "wespeaker_ecapa", "speechbrain_ecapa")


def _spec(family: str) -> ModelSpec:
    return ModelSpec(family, dict(num_mel_bins=BINS, **SMALL[family]), BINS, 100, 16000)


def _model(family: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return _spec(family).build().eval()


@pytest.mark.parametrize("family", sorted(SMALL))
def test_forward_backward_shapes(family):
    model = _spec(family).build()
    features = torch.randn(3, 60, BINS, requires_grad=True)
    embeddings = model(features)
    assert embeddings.shape == (3, 16) and model.embedding_dim == 16
    embeddings.sum().backward()
    assert features.grad is not None and all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("family", sorted(SMALL))
def test_layer_groups_are_upstream_top_modules_and_cover_every_quantizable_layer_once(family):
    model = _model(family)
    groups = model.layer_groups()
    grouped = [name for names in groups.values() for name in names]
    assert list(groups) == GROUPS[family]
    assert sorted(grouped) == sorted(quantizable_layers(model)) and len(set(grouped)) == len(grouped)


@pytest.mark.parametrize("family", sorted(SMALL))
def test_taps_end_with_the_embedding_the_model_returns(family):
    model = _model(family)
    features = torch.randn(2, 40, BINS)
    with torch.no_grad():
        embedding, taps = model.forward_with_taps(features)
        assert list(taps) == TAPS[family]
        assert torch.equal(taps["embedding"], embedding) and torch.allclose(embedding, model(features))
    frame_level = [name for name in TAPS[family] if name not in ("pooled", "embedding")]
    assert all(taps[name].dim() == 3 and taps[name].shape[0] == 2 for name in frame_level)


@pytest.mark.parametrize("family", sorted(SMALL))
def test_every_layer_is_described_and_quantizable_layers_compress(family):
    spec = _spec(family)
    model = _model(family)
    compressed = compress(spec, model.state_dict(), {name: 4 for name in quantizable_layers(model)})
    kinds = {layer.kind for layer in compressed.description.layers}
    assert {"activation", "linear" if family == "ge2e" else "batchnorm"} <= kinds
    assert ({"lstm_input", "lstm_recurrent"} <= kinds) == (family == "ge2e")
    quantized = {layer.name for layer in compressed.description.layers if layer.weight_bits == 4}
    assert quantized == set(quantizable_layers(model)) and compressed.description.size_bytes > 0


@pytest.mark.parametrize("family", CONV_FAMILIES)
def test_description_macs_match_flop_counter(family):
    spec = _spec(family)
    model = _model(family)
    description = compress(spec, model.state_dict(), {}).description
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(spec.one_second_input())
    assert abs(description.macs_per_second - counter.get_total_flops() / 2) / description.macs_per_second < 0.01


@pytest.mark.parametrize("family", sorted(SMALL))
def test_fp32_onnx_export_runs_in_onnxruntime_with_variable_batch_and_length(family):
    model = _model(family)
    axes = {"features": {0: "batch", 1: "frames"}, "embedding": {0: "batch"}}
    graph = export_onnx(model, {}, {"features": torch.zeros(1, 100, BINS)}, ["embedding"], axes)
    session = onnxruntime.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    features = torch.randn(3, 70, BINS)
    with torch.no_grad():
        expected = model(features).numpy()
    assert np.abs(session.run(None, {"features": features.numpy()})[0] - expected).max() < 1e-4


def test_tstp_pooling_is_wespeakers_unbiased_std_with_an_additive_floor():
    x = torch.tensor([[[1.0, 2.0, 3.0, 4.0], [5.0, 5.0, 5.0, 5.0]]])
    pooled = TemporalStatisticsPooling()(x)
    # mean 2.5 and 5; unbiased variance 5/3 and 0; std = sqrt(variance + 1e-7)
    expected = torch.tensor([[2.5, 5.0, (5.0 / 3.0 + 1e-7) ** 0.5, 1e-7**0.5]])
    assert torch.allclose(pooled, expected, rtol=1e-6, atol=0)


def test_wespeaker_resnet_embedding_is_seg_1_with_one_layer_and_seg_2_with_two():
    torch.manual_seed(0)
    sizes = dict(num_mel_bins=BINS, m_channels=4, num_blocks=(1, 1, 1, 1), embedding_dim=8)
    one = build_model("wespeaker_resnet", **sizes).eval()
    two = build_model("wespeaker_resnet", **sizes, two_emb_layer=True).eval()
    two.load_state_dict(one.state_dict(), strict=False)
    features = torch.randn(2, 30, BINS)
    with torch.no_grad():
        seg_1 = one(features)
        expected = two.seg_2(two.seg_bn_1(torch.relu(seg_1)))
        assert torch.allclose(two(features), expected)
    assert not any(key.startswith(("seg_bn_1", "seg_2")) for key in one.state_dict())


def test_wespeaker_resnet_bottleneck_expands_channels_fourfold():
    model = build_model("wespeaker_resnet", num_mel_bins=16, m_channels=4, num_blocks=(1, 1, 1, 1), embedding_dim=8,
                        block="bottleneck")
    assert model.layer4[0].conv3.weight.shape == (4 * 32, 32, 1, 1)
    assert model.seg_1.in_features == 2 * 4 * 32 * (16 // 8)
    assert model(torch.randn(2, 20, 16)).shape == (2, 8)


def test_ge2e_embeddings_are_unit_length_and_non_negative():
    model = _model("ge2e")
    with torch.no_grad():
        embeddings = model(torch.rand(4, 50, BINS))
    assert torch.allclose(embeddings.norm(dim=1), torch.ones(4)) and (embeddings >= 0).all()


def test_speechbrain_ecapa_full_relative_lengths_equal_no_lengths():
    model = _model("speechbrain_ecapa")
    features = torch.randn(2, 40, BINS)
    with torch.no_grad():
        assert torch.allclose(model(features), model(features, torch.ones(2)), atol=1e-6)
        assert not torch.allclose(model(features)[1], model(features, torch.tensor([1.0, 0.5]))[1], atol=1e-3)


@pytest.mark.parametrize(
    ("family", "kwargs", "message"),
    [
        ("wespeaker_resnet", dict(num_mel_bins=20), "model.num_mel_bins=20"),
        ("wespeaker_resnet", dict(num_blocks=(1, 1)), "model.num_blocks"),
        ("wespeaker_resnet", dict(block="wide"), "model.block='wide'"),
        ("wespeaker_ecapa", dict(channels=30, scale=8), "model.scale=8"),
        ("wespeaker_ecapa", dict(mfa_channels=0), "model.mfa_channels=0"),
        ("speechbrain_ecapa", dict(kernel_sizes=(5, 3)), "model.channels"),
        ("speechbrain_ecapa", dict(res2net_scale=7), "model.res2net_scale=7"),
        ("ge2e", dict(num_layers=0), "model.num_layers=0"),
    ],
)
def test_bad_arguments_are_clear_errors(family, kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build_model(family, **kwargs)
