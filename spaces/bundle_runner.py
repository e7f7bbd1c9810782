"""Run a speaker-verification bundle from audio with numpy, onnxruntime, soundfile and soxr alone.

`search export` copies this file into every verification bundle as `runner.py`. It imports
nothing of the package that wrote it: the front-end is computed in numpy from the spec that
config.json's `features.frontend` holds (audio reading and resampling, waveform scaling,
dither, framing and edge handling, window, FFT, mel filters, logarithm, normalisation), the
model runs in onnxruntime, and the decision thresholds are config.json's `decision` block. A
deployer copies the bundle folder and installs `numpy onnxruntime soundfile soxr`; a bundle
whose front-end trims silence with webrtcvad (GE2E's) also needs `webrtcvad-wheels`.

    import runner                       # with the bundle folder on sys.path
    model = runner.load("BUNDLE")
    a = model.embed_file("a.wav")       # or model.embed(samples, sample_rate)
    b = model.embed_file("b.wav")
    score = model.score(a, b)           # cosine similarity
    same = model.accepts(score)         # score >= the threshold at the EER point

    python BUNDLE/runner.py a.wav       # prints the embedding as JSON
    python BUNDLE/runner.py a.wav b.wav # prints the score and the decision
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import onnxruntime
import soundfile
import soxr

CONFIG_FILE = "config.json"
ONNX_FILE = "model.onnx"
SMALLEST_NORM = 1e-12
"""Norm below which a pooled embedding is not divided (an all-zero mean stays zero)."""


class RunnerError(ValueError):
    """A bundle or an audio file this runner cannot use; the message names the file."""


def read_audio(path: str | Path, audio: dict) -> np.ndarray:
    """Mono float32 samples in [-1, 1] at the bundle's rate, as the spec's `audio` block says.

    soundfile decodes the file (integer PCM divided by 2^(bits - 1)), channels are averaged,
    another rate is resampled with soxr at the spec's quality, then the optional energy VAD.
    """
    try:
        samples, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, OSError) as error:
        raise RunnerError(f"{path}: unreadable audio ({' '.join(str(error).split())})") from None
    if samples.size == 0:
        raise RunnerError(f"{path}: no samples")
    return _prepared_waveform(samples.mean(axis=1, dtype=np.float32), rate, audio, str(path))


def _prepared_waveform(samples: np.ndarray, rate: int, audio: dict, name: str) -> np.ndarray:
    """Checked mono samples resampled to the bundle's rate, silence dropped when the spec says so."""
    if not np.isfinite(samples).all():
        raise RunnerError(f"{name}: holds NaN or infinite samples")
    if not np.abs(samples).any():
        raise RunnerError(f"{name}: all samples are zero (no speech)")
    if rate != audio["sample_rate"]:
        samples = soxr.resample(samples, rate, audio["sample_rate"], quality=audio["resampler_quality"])
        samples = samples.astype(np.float32, copy=False)
    vad = audio.get("energy_vad")
    return energy_vad(samples, audio["sample_rate"], vad) if vad else samples


