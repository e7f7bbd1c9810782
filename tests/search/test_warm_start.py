"""The warm starts: NSGA-II from every uniform width and the ILP's rivals of each, the predictor-screened
sampler from a spread of the ILP front; after the baselines, once per study, as parents of what follows."""

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from allocation_problems import toy_problem
from search.allocation import Budget, solve, spread
from search.candidate_sequences import ilp_candidates, warm_start_candidates
from search.choice_costs import AllocationUnavailable
from search.config import load_config
from search.optuna_search import RecordingOptunaSearch
from search.samplers import SamplerError, build_sampler
from search.tasks import TASKS
from spaces.space import SearchSpace, SpaceConfig
from spaces.space_language import parse_space_config

optuna.logging.set_verbosity(optuna.logging.WARNING)

GROUPS = {"stem": ["conv"], "body": ["block.a", "block.b"], "head": ["fc"]}
PARAMS = {"conv": 100, "block.a": 1000, "block.b": 1000, "fc": 4000}
SENSITIVITIES = {"conv": 5.0, "block.a": 0.1, "block.b": 0.2, "fc": 0.3}
WIDTHS = (2, 3, 4, 6, 8)


def space() -> SearchSpace:
    """Bits per stage and an activation knob whose default (8) is not its first choice (32)."""
    config = parse_space_config(
        {
            "quantizer": "uniform",
            "knobs": [
                {"name": "bits", "layers": ["*"], "granularity": "stage", "bits": [*WIDTHS, 32]},
                {"name": "activation_bits", "choices": [32, 8], "default": 8},
            ],
        }
    )
    return SearchSpace(config, GROUPS)


def problem(the_space: SearchSpace):
    return toy_problem(the_space, PARAMS, SENSITIVITIES)


def searcher(the_space: SearchSpace, storage: JournalStorage, baselines: list[dict], name: str):
    sampler = build_sampler(name, seed=0, population_size=3, space=the_space, allocation=lambda: problem(the_space))
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
        proposed.append({key: value for key, value in config.items() if key != "trial_number"})
        search.on_trial_complete(f"t{index}", {"eer": 0.01 * index, "size_bytes": 100.0 - index})
    return proposed


def predicted(the_space: SearchSpace, candidate: dict):
    the_problem = problem(the_space)
    return the_problem.cost(the_problem.assignment(candidate))


def test_the_warm_start_is_every_uniform_width_as_the_baselines_are_built_then_mixed_assignments():
    the_space = space()
    first = warm_start_candidates(the_space, problem(the_space))
    uniform = [the_space.uniform_candidate(bits) for bits in sorted(WIDTHS, reverse=True)]
    assert first[: len(uniform)] == uniform  # FP32 left out; activations at their default, as a baseline's
    mixed = first[len(uniform) :]
    assert mixed and all(len({candidate[knob] for knob in the_space.groups}) > 1 for candidate in mixed)
    assert len({tuple(sorted(candidate.items())) for candidate in first}) == len(first)


def test_the_ilp_part_lies_at_or_below_the_widest_uniform_model_and_rivals_every_uniform_point():
    the_space = space()
    first = warm_start_candidates(the_space, problem(the_space))
    uniform = [predicted(the_space, candidate) for candidate in first[: len(WIDTHS)]]
    mixed = [predicted(the_space, candidate) for candidate in first[len(WIDTHS) :]]
    sizes = [cost.size_bytes for cost in mixed]
    assert max(sizes) <= max(point.size_bytes for point in uniform) and sizes == sorted(sizes, reverse=True)
    smallest = min(point.size_bytes for point in uniform)
    for point in uniform:
        if point.size_bytes == smallest:
            continue  # nothing else fits at the smallest model's size
        rivals = [cost.damage for cost in mixed if cost.size_bytes <= point.size_bytes]
        assert rivals and min(rivals) <= point.damage  # the ILP's least damage within the point's size
    uniform_sizes = sorted(point.size_bytes for point in uniform)
    for smaller, larger in zip(uniform_sizes, uniform_sizes[1:]):  # spread: something between any two neighbours
        assert any(smaller < size <= larger for size in sizes)


def test_each_rival_stays_within_one_width_of_a_uniform_model_even_for_a_layer_priced_free():
    """A layer priced at no damage (a flat loss) goes one width below the uniform model it rivals, not to 2 bits."""
    the_space = space()
    the_problem = toy_problem(the_space, PARAMS, {**SENSITIVITIES, "fc": 0.0})
    first = warm_start_candidates(the_space, the_problem)
    ladder = sorted((*WIDTHS, 32))
    for candidate in first[len(WIDTHS) :]:
        steps = [ladder.index(candidate[knob]) for knob in the_space.groups]
        assert max(steps) - min(steps) <= 2  # all within one step of a middle width
    widest_size = predicted(the_space, first[0]).size_bytes
    assert first[len(WIDTHS)]["bits.head"] == 6  # the 8-bit model's rival: one step down
    assert solve(the_problem, Budget(size_bytes=widest_size)).assignment["bits.head"] == 2  # unconstrained: 2 bits


