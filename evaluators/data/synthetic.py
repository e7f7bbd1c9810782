"""Deterministic synthetic speaker corpus, rendered from a seed.

Real corpora need downloads and licences; this one lets every run, test and CI job train and
score speaker models offline. Each speaker is a parametric source-filter voice (pitch,
vocal-tract length, idiosyncratic vowel formants, spectral tilt, breathiness, jitter, shimmer,
fricative colour, speaking rate). Each utterance babbles phone-like segments with that voice,
varies it a little (pitch, formants, rate), then passes it through a random channel and
additive noise, so that a model has to learn the voice and ignore the session.

Randomness is keyed, never sequential: speaker k of a split depends only on (seed, split, k)
and its utterance j only on (seed, split, k, j), so growing the train split leaves the test
split untouched.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import numpy as np
from scipy import signal

CORPUS_VERSION = 1
"""Bump whenever rendering changes, so that cached features of the old corpus are not reused."""

SPLITS = ("train", "test")
"""Split names; train and test speakers are drawn from disjoint random streams."""

_SPLIT_KEYS = {"train": 0, "test": 1}
_ROLE_VOICE = 0
_ROLE_UTTERANCE = 1

_VOWEL_FORMANTS_HZ = np.array(
    [
        [730.0, 1090.0, 2440.0, 3400.0],  # /a/
        [270.0, 2290.0, 3010.0, 3700.0],  # /i/
        [300.0, 870.0, 2240.0, 3300.0],  # /u/
        [530.0, 1840.0, 2480.0, 3500.0],  # /e/
        [570.0, 840.0, 2410.0, 3300.0],  # /o/
        [660.0, 1720.0, 2410.0, 3400.0],  # /ae/
        [490.0, 1350.0, 1690.0, 3300.0],  # /er/
    ]
)
"""F1-F4 of a reference adult male vocal tract (after Peterson & Barney); voices rescale them."""

_FORMANT_BANDWIDTHS_HZ = np.array([80.0, 100.0, 140.0, 200.0, 250.0])
"""Reference bandwidths of F1-F5; each voice scales them."""

_VOICE_TYPES = (
    # (probability, mean f0 in Hz, formant scale relative to the reference tract)
    (0.45, 118.0, 1.00),  # adult male-like
    (0.45, 210.0, 1.17),  # adult female-like
    (0.10, 280.0, 1.32),  # child-like
)

_PINK_B = np.array([0.049922035, -0.095993537, 0.050612699, -0.004408786])
_PINK_A = np.array([1.0, -2.494956002, 2.017265875, -0.522189400])
"""Paul Kellet's economy 1/f filter, turning white noise into pink."""

_PAUSE, _VOWEL, _FRICATIVE = 0, 1, 2
_SEGMENT_PROBABILITIES = (0.18, 0.55, 0.27)
"""How often a segment is a pause, a vowel or a fricative (same order as the kind codes)."""

_MIN_SEGMENT_SECONDS = 0.03

_MAX_RESONANCE_FRACTION = 0.45
"""Resonances and bands are kept below this fraction of the sample rate (under Nyquist)."""