def energy_vad(samples: np.ndarray, sample_rate: int, vad: dict) -> np.ndarray:
    """The frames within `dynamic_range_db` of the loudest, widened by `hangover_ms` on each side."""
    frame = max(1, round(sample_rate * vad["frame_ms"] / 1000.0))
    count = -(-len(samples) // frame)
    padded = np.zeros(count * frame, dtype=np.float64)
    padded[: len(samples)] = samples
    energy_db = 10.0 * np.log10(np.mean(padded.reshape(count, frame) ** 2, axis=1) + vad["energy_floor"])
    voiced = energy_db >= energy_db.max() - vad["dynamic_range_db"]
    hangover = round(vad["hangover_ms"] / vad["frame_ms"])
    widened = np.convolve(voiced.astype(np.int64), np.ones(2 * hangover + 1, dtype=np.int64), mode="same") > 0
    return samples[np.repeat(widened, frame)[: len(samples)]]


def mono(waveform: np.ndarray) -> np.ndarray:
    """`waveform` (`[samples]` or `[samples, channels]`) as mono float32 in [-1, 1].

    Integer samples are divided by their type's full scale, as soundfile reads integer PCM.
    """
    samples = np.asarray(waveform)
    if np.issubdtype(samples.dtype, np.integer):
        samples = samples / float(2 ** (8 * samples.dtype.itemsize - 1))
    samples = samples.astype(np.float32, copy=False)
    if samples.ndim == 2:
        samples = samples.mean(axis=1, dtype=np.float32)
    if samples.ndim != 1 or samples.size == 0:
        raise RunnerError(f"waveform of shape {np.shape(waveform)}: expected [samples] or [samples, channels]")
    return samples


# --- the front-end, step by step as the spec says ---------------------------------------------


def normalise_volume(samples: np.ndarray, volume: dict) -> np.ndarray:
    """Raise the RMS level to `target_dbfs` (never lower it when `increase_only`), in float32."""
    full_scale = volume["full_scale"]
    rms = np.sqrt(np.mean((samples * full_scale) ** 2))
    change_db = volume["target_dbfs"] - 20 * np.log10(rms / full_scale)
    if change_db < 0 and volume["increase_only"]:
        return samples
    return samples * (10 ** (change_db / 20))


def trim_silences(samples: np.ndarray, trimming: dict, sample_rate: int) -> np.ndarray:
    """Cut to whole VAD windows, then drop the windows far from any speech webrtcvad hears."""
    import webrtcvad  # pip install webrtcvad-wheels; only this step needs it

    window = trimming["window_ms"] * sample_rate // 1000
    samples = samples[: len(samples) - len(samples) % window]
    pcm = np.round(samples * trimming["full_scale"]).astype(np.int16).tobytes()
    vad = webrtcvad.Vad(trimming["mode"])
    voiced = np.array(
        [vad.is_speech(pcm[start : start + 2 * window], sample_rate) for start in range(0, len(pcm), 2 * window)], dtype=bool
    )
    width = trimming["moving_average_windows"]
    padded = np.concatenate((np.zeros((width - 1) // 2), voiced, np.zeros(width // 2)))
    sums = np.cumsum(padded, dtype=float)
    sums[width:] = sums[width:] - sums[:-width]
    smoothed = np.round(sums[width - 1 :] / width).astype(bool)
    dilation = np.ones(trimming["dilation_windows"], dtype=np.int64)  # odd: centred on each voiced window
    kept = np.convolve(smoothed.astype(np.int64), dilation, mode="same") > 0
    return samples[np.repeat(kept, window)]


def window_function(window: dict, length: int) -> np.ndarray:
    """The analysis window: Kaldi's symmetric ones (`povey` is Hann to the power 0.85) or periodic ones."""
    denominator = length if window["periodic"] else length - 1
    phase = 2 * np.pi * np.arange(length) / denominator
    hann = 0.5 - 0.5 * np.cos(phase)
    shapes = {"hann": hann, "povey": hann**0.85, "hamming": 0.54 - 0.46 * np.cos(phase), "rectangular": np.ones(length)}
    if window["type"] not in shapes:
        raise RunnerError(f"window {window['type']!r}: this runner knows {sorted(shapes)}")
    return shapes[window["type"]]


def frames_of(samples: np.ndarray, frames: dict) -> np.ndarray:
    """`[frames, length]` analysis frames: Kaldi's snipped edges (whole frames only) or frames
    centred on every `shift`-th sample with zero padding of half a frame at each end."""
    length, shift = frames["length"], frames["shift"]
    if frames["edges"] == "centre":
        samples = np.pad(samples, (length // 2, length // 2))
    elif frames["edges"] != "snip":
        raise RunnerError(f"frame edges {frames['edges']!r}: expected 'snip' or 'centre'")
    if len(samples) < length:
        raise RunnerError(f"audio has {len(samples)} samples: need at least {length} (one frame)")
    return np.lib.stride_tricks.sliding_window_view(samples, length)[::shift]


def kaldi_mel_scale(hz: np.ndarray) -> np.ndarray:
    return 1127.0 * np.log(1.0 + hz / 700.0)


def kaldi_filters(mel: dict, fft_size: int, sample_rate: int) -> np.ndarray:
    """Kaldi's mel bank `[fft_size // 2 + 1, bins]`: triangles on the mel scale 1127 ln(1 + f / 700),
    evenly spaced between the band edges, over the FFT bins below Nyquist."""
    bins = mel["bins"]
    low, high = kaldi_mel_scale(np.array([mel["low_hz"], mel["high_hz"]]))
    edges = low + np.arange(bins + 2) * (high - low) / (bins + 1)
    left, centre, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    points = kaldi_mel_scale(np.arange(fft_size // 2) * sample_rate / fft_size)[None, :]
    rising, falling = (points - left) / (centre - left), (right - points) / (right - centre)
    weights = np.where(points <= centre, rising, falling) * ((points > left) & (points < right))
    return np.vstack([weights.T, np.zeros((1, bins))])


def speechbrain_filters(mel: dict, fft_size: int, sample_rate: int) -> np.ndarray:
    """SpeechBrain's `Filterbank` `[fft_size // 2 + 1, bins]`: centres evenly spaced on the HTK mel scale
    2595 log10(1 + f / 700), each a symmetric triangle in Hz as wide as the distance to the centre below."""
    to_mel = lambda hz: 2595.0 * np.log10(1.0 + hz / 700.0)  # noqa: E731
    hz = 700.0 * (10 ** (np.linspace(to_mel(mel["low_hz"]), to_mel(mel["high_hz"]), mel["bins"] + 2) / 2595.0) - 1)
    centres, half_widths = hz[1:-1], hz[1:-1] - hz[:-2]
    frequencies = np.linspace(0, sample_rate // 2, fft_size // 2 + 1)
    return np.clip(1.0 - np.abs(frequencies[:, None] - centres[None, :]) / half_widths[None, :], 0.0, None)


def slaney_filters(mel: dict, fft_size: int, sample_rate: int) -> np.ndarray:
    """librosa's `filters.mel` (Slaney scale and area normalisation) `[fft_size // 2 + 1, bins]`:
    linear at 200/3 Hz per mel below 1 kHz, logarithmic above; each triangle scaled by 2 / its width in Hz."""
    log_start_mel, log_step = 15.0, math.log(6.4) / 27.0

    def to_mel(hz: np.ndarray) -> np.ndarray:
        return np.where(hz >= 1000.0, log_start_mel + np.log(np.maximum(hz, 1e-10) / 1000.0) / log_step, hz * 3 / 200.0)

    def to_hz(mels: np.ndarray) -> np.ndarray:
        return np.where(mels >= log_start_mel, 1000.0 * np.exp(log_step * (mels - log_start_mel)), mels * 200.0 / 3)

    low, high = to_mel(np.array([mel["low_hz"], mel["high_hz"]], dtype=float))
    edges = to_hz(np.linspace(low, high, mel["bins"] + 2))
    widths = np.diff(edges)
    ramps = np.subtract.outer(edges, np.fft.rfftfreq(fft_size, 1.0 / sample_rate))
    weights = np.maximum(0.0, np.minimum(-ramps[:-2] / widths[:-1, None], ramps[2:] / widths[1:, None]))
    return (weights * (2.0 / (edges[2:] - edges[:-2]))[:, None]).T


MEL_FILTERS = {"kaldi": kaldi_filters, "speechbrain": speechbrain_filters, "slaney": slaney_filters}
"""The spec's `mel.filters` -> the filter bank it names."""


def spectral_features(samples: np.ndarray, spec: dict) -> np.ndarray:
    """`[frames, bins]` features of a prepared waveform: the spec's framing, spectrum, mel, log and normalisation."""
    scaled = samples.astype(np.float64) * spec["waveform_scale"]
    if spec["dither"] > 0:
        scaled = scaled + spec["dither"] * np.random.default_rng().standard_normal(scaled.shape)
    frames = frames_of(scaled, spec["frames"])
    if spec["remove_dc_offset"]:
        frames = frames - frames.mean(axis=1, keepdims=True)
    if spec["preemphasis"]:
        frames = np.concatenate([frames[:, :1], frames[:, 1:] - spec["preemphasis"] * frames[:, :-1]], axis=1)
        frames[:, 0] -= spec["preemphasis"] * frames[:, 0]
    frames = frames * window_function(spec["window"], spec["frames"]["length"])
    power = np.abs(np.fft.rfft(frames, n=spec["fft_size"], axis=1)) ** 2
    mel = spec["mel"]
    if mel["filters"] not in MEL_FILTERS:
        raise RunnerError(f"mel filters {mel['filters']!r}: this runner knows {sorted(MEL_FILTERS)}")
    energies = power @ MEL_FILTERS[mel["filters"]](mel, spec["fft_size"], spec["audio"]["sample_rate"])
    features = _logarithm(energies, spec["log"])
    if spec["normalisation"] == "utterance_mean":
        features = features - features.mean(axis=0, keepdims=True)
    return features.astype(np.float32)


def _logarithm(energies: np.ndarray, log: dict | None) -> np.ndarray:
    """Natural log floored at `floor`, or decibels floored at `floor` and clipped to `dynamic_range_db` under the maximum."""
    if log is None:
        return energies
    if log["kind"] == "natural":
        return np.log(np.maximum(energies, log["floor"]))
    decibels = 10.0 * np.log10(np.maximum(energies, log["floor"]))
    return np.maximum(decibels, decibels.max() - log["dynamic_range_db"])


def window_starts(num_samples: int, hop: int, windows: dict) -> list[int]:
    """First frame of each partial window of `num_samples` samples (at least one); a last window with
    less than `min_coverage` real audio is dropped unless it is the only one."""
    frames = math.ceil((num_samples + 1) / hop)
    starts = list(range(0, max(1, frames - windows["frames"] + windows["step_frames"] + 1), windows["step_frames"]))
    coverage = (num_samples - starts[-1] * hop) / (windows["frames"] * hop)
    if coverage < windows["min_coverage"] and len(starts) > 1:
        starts.pop()
    return starts


def features(samples: np.ndarray, spec: dict, windows: dict | None = None) -> np.ndarray:
    """The model's input for mono samples at the bundle's rate: `[frames, bins]`, or with `windows`
    (config.json's `features.windows`) `[windows, frames, bins]` over the waveform zero-padded to
    the end of its last window."""
    preprocessing = spec["preprocessing"] or {}
    if "volume" in preprocessing:
        samples = normalise_volume(samples, preprocessing["volume"])
    if "silence_trimming" in preprocessing:
        samples = trim_silences(samples, preprocessing["silence_trimming"], spec["audio"]["sample_rate"])
    if windows is None:
        return spectral_features(samples, spec)
    hop = spec["frames"]["shift"]
    starts = window_starts(len(samples), hop, windows)
    padded = np.pad(samples, (0, max(0, (starts[-1] + windows["frames"]) * hop - len(samples))))
    frames = spectral_features(padded, spec)
    return np.stack([frames[start : start + windows["frames"]] for start in starts])


# --- the bundle --------------------------------------------------------------------------------


class Model:
    """A verification bundle ready to embed audio and score pairs.

    Attributes:
        config: config.json.
        spec: Its front-end spec (`features.frontend`).
        windows: Its partial windows (`features.windows`), or None when the model reads whole utterances.
        decision: Its thresholds and how they were calibrated (`decision`).
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.config = _read_config(self.folder)
        self.spec = self.config["features"]["frontend"]
        self.windows = self.config["features"].get("windows")
        self.decision = self.config.get("decision") or {}
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        try:
            self.session = onnxruntime.InferenceSession(str(self.folder / ONNX_FILE), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own exception types per failure
            raise RunnerError(f"{self.folder / ONNX_FILE}: cannot be loaded ({' '.join(str(error).split())})") from None
        self.input_name = self.session.get_inputs()[0].name

    @property
    def sample_rate(self) -> int:
        return self.spec["audio"]["sample_rate"]

    def features(self, waveform: np.ndarray, sample_rate: int) -> np.ndarray:
        """The model's input for a waveform (`[samples]` or `[samples, channels]`) at any rate."""
        samples = _prepared_waveform(mono(waveform), sample_rate, self.spec["audio"], "waveform")
        return features(samples, self.spec, self.windows)

    def embed(self, waveform: np.ndarray, sample_rate: int) -> np.ndarray:
        """The utterance's embedding `[dim]`: the model's output, pooled over windows when it reads windows."""
        return self._embedding(self.features(waveform, sample_rate))

    def embed_file(self, path: str | Path) -> np.ndarray:
        """The embedding of an audio file soundfile reads (WAV, FLAC, OGG...)."""
        samples = read_audio(path, self.spec["audio"])
        return self._embedding(features(samples, self.spec, self.windows))

    def _embedding(self, model_input: np.ndarray) -> np.ndarray:
        batch = model_input if self.windows is not None else model_input[None]
        (outputs,) = self.session.run(None, {self.input_name: batch})
        if self.windows is None:
            return outputs[0]
        mean = outputs.astype(np.float32).mean(axis=0)
        return mean / max(float(np.linalg.norm(mean)), SMALLEST_NORM)

    @staticmethod
    def score(first: np.ndarray, second: np.ndarray) -> float:
        """Cosine similarity of two embeddings: higher means the same speaker is more likely."""
        first, second = np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)
        norms = np.linalg.norm(first) * np.linalg.norm(second)
        return float(first @ second / norms) if norms > 0 else 0.0

    def threshold(self, point: str | None = None) -> float:
        """The decision threshold at `point` (config.json's `decision.thresholds`; default its `default`)."""
        thresholds = self.decision.get("thresholds")
        if not thresholds:
            raise RunnerError(f"{self.folder / CONFIG_FILE}: no decision thresholds (bundle written before they were calibrated)")
        point = point or self.decision["default"]
        if point not in thresholds:
            raise RunnerError(f"threshold {point!r}: this bundle has {sorted(thresholds)}")
        return float(thresholds[point])

    def accepts(self, score: float, point: str | None = None) -> bool:
        """Whether `score` says "same speaker" at the threshold of `point`."""
        return score >= self.threshold(point)


def _read_config(folder: Path) -> dict:
    source = folder / CONFIG_FILE
    try:
        config = json.loads(source.read_text())
    except FileNotFoundError:
        raise RunnerError(f"{source}: missing; is {folder} a bundle written by `search export`?") from None
    except (OSError, json.JSONDecodeError) as error:
        raise RunnerError(f"{source}: unreadable ({error})") from None
    if not isinstance(config, dict) or not (config.get("features") or {}).get("frontend"):
        raise RunnerError(
            f"{source}: no front-end spec (features.frontend): not a speaker-verification bundle, or one exported "
            "before bundles carried the spec (export the trial again)"
        )
    return config


def load(folder: str | Path | None = None) -> Model:
    """The bundle in `folder` (default: the folder this file is in)."""
    return Model(Path(__file__).resolve().parent if folder is None else folder)


def main(argv: list[str]) -> int:
    """`runner.py A.wav` prints A's embedding as JSON; `runner.py A.wav B.wav` their score and decision."""
    if len(argv) not in (1, 2):
        print("usage: python runner.py A.wav [B.wav]", file=sys.stderr)
        return 2
    try:
        model = load()
        embeddings = [model.embed_file(path) for path in argv]
        if len(argv) == 1:
            print(json.dumps([float(value) for value in embeddings[0]]))
            return 0
        score = model.score(*embeddings)
        threshold = model.threshold()
        verdict = "same speaker" if score >= threshold else "different speakers"
        print(f"score {score:.4f}, threshold {threshold:.4f} ({model.decision['default']}): {verdict}")
    except RunnerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
