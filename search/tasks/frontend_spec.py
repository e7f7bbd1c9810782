"""config.json's `features.frontend`: every step from an audio file to the model's input, stated in full.

A deployer must feed the model exactly the features its metrics were measured on, without this
package. The spec is built from the constants the package's own front-ends compute with (the
engine's Kaldi filterbank through kaldi-native-fbank's options, `evaluators.frontends`), names
each step's parameters (audio reading and resampling, waveform scaling, dither, framing and edge
handling, window, FFT, mel filters, logarithm, normalisation, GE2E's volume and silence
preprocessing) and is what `spaces.bundle_runner` computes in numpy; the tests hold the runner's
features to the package's. `frontend_words` says the same on the model card.
"""

from __future__ import annotations

import math
from typing import Any

import kaldi_native_fbank as knf

from evaluators.data.audio import VAD_DYNAMIC_RANGE_DB, VAD_FRAME_MS, VAD_HANGOVER_MS
from evaluators.features import KALDI, FbankConfig
from evaluators.frontends import ge2e, ge2e_preprocessing, speechbrain, wespeaker

RESAMPLER_QUALITY = "HQ"
"""soxr's quality when a file's rate differs (`soxr.resample`'s default, which `load_audio` uses)."""

ENERGY_VAD_FLOOR = 1e-12
"""What `evaluators.data.audio.energy_vad` adds to each frame's energy before its logarithm."""

INT16_RANGE = 32768.0
"""Kaldi-style filterbanks (`compute_fbank`, WeSpeaker's) read float audio scaled to int16 range."""

WINDOW_WORDS = {"povey": "Povey (Hann to the power 0.85)", "hamming": "Hamming", "hann": "Hann", "rectangular": "rectangular"}
MEL_WORDS = {
    "kaldi": "Kaldi's triangles on the mel scale 1127 ln(1 + f/700), FFT bins below Nyquist",
    "speechbrain": "SpeechBrain's symmetric triangles centred on the HTK mel scale",
    "slaney": "librosa's Slaney-scale triangles, each scaled to unit area",
}


def frontend_spec(fbank: FbankConfig, energy_vad: bool) -> dict[str, Any]:
    """The spec of the front-end `fbank` names, reading audio as the run's evaluation set did.

    Args:
        fbank: The run's filterbank settings (`search.tasks.verification_setup.fbank_config`).
        energy_vad: Whether the evaluation set's audio went through the energy VAD (`vad: true`).
    """
    steps = {KALDI: _engine_filterbank, "wespeaker": _wespeaker, "speechbrain": _speechbrain, "ge2e": _ge2e}
    return {"name": fbank.frontend, "audio": _audio(fbank.sample_rate, energy_vad), **steps[fbank.frontend](fbank)}


def _audio(sample_rate: int, energy_vad: bool) -> dict[str, Any]:
    vad = {"frame_ms": VAD_FRAME_MS, "dynamic_range_db": VAD_DYNAMIC_RANGE_DB, "hangover_ms": VAD_HANGOVER_MS, "energy_floor": ENERGY_VAD_FLOOR}
    return {
        "sample_rate": sample_rate,
        "reader": "soundfile: float32 in [-1, 1] (integer PCM divided by 2^(bits - 1)), channels averaged",
        "resampler": "soxr",
        "resampler_quality": RESAMPLER_QUALITY,
        "energy_vad": vad if energy_vad else None,
    }


def _engine_filterbank(fbank: FbankConfig) -> dict[str, Any]:
    """`evaluators.features.compute_fbank`: kaldi-native-fbank's defaults with the run's settings."""
    options = knf.FbankOptions()
    options.frame_opts.samp_freq = fbank.sample_rate
    options.frame_opts.frame_length_ms = fbank.frame_length_ms
    options.frame_opts.frame_shift_ms = fbank.frame_shift_ms
    options.frame_opts.dither = fbank.dither
    options.mel_opts.num_bins = fbank.num_mel_bins
    return _kaldi_filterbank(options)


def _wespeaker(fbank: FbankConfig) -> dict[str, Any]:
    return _kaldi_filterbank(wespeaker.fbank_options())


def _kaldi_filterbank(options: knf.FbankOptions) -> dict[str, Any]:
    """A Kaldi fbank as kaldi-native-fbank computes it with `options` (snipped edges, log mel
    power), then the utterance mean subtracted."""
    frame, mel = options.frame_opts, options.mel_opts
    rate = frame.samp_freq
    length = int(rate * 0.001 * frame.frame_length_ms)
    nyquist = rate / 2
    return {
        "preprocessing": None,
        "waveform_scale": INT16_RANGE,
        "dither": _float32(frame.dither),
        "frames": {"length": length, "shift": int(rate * 0.001 * frame.frame_shift_ms), "edges": "snip"},
        "remove_dc_offset": bool(frame.remove_dc_offset),
        "preemphasis": _float32(frame.preemph_coeff),
        "window": {"type": frame.window_type, "periodic": False},
        "fft_size": 2 ** math.ceil(math.log2(length)) if frame.round_to_power_of_two else length,
        "mel": {
            "filters": "kaldi",
            "bins": mel.num_bins,
            "low_hz": _float32(mel.low_freq),
            "high_hz": _float32(mel.high_freq) if mel.high_freq > 0 else nyquist + _float32(mel.high_freq),
        },
        "log": {"kind": "natural", "floor": _float32(options.eps)},
        "normalisation": "utterance_mean",
    }


