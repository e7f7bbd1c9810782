import numpy as np
import pytest
import soundfile

from evaluators.data.audio import AudioError, Segment, audio_info, energy_vad, load_audio


def _peak_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1.0 / rate)[np.argmax(spectrum)])


def test_flac_reads_back_the_written_samples(tmp_path, write_audio):
    path = write_audio(tmp_path / "a.flac", seconds=0.5)
    samples = load_audio(path, 16000)
    expected = 0.5 * np.sin(2 * np.pi * 220.0 * np.arange(8000) / 16000)
    assert samples.dtype == np.float32 and samples.shape == (8000,)
    np.testing.assert_allclose(samples, expected, atol=1e-4)  # 16-bit FLAC


def test_stereo_is_mixed_down_to_the_channel_mean(tmp_path, write_audio):
    path = write_audio(tmp_path / "stereo.wav", seconds=0.5, channels=2)
    left, right = soundfile.read(path, dtype="float32")[0].T
    assert audio_info(path).channels == 2
    np.testing.assert_allclose(load_audio(path, 16000), (left + right) / 2, atol=1e-6)


def test_22050_hz_file_is_resampled_and_keeps_its_pitch(tmp_path, write_audio):
    path = write_audio(tmp_path / "cd.wav", seconds=1.0, rate=22050, frequency=1000.0)
    info = audio_info(path)
    assert (info.sample_rate, info.frames) == (22050, 22050)
    samples = load_audio(path, 16000)
    assert abs(len(samples) - 16000) <= 1
    assert _peak_hz(samples, 16000) == pytest.approx(1000.0, abs=2.0)
    assert np.max(np.abs(samples)) == pytest.approx(0.5, abs=0.02)  # no gain change from resampling


def test_ogg_vorbis_is_read(tmp_path, write_audio):
    path = write_audio(tmp_path / "a.ogg", seconds=0.5, frequency=440.0)
    samples = load_audio(path, 16000)
    assert abs(len(samples) - 8000) <= 1 and _peak_hz(samples, 16000) == pytest.approx(440.0, abs=3.0)


def test_segment_reads_only_that_part(tmp_path, write_audio):
    path = write_audio(tmp_path / "long.wav", seconds=2.0)
    assert len(load_audio(path, 16000, Segment(0.5, 1.25))) == 12000
    assert len(load_audio(path, 16000, Segment(1.5))) == 8000
    with pytest.raises(AudioError, match="empty"):
        load_audio(path, 16000, Segment(3.0, 4.0))


def test_unreadable_and_empty_files_raise_audio_error_naming_the_path(tmp_path):
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"this is not audio")
    with pytest.raises(AudioError) as raised:
        load_audio(garbage, 16000)
    assert raised.value.path == str(garbage) and raised.value.reason == "unreadable"
    assert str(garbage) in str(raised.value)
    with pytest.raises(AudioError, match="unreadable"):
        audio_info(tmp_path / "absent.flac")
    empty = tmp_path / "empty.wav"
    soundfile.write(empty, np.zeros(0), 16000)
    with pytest.raises(AudioError) as raised:
        load_audio(empty, 16000)
    assert raised.value.reason == "empty"


def test_energy_vad_drops_silence_but_keeps_speech_and_a_hangover():
    rate = 16000
    speech = 0.5 * np.sin(2 * np.pi * 200 * np.arange(rate) / rate)
    noise_floor = 1e-4 * np.random.default_rng(0).standard_normal(rate)
    samples = np.concatenate([noise_floor, speech, noise_floor]).astype(np.float32)
    voiced = energy_vad(samples, rate)
    assert 1.0 * rate <= len(voiced) <= 1.25 * rate  # 1 s of speech plus at most 100 ms each side
    assert np.max(np.abs(voiced)) == pytest.approx(0.5, abs=1e-3)
    constant = np.full(8000, 0.1, dtype=np.float32)
    assert len(energy_vad(constant, rate)) == 8000  # nothing quieter than the loudest frame


def _float_wav(path, samples, rate=16000):
    soundfile.write(path, np.asarray(samples, dtype=np.float32), rate, subtype="FLOAT")
    return path


@pytest.mark.parametrize(
    "name, samples, reason, detail",
    [
        ("nan", np.where(np.arange(8000) == 100, np.nan, 0.1), "non-finite samples", "1 of 8000 samples are NaN or infinite"),
        ("inf", np.where(np.arange(8000) < 3, np.inf, 0.1), "non-finite samples", "3 of 8000 samples"),
        ("silent", np.zeros(8000), "silent", "all 8000 samples are zero"),
        ("clipped", np.sign(np.sin(np.arange(8000) / 5.0)) * 1.0, "clipped", "samples at full scale"),
    ],
)
def test_samples_no_recording_has_are_bad_audio_named_by_path(tmp_path, name, samples, reason, detail):
    path = _float_wav(tmp_path / f"{name}.wav", samples)
    with pytest.raises(AudioError) as error:
        load_audio(path, 16000)
    assert error.value.reason == reason and detail in error.value.detail and error.value.path == str(path)


def test_speech_with_a_few_peaks_at_full_scale_is_kept(tmp_path):
    samples = 0.3 * np.sin(np.arange(8000) / 7.0)
    samples[::100] = 1.0
    assert load_audio(_float_wav(tmp_path / "peaks.wav", samples), 16000).shape == (8000,)
