"""Relative paths in a config mean the same files from any working directory; the cache is per user."""

import os
from pathlib import Path

import yaml

from search.config import load_config
from search.config_paths import PATH_KEYS, default_cache_dir, resolve_paths

RELATIVE = """
name: paths
cache_dir: cache
data:
  sample_rate: 16000
  train: {corpus: synthetic, train_speakers: 6, test_speakers: 4}
  eval:
    - {name: synthetic, corpus: synthetic}
    - {name: real, corpus: folder, path: ../corpora/real, trials: ../corpora/trials.txt}
"""


def _write(folder: Path, text: str = RELATIVE) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "run.yaml").write_text(text)
    return folder / "run.yaml"


def test_relative_paths_resolve_against_the_config_file_not_the_working_directory(tmp_path, monkeypatch):
    path = _write(tmp_path / "configs")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(path)
    real = config.data.eval[1].source
    assert config.cache_dir == str(tmp_path / "configs" / "cache")
    assert real.path == str(tmp_path / "corpora" / "real") and real.trials == str(tmp_path / "corpora" / "trials.txt")


def test_the_saved_config_holds_absolute_paths_and_reloads_the_same_from_another_folder(tmp_path, monkeypatch):
    config = load_config(_write(tmp_path / "configs"))
    run_folder = tmp_path / "results" / "paths-1"
    saved = _write(run_folder, yaml.safe_dump(config.to_dict()))
    monkeypatch.chdir(tmp_path / "results")
    assert load_config(saved) == config


def test_command_line_paths_resolve_against_the_working_directory(tmp_path, monkeypatch):
    path = _write(tmp_path / "configs")
    monkeypatch.chdir(tmp_path)
    assert load_config(path, {"cache_dir": "my-cache"}).cache_dir == str(tmp_path / "my-cache")


def test_a_linked_config_resolves_against_the_folder_of_the_file_it_links_to(tmp_path):
    path = _write(tmp_path / "real")
    (tmp_path / "link").mkdir()
    (tmp_path / "link" / "run.yaml").symlink_to(path)
    assert load_config(tmp_path / "link" / "run.yaml").cache_dir == str(tmp_path / "real" / "cache")


def test_every_path_key_is_resolved_and_other_values_are_left_alone(tmp_path):
    raw = {
        "cache_dir": "~/cache",
        "teacher": {"checkpoint": "package:resemblyzer/pretrained.pt"},
        "search": {"storage": "s3://bucket/ray"},
        "mixtures": {"two_speaker_train": "wsj/tr", "two_speaker_test": ""},
        "data": {"train": {"path": "/abs/train", "trials": 4}, "eval": [{"path": "a/b"}, {"name": "synthetic"}]},
    }
    resolved = resolve_paths(raw, tmp_path)
    assert resolved["cache_dir"] == os.path.expanduser("~/cache")
    assert resolved["teacher"] == raw["teacher"] and resolved["search"] == raw["search"]
    assert resolved["mixtures"] == {"two_speaker_train": str(tmp_path / "wsj" / "tr"), "two_speaker_test": ""}
    assert resolved["data"]["train"] == {"path": "/abs/train", "trials": 4}  # a wrong type is validation's to report
    assert resolved["data"]["eval"] == [{"path": str(tmp_path / "a" / "b")}, {"name": "synthetic"}]
    assert raw["data"]["eval"][0]["path"] == "a/b"  # the input is not changed
    assert {key[0] for key in PATH_KEYS} == {"cache_dir", "teacher", "search", "mixtures", "data"}
    assert resolve_paths({"teacher": {"checkpoint": "model.pt"}}, tmp_path)["teacher"]["checkpoint"] == str(tmp_path / "model.pt")


def test_the_default_cache_is_per_user_and_follows_xdg(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == str(tmp_path / "xdg" / "speaker-compress")
    assert load_config("demo").cache_dir == str(tmp_path / "xdg" / "speaker-compress")
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")  # not absolute: ignored, as XDG says
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == str(tmp_path / "home" / ".cache" / "speaker-compress")
