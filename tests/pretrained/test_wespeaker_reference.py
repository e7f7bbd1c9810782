"""WeSpeaker checkpoints load strictly, and the WeSpeaker front-end is Kaldi's Hamming-window fbank.

WeSpeaker's package does not install here, so its tensor layout is written out below from the
pinned upstream files (wenet-e2e/wespeaker @ dfa741957e5c11f477623b6e583d67d0af25ee88,
`wespeaker/models/resnet.py` ResNet34 and `ecapa_tdnn.py` ECAPA_TDNN_c512 / _GLOB_c512, both
with feat_dim 80) rather than produced by our models, and the fbank is recomputed with numpy
from Kaldi's definition.
"""

import numpy as np
import pytest
import torch

from evaluators.frontends import wespeaker as frontend
from spaces.checkpoints import load_checkpoint
from spaces.models import build_model
from spaces.models.wespeaker_resnet import WESPEAKER_COMMIT

pytestmark = pytest.mark.usefixtures("single_thread")

PINNED_COMMIT = "dfa741957e5c11f477623b6e583d67d0af25ee88"


def _batch_norm(prefix: str, channels: int, affine: bool = True) -> dict[str, tuple[int, ...]]:
    stats = {f"{prefix}.{name}": (channels,) for name in ("running_mean", "running_var")}
    stats[f"{prefix}.num_batches_tracked"] = ()
    return ({f"{prefix}.weight": (channels,), f"{prefix}.bias": (channels,)} if affine else {}) | stats


