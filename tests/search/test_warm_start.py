"""NSGA-II and the predictor-screened sampler start from the ILP front, after the baselines, once per study."""

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from allocation_problems import toy_problem
from search.allocation import spread
from search.candidate_sequences import ilp_candidates
from search.choice_costs import AllocationUnavailable
from search.optuna_search import RecordingOptunaSearch
from search.samplers import SamplerError, build_sampler
from spaces.space import SearchSpace, SpaceConfig

optuna.logging.set_verbosity(optuna.logging.WARNING)

GROUPS = {"stem": ["conv"], "body": ["block.a", "block.b"], "head": ["fc"]}
PARAMS = {"conv": 100, "block.a": 1000, "block.b": 1000, "fc": 4000}
SENSITIVITIES = {"conv": 5.0, "block.a": 0.1, "block.b": 0.2, "fc": 0.3}


def space() -> SearchSpace:
    return SearchSpace(SpaceConfig(bits=(2, 4, 8, 32)), GROUPS)


def searcher(the_space: SearchSpace, storage: JournalStorage, baselines: list[dict], name: str):
    problem = toy_problem(the_space, PARAMS, SENSITIVITIES)
    sampler = build_sampler(name, seed=0, population_size=3, space=the_space, allocation=lambda: problem)
    return RecordingOptunaSearch(
        recorded_keys=["eer", "size_bytes"],
        space=the_space.suggest,
        metric=["eer", "size_bytes"],
        mode=["min", "min"],
        sampler=sampler,
        storage=storage,
        study_name="warm",
        points_to_evaluate=baselines,
    )


def propose(search: RecordingOptunaSearch, count: int, start: int = 0) -> list[dict]:
    """`count` proposals, each told a made-up result before the next is asked for."""
    proposed = []
    for index in range(start, start + count):
        config = search.suggest(f"t{index}")
        proposed.append({key: value for key, value in config.items() if key.startswith("bits.")})
        search.on_trial_complete(f"t{index}", {"eer": 0.01 * index, "size_bytes": 100.0 - index})
    return proposed


@pytest.mark.parametrize("name", ["nsga2", "predictor-screened"])
def test_the_first_trials_after_the_baselines_are_a_spread_of_the_ilp_front(name, tmp_path):
    the_space = space()
    front = ilp_candidates(the_space, toy_problem(the_space, PARAMS, SENSITIVITIES))
    first = spread(front, 3)
    assert len(front) > 3 and len({tuple(sorted(c.items())) for c in first}) == 3
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "study.journal")))
    baselines = [the_space.uniform_candidate(8), first[0]]  # a front member that is also a baseline runs once
    proposed = propose(searcher(the_space, storage, baselines, name), 5)
    assert proposed[:4] == [the_space.uniform_candidate(8), first[0], first[1], first[2]]
    assert proposed[4] not in first
    resumed = propose(searcher(the_space, storage, [], name), 2, start=5)  # the same study, a new sampler
    assert not [candidate for candidate in resumed if candidate in first]
    study = optuna.load_study(study_name="warm", storage=storage)
    assert [trial.state for trial in study.trials] == [optuna.trial.TrialState.COMPLETE] * 7  # none left waiting


def test_a_space_the_ilp_cannot_price_refuses_ilp_and_leaves_nsga2_cold():
    the_space = space()

    def unavailable():
        raise AllocationUnavailable("the space's default candidate trains a student")

    assert len(build_sampler("nsga2", seed=0, population_size=3, space=the_space).first_candidates) == 0
    assert len(build_sampler("nsga2", seed=0, population_size=3, space=the_space, allocation=unavailable).first_candidates) == 0
    for name in ("ilp", "predictor-screened"):
        with pytest.raises(SamplerError, match=f"search.sampler='{name}': the space's default candidate trains a student"):
            build_sampler(name, seed=0, population_size=3, space=the_space, allocation=unavailable)
        with pytest.raises(SamplerError, match="needs the run's teacher"):
            build_sampler(name, seed=0, population_size=3, space=the_space)