def test_without_an_ilp_problem_the_warm_start_is_the_uniform_grid_alone():
    the_space = space()

    def unavailable():
        raise AllocationUnavailable("the space's default candidate trains a student")

    uniform = [the_space.uniform_candidate(bits) for bits in sorted(WIDTHS, reverse=True)]
    for allocation in (None, unavailable):
        sampler = build_sampler("nsga2", seed=0, population_size=3, space=the_space, allocation=allocation)
        assert sampler.first_candidates.candidates == uniform


def test_every_baseline_of_a_ready_config_with_quantizer_knobs_is_a_warm_start_candidate():
    config = load_config("configs/sv_resnet.yaml")
    the_space = SearchSpace.for_model(config.space, TASKS["verification"].model_spec(config))
    first = warm_start_candidates(the_space, None)
    assert config.space.baselines and all(the_space.uniform_candidate(bits) in first for bits in config.space.baselines)
    quantizer_knob = next(name for name in the_space.knobs if name.startswith("quantizer."))
    assert {candidate[quantizer_knob] for candidate in first} == set(the_space.knobs[quantizer_knob])


def test_nsga2_takes_its_warm_start_after_the_baselines_once_even_after_a_resume(tmp_path):
    the_space = space()
    first = warm_start_candidates(the_space, problem(the_space))
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "study.journal")))
    baselines = [the_space.uniform_candidate(8), the_space.uniform_candidate(4)]  # the engine enqueues these
    expected = [*baselines, *(candidate for candidate in first if candidate not in baselines)]
    proposed = propose(searcher(the_space, storage, baselines, "nsga2"), len(first) - 2)
    assert proposed == expected[:-2]
    resumed_search = searcher(the_space, storage, [], "nsga2")  # same study, new sampler
    resumed = propose(resumed_search, 4, start=len(proposed))
    assert resumed[:2] == expected[-2:]
    study = resumed_search._ot_study  # NSGA-II may breed a warm-start candidate again; the warm start is used up
    assert study.sampler.first_candidates.for_trial(study, len(study.trials)) is None
    assert [trial.state for trial in study.trials] == [optuna.trial.TrialState.COMPLETE] * len(study.trials)


def test_baselines_and_warm_start_trials_are_the_parents_of_nsga2s_next_generation(tmp_path):
    the_space = space()
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "study.journal")))
    search = searcher(the_space, storage, [the_space.uniform_candidate(8)], "nsga2")
    warm = len(search._ot_study.sampler.first_candidates)
    propose(search, warm + 1)
    study, sampler = search._ot_study, search._ot_study.sampler
    key = sampler._get_generation_key()
    generations = [trial.system_attrs.get(key) for trial in study.trials]
    assert None not in generations  # every trial, baseline and warm start included, is in a generation
    parents = sampler.get_parent_population(study, generations[-1])
    assert generations[-1] >= 1 and parents
    assert all(parent.number < warm for parent in parents)  # chosen among the baseline and the warm start


def test_predictor_screened_starts_from_a_spread_of_the_ilp_front_after_the_baselines(tmp_path):
    the_space = space()
    front = ilp_candidates(the_space, problem(the_space))
    first = spread(front, 3)
    assert len(front) > 3 and len({tuple(sorted(c.items())) for c in first}) == 3
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "study.journal")))
    baselines = [the_space.uniform_candidate(8), first[0]]  # a front member that is also a baseline runs once
    proposed = propose(searcher(the_space, storage, baselines, "predictor-screened"), 5)
    assert proposed[:4] == [the_space.uniform_candidate(8), first[0], first[1], first[2]]
    assert proposed[4] not in first
    resumed = propose(searcher(the_space, storage, [], "predictor-screened"), 2, start=5)
    assert not [candidate for candidate in resumed if candidate in first]


def test_a_space_the_ilp_cannot_price_refuses_the_samplers_that_need_it():
    the_space = SearchSpace(SpaceConfig(bits=(2, 4, 8, 32)), GROUPS)

    def unavailable():
        raise AllocationUnavailable("the space's default candidate trains a student")

    for name in ("ilp", "predictor-screened"):
        with pytest.raises(SamplerError, match=f"sampler='{name}': the space's default candidate trains a student"):
            build_sampler(name, seed=0, population_size=3, space=the_space, allocation=unavailable)
        with pytest.raises(SamplerError, match="needs the run's teacher"):
            build_sampler(name, seed=0, population_size=3, space=the_space)
