"""Bad configs end in one `error:` line naming the key, exit 2, before anything is written."""

import contextlib
import io
import os
import re

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from search.cli import main

BAD_CONFIGS = {
    "typo in a model argument": ("model: {family: resnet, widht: 3}\n", "unexpected keyword argument 'widht'"),
    "too few stages": ("model: {family: resnet, blocks: [1, 1]}\n", r"model.blocks=\[1, 1\]"),
    "zero width": ("model: {family: resnet, base_width: 0}\n", "base_width=0"),
    "negative embedding": ("model: {family: resnet, embedding_dim: -16}\n", "embedding_dim=-16"),
    "model as a string": ("model: resnet\n", "model: must be a mapping with a family"),
    "nan learning rate": ("teacher: {learning_rate: .nan}\n", "teacher.learning_rate=nan: expected a finite number"),
    "infinite learning rate": ("teacher: {learning_rate: .inf}\n", "teacher.learning_rate=inf: expected a finite number"),
    "repeated objective": ("objectives: [[eer, min], [eer, max]]\n", "'eer' is named more than once"),
    "no objectives": ("objectives: []\n", r"objectives=\[\]: need a non-empty list"),
    "huge name": ("name: " + "a" * 5000 + "\n", "5000 characters; at most 100"),
    "cache_dir is a file": ("cache_dir: {file}\n", "is a file; the cache needs a folder"),
    "huge filterbank": ("features: {num_mel_bins: 100000}\n", r"features.num_mel_bins=100000: must be in \[8, 256\]"),
    "fractional seed": ("seed: 3.7\n", "seed=3.7: expected int"),
    "text seed": ("seed: abc\n", "seed='abc': expected int"),
    "duplicate key": ("seed: 1\nseed: 2\n", "duplicate key 'seed' \\(line 2\\)"),
    "targets as a string": ("targets: cortex-a72\n", "targets='cortex-a72': expected a list of names"),
    "measured target with a negative resource amount": (
        "targets: [{name: cortex-a72, measure: true, resources: {rpi4: -1}}]\n",
        r"targets\[0\].resources.rpi4=-1: must be a positive number",
    ),
    "huge sampler name": ("search: {sampler: " + "x" * 100_000 + "}\n", "search.sampler='x{60}\\.\\.\\. \\(100000 characters\\)'"),
}
BAD_BYTES = {
    "random bytes": (bytes(range(128, 256)) * 2, "not a UTF-8 text file"),
    "NUL bytes": (b"name: a\x00b\n", "contains NUL bytes"),
    "Latin-1 text": ("name: caf\xe9\n".encode("latin-1"), "not a UTF-8 text file"),
}


def _write(tmp_path, content):
    path = tmp_path / "bad.yaml"
    if isinstance(content, str):
        content = content.replace("{file}", str(tmp_path / "a-file"))
        (tmp_path / "a-file").write_text("not a folder")
        content = content.encode()
    path.write_bytes(content)
    return path


@pytest.mark.parametrize("case", [*BAD_CONFIGS, *BAD_BYTES])
def test_a_bad_config_is_one_error_line_and_exit_2_for_space_and_run(case, tmp_path, capsys):
    content, message = {**BAD_CONFIGS, **BAD_BYTES}[case]
    path = _write(tmp_path, content)
    out = tmp_path / "results"
    for argv in (["space", str(path)], ["run", str(path), "--out", str(out)]):
        assert main(argv) == 2
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and error.startswith(f"error: {path}: ") and "Traceback" not in error
        assert re.search(message, error), error
        assert len(error) < 500
    assert not out.exists() or not os.listdir(out)


def test_a_run_whose_preparation_fails_leaves_no_run_directory(tmp_path, capsys):
    path = tmp_path / "missing-corpus.yaml"
    path.write_text(
        f"cache_dir: {tmp_path / 'cache'}\n"
        "data:\n"
        f"  train: {{corpus: folder, path: {tmp_path / 'no-such-corpus'}}}\n"
        f"  eval: [{{name: test, corpus: folder, path: {tmp_path / 'no-such-corpus'}}}]\n"
    )
    out = tmp_path / "results"
    assert main(["run", str(path), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert "no-such-corpus" in error and "failed before any trial ran" in error
    assert not out.exists() or not os.listdir(out)


SECTIONS = {
    "seed": st.one_of(st.floats(allow_nan=True), st.text(max_size=8), st.lists(st.integers(), max_size=2)),
    "name": st.one_of(st.text(min_size=101, max_size=300), st.just(""), st.integers(), st.just("a/b")),
    "teacher": st.fixed_dictionaries(
        {"learning_rate": st.one_of(st.just(float("nan")), st.just(float("inf")), st.just(-1.0), st.just("fast"))}
    ),
    "features": st.fixed_dictionaries({"num_mel_bins": st.one_of(st.integers(-5, 7), st.integers(257, 10**6))}),
    "objectives": st.one_of(st.just([]), st.just([["eer", "min"], ["eer", "max"]]), st.just("eer")),
    "targets": st.one_of(st.text(min_size=1, max_size=12), st.just([]), st.lists(st.integers(), min_size=1, max_size=2)),
    "model": st.one_of(st.text(max_size=12), st.fixed_dictionaries({"family": st.just("resnet"), "base_width": st.integers(-3, 0)})),
    "search": st.fixed_dictionaries({"sampler": st.text(min_size=70, max_size=2000)}),
    "task": st.one_of(st.integers(), st.text(min_size=1, max_size=30).filter(lambda text: text not in ("verification", "extraction"))),
}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(broken=st.sampled_from(sorted(SECTIONS)).flatmap(lambda key: st.tuples(st.just(key), SECTIONS[key])))
def test_any_malformed_or_out_of_range_value_is_one_error_line_and_nothing_is_written(broken, tmp_path_factory):
    """Whatever is wrong with one key, `search run` prints one line naming it and exits 2, writing nothing."""
    key, value = broken
    folder = tmp_path_factory.mktemp("property")
    path = folder / "bad.yaml"
    path.write_text(yaml.safe_dump({key: value}))
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        assert main(["run", str(path), "--out", str(folder / "results")]) == 2
    error = stderr.getvalue()
    assert error.count("\n") == 1 and error.startswith(f"error: {path}: ") and "Traceback" not in error
    assert key in error[len(f"error: {path}: ") :]
    assert len(error) < 1000
    assert not (folder / "results").exists() or not os.listdir(folder / "results")
