"""Every layer of every model family is priced on every target: none is skipped."""

import pytest

from hwcost import CostModel, available_targets
from spaces.compress import ModelSpec, compress, quantizable_layers
from spaces.models import MODEL_FAMILIES

SMALL = {
    "resnet": dict(base_width=4, blocks=(1, 1, 1, 1), embedding_dim=16),
    "ecapa_tdnn": dict(channels=32, scale=4, se_channels=8, attention_channels=8, mfa_channels=48, embedding_dim=16),
    "xvector": dict(channels=32, pooling_channels=48, embedding_dim=16),
    "extractor": dict(filters=16, window=16, bottleneck=16, hidden=24, skip_channels=16, blocks=2, stacks=2, embedding_dim=8),
    "wespeaker_resnet": dict(m_channels=4, num_blocks=(1, 1, 1, 1), embedding_dim=16),
    "wespeaker_ecapa": dict(channels=32, scale=4, se_channels=8, attention_channels=8, mfa_channels=48, embedding_dim=16),
    "speechbrain_ecapa": dict(channels=(32, 32, 32, 32, 48), res2net_scale=4, se_channels=8, attention_channels=8, embedding_dim=16),
    "ge2e": dict(hidden_size=16, embedding_dim=16, num_layers=2),
}
RAW_AUDIO_FAMILIES = ("extractor",)
"""Families that read waveforms, not filterbanks (no num_mel_bins)."""


def test_every_family_has_a_small_variant_here():
    assert set(SMALL) == set(MODEL_FAMILIES)


@pytest.mark.parametrize("family", sorted(SMALL))
@pytest.mark.parametrize("bits", [32, 8, 4])
def test_every_layer_of_every_family_is_costed(family, bits):
    features = {} if family in RAW_AUDIO_FAMILIES else {"num_mel_bins": 24}
    spec = ModelSpec(family, {**features, **SMALL[family]}, 24, 100, 16000)
    model = spec.build()
    description = compress(spec, model.state_dict(), {name: bits for name in quantizable_layers(model)}).description
    for target in available_targets():
        estimate = CostModel().estimate(description, target)
        assert [layer.name for layer in estimate.layers] == [layer.name for layer in description.layers]
        assert all(layer.latency_ms > 0 for layer in estimate.layers)
        assert estimate.storage_bytes == description.size_bytes


@pytest.mark.parametrize("family", sorted(set(SMALL) - set(RAW_AUDIO_FAMILIES) - {"ge2e"}))
def test_convolutional_families_describe_turning_frames_channels_first(family):
    """Every filterbank family but the LSTM's (which reads frames as they come) starts with a
    layout layer over all its input, read by its first convolution."""
    bins, frames = 24, 100
    spec = ModelSpec(family, {"num_mel_bins": bins, **SMALL[family]}, bins, frames, 16000)
    description = compress(spec, spec.build().state_dict(), {}).description
    first, reader = description.layers[0], description.layers[1]
    assert first.kind == "layout"
    assert first.input_elements_per_second == first.output_elements_per_second == bins * frames
    assert reader.kind in ("conv1d", "conv2d") and reader.input_layers == (0,)