def _speechbrain(fbank: FbankConfig) -> dict[str, Any]:
    return {
        "preprocessing": None,
        "waveform_scale": 1.0,
        "dither": 0.0,
        "frames": {"length": speechbrain.N_FFT, "shift": speechbrain.HOP_LENGTH, "edges": "centre"},
        "remove_dc_offset": False,
        "preemphasis": 0.0,
        "window": {"type": "hamming", "periodic": True},
        "fft_size": speechbrain.N_FFT,
        "mel": {
            "filters": "speechbrain",
            "bins": speechbrain.NUM_MEL_BINS,
            "low_hz": speechbrain.MIN_FREQUENCY_HZ,
            "high_hz": speechbrain.MAX_FREQUENCY_HZ,
        },
        "log": {"kind": "decibel", "floor": speechbrain.LOG_FLOOR, "dynamic_range_db": speechbrain.DYNAMIC_RANGE_DB},
        "normalisation": "utterance_mean",
    }


def _ge2e(fbank: FbankConfig) -> dict[str, Any]:
    pre = ge2e_preprocessing
    return {
        "preprocessing": {
            "volume": {"target_dbfs": pre.TARGET_DBFS, "increase_only": True, "full_scale": pre.INT16_MAX},
            "silence_trimming": {
                "vad": "webrtcvad",
                "mode": pre.VAD_MODE,
                "window_ms": pre.VAD_WINDOW_MS,
                "full_scale": pre.INT16_MAX,
                "moving_average_windows": pre.VAD_MOVING_AVERAGE_WIDTH,
                "dilation_windows": pre.VAD_MAX_SILENCE_WINDOWS + 1,
            },
        },
        "waveform_scale": 1.0,
        "dither": 0.0,
        "frames": {"length": ge2e.N_FFT, "shift": ge2e.HOP_LENGTH, "edges": "centre"},
        "remove_dc_offset": False,
        "preemphasis": 0.0,
        "window": {"type": "hann", "periodic": True},
        "fft_size": ge2e.N_FFT,
        "mel": {"filters": "slaney", "bins": ge2e.NUM_MEL_BINS, "low_hz": 0.0, "high_hz": ge2e.SAMPLE_RATE / 2},
        "log": None,
        "normalisation": None,
    }


def _float32(value: float) -> float:
    """A kaldi-native-fbank option (stored as float32) as the decimal it was set to, e.g. 0.97."""
    return float(f"{value:.7g}")


def frontend_words(spec: dict[str, Any]) -> str:
    """The spec in one paragraph for the model card: every step, in order."""
    audio, frames, mel = spec["audio"], spec["frames"], spec["mel"]
    steps = [
        f"audio read with {audio['reader']}, resampled to {audio['sample_rate']} Hz with {audio['resampler']} "
        f"({audio['resampler_quality']}) when it is at another rate"
    ]
    vad = audio["energy_vad"]
    if vad:
        steps.append(
            f"silence dropped by an energy VAD ({vad['frame_ms']:g} ms frames within {vad['dynamic_range_db']:g} dB "
            f"of the loudest, {vad['hangover_ms']:g} ms kept on each side)"
        )
    preprocessing = spec["preprocessing"] or {}
    if "volume" in preprocessing:
        volume = preprocessing["volume"]
        steps.append(f"volume raised to {volume['target_dbfs']} dBFS RMS" + (" (never lowered)" if volume["increase_only"] else ""))
    if "silence_trimming" in preprocessing:
        trim = preprocessing["silence_trimming"]
        steps.append(
            f"long silences cut with {trim['vad']} (mode {trim['mode']}, {trim['window_ms']} ms windows, labels "
            f"averaged over {trim['moving_average_windows']} windows, speech widened to {trim['dilation_windows']} windows)"
        )
    steps.append(f"samples scaled by {spec['waveform_scale']:g}, " + (f"dither {spec['dither']:g}" if spec["dither"] else "no dither"))
    edges = (
        "edges snipped (whole frames only)"
        if frames["edges"] == "snip"
        else "frames centred on every hop, half a frame of zeros padded at each end"
    )
    steps.append(f"{frames['length']}-sample frames every {frames['shift']} samples, {edges}")
    per_frame = [text for done, text in ((spec["remove_dc_offset"], "the DC offset removed"), (spec["preemphasis"], f"pre-emphasis {spec['preemphasis']:g}")) if done]
    if per_frame:
        steps.append("per frame " + " and ".join(per_frame))
    window = spec["window"]
    steps.append(
        f"{'periodic' if window['periodic'] else 'symmetric'} {WINDOW_WORDS[window['type']]} window, "
        f"{spec['fft_size']}-point FFT power spectrum"
    )
    steps.append(f"{mel['bins']} mel bands from {mel['low_hz']:g} to {mel['high_hz']:g} Hz ({MEL_WORDS[mel['filters']]})")
    log = spec["log"]
    if log is None:
        steps.append("no logarithm (mel power)")
    elif log["kind"] == "natural":
        steps.append(f"natural log floored at {log['floor']:.4g}")
    else:
        steps.append(f"10 log10 floored at {log['floor']:g}, clipped to {log['dynamic_range_db']:g} dB under the utterance's maximum")
    if spec["normalisation"] == "utterance_mean":
        steps.append("the utterance's mean subtracted from each band")
    return f"Front-end `{spec['name']}`: " + "; ".join(steps) + "."


__all__ = ["frontend_spec", "frontend_words"]
