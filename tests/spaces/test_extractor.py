import pytest
import torch

from evaluators.si_sdr import sdr, si_sdr
from spaces.compress import ModelSpec, compress, finalize_compressed, quantizable_layers
from spaces.describe import describe_model
from spaces.models import build_model
from spaces.models.extractor import SpeakerExtractor, fit_to_mixture
from spaces.sharing import share_repeated_blocks

TINY = dict(filters=8, window=8, bottleneck=8, hidden=12, skip_channels=8, blocks=2, stacks=3, embedding_dim=6, voiceprint_blocks=1)
FULL_SIZE = dict(filters=512, window=16, bottleneck=128, hidden=512, skip_channels=128, blocks=8, stacks=4, embedding_dim=256, voiceprint_blocks=4)
"""Conv-TasNet's separator (N=512, L=16, B=H/4=128, X=8) with R=4 stacks and a voiceprint branch: 7.37M parameters."""
RATE = 8000


def _tiny(**overrides) -> SpeakerExtractor:
    torch.manual_seed(0)
    return SpeakerExtractor(**{**TINY, **overrides}).eval()


@pytest.mark.parametrize("samples", [8, 9, 1000, 1003, 4001])
def test_the_estimate_is_exactly_as_long_as_the_mixture(samples):
    model = _tiny()
    estimate, taps = model.forward_with_taps(torch.randn(2, samples), torch.randn(2, 777))
    assert estimate.shape == (2, samples)
    assert taps["activity"].shape == (2, model.frames(samples)) and taps["voiceprint"].shape == (2, 6)
    assert taps["mask"].shape == (2, 8, model.frames(samples)) and (taps["mask"] >= 0).all()


def test_the_enrollment_changes_the_estimate():
    model = _tiny()
    mixture = torch.randn(1, 2000)
    first, second = model(mixture, torch.randn(1, 1500)), model(mixture, torch.randn(1, 1500))
    assert not torch.allclose(first, second)


def test_inputs_shorter_than_the_encoder_window_are_clear_errors():
    model = _tiny()
    with pytest.raises(ValueError, match=r"mixture: 7 samples is shorter than the encoder window \(8 samples\)"):
        model(torch.randn(1, 7), torch.randn(1, 100))
    with pytest.raises(ValueError, match="enrollment: 3 samples"):
        model(torch.randn(1, 100), torch.randn(1, 3))
    with pytest.raises(ValueError, match=r"mixture: expected \[batch, samples\]"):
        model(torch.randn(100), torch.randn(1, 100))
    with pytest.raises(ValueError, match="enrollment batch 2 differs from mixture batch 1"):
        model(torch.randn(1, 100), torch.randn(2, 100))


def test_bad_sizes_are_clear_errors():
    with pytest.raises(ValueError, match="model.window=7: must be an even number"):
        SpeakerExtractor(window=7)
    with pytest.raises(ValueError, match="model.kernel_size=4: must be odd"):
        SpeakerExtractor(kernel_size=4)
    with pytest.raises(ValueError, match="model.stacks=0: must be >= 1"):
        SpeakerExtractor(stacks=0)


def test_layer_groups_name_every_quantizable_layer_once_in_stable_groups():
    model = _tiny()
    groups = model.layer_groups()
    assert list(groups) == ["encoder", "voiceprint", "bottleneck", "stack0", "stack1", "stack2", "cue", "mask", "decoder"]
    assert sorted(layer for layers in groups.values() for layer in layers) == sorted(quantizable_layers(model))
    assert groups["decoder"] == ["decoder"] and "stacks.1.blocks.0.depthwise" in groups["stack1"]
    assert model.repeated_blocks() == [["stacks.0", "stacks.1", "stacks.2"]]


def test_the_family_is_registered_and_the_full_size_is_near_the_original():
    assert isinstance(build_model("extractor", **TINY), SpeakerExtractor)
    full = SpeakerExtractor(**FULL_SIZE)
    assert 7.0e6 < sum(parameter.numel() for parameter in full.parameters()) < 8.0e6


