"""NSGA-II and the predictor-screened sampler start from the ILP front, behind the baselines, once per study."""

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from allocation_problems import toy_problem
from search.allocation import spread
from search.candidate_sequences import ilp_candidates
from search.choice_costs import AllocationUnavailable
from search.optuna_search import RecordingOptunaSearch
from search.samplers import FIRST_CANDIDATE, SamplerError, build_sampler
from spaces.space import SearchSpace, SpaceConfig

optuna.logging.set_verbosity(optuna.logging.WARNING)

GROUPS = {"stem": ["conv"], "body": ["block.a", "block.b"], "head": ["fc"]}
PARAMS = {"conv": 100, "block.a": 1000, "block.b": 1000, "fc": 4000}
SENSITIVITIES = {"conv": 5.0, "block.a": 0.1, "block.b": 0.2, "fc": 0.3}


def searcher(space: SearchSpace, storage: JournalStorage, baselines: list[dict], name: str = "nsga2"):
    sampler = build_sampler(
        name, seed=0, population_size=3, space=space, allocation=lambda: toy_problem(space, PARAMS, SENSITIVITIES)
    )
    return RecordingOptunaSearch(
        recorded_keys=["eer", "size_bytes"],
        space=space.suggest,
        metric=["eer", "size_bytes"],
        mode=["min", "min"],
        sampler=sampler,
        storage=storage,
        study_name="warm",
        points_to_evaluate=baselines,
    )


def test_nsga2_proposes_the_baselines_then_a_spread_of_the_ilp_front_then_its_own(tmp_path):
    space = SearchSpace(SpaceConfig(bits=(2, 4, 8, 32)), GROUPS)
    front = ilp_candidates(space, toy_problem(space, PARAMS, SENSITIVITIES))
    first = spread(front, 3)
    assert len(front) > 3 and len({tuple(sorted(c.items())) for c in first}) == 3
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "study.journal")))
    baselines = [space.uniform_candidate(8), first[0]]  # a first candidate that is also a baseline runs once
    search = searcher(space, storage, baselines)
    proposed = []
    for index in range(6):
        config = search.suggest(f"t{index}")
        proposed.append({key: value for key, value in config.items() if key.startswith("bits.")})
        search.on_trial_complete(f"t{index}", {"eer": 0.1 * index, "size_bytes": 100.0 - index})
    assert proposed[:4] == [space.uniform_candidate(8), first[0], first[1], first[2]]
    study = search._ot_study
    assert sum(FIRST_CANDIDATE in trial.user_attrs for trial in study.trials) == 2
    resumed = searcher(space, storage, [])  # the same study again: nothing is enqueued a second time
    assert len(resumed._ot_study.trials) == 6
    assert all(trial.state == optuna.trial.TrialState.COMPLETE for trial in resumed._ot_study.trials)


def test_nsga2_without_an_allocation_starts_cold():
    space = SearchSpace(SpaceConfig(bits=(2, 4, 8, 32)), GROUPS)
    assert build_sampler("nsga2", seed=0, population_size=3, space=space).first_candidates == []
    problem = toy_problem(space, PARAMS, SENSITIVITIES)
    warm = build_sampler("predictor-screened", seed=0, population_size=3, space=space, allocation=lambda: problem)
    assert len(warm.first_candidates) == 3


def test_a_space_the_ilp_cannot_price_refuses_ilp_and_leaves_nsga2_cold():
    space = SearchSpace(SpaceConfig(bits=(2, 4, 8, 32)), GROUPS)

    def unavailable():
        raise AllocationUnavailable("the space's default candidate trains a student")

    assert build_sampler("nsga2", seed=0, population_size=3, space=space, allocation=unavailable).first_candidates == []
    for name in ("ilp", "predictor-screened"):
        with pytest.raises(SamplerError, match=f"search.sampler='{name}': the space's default candidate trains a student"):
            build_sampler(name, seed=0, population_size=3, space=space, allocation=unavailable)
        with pytest.raises(SamplerError, match="needs the run's teacher"):
            build_sampler(name, seed=0, population_size=3, space=space)