# ResNet34: BasicBlock, num_blocks [3, 4, 6, 3], m_channels 32; (stage, blocks, input channels, channels, first stride)
RESNET34_STAGES = (
    ("layer1", 3, 32, 32, 1), ("layer2", 4, 32, 64, 2), ("layer3", 6, 64, 128, 2), ("layer4", 3, 128, 256, 2)
)
RESNET34_POOLED = 2 * 256 * (80 // 8)  # TSTP: mean and std of stats_dim = int(80 / 8) * 32 * 8
RESNET34_PUBLISHED_PARAMETERS = 6.63e6  # WeSpeaker's model table: ResNet34, 6.63M


def resnet34_layout(embed_dim: int = 256) -> dict[str, tuple[int, ...]]:
    layout = {"conv1.weight": (32, 1, 3, 3)} | _batch_norm("bn1", 32)
    for stage, blocks, first_in, channels, stride in RESNET34_STAGES:
        for index in range(blocks):
            block, in_channels = f"{stage}.{index}", first_in if index == 0 else channels
            layout[f"{block}.conv1.weight"] = (channels, in_channels, 3, 3)
            layout |= _batch_norm(f"{block}.bn1", channels)
            layout[f"{block}.conv2.weight"] = (channels, channels, 3, 3)
            layout |= _batch_norm(f"{block}.bn2", channels)
            if index == 0 and (stride != 1 or in_channels != channels):
                layout[f"{block}.shortcut.0.weight"] = (channels, in_channels, 1, 1)
                layout |= _batch_norm(f"{block}.shortcut.1", channels)
    return layout | {"seg_1.weight": (embed_dim, RESNET34_POOLED), "seg_1.bias": (embed_dim,)}


ECAPA_C512_PUBLISHED_GLOB_PARAMETERS = 6.19e6  # WeSpeaker's model table: ECAPA_TDNN_GLOB_c512, 6.19M


def ecapa_c512_layout(global_context: bool, embed_dim: int = 192) -> dict[str, tuple[int, ...]]:
    layout = {"layer1.conv.weight": (512, 80, 5), "layer1.conv.bias": (512,)} | _batch_norm("layer1.bn", 512)
    for layer in ("layer2", "layer3", "layer4"):
        block = f"{layer}.se_res2block"
        for step in (0, 2):  # Conv1dReluBn(512, 512, kernel_size=1)
            layout |= {f"{block}.{step}.conv.weight": (512, 512, 1), f"{block}.{step}.conv.bias": (512,)}
            layout |= _batch_norm(f"{block}.{step}.bn", 512)
        for split in range(7):  # Res2Conv1dReluBn(512, scale=8): 7 convolutions of width 64
            layout |= {f"{block}.1.convs.{split}.weight": (64, 64, 3), f"{block}.1.convs.{split}.bias": (64,)}
            layout |= _batch_norm(f"{block}.1.bns.{split}", 64)
        layout |= {  # SE_Connect(512, se_bottleneck_dim=128)
            f"{block}.3.linear1.weight": (128, 512), f"{block}.3.linear1.bias": (128,),
            f"{block}.3.linear2.weight": (512, 128), f"{block}.3.linear2.bias": (512,),
        }
    layout |= {"conv.weight": (1536, 1536, 1), "conv.bias": (1536,)}
    layout |= {  # ASTP(in_dim=1536, bottleneck_dim=128)
        "pool.linear1.weight": (128, 3 * 1536 if global_context else 1536, 1), "pool.linear1.bias": (128,),
        "pool.linear2.weight": (1536, 128, 1), "pool.linear2.bias": (1536,),
    }
    return layout | _batch_norm("bn", 3072) | {"linear.weight": (embed_dim, 3072), "linear.bias": (embed_dim,)}


def _shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {key: tuple(tensor.shape) for key, tensor in model.state_dict().items()}


def _parameters(layout: dict[str, tuple[int, ...]]) -> int:
    statistics = ("running_mean", "running_var", "num_batches_tracked")
    return sum(int(np.prod(shape)) for key, shape in layout.items() if not key.endswith(statistics))


def _checkpoint(layout: dict[str, tuple[int, ...]], embed_dim: int) -> dict[str, torch.Tensor]:
    """Random tensors in the layout plus WeSpeaker's AAM head, as bin/train.py saves them."""
    generator = torch.Generator().manual_seed(0)
    state = {
        key: torch.randint(0, 100, shape, generator=generator) if key.endswith("num_batches_tracked")
        else torch.rand(shape, generator=generator) + (0.5 if key.endswith("running_var") else 0.0)
        for key, shape in layout.items()
    }
    return state | {"projection.weight": torch.randn(1211, embed_dim, generator=generator)}


def test_models_name_the_pinned_upstream_commit():
    assert WESPEAKER_COMMIT == PINNED_COMMIT


def test_resnet34_has_upstreams_exact_tensor_layout_and_published_size():
    layout = resnet34_layout()
    assert _shapes(build_model("wespeaker_resnet")) == layout
    assert abs(_parameters(layout) - RESNET34_PUBLISHED_PARAMETERS) / RESNET34_PUBLISHED_PARAMETERS < 0.005


@pytest.mark.parametrize("global_context", [False, True])
def test_ecapa_c512_has_upstreams_exact_tensor_layout(global_context):
    layout = ecapa_c512_layout(global_context)
    assert _shapes(build_model("wespeaker_ecapa", global_context=global_context)) == layout
    if global_context:
        published = ECAPA_C512_PUBLISHED_GLOB_PARAMETERS
        assert abs(_parameters(layout) - published) / published < 0.005


@pytest.mark.parametrize("wrapped", [False, True])
@pytest.mark.parametrize(
    ("family", "layout", "embed_dim"),
    [("wespeaker_resnet", resnet34_layout(), 256), ("wespeaker_ecapa", ecapa_c512_layout(False), 192)],
)
def test_a_wespeaker_checkpoint_loads_strictly_without_its_training_head(tmp_path, family, layout, embed_dim, wrapped):
    state = _checkpoint(layout, embed_dim)
    path = tmp_path / "avg_model.pt"
    torch.save({"state_dict": state} if wrapped else state, path)
    model = build_model(family).eval()
    for format in ("wespeaker", "auto"):
        loaded = load_checkpoint(path, format, model)
        assert set(loaded) == set(layout) and all(torch.equal(loaded[key], state[key]) for key in layout)
    model.load_state_dict(loaded, strict=True)
    with torch.no_grad():
        assert model(torch.randn(1, 120, 80)).shape == (1, embed_dim)


def _kaldi_hamming_fbank(waveform: np.ndarray) -> np.ndarray:
    """Kaldi's fbank (compute-fbank-feats) in float64, from its definition, with a Hamming window
    and WeSpeaker's settings: int16 scale, 25/10 ms snipped frames, DC removal, pre-emphasis 0.97,
    FFT of 512, power, 80 mel bands 20-8000 Hz on 1127 ln(1 + f/700), log floored at float eps;
    then mean normalisation over frames."""
    samples = waveform.astype(np.float64) * 32768.0
    count = 1 + (len(samples) - 400) // 160
    frames = np.stack([samples[index * 160 : index * 160 + 400] for index in range(count)])
    frames -= frames.mean(axis=1, keepdims=True)
    frames = np.concatenate([frames[:, :1] * (1 - 0.97), frames[:, 1:] - 0.97 * frames[:, :-1]], axis=1)
    hamming = 0.54 - 0.46 * np.cos(2 * np.pi * np.arange(400) / 399)
    power = np.abs(np.fft.rfft(frames * hamming, n=512)) ** 2

    def mel(hz):
        return 1127.0 * np.log(1.0 + hz / 700.0)

    low, high = mel(20.0), mel(8000.0)
    step = (high - low) / 81
    bin_mels = mel(np.arange(256) * 16000.0 / 512)  # Kaldi's banks skip the Nyquist bin
    banks = np.zeros((80, 257))
    for band in range(80):
        left, centre, right = low + band * step, low + (band + 1) * step, low + (band + 2) * step
        inside = (bin_mels > left) & (bin_mels < right)
        slopes = np.minimum((bin_mels - left) / (centre - left), (right - bin_mels) / (right - centre))
        banks[band, :256] = np.where(inside, slopes, 0.0)
    log_energies = np.log(np.maximum(power @ banks.T, np.finfo(np.float32).eps))
    return log_energies - log_energies.mean(axis=0)


def _speech_like_waveform(seconds: float = 1.3, seed: int = 0) -> np.ndarray:
    """A deterministic voiced-like signal: harmonics of a gliding pitch, plus a little noise."""
    time = np.arange(int(16000 * seconds)) / 16000
    pitch = 120 + 60 * np.sin(2 * np.pi * 1.5 * time)
    phase = 2 * np.pi * np.cumsum(pitch) / 16000
    voiced = sum(np.sin(harmonic * phase) / harmonic for harmonic in range(1, 20))
    noise = np.random.default_rng(seed).normal(0, 0.05, len(time))
    return (0.3 * voiced / np.abs(voiced).max() + noise).astype(np.float32)


def test_frontend_equals_kaldi_fbank_with_a_hamming_window():
    waveform = _speech_like_waveform()
    features = frontend.compute_features(waveform).numpy()
    reference = _kaldi_hamming_fbank(waveform)
    assert features.shape == (1 + (len(waveform) - 400) // 160, 80) == reference.shape
    assert np.abs(features - reference).max() < 5e-4  # kaldi-native-fbank computes in float32


def test_frontend_window_is_hamming_not_kaldis_default_povey():
    waveform = _speech_like_waveform(seed=1)
    hamming = frontend.compute_features(waveform).numpy()
    options = frontend.fbank_options()
    options.frame_opts.window_type = "povey"
    import kaldi_native_fbank as knf

    povey = knf.OnlineFbank(options)
    povey.accept_waveform(16000, (waveform * 32768.0).tolist())
    povey.input_finished()
    povey_frames = np.stack([povey.get_frame(index) for index in range(povey.num_frames_ready)])
    assert np.abs(hamming - (povey_frames - povey_frames.mean(axis=0))).max() > 0.05


def test_frontend_by_hand_frame_count_zero_mean_and_silence():
    waveform = _speech_like_waveform(seconds=0.5)
    features = frontend.compute_features(waveform)
    assert features.shape == (48, 80)  # 1 + (8000 - 400) // 160
    assert features.mean(dim=0).abs().max() < 1e-4
    # DC removal leaves nothing of a constant signal: every energy hits the floor, CMN gives zeros.
    assert frontend.compute_features(np.full(800, 0.25, dtype=np.float32)).abs().max() < 1e-5
    with pytest.raises(ValueError, match="at least 400"):
        frontend.compute_features(np.zeros(399, dtype=np.float32))
