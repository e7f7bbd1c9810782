import optuna
import pytest

from spaces.space import SearchSpace, SpaceConfig, SpaceError

GROUPS = {"stem": ["stem.0"], "layer1": ["layer1.0.conv1", "layer1.0.conv2"], "embedding": ["embedding"]}


def test_stage_granularity_one_knob_per_group():
    space = SearchSpace(SpaceConfig(bits=(4, 8)), GROUPS)
    assert space.knobs == {"bits.stem": (4, 8), "bits.layer1": (4, 8), "bits.embedding": (4, 8)}
    assert space.size == 8
    assert space.layer_bits({"bits.stem": 4, "bits.layer1": 8, "bits.embedding": 4}) == {
        "stem.0": 4,
        "layer1.0.conv1": 8,
        "layer1.0.conv2": 8,
        "embedding": 4,
    }


def test_layer_granularity_one_knob_per_layer():
    space = SearchSpace(SpaceConfig(bits=(4, 8), granularity="layer"), GROUPS)
    assert len(space.knobs) == 4
    assert space.uniform_candidate(8) == {f"bits.{name}": 8 for names in GROUPS.values() for name in names}


def test_suggest_samples_every_knob_with_optuna():
    space = SearchSpace(SpaceConfig(bits=(2, 4, 8)), GROUPS)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    space.suggest(trial)
    assert set(trial.params) == set(space.knobs)
    assert space.layer_bits(trial.params)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(bits=(4, 12)), "space.bits: impossible bit width 12"),
        (dict(bits=()), "empty choice list"),
        (dict(granularity="block"), "space.granularity='block'"),
        (dict(quantizer="fancy"), "space.quantizer='fancy'"),
        (dict(bits=(1, 4)), "space.bits: 1 bits not supported by quantizer 'uniform'"),
        (dict(quantizer="binary", bits=(1, 4)), "space.bits: 4 bits not supported by quantizer 'binary'"),
        (dict(baselines=(9,)), "space.baselines: impossible bit width 9"),
    ],
)
def test_bad_space_is_clear_error(kwargs, message):
    with pytest.raises(SpaceError, match=message.replace("(", r"\(")):
        SpaceConfig(**kwargs)


def test_other_quantizer_families_accept_their_bits():
    assert SpaceConfig(quantizer="binary", bits=(1, 32)).bits == (1, 32)
    assert SpaceConfig(quantizer="kmeans", bits=(1, 2, 4)).quantizer == "kmeans"


def test_candidate_mismatch_is_clear_error():
    space = SearchSpace(SpaceConfig(bits=(4, 8)), GROUPS)
    with pytest.raises(SpaceError, match="missing"):
        space.layer_bits({"bits.stem": 4})
    with pytest.raises(SpaceError, match="not among the choices"):
        space.layer_bits({"bits.stem": 3, "bits.layer1": 4, "bits.embedding": 4})
