import numpy as np
import pytest

from evaluators.data.trial_lists import (
    Trial,
    TrialListError,
    generate_trials,
    read_trial_list,
    resolve_trials,
    trial_keys,
    write_trial_list,
)

VOX1_O_HEAD = """1 id10270/x6uYqmx31kE/00001.wav id10270/8jEAjG6SegY/00008.wav
0 id10270/x6uYqmx31kE/00001.wav id10300/ize_eiCFEg0/00003.wav

1 id10270/x6uYqmx31kE/00001.wav id10270/GWXujl-xAVM/00017.wav
"""


def _utterances(speakers: int, per_speaker: int) -> tuple[list[str], list[str]]:
    keys = [f"s{s}/u{u}.wav" for s in range(speakers) for u in range(per_speaker)]
    return keys, [key.split("/")[0] for key in keys]


def test_official_format_is_read(tmp_path):
    path = tmp_path / "veri_test2.txt"
    path.write_text(VOX1_O_HEAD)
    trials = read_trial_list(path)
    assert trials == (
        Trial(True, "id10270/x6uYqmx31kE/00001.wav", "id10270/8jEAjG6SegY/00008.wav"),
        Trial(False, "id10270/x6uYqmx31kE/00001.wav", "id10300/ize_eiCFEg0/00003.wav"),
        Trial(True, "id10270/x6uYqmx31kE/00001.wav", "id10270/GWXujl-xAVM/00017.wav"),
    )
    assert len(trial_keys(trials)) == 4


def test_generated_list_round_trips_through_a_file(tmp_path):
    keys, speakers = _utterances(5, 4)
    trials = generate_trials(keys, speakers, max_trials=60, seed=3)
    path = tmp_path / "trials.txt"
    write_trial_list(path, trials)
    assert read_trial_list(path) == trials
    assert path.read_text().splitlines()[0].split()[0] in ("0", "1")


@pytest.mark.parametrize(
    "text, message",
    [("1 a.wav\n", ":1: expected 'label enrol test'"), ("1 a b\nyes a b\n", ":2: expected"), ("\n\n", "no trials")],
)
def test_malformed_list_names_file_and_line(tmp_path, text, message):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(TrialListError, match=message) as raised:
        read_trial_list(path)
    assert str(path) in str(raised.value)
    with pytest.raises(TrialListError, match="cannot read trial list"):
        read_trial_list(tmp_path / "absent.txt")


def test_keys_with_whitespace_cannot_be_written(tmp_path):
    with pytest.raises(TrialListError, match="whitespace"):
        write_trial_list(tmp_path / "t.txt", [Trial(True, "a b.wav", "c.wav")])


def test_small_sets_get_every_pair_with_correct_labels():
    keys, speakers = _utterances(3, 3)
    trials = generate_trials(keys, speakers, max_trials=1000, seed=0)
    assert len(trials) == 9 * 8 // 2
    assert len({(t.enrol, t.test) for t in trials}) == len(trials)
    assert all(t.target == (t.enrol.split("/")[0] == t.test.split("/")[0]) for t in trials)
    assert sum(t.target for t in trials) == 3 * 3


def test_large_sets_get_a_seeded_balanced_sample_of_distinct_pairs():
    keys, speakers = _utterances(40, 10)  # 79,800 pairs, 1,800 of them targets
    trials = generate_trials(keys, speakers, max_trials=2000, seed=7)
    assert len(trials) == 2000 and sum(t.target for t in trials) == 1000
    assert len({(t.enrol, t.test) for t in trials}) == 2000
    assert all(keys.index(t.enrol) < keys.index(t.test) for t in trials)
    assert all(t.target == (t.enrol.split("/")[0] == t.test.split("/")[0]) for t in trials)
    assert generate_trials(keys, speakers, max_trials=2000, seed=7) == trials
    assert generate_trials(keys, speakers, max_trials=2000, seed=8) != trials
    few_targets = generate_trials(keys, speakers, max_trials=5000, seed=7)  # more than the 1,800 targets exist
    assert sum(t.target for t in few_targets) == 1800 and len(few_targets) == 5000


def test_generation_needs_both_kinds_of_trial():
    with pytest.raises(TrialListError, match="need a speaker with 2 utterances and 2 speakers"):
        generate_trials(["a", "b", "c"], ["x", "y", "z"], max_trials=10, seed=0)
    with pytest.raises(TrialListError, match="need a speaker with 2 utterances and 2 speakers"):
        generate_trials(["a", "b"], ["x", "x"], max_trials=10, seed=0)


def test_resolution_indexes_trials_and_names_missing_files():
    trials = (Trial(True, "a", "b"), Trial(False, "a", "c"))
    indices = resolve_trials(trials, ["c", "b", "a"], "list.txt")
    assert indices.first.tolist() == [2, 2] and indices.second.tolist() == [1, 0] and indices.labels.tolist() == [1, 0]
    embeddings = np.array([[0.0, 1.0], [2.0, 0.0], [1.0, 0.0]])
    np.testing.assert_allclose(indices.scores(embeddings), [1.0, 0.0])
    many = tuple(Trial(False, "a", f"missing{i}") for i in range(5))
    expected = r"list.txt: names 5 file\(s\) missing from the evaluation set: missing0, missing1, missing2, \.\.\."
    with pytest.raises(TrialListError, match=expected):
        resolve_trials(many, ["a"], "list.txt")