@dataclass(frozen=True)
class SyntheticCorpusConfig:
    """Size, seed and difficulty of the synthetic corpus.

    The difficulty knobs (last five) are what to tune for a target EER: the per-utterance
    knobs and the channel make sessions of one speaker differ (larger is harder); the
    individuality knob makes speakers differ from each other (larger is easier). `snr_db`
    also acts on difficulty.

    Attributes:
        train_speakers: Speakers in the "train" split.
        test_speakers: Speakers in the "test" split, disjoint from the train speakers.
        utterances_per_speaker: Utterances rendered for each speaker.
        sample_rate: Sample rate of the audio in Hz.
        min_seconds: Shortest utterance duration; durations are uniform in the range.
        max_seconds: Longest utterance duration.
        snr_db: (low, high) range of the additive-noise SNR in dB, uniform per utterance.
        seed: Root of all randomness in the corpus.
        f0_shift_semitones: Standard deviation of the per-utterance shift of the speaker's
            mean pitch, in semitones.
        formant_jitter: Standard deviation of the per-utterance (and again per vowel)
            log-scale perturbation of formant frequencies; 0.05 is about 5 %.
        rate_jitter: Standard deviation of the per-utterance log speaking-rate factor.
        channel_gain_db: Largest absolute gain of each of the random channel's EQ bands, in dB.
        speaker_individuality: Standard deviation of each speaker's own log-scale offset of
            every vowel formant, on top of vocal-tract length; larger separates speakers more.
    """

    train_speakers: int = 200
    test_speakers: int = 40
    utterances_per_speaker: int = 20
    sample_rate: int = 16000
    min_seconds: float = 1.5
    max_seconds: float = 3.0
    snr_db: tuple[float, float] = (5.0, 30.0)
    seed: int = 0
    f0_shift_semitones: float = 1.5
    formant_jitter: float = 0.04
    rate_jitter: float = 0.15
    channel_gain_db: float = 6.0
    speaker_individuality: float = 0.05

    def __post_init__(self) -> None:
        # Coerce numbers so that configs read from YAML (2 vs 2.0, lists vs tuples) compare
        # and content-hash the same way as configs built in Python.
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.type in ("int", int):
                _require(_is_number(value) and float(value).is_integer(), field.name, value, "must be an integer")
                object.__setattr__(self, field.name, int(value))
            elif field.type in ("float", float):
                _require(_is_number(value), field.name, value, "must be a number")
                object.__setattr__(self, field.name, float(value))
        snr = self.snr_db
        valid_pair = isinstance(snr, (tuple, list)) and len(snr) == 2 and all(map(_is_number, snr))
        _require(valid_pair, "snr_db", snr, "must be a pair of numbers (low, high)")
        object.__setattr__(self, "snr_db", (float(snr[0]), float(snr[1])))

        for name in ("train_speakers", "test_speakers"):
            _require(getattr(self, name) >= 2, name, getattr(self, name), "need at least 2 speakers")
        _require(self.utterances_per_speaker >= 2, "utterances_per_speaker", self.utterances_per_speaker,
                 "need at least 2 utterances per speaker")
        _require(self.sample_rate >= 8000, "sample_rate", self.sample_rate, "need at least 8000 Hz")
        _require(self.min_seconds >= 0.1, "min_seconds", self.min_seconds, "need at least 0.1 s")
        _require(self.min_seconds <= self.max_seconds, "min_seconds", self.min_seconds,
                 f"must not exceed data.max_seconds={self.max_seconds}")
        _require(self.snr_db[0] <= self.snr_db[1], "snr_db", self.snr_db, "low must not exceed high")
        _require(self.seed >= 0, "seed", self.seed, "must be non-negative")
        for name in ("f0_shift_semitones", "formant_jitter", "rate_jitter", "channel_gain_db", "speaker_individuality"):
            _require(getattr(self, name) >= 0, name, getattr(self, name), "must be non-negative")

    def num_speakers(self, split: str) -> int:
        """Number of speakers in `split` ("train" or "test")."""
        _check_split(split)
        return self.train_speakers if split == "train" else self.test_speakers


@dataclass(frozen=True)
class Utterance:
    """One rendered utterance.

    Attributes:
        utterance_id: "<split>-<speaker:04d>-<utterance:03d>", e.g. "train-0007-012".
        speaker_id: "<split>-<speaker:04d>", e.g. "train-0007".
        audio: Mono float32 samples, peak-normalised to 0.5.
    """

    utterance_id: str
    speaker_id: str
    audio: np.ndarray


@dataclass(frozen=True, eq=False)
class _Voice:
    """A speaker's fixed vocal characteristics, in physical units."""

    f0_hz: float
    f0_range_semitones: float
    vowel_formants_hz: np.ndarray  # [vowels, 5]
    formant_bandwidths_hz: np.ndarray  # [5]
    tilt_db_per_octave: float
    breathiness: float
    jitter: float
    shimmer: float
    fricative_gains: np.ndarray  # [fricative types, STFT bins], band-pass magnitude responses
    fricative_level: float
    vowel_seconds: float


