import numpy as np
import pytest
import soundfile

from evaluators.data.audio import Segment
from evaluators.data.corpora import (
    CorpusError,
    check_audio,
    limit_corpus,
    read_corpus,
    read_folder_corpus,
    read_kaldi_corpus,
    read_librispeech_corpus,
    read_voxceleb_corpus,
    split_speakers,
)


@pytest.fixture
def folder_corpus(tmp_path, write_audio):
    """Three speakers; a FLAC, a stereo WAV, a 22.05 kHz WAV, an OGG in a sub-folder, and a text file."""
    root = tmp_path / "folder"
    write_audio(root / "alice" / "a1.flac")
    write_audio(root / "alice" / "a2.wav", channels=2)
    write_audio(root / "bob" / "b1.wav", rate=22050)
    write_audio(root / "bob" / "session2" / "b2.ogg")
    write_audio(root / "carol" / "c1.flac")
    (root / "carol" / "notes.txt").write_text("not audio")
    return root


def test_folder_corpus_lists_every_audio_file_by_speaker(folder_corpus):
    corpus = read_folder_corpus(folder_corpus)
    assert corpus.speakers == ["alice", "bob", "carol"]
    assert [(u.key, u.speaker) for u in corpus.utterances] == [
        ("alice/a1.flac", "alice"), ("alice/a2.wav", "alice"), ("bob/b1.wav", "bob"),
        ("bob/session2/b2.ogg", "bob"), ("carol/c1.flac", "carol"),
    ]
    assert all(u.segment is None and (folder_corpus / u.key).samefile(u.path) for u in corpus.utterances)


def test_folder_corpus_without_speaker_folders_is_a_clear_error(tmp_path, write_audio):
    write_audio(tmp_path / "loose.wav")
    with pytest.raises(CorpusError, match=r"no audio files in the layout .*1 audio file\(s\) at other depths"):
        read_folder_corpus(tmp_path)
    with pytest.raises(CorpusError, match="corpus directory not found"):
        read_folder_corpus(tmp_path / "absent")


def test_voxceleb_layout_keys_match_the_official_trial_lists(tmp_path, write_audio):
    root = tmp_path / "wav"
    write_audio(root / "id10270" / "x6uYqmx31kE" / "00001.wav")
    write_audio(root / "id10270" / "8jEAjG6SegY" / "00008.wav")
    write_audio(root / "id10271" / "1gtz-CUIygI" / "00001.wav")
    corpus = read_voxceleb_corpus(root)
    assert [u.key for u in corpus.utterances] == [
        "id10270/8jEAjG6SegY/00008.wav", "id10270/x6uYqmx31kE/00001.wav", "id10271/1gtz-CUIygI/00001.wav",
    ]
    assert corpus.speakers == ["id10270", "id10271"]
    with pytest.raises(CorpusError, match=r"idXXXXX.*3 audio file\(s\) at other depths"):
        read_voxceleb_corpus(tmp_path)  # one level too high: files are 4 deep


def test_librispeech_layout(tmp_path, write_audio):
    root = tmp_path / "train-clean-100"
    write_audio(root / "103" / "1240" / "103-1240-0000.flac")
    write_audio(root / "1034" / "121119" / "1034-121119-0000.flac")
    corpus = read_corpus("librispeech", root)
    assert [(u.key, u.speaker) for u in corpus.utterances] == [
        ("103/1240/103-1240-0000.flac", "103"), ("1034/121119/1034-121119-0000.flac", "1034"),
    ]
    assert read_librispeech_corpus(root) == corpus


def test_kaldi_directory_with_segments(tmp_path, write_audio):
    write_audio(tmp_path / "audio" / "rec1.flac", seconds=3.0)
    write_audio(tmp_path / "audio" / "rec2.wav", seconds=2.0)
    data = tmp_path / "data"
    data.mkdir()
    (data / "wav.scp").write_text(f"rec1 {tmp_path / 'audio' / 'rec1.flac'}\nrec2 ../audio/rec2.wav\n")
    (data / "segments").write_text("spk1-u1 rec1 0.0 1.5\nspk1-u2 rec1 1.5 -1\nspk2-u1 rec2 0.25 2.0\n")
    (data / "utt2spk").write_text("spk1-u1 spk1\nspk1-u2 spk1\nspk2-u1 spk2\n\n")
    corpus = read_kaldi_corpus(data)
    assert [(u.key, u.speaker, u.segment) for u in corpus.utterances] == [
        ("spk1-u1", "spk1", Segment(0.0, 1.5)), ("spk1-u2", "spk1", Segment(1.5, None)),
        ("spk2-u1", "spk2", Segment(0.25, 2.0)),
    ]
    assert soundfile.info(corpus.utterances[2].path).samplerate == 16000  # relative path resolved
    usable, report = check_audio(corpus, min_seconds=1.0)
    assert report.bad == () and len(usable.utterances) == 3


