import optuna
import pytest
from ray.tune.search import Searcher

from allocation_problems import toy_problem
from search.candidate_sequences import sensitivity_greedy_candidates, uniform_grid_candidates
from search.cli import main
from search.config import DEFAULT_CONFIG, SAMPLERS, ConfigError, load_config
from search.constraints import parse_constraints
from search.optuna_search import RecordingOptunaSearch
from search.samplers import (
    SAMPLER_KINDS,
    SAMPLER_NAMES,
    CandidateSequenceSampler,
    SamplerError,
    build_sampler,
    get_sampler_kind,
)
from search.screened_sampler import ScreenedSampler
from search.tasks import TASKS
from spaces.space import SearchSpace, SpaceConfig

optuna.logging.set_verbosity(optuna.logging.WARNING)

GROUPS = {"stem": ["conv"], "body": ["block.a", "block.b"], "head": ["fc"]}
PARAMS = {"conv": 100, "block.a": 1000, "block.b": 1000, "fc": 4000}


SENSITIVITIES = {"conv": 1.0, "fc": 0.1}


def space(bits=(2, 4, 8, 32)) -> SearchSpace:
    return SearchSpace(SpaceConfig(bits=bits), GROUPS)


def build(name: str):
    """The sampler `name` given everything a run offers: sensitivities, layer sizes and an ILP problem."""
    the_space = space()
    return build_sampler(
        name,
        seed=0,
        population_size=4,
        space=the_space,
        sensitivities=SENSITIVITIES,
        layer_params=PARAMS,
        allocation=lambda: toy_problem(the_space, PARAMS, SENSITIVITIES),
    )


class UnknownKnobsSpace:
    """A space with a quantizer knob, an activation knob and a ranged knob this engine never heard of."""

    groups = {"bits.a": ["a"], "bits.b": ["b"]}
    knobs = {"quantizer.all": ("uniform", "kmeans"), "bits.a": (2, 4, 8), "bits.b": (2, 4, 8), "act": (8, 32)}

    def suggest(self, trial):
        quantizer = trial.suggest_categorical("quantizer.all", ["uniform", "kmeans"])
        trial.suggest_categorical("bits.a", [2, 4, 8])
        trial.suggest_categorical("bits.b", [2, 4, 8])
        trial.suggest_categorical("act", [8, 32])
        if quantizer == "kmeans":
            trial.suggest_float("kmeans.iterations", 5.0, 50.0)

    def plan(self, candidate):
        if candidate["quantizer.all"] == "kmeans" and candidate["bits.a"] == 2:
            raise ValueError("kmeans needs more than 2 bits here")
        return candidate


def test_uniform_grid_is_one_width_everywhere_widest_first_without_fp32():
    grid = uniform_grid_candidates(space())
    assert grid == [{"bits.stem": b, "bits.body": b, "bits.head": b} for b in (8, 4, 2)]


def test_uniform_grid_covers_every_quantizer_and_resolves_unknown_knobs():
    grid = uniform_grid_candidates(UnknownKnobsSpace())
    pairs = [(c["quantizer.all"], c["bits.a"]) for c in grid]
    assert pairs == [("uniform", 8), ("uniform", 4), ("uniform", 2), ("kmeans", 8), ("kmeans", 4)]
    assert all(c["bits.a"] == c["bits.b"] and c["act"] == 8 for c in grid)
    assert all(c["kmeans.iterations"] == 5.0 for c in grid if c["quantizer.all"] == "kmeans")


def test_sensitivity_greedy_lowers_insensitive_groups_first_one_step_at_a_time():
    sensitivities = {"conv": 5.0, "block.a": 0.1, "block.b": 0.2, "fc": 0.3}
    path = sensitivity_greedy_candidates(space(), sensitivities, PARAMS)
    assert path[0] == {"bits.stem": 8, "bits.body": 8, "bits.head": 8}
    assert path[-1] == {"bits.stem": 2, "bits.body": 2, "bits.head": 2}
    assert len(path) == 3 * 2 + 1
    for before, after in zip(path, path[1:]):
        changed = [knob for knob in before if before[knob] != after[knob]]
        assert len(changed) == 1 and after[changed[0]] < before[changed[0]]
    first_moves = [next(k for k in a if a[k] != b[k]) for a, b in zip(path, path[1:])]
    assert first_moves[:2] == ["bits.head", "bits.body"]  # large and insensitive per parameter
    assert first_moves[-2:] == ["bits.stem", "bits.stem"]  # the sensitive stem goes last


def test_sensitivity_greedy_needs_sensitivities_of_the_spaces_layers():
    with pytest.raises(SamplerError, match="no layer sensitivities"):
        build_sampler("sensitivity-greedy", seed=0, population_size=4, space=space(), sensitivities=None)
    with pytest.raises(SamplerError, match="name none of the space's layers"):
        build_sampler("sensitivity-greedy", seed=0, population_size=4, space=space(), sensitivities={"other": 1.0})


def test_an_unknown_sampler_name_is_one_error_listing_every_registered_name():
    with pytest.raises(SamplerError, match="search.sampler='grid': unknown; available: ") as raised:
        build_sampler("grid", seed=0, population_size=4, space=space())
    assert all(name in str(raised.value) for name in SAMPLER_NAMES)


def test_sampler_names_come_from_the_registry_alone():
    assert SAMPLER_NAMES == tuple(kind.name for kind in SAMPLER_KINDS.values())
    assert all(get_sampler_kind(name).name == name for name in SAMPLER_NAMES)
    assert SAMPLERS is SAMPLER_NAMES  # the config validates against the registry's own tuple