@dataclass(frozen=True, eq=False)
class _SegmentPlan:
    """Which STFT frames voice a vowel or hiss a fricative, and where the vowel targets sit."""

    frame_centres: np.ndarray  # [frames], in samples
    voicing: np.ndarray  # [frames], 0 or 1
    frication: np.ndarray  # [fricative types, frames], 0 or 1
    vowel_centres: np.ndarray  # [vowel segments], in samples
    vowel_indices: np.ndarray  # [vowel segments], rows of the voice's vowel formants


def generate_split(config: SyntheticCorpusConfig, split: str) -> list[Utterance]:
    """Render every utterance of a split, speaker by speaker.

    Args:
        config: Corpus size, seed and difficulty.
        split: "train" or "test".

    Returns:
        `num_speakers(split) * utterances_per_speaker` utterances, grouped by speaker.
    """
    utterances: list[Utterance] = []
    for speaker_index in range(config.num_speakers(split)):
        utterances.extend(generate_speaker_utterances(config, split, speaker_index))
    return utterances


def generate_speaker_utterances(
    config: SyntheticCorpusConfig, split: str, speaker_index: int
) -> list[Utterance]:
    """Render all utterances of one speaker.

    Args:
        config: Corpus size, seed and difficulty.
        split: "train" or "test".
        speaker_index: Speaker number within the split, 0-based.

    Returns:
        `config.utterances_per_speaker` utterances; the same for the same
        (seed, split, speaker_index) and difficulty knobs whatever the split sizes.
    """
    num_speakers = config.num_speakers(split)
    if not 0 <= speaker_index < num_speakers:
        raise ValueError(f"speaker_index={speaker_index}: split {split!r} has speakers 0..{num_speakers - 1}")
    split_key = _SPLIT_KEYS[split]
    voice = _sample_voice(_rng(config.seed, split_key, speaker_index, _ROLE_VOICE), config)
    speaker_id = f"{split}-{speaker_index:04d}"
    return [
        Utterance(
            utterance_id=f"{speaker_id}-{utterance_index:03d}",
            speaker_id=speaker_id,
            audio=_render_utterance(
                voice, _rng(config.seed, split_key, speaker_index, _ROLE_UTTERANCE, utterance_index), config
            ),
        )
        for utterance_index in range(config.utterances_per_speaker)
    ]


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def _sample_voice(rng: np.random.Generator, config: SyntheticCorpusConfig) -> _Voice:
    sample_rate = config.sample_rate
    probabilities, mean_f0s, tract_scales = zip(*_VOICE_TYPES)
    voice_type = rng.choice(len(_VOICE_TYPES), p=probabilities)
    tract_scale = tract_scales[voice_type] * np.exp(rng.normal(0.0, 0.05))
    idiosyncrasy = np.exp(rng.normal(0.0, config.speaker_individuality, size=_VOWEL_FORMANTS_HZ.shape))
    fifth_formant = np.full((len(_VOWEL_FORMANTS_HZ), 1), rng.uniform(4200.0, 5000.0))
    vowel_formants = np.concatenate([_VOWEL_FORMANTS_HZ * idiosyncrasy, fifth_formant], axis=1) * tract_scale
    fricative_centres = np.array([rng.uniform(4000.0, 6500.0), rng.uniform(2200.0, 3500.0)])  # "s", "sh"
    frequencies = _stft_frequencies(sample_rate)
    return _Voice(
        f0_hz=mean_f0s[voice_type] * np.exp(rng.normal(0.0, 0.12)),
        f0_range_semitones=rng.uniform(2.0, 7.0),
        vowel_formants_hz=vowel_formants,
        formant_bandwidths_hz=_FORMANT_BANDWIDTHS_HZ * np.exp(rng.normal(0.0, 0.2, size=5)),
        tilt_db_per_octave=rng.uniform(-10.0, -4.0),
        breathiness=rng.uniform(0.02, 0.4),
        jitter=rng.uniform(0.002, 0.015),
        shimmer=rng.uniform(0.02, 0.12),
        fricative_gains=np.stack(
            [
                _sos_gain(_band_pass_sos(centre, rng.uniform(1.2, 1.6), sample_rate), frequencies, sample_rate)
                for centre in fricative_centres * np.sqrt(tract_scale)
            ]
        ),
        fricative_level=rng.uniform(0.15, 0.5),
        vowel_seconds=rng.uniform(0.07, 0.14),
    )


