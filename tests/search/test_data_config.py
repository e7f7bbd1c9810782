"""The `data:` block: the one-corpus synthetic form as before, and train + named eval sets."""

from pathlib import Path

import pytest
import yaml

from evaluators.data.sources import CorpusConfig, DataConfig, EvalSetConfig
from evaluators.data.synthetic import SyntheticCorpusConfig
from search.config import DEFAULT_CONFIG, ConfigError, load_config
from search.tasks import TASKS

TWO_SETS = """
data:
  sample_rate: 16000
  train: {corpus: synthetic, train_speakers: 6, test_speakers: 4}
  eval:
    - {name: synthetic, corpus: synthetic}
    - {name: an4, corpus: folder, path: corpora/an4/test, vad: true, max_utterances_per_speaker: 5}
objectives: [[eer@an4, min], [size_bytes, min]]
constraints: ["eer@synthetic <= 0.2"]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


def test_one_corpus_form_is_unchanged(tmp_path):
    config = load_config(DEFAULT_CONFIG)
    assert config.data == DataConfig.synthetic(SyntheticCorpusConfig(train_speakers=200, test_speakers=40))
    assert config.data.eval_names == ("synthetic",) and config.data.sample_rate == 16000
    saved = config.to_dict()["data"]
    assert saved["corpus"] == "synthetic" and saved["train_speakers"] == 200 and "eval" not in saved


def test_train_and_named_eval_sets_parse_and_round_trip(tmp_path):
    config = load_config(write(tmp_path, TWO_SETS))
    train = SyntheticCorpusConfig(train_speakers=6, test_speakers=4)
    assert config.data == DataConfig(
        train=train,
        eval=(
            EvalSetConfig("synthetic", train),  # a synthetic eval set inherits the training corpus
            # relative to the config file's folder
            EvalSetConfig("an4", CorpusConfig("folder", str(tmp_path / "corpora/an4/test"), vad=True, max_utterances_per_speaker=5)),
        ),
    )
    assert [o.metric for o in config.objectives] == ["eer@an4", "size_bytes"]
    assert str(config.constraints[0]) == "eer@synthetic <= 0.2"
    again = load_config(write(tmp_path, yaml.safe_dump(config.to_dict())))
    assert again == config


def test_eval_set_metrics_can_be_named_by_objectives():
    names = TASKS["verification"].metric_names(["cortex-a72"], ["synthetic", "an4"])
    assert {"eer", "min_dcf", "eer@synthetic", "min_dcf@synthetic", "eer@an4", "min_dcf@an4"} <= set(names)
    assert "latency_ms@cortex-a72" in names and "eer@an4" not in TASKS["verification"].metric_names(["cortex-a72"])


@pytest.mark.parametrize(
    "text, message",
    [
        ("data: {corpus: voxceleb, path: x}\n", "data.corpus='voxceleb': name corpora on disk under data.train"),
        ("data: {eval: [{name: a, corpus: timit, path: x}]}\n", "data.eval[0].corpus='timit'"),
        ("data: {eval: [{corpus: folder, path: x}]}\n", "data.eval[0]: must be a mapping with a name"),
        ("data: {eval: []}\n", "data.eval: need a list of evaluation sets"),
        ("data: {eval: [{name: a, corpus: folder, path: x, colour: red}]}\n", "data.eval[0]: unknown key 'colour'"),
        ("data: {eval: [{name: a, corpus: folder, path: x, vad: 1}]}\n", "data.eval[0].vad=1: expected bool"),
        ("data: {eval: [{name: a, corpus: folder, path: x, trials: 3}]}\n", "data.eval[0].trials=3: expected str"),
        ("data: {eval: [{name: a b, corpus: folder, path: x}]}\n", "data.eval[0].name='a b'"),
        ("data: {eval: [{name: a, corpus: folder, path: x, speakers: train}]}\n", "data.eval[0].speakers='train'"),
        ("data: {eval: [{name: a, corpus: synthetic}, {name: a, corpus: synthetic}]}\n", "name 'a' is used twice"),
        ("data: {sample_rate: 8000, eval: [{name: a, corpus: synthetic, sample_rate: 16000}]}\n",
         "eval.a.sample_rate=16000: must equal data.sample_rate=8000"),
        ("data: {train: {corpus: folder, path: x, trials: t.txt}, eval: [{name: a, corpus: synthetic}]}\n",
         "data.train.trials"),
        ("data: {eval: [{name: a, corpus: folder, path: x, test_fraction: 1.5}]}\n", "data.eval[0].test_fraction=1.5"),
        ("data: {eval: [{name: a, corpus: synthetic}]}\nobjectives: [[eer@b, min]]\n", "unknown metric 'eer@b'"),
    ],
)
def test_bad_data_block_names_file_and_key(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert str(path) in str(raised.value) and message in str(raised.value)