def _spec(**overrides) -> ModelSpec:
    return ModelSpec("extractor", {**TINY, **overrides}, num_mel_bins=0, frames_per_second=0, sample_rate=RATE)


def test_the_description_prices_depthwise_and_transposed_convolutions_per_second():
    model = _tiny()
    description = describe_model(model, "extractor", model.example_inputs(RATE), RATE)
    frames = model.frames(RATE)
    depthwise = [layer for layer in description.layers if layer.name == "stacks.0.blocks.1.depthwise"][0]
    assert depthwise.kind == "depthwise_conv" and depthwise.params == 12 * 3
    assert depthwise.macs_per_second == 12 * frames * 3  # one 3-tap filter per channel and frame
    decoder = description.layer("decoder")
    assert decoder.kind == "conv_transpose1d" and decoder.params == 8 * 8
    assert decoder.macs_per_second == 8 * frames * 8  # every input element spreads over one window
    encoder_runs = [layer for layer in description.layers if layer.name == "encoder"]
    assert [layer.shared_with for layer in encoder_runs] == ["", "encoder"]  # enrollment, then mixture
    assert description.params == sum(parameter.numel() for parameter in model.parameters())


def test_quantizing_the_decoder_and_depthwise_layers_packs_them_at_their_bits():
    spec = _spec()
    state = spec.build().state_dict()
    fp32 = compress(spec, state, {})
    quantized = compress(spec, state, {name: 4 for name in quantizable_layers(spec.build())})
    assert quantized.description.layer("decoder").weight_bits == 4
    assert quantized.description.size_bytes < 0.7 * fp32.description.size_bytes  # biases and norms stay FP32
    estimate = quantized.model(torch.randn(1, 800), torch.randn(1, 800))
    assert estimate.shape == (1, 800) and torch.isfinite(estimate).all()


def test_sharing_the_stacks_stores_their_weights_once():
    spec = _spec()
    shared = spec.build()
    tied = share_repeated_blocks(shared)
    assert "stacks.2.blocks.1.conv_in" in tied and all(owner.startswith("stacks.0.") for owner in tied.values())
    tied_bytes = 4 * sum(
        tensor.numel() for layer in tied for tensor in (shared.get_submodule(layer).weight, shared.get_submodule(layer).bias)
    )
    plain_size = compress(spec, spec.build().state_dict(), {}).description.size_bytes
    shared_size = finalize_compressed(spec, shared, {}).description.size_bytes
    assert 0.75 * tied_bytes < plain_size - shared_size <= tied_bytes  # an alias entry costs its name


def test_the_output_is_fitted_to_the_mixture_so_a_quiet_estimate_gets_the_targets_level():
    generator = torch.Generator().manual_seed(0)
    target, interferer = torch.randn(2, 4000, generator=generator)
    interferer = interferer - (interferer @ target) / (target @ target) * target  # uncorrelated with the target
    mixture = (target + interferer).unsqueeze(0)
    quiet = 0.05 * target.unsqueeze(0) + 0.01 * torch.randn(1, 4000, generator=generator)
    fitted = fit_to_mixture(quiet, mixture)
    assert sdr(quiet, target.unsqueeze(0)).item() < 1.0  # the raw estimate's level is wrong
    assert sdr(fitted, target.unsqueeze(0)).item() > 10.0
    torch.testing.assert_close(si_sdr(fitted, target.unsqueeze(0)), si_sdr(quiet, target.unsqueeze(0)))


def test_the_model_output_is_already_fitted_to_its_mixture():
    model = _tiny()
    mixture, enrollment = torch.randn(2, 1600), torch.randn(2, 1200)
    estimate = model(mixture, enrollment)
    torch.testing.assert_close(fit_to_mixture(estimate, mixture), estimate, rtol=1e-4, atol=1e-6)