def _render_utterance(voice: _Voice, rng: np.random.Generator, config: SyntheticCorpusConfig) -> np.ndarray:
    """Voice and fricatives shaped in one STFT, then the channel, then additive noise.

    Formants move smoothly between vowel targets, which time-invariant `lfilter` resonators
    cannot do without per-segment filter-state juggling. Multiplying one STFT by per-frame
    gains (vocal tract, fricative band, channel EQ) vectorises all of that filtering, which is
    faster than per-segment `lfilter`/`sosfilt` cascades.
    """
    sample_rate = config.sample_rate
    num_samples = int(round(rng.uniform(config.min_seconds, config.max_seconds) * sample_rate))
    rate = np.exp(rng.normal(0.0, config.rate_jitter))
    f0_centre = voice.f0_hz * 2.0 ** (rng.normal(0.0, config.f0_shift_semitones) / 12.0)
    formant_scale = np.exp(rng.normal(0.0, config.formant_jitter))
    frame_length = _stft_frame_length(sample_rate)
    frequencies = _stft_frequencies(sample_rate)

    plan = _plan_segments(voice, rng, num_samples, frame_length // 2, sample_rate, rate)
    voiced = _stft(_glottal_source(voice, rng, num_samples, f0_centre, sample_rate), frame_length)
    voiced *= plan.voicing[:, None] * _vocal_tract_gain(voice, rng, plan, formant_scale, frequencies, config)
    hiss = _stft(_white_noise(rng, num_samples), frame_length) * (plan.frication.T @ voice.fricative_gains)
    hiss_power = _active_power(hiss, plan.frication.any(axis=0))
    if hiss_power > 0.0:
        voiced += voice.fricative_level * np.sqrt(_active_power(voiced, plan.voicing > 0) / hiss_power) * hiss
    channel = _sos_gain(_channel_sos(rng, config), frequencies, sample_rate)
    speech = _istft(voiced * channel, frame_length, num_samples)
    noisy = speech + _noise(rng, num_samples, speech, config.snr_db)
    return (0.5 * noisy / np.max(np.abs(noisy))).astype(np.float32)


def _plan_segments(
    voice: _Voice, rng: np.random.Generator, num_samples: int, hop: int, sample_rate: int, rate: float
) -> _SegmentPlan:
    """Lay out pauses, vowels and fricatives, drawing fixed-size batches for speed."""
    min_length = int(round(_MIN_SEGMENT_SECONDS * sample_rate))
    slots = num_samples // min_length + 2
    kinds = np.searchsorted(np.cumsum(_SEGMENT_PROBABILITIES), rng.random(slots), side="right")
    kinds = np.minimum(kinds, _FRICATIVE)
    kinds[:2] = (_PAUSE, _VOWEL)  # a short lead-in, then at least one vowel
    seconds = np.select(
        [kinds == _VOWEL, kinds == _FRICATIVE],
        [voice.vowel_seconds * np.exp(rng.normal(0.0, 0.3, slots)), rng.uniform(0.05, 0.12, slots)],
        rng.uniform(0.03, 0.15, slots),
    )
    fricative_types = rng.integers(len(voice.fricative_gains), size=slots)
    vowel_indices = rng.integers(len(voice.vowel_formants_hz), size=slots)
    lengths = np.maximum(np.round(seconds / rate * sample_rate).astype(int), min_length)
    lengths[0] = min(lengths[0], num_samples // 4)
    ends = np.cumsum(lengths)

    frame_centres = np.arange(-(-num_samples // hop) + 1) * hop
    segment = np.minimum(np.searchsorted(ends, frame_centres, side="right"), slots - 1)
    frame_kinds = kinds[segment]
    types = np.arange(len(voice.fricative_gains))[:, None]
    vowels = (kinds == _VOWEL) & (ends - lengths < num_samples)
    return _SegmentPlan(
        frame_centres=frame_centres,
        voicing=(frame_kinds == _VOWEL).astype(float),
        frication=((frame_kinds == _FRICATIVE) & (fricative_types[segment] == types)).astype(float),
        vowel_centres=(ends - lengths // 2)[vowels],
        vowel_indices=vowel_indices[vowels],
    )


def _glottal_source(
    voice: _Voice, rng: np.random.Generator, num_samples: int, f0_centre: float, sample_rate: int
) -> np.ndarray:
    """Jittered, shimmered pulse train following a pitch contour, plus aspiration noise.

    Pitch is smooth, so the glottal phase is integrated on a 2 ms grid and each pulse placed
    where the phase crosses a whole cycle, instead of integrating sample by sample.
    """
    step = max(1, int(0.002 * sample_rate))
    times = np.arange(0, num_samples + step, step)
    f0 = f0_centre * 2.0 ** (_pitch_contour(voice, rng, times, sample_rate) / 12.0)
    phase = np.concatenate([[0.0], np.cumsum(f0[:-1] * step / sample_rate)])
    pulse_times = np.interp(np.arange(1, int(phase[-1]) + 1), phase, times)
    periods = sample_rate / np.interp(pulse_times, times, f0)
    jittered = np.round(pulse_times + rng.normal(0.0, voice.jitter, len(periods)) * periods).astype(int)
    source = voice.breathiness * _white_noise(rng, num_samples)
    # Pulses of height sqrt(period) give the train unit power whatever the pitch.
    amplitudes = np.sqrt(periods) * np.exp(rng.normal(0.0, voice.shimmer, len(periods)))
    inside = (jittered >= 0) & (jittered < num_samples)
    np.add.at(source, jittered[inside], amplitudes[inside])
    return source


def _pitch_contour(voice: _Voice, rng: np.random.Generator, times: np.ndarray, sample_rate: int) -> np.ndarray:
    """Semitones around the utterance's centre at `times` (samples): declination plus slow excursions."""
    knot_step = int(0.3 * sample_rate)
    knots = np.arange(0, times[-1] + knot_step, knot_step)
    spread = voice.f0_range_semitones / 4.0
    declination = np.linspace(spread, -spread, len(knots)) * rng.uniform(0.0, 1.0)
    values = declination + rng.normal(0.0, spread, len(knots))
    return np.interp(times, knots, values)


def _vocal_tract_gain(
    voice: _Voice,
    rng: np.random.Generator,
    plan: _SegmentPlan,
    formant_scale: float,
    frequencies: np.ndarray,
    config: SyntheticCorpusConfig,
) -> np.ndarray:
    """[frames, bins] gain: formants gliding between the vowel targets, times the spectral tilt."""
    targets = (
        voice.vowel_formants_hz[plan.vowel_indices]
        * formant_scale
        * np.exp(rng.normal(0.0, config.formant_jitter, (len(plan.vowel_indices), 5)))
    )
    formants = np.stack([np.interp(plan.frame_centres, plan.vowel_centres, column) for column in targets.T], axis=1)
    tilt = (1.0 + (frequencies / 300.0) ** 2) ** (voice.tilt_db_per_octave / 12.0)
    return _formant_gain(formants, voice.formant_bandwidths_hz, frequencies, config.sample_rate) * tilt


def _formant_gain(
    formants_hz: np.ndarray, bandwidths_hz: np.ndarray, frequencies_hz: np.ndarray, sample_rate: int
) -> np.ndarray:
    """Magnitude response of cascaded two-pole resonators, unity at DC (as in Klatt's cascade).

    Args:
        formants_hz: [frames, formants] centre frequencies.
        bandwidths_hz: [formants] bandwidths.
        frequencies_hz: [bins] frequencies to evaluate at.

    Returns:
        [frames, bins] gains; formants too close to Nyquist are left out.
    """
    # float32 is accurate to ~1e-3 here and a third faster on the [frames, bins] arrays.
    omega = (2.0 * np.pi * frequencies_hz / sample_rate).astype(np.float32)
    cos_omega, sin_omega = np.cos(omega), np.sin(omega)
    power = np.ones((len(formants_hz), len(frequencies_hz)), dtype=np.float32)
    for formant, bandwidth in zip(formants_hz.T, bandwidths_hz):
        theta = (2.0 * np.pi * formant[:, None] / sample_rate).astype(np.float32)
        radius = np.float32(np.exp(-np.pi * bandwidth / sample_rate))
        # |1 - p e^{-jw}|^2 |1 - p* e^{-jw}|^2 for the pole p = r e^{j theta}, written with
        # cos(w -+ theta) expanded so that no cosine of a [frames, bins] array is needed.
        one_plus_r2 = 1.0 + radius * radius
        twice_r_cos = 2.0 * radius * np.cos(theta)
        centre = one_plus_r2 - twice_r_cos * cos_omega
        spread = (2.0 * radius * np.sin(theta)) * sin_omega
        gain = (one_plus_r2 - twice_r_cos) ** 2 / (centre * centre - spread * spread)
        audible = formant[:, None] < _MAX_RESONANCE_FRACTION * sample_rate
        power *= np.where(audible, gain, np.float32(1.0))
    return np.sqrt(power)


def _stft_frame_length(sample_rate: int) -> int:
    """A power of two near 32 ms: fine enough in frequency to resolve narrow formants."""
    return 1 << int(round(np.log2(0.032 * sample_rate)))


def _stft_frequencies(sample_rate: int) -> np.ndarray:
    return np.fft.rfftfreq(_stft_frame_length(sample_rate), 1.0 / sample_rate)


def _stft(samples: np.ndarray, frame_length: int) -> np.ndarray:
    """Half-overlapping sqrt-Hann frames; frame i is centred on sample i * frame_length / 2."""
    hop = frame_length // 2
    num_blocks = -(-len(samples) // hop) + 2
    padded = np.zeros(num_blocks * hop)
    padded[hop : hop + len(samples)] = samples
    blocks = padded.reshape(num_blocks, hop)
    frames = np.concatenate([blocks[:-1], blocks[1:]], axis=1)
    return np.fft.rfft(frames * _sqrt_hann(frame_length), axis=1)


def _istft(spectrum: np.ndarray, frame_length: int, num_samples: int) -> np.ndarray:
    """Overlap-add inverse of `_stft` (sqrt-Hann squared sums to one at half overlap)."""
    hop = frame_length // 2
    frames = np.fft.irfft(spectrum, frame_length, axis=1) * _sqrt_hann(frame_length)
    blocks = np.zeros((len(frames) + 1, hop))
    blocks[:-1] += frames[:, :hop]
    blocks[1:] += frames[:, hop:]
    return blocks.reshape(-1)[hop : hop + num_samples]


@functools.lru_cache(maxsize=8)
def _sqrt_hann(frame_length: int) -> np.ndarray:
    return np.sqrt(signal.get_window("hann", frame_length, fftbins=True))


def _active_power(spectrum: np.ndarray, active_frames: np.ndarray) -> float:
    """Mean frame energy over the frames where a component sounds (0 if it never does)."""
    return float(np.mean(np.abs(spectrum[active_frames]) ** 2) if active_frames.any() else 0.0)


def _channel_sos(rng: np.random.Generator, config: SyntheticCorpusConfig) -> np.ndarray:
    """A random microphone/room colouring: a high-pass and three peaking EQ bands."""
    sample_rate = config.sample_rate
    sections = [_high_pass_sos(rng.uniform(50.0, 200.0), sample_rate)]
    for _ in range(3):
        centre = np.exp(rng.uniform(np.log(150.0), np.log(0.4 * sample_rate)))
        gain_db = rng.uniform(-config.channel_gain_db, config.channel_gain_db)
        sections.append(_peaking_sos(centre, gain_db, rng.uniform(0.5, 2.0), sample_rate))
    return np.concatenate(sections)


def _sos_gain(sos: np.ndarray, frequencies_hz: np.ndarray, sample_rate: int) -> np.ndarray:
    """Magnitude response of second-order sections (what `sosfreqz` gives, at a fraction of its cost)."""
    z = np.exp(-1j * 2.0 * np.pi * frequencies_hz / sample_rate)
    powers = np.stack([np.ones_like(z), z, z * z])
    return np.abs(np.prod((sos[:, :3] @ powers) / (sos[:, 3:] @ powers), axis=0))


def _peaking_sos(centre_hz: float, gain_db: float, quality: float, sample_rate: int) -> np.ndarray:
    """One peaking-EQ biquad from the RBJ audio-EQ cookbook, as a second-order section."""
    amplitude = 10.0 ** (gain_db / 40.0)
    omega = 2.0 * np.pi * centre_hz / sample_rate
    alpha = np.sin(omega) / (2.0 * quality)
    numerator = [1.0 + alpha * amplitude, -2.0 * np.cos(omega), 1.0 - alpha * amplitude]
    denominator = [1.0 + alpha / amplitude, -2.0 * np.cos(omega), 1.0 - alpha / amplitude]
    return np.concatenate([numerator, denominator])[None, :] / denominator[0]


def _high_pass_sos(cutoff_hz: float, sample_rate: int) -> np.ndarray:
    """A Butterworth-Q high-pass biquad from the RBJ cookbook."""
    omega = 2.0 * np.pi * cutoff_hz / sample_rate
    alpha = np.sin(omega) / np.sqrt(2.0)
    cos_omega = np.cos(omega)
    numerator = np.array([1.0, -2.0, 1.0]) * (1.0 + cos_omega) / 2.0
    denominator = [1.0 + alpha, -2.0 * cos_omega, 1.0 - alpha]
    return np.concatenate([numerator, denominator])[None, :] / denominator[0]


def _band_pass_sos(centre_hz: float, width_ratio: float, sample_rate: int) -> np.ndarray:
    """A second-order Butterworth band from centre/ratio to centre*ratio, kept under Nyquist."""
    high = min(centre_hz * width_ratio, _MAX_RESONANCE_FRACTION * sample_rate)
    low = min(centre_hz / width_ratio, high / width_ratio)
    return signal.butter(2, [low, high], btype="bandpass", fs=sample_rate, output="sos")


def _noise(
    rng: np.random.Generator, num_samples: int, speech: np.ndarray, snr_db: tuple[float, float]
) -> np.ndarray:
    """White/pink noise mixed at a random SNR relative to the whole utterance's power."""
    white = _white_noise(rng, num_samples)
    pink = signal.lfilter(_PINK_B, _PINK_A, _white_noise(rng, num_samples))
    pinkness = rng.uniform(0.0, 1.0)
    noise = pinkness * pink / np.std(pink) + (1.0 - pinkness) * white
    snr = rng.uniform(*snr_db)
    return noise * np.sqrt(np.mean(speech**2) / np.mean(noise**2)) * 10.0 ** (-snr / 20.0)


def _white_noise(rng: np.random.Generator, num_samples: int) -> np.ndarray:
    """Unit-variance uniform white noise: spectrally the same as Gaussian, 3x cheaper to draw."""
    return (rng.random(num_samples) - 0.5) * np.sqrt(12.0)


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split={split!r}: expected one of {', '.join(SPLITS)}")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _require(condition: bool, field: str, value: object, reason: str) -> None:
    if not condition:
        raise ValueError(f"data.{field}={value!r}: {reason}")
