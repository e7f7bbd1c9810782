"""`spaces.checkpoints`: each format's file layout, strict matching, and refusing what is not weights."""

import collections

import pytest
import torch

from spaces.checkpoints import (
    CheckpointError,
    load_checkpoint,
    read_native_checkpoint,
    save_native_checkpoint,
    sniff_format,
)
from spaces.compress import ModelSpec

SPEC = ModelSpec("ge2e", dict(num_mel_bins=8, hidden_size=4, embedding_dim=4, num_layers=2), 8, 100, 16000)


class NotATensor:
    """A custom class: unpickling it would run code, so weights-only loading must refuse it."""


@pytest.fixture
def state():
    torch.manual_seed(0)
    return SPEC.build().state_dict()


def _saved(tmp_path, content, name="model.pt"):
    path = tmp_path / name
    torch.save(content, path)
    return path


def test_native_checkpoint_round_trips_with_its_spec(tmp_path, state):
    path = tmp_path / "teacher.pt"
    save_native_checkpoint(path, state, SPEC)
    checkpoint = read_native_checkpoint(path)
    assert checkpoint.spec == SPEC
    assert all(torch.equal(checkpoint.state_dict[key], tensor) for key, tensor in state.items())
    model = checkpoint.spec.build()
    for format in ("native", "auto"):
        model.load_state_dict(load_checkpoint(path, format, model), strict=True)


def test_a_bare_state_dict_loads_as_native_and_as_speechbrain(tmp_path, state):
    path = _saved(tmp_path, collections.OrderedDict(state))
    for format in ("native", "speechbrain", "auto"):
        assert set(load_checkpoint(path, format, SPEC.build())) == set(state)


def test_wespeaker_head_and_wrapper_are_dropped(tmp_path, state):
    path = _saved(tmp_path, {"state_dict": state | {"projection.weight": torch.zeros(10, 4)}})
    assert sniff_format(torch.load(path, weights_only=True), path) == "wespeaker"
    assert set(load_checkpoint(path, "auto", SPEC.build())) == set(state)


def test_resemblyzer_loss_terms_and_training_state_are_dropped(tmp_path, state):
    content = {
        "step": 7,
        "model_state": state | {"similarity_weight": torch.ones(1), "similarity_bias": torch.zeros(1)},
        "optimizer_state": {"state": {}, "param_groups": [{"lr": 1e-4}]},
    }
    path = _saved(tmp_path, content)
    assert set(load_checkpoint(path, "auto", SPEC.build())) == set(state)
    with pytest.raises(CheckpointError, match="no 'model_state' entry"):
        load_checkpoint(_saved(tmp_path, state, "bare.pt"), "resemblyzer", SPEC.build())


def test_missing_and_unexpected_keys_are_listed_with_counts_and_the_file(tmp_path, state):
    broken = {key: tensor for key, tensor in state.items() if key != "linear.bias"}
    broken |= {f"extra{index}.weight": torch.zeros(1) for index in range(7)}
    path = _saved(tmp_path, broken, "broken.pt")
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path, "speechbrain", SPEC.build())
    message = str(error.value)
    assert str(path) in message and "read as speechbrain" in message
    assert "1 missing: linear.bias" in message and "7 unexpected: extra0.weight" in message and ", ..." in message


def test_shape_mismatches_are_listed_with_both_shapes(tmp_path, state):
    path = _saved(tmp_path, state | {"linear.weight": torch.zeros(5, 4)})
    with pytest.raises(CheckpointError, match=r"1 of other shapes: linear.weight \(5, 4\) \(model \(4, 4\)\)"):
        load_checkpoint(path, "native", SPEC.build())


def test_a_pickled_object_is_refused_by_name(tmp_path, state):
    path = _saved(tmp_path, state | {"config": NotATensor()}, "malicious.pt")
    with pytest.raises(CheckpointError, match=rf"{path}: refused: it pickles .*NotATensor"):
        load_checkpoint(path, "auto", SPEC.build())


def test_non_tensor_values_corrupt_files_and_unknown_formats_are_clear_errors(tmp_path, state):
    model = SPEC.build()
    with pytest.raises(CheckpointError, match=r"\['linear.bias'\] is a str, not a tensor"):
        load_checkpoint(_saved(tmp_path, state | {"linear.bias": "zeros"}), "native", model)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="garbage.pt: cannot be read"):
        load_checkpoint(garbage, "auto", model)
    with pytest.raises(CheckpointError, match="missing.pt: cannot be read"):
        load_checkpoint(tmp_path / "missing.pt", "auto", model)
    with pytest.raises(CheckpointError, match="unknown format 'onnx'"):
        load_checkpoint(garbage, "onnx", model)
    with pytest.raises(CheckpointError, match="holds a list"):
        load_checkpoint(_saved(tmp_path, [1, 2], "list.pt"), "auto", model)


def test_batch_norm_step_counters_may_be_missing(tmp_path):
    spec = ModelSpec("speechbrain_ecapa", dict(num_mel_bins=8, channels=(8, 8, 8, 8, 16), res2net_scale=2,
                                               attention_channels=4, se_channels=4, embedding_dim=4), 8, 100, 16000)
    model = spec.build()
    counters = [key for key in model.state_dict() if key.endswith("num_batches_tracked")]
    path = _saved(tmp_path, {k: v for k, v in model.state_dict().items() if k not in counters})
    loaded = load_checkpoint(path, "speechbrain", model)
    assert counters and all(key in loaded for key in counters)
    model.load_state_dict(loaded, strict=True)


def test_saving_refuses_a_state_dict_of_another_model(tmp_path, state):
    with pytest.raises(CheckpointError, match="to be written.*1 missing: linear.bias"):
        save_native_checkpoint(tmp_path / "x.pt", {k: v for k, v in state.items() if k != "linear.bias"}, SPEC)
    with pytest.raises(CheckpointError, match="not a native checkpoint"):
        read_native_checkpoint(_saved(tmp_path, state))