@pytest.mark.parametrize("name", SAMPLER_NAMES)
def test_a_kind_replays_a_sequence_exactly_when_it_builds_a_candidate_sequence(name):
    kind = get_sampler_kind(name)
    sampler = build(name)
    assert isinstance(sampler, CandidateSequenceSampler) == kind.replays_sequence
    assert kind.help and "\n" not in kind.help


def test_a_sampler_error_reaches_the_cli_as_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    def run_search(*args, **kwargs):
        build_sampler("sensitivity-greedy", seed=0, population_size=4, space=space(), sensitivities=None)

    monkeypatch.setattr("search.engine.run_search", run_search)
    assert main(["run", str(DEFAULT_CONFIG), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("error: search.sampler='sensitivity-greedy'")
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "name, expected",
    [
        ("nsga2", optuna.samplers.NSGAIISampler),
        ("tpe", optuna.samplers.TPESampler),
        ("gp", optuna.samplers.GPSampler),
        ("random", optuna.samplers.RandomSampler),
        ("uniform-grid", CandidateSequenceSampler),
        ("sensitivity-greedy", CandidateSequenceSampler),
        ("ilp", CandidateSequenceSampler),
        ("predictor-screened", ScreenedSampler),
    ],
)
def test_every_configured_sampler_builds(name, expected):
    sampler = build(name)
    assert isinstance(sampler, expected)
    assert name in SAMPLER_NAMES


@pytest.mark.parametrize("name", SAMPLER_NAMES)
def test_every_sampler_survives_rays_pickling_of_the_searcher_and_still_samples(name):
    """Ray Tune pickles the searcher (and its sampler) into the experiment state; Optuna 5.1's
    NSGA-II holds a thread lock that plain pickling refuses."""
    from ray import cloudpickle

    sampler = build(name)
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)

    def objective(trial):
        return trial.suggest_float("x", 0, 1), trial.suggest_float("y", 0, 1)

    study.optimize(objective, n_trials=1)
    restored = cloudpickle.loads(cloudpickle.dumps(sampler))
    assert type(restored) is type(sampler)
    study.sampler = restored
    study.optimize(objective, n_trials=1)
    assert [trial.state for trial in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2


def test_sampler_choice_is_validated_in_the_config(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("search: {sampler: uniform-grid}\n")
    assert load_config(path).search.sampler == "uniform-grid"
    path.write_text("search: {sampler: grid}\n")
    with pytest.raises(ConfigError, match="search.sampler='grid'"):
        load_config(path)


def test_sequence_sampler_proposes_its_list_in_order_then_is_used_up():
    the_space = space()
    sampler = CandidateSequenceSampler(uniform_grid_candidates(the_space))
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    proposed = []
    for _ in range(len(sampler)):
        assert not sampler.exhausted(study)
        trial = study.ask()
        the_space.suggest(trial)
        proposed.append(trial.params)
        study.tell(trial, [1.0, 1.0])
    assert proposed == sampler.candidates and sampler.exhausted(study)


def test_searcher_finishes_when_the_sequence_is_used_up_and_annotates_every_told_trial():
    the_space = space(bits=(4, 8))
    constraints = parse_constraints(["size_bytes <= 100"], TASKS["verification"].metric_names(["cortex-a72"]))
    searcher = RecordingOptunaSearch(
        recorded_keys=["eer", "size_bytes", "steps"],
        constraints=constraints,
        space=the_space.suggest,
        metric=["eer", "size_bytes"],
        mode=["min", "min"],
        sampler=CandidateSequenceSampler(uniform_grid_candidates(the_space)),
    )
    configs = [searcher.suggest(f"t{i}") for i in range(2)]
    assert [c["bits.stem"] for c in configs] == [8, 4]
    assert searcher.suggest("t2") == Searcher.FINISHED
    searcher.on_trial_complete("t0", {"eer": 0.1, "size_bytes": 150.0, "steps": 0})
    searcher.on_trial_complete("t1", {"eer": 0.2, "size_bytes": 80.0, "steps": 0})
    told = searcher._ot_study.get_trials()
    assert [t.state for t in told] == [optuna.trial.TrialState.COMPLETE] * 2
    assert told[0].user_attrs == {"eer": 0.1, "size_bytes": 150.0, "steps": 0}
    assert told[0].constraints == {"size_bytes <= 100": 50.0} and told[1].constraints == {"size_bytes <= 100": -20.0}


def test_random_sampler_trials_carry_constraints_too():
    """Random sampling takes no constraints; the study still records each trial's violations."""
    constraints = parse_constraints(["eer <= 0.15"], TASKS["verification"].metric_names(["cortex-a72"]))
    searcher = RecordingOptunaSearch(
        recorded_keys=["eer", "size_bytes"],
        constraints=constraints,
        space=space().suggest,
        metric=["eer", "size_bytes"],
        mode=["min", "min"],
        sampler=build_sampler("random", seed=1, population_size=4, space=space()),
    )
    searcher.suggest("t0")
    searcher.on_trial_complete("t0", {"eer": 0.2, "size_bytes": 10.0})
    (trial,) = searcher._ot_study.get_trials()
    assert trial.constraints["eer <= 0.15"] == pytest.approx(0.05)


def test_uniform_grid_over_a_space_with_quantizer_knobs_covers_each_quantizer():
    config = load_config("configs/sv_resnet.yaml")
    the_space = SearchSpace.for_model(config.space, TASKS["verification"].model_spec(config))
    grid = uniform_grid_candidates(the_space)
    quantizer_knobs = [name for name in the_space.knobs if name.startswith("quantizer.")]
    assert quantizer_knobs
    assert {grid_candidate[quantizer_knobs[0]] for grid_candidate in grid} == set(the_space.knobs[quantizer_knobs[0]])
    for candidate in grid:
        the_space.plan(candidate)  # every listed candidate is one the space builds
        assert len({candidate[name] for name in the_space.groups}) == 1