def test_kaldi_directory_without_segments_and_its_errors(tmp_path, write_audio):
    write_audio(tmp_path / "u1.wav")
    (tmp_path / "wav.scp").write_text(f"u1 {tmp_path / 'u1.wav'}\n")
    (tmp_path / "utt2spk").write_text("u1 s1\n")
    corpus = read_corpus("kaldi", tmp_path)
    assert [(u.key, u.speaker, u.segment) for u in corpus.utterances] == [("u1", "s1", None)]
    (tmp_path / "utt2spk").write_text("u1 s1\nu2 s1\n")
    with pytest.raises(CorpusError, match=r"utt2spk: utterance 'u2' is not in wav.scp"):
        read_kaldi_corpus(tmp_path)
    (tmp_path / "wav.scp").write_text("u1 sox in.wav -t wav - |\n")
    with pytest.raises(CorpusError, match=r"wav.scp:1: piped command"):
        read_kaldi_corpus(tmp_path)
    (tmp_path / "wav.scp").write_text("u1\n")
    with pytest.raises(CorpusError, match=r"wav.scp:1: expected 2 fields"):
        read_kaldi_corpus(tmp_path)
    (tmp_path / "utt2spk").unlink()
    (tmp_path / "wav.scp").write_text(f"u1 {tmp_path / 'u1.wav'}\n")
    with pytest.raises(CorpusError, match="utt2spk: missing"):
        read_kaldi_corpus(tmp_path)


def test_unknown_layout_is_named():
    with pytest.raises(CorpusError, match="corpus='timit'"):
        read_corpus("timit", ".")


def test_speaker_split_is_disjoint_seeded_and_complete(tmp_path, write_audio):
    for speaker in range(10):
        for utterance in range(2):
            write_audio(tmp_path / f"s{speaker}" / f"{utterance}.wav", seconds=0.1)
    corpus = read_folder_corpus(tmp_path)
    train = split_speakers(corpus, "train", 0.3, seed=1)
    test = split_speakers(corpus, "test", 0.3, seed=1)
    assert len(test.speakers) == 3 and len(train.speakers) == 7
    assert not set(train.speakers) & set(test.speakers)
    assert sorted(train.utterances + test.utterances, key=lambda u: u.key) == list(corpus.utterances)
    assert split_speakers(corpus, "test", 0.3, seed=1) == test
    assert {tuple(split_speakers(corpus, "test", 0.3, seed=s).speakers) for s in range(5)} != {tuple(test.speakers)}
    assert split_speakers(corpus, "all", 0.3, seed=1) == corpus
    with pytest.raises(CorpusError, match="speakers='dev'"):
        split_speakers(corpus, "dev", 0.3, seed=1)


def test_limit_keeps_a_seeded_subset_of_speakers_and_utterances(tmp_path, write_audio):
    for speaker in range(6):
        for utterance in range(5):
            write_audio(tmp_path / f"s{speaker}" / f"{utterance}.wav", seconds=0.1)
    corpus = read_folder_corpus(tmp_path)
    limited = limit_corpus(corpus, max_speakers=4, max_utterances_per_speaker=2, seed=0)
    assert len(limited.speakers) == 4 and len(limited.utterances) == 8
    assert set(limited.utterances) <= set(corpus.utterances)
    assert limit_corpus(corpus, 4, 2, seed=0) == limited
    assert limit_corpus(corpus, None, None, seed=0) == corpus


def test_bad_audio_is_counted_named_and_skipped_or_rejected_in_strict_mode(tmp_path, write_audio):
    write_audio(tmp_path / "s1" / "good.wav")
    write_audio(tmp_path / "s1" / "short.wav", seconds=0.1)
    write_audio(tmp_path / "s2" / "good.flac")
    write_audio(tmp_path / "s2" / "cd.wav", rate=22050)
    (tmp_path / "s2" / "broken.wav").write_bytes(b"RIFF....garbage")
    soundfile.write(tmp_path / "s2" / "empty.wav", np.zeros(0), 16000)
    corpus = read_folder_corpus(tmp_path)

    usable, report = check_audio(corpus, min_seconds=0.5, expected_sample_rate=16000)
    assert [u.key for u in usable.utterances] == ["s1/good.wav", "s2/good.flac"]
    assert report.checked == 6
    assert {(b.key, b.reason) for b in report.bad} == {
        ("s1/short.wav", "too short"), ("s2/broken.wav", "unreadable"), ("s2/cd.wav", "wrong sample rate"),
        ("s2/empty.wav", "empty"),
    }
    summary = report.summary()
    assert summary.startswith("4 of 6 files skipped (")
    assert "1 unreadable" in summary and "1 too short" in summary and "1 empty" in summary
    assert str(tmp_path / "s1" / "short.wav") in summary and "and 1 more" in summary

    resampled, report = check_audio(corpus, min_seconds=0.5)  # no expected rate: 22.05 kHz is fine
    assert "s2/cd.wav" in {u.key for u in resampled.utterances} and len(report.bad) == 3

    with pytest.raises(CorpusError, match=r"4 of 6 files skipped .*strict"):
        check_audio(corpus, min_seconds=0.5, expected_sample_rate=16000, strict=True)


def test_fewer_than_two_speakers_is_a_clear_error(tmp_path, write_audio):
    write_audio(tmp_path / "only" / "a.wav")
    write_audio(tmp_path / "only" / "b.wav")
    with pytest.raises(CorpusError, match=r"the test split has 1 speaker\(s\) \(2 utterances\); need at least 2"):
        read_folder_corpus(tmp_path).require_speakers("the test split")
