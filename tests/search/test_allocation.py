"""The ILP bit allocation: optimal and within budget (checked by enumeration), and priced like the real model."""

import itertools
import random

import pytest
import torch

from evaluators.layer_quantization import QuantChoice, layer_choice_stats
from evaluators.sensitivity_estimators import PerturbationEstimator, SensitivityProblem
from hwcost import CostModel
from search.allocation import (
    AllocationProblem,
    Budget,
    Cell,
    Cost,
    least_damage_within_sizes,
    predicted_front,
    solve,
    spread,
)
from search.candidate_sequences import candidate_of, ilp_candidates
from search.choice_costs import AllocationUnavailable, allocation_problem, check_priceable, layer_choices
from spaces.compress import ModelSpec, compress
from spaces.space import SearchSpace
from spaces.space_language import parse_space_config

pytestmark = pytest.mark.usefixtures("single_thread")

WIDTHS = (2, 4, 8, 32)


def made_up_problem(seed: int) -> AllocationProblem:
    """Bits knobs a and b take their quantizer from knob q (kmeans cannot do 2 bits); c uses the default."""
    rng = random.Random(seed)
    cells = []
    units = (("a", "q", ("uniform", "kmeans")), ("b", "q", ("uniform", "kmeans")), ("c", None, ("uniform",)))
    for knob, quantizer_knob, quantizers in units:
        scale = rng.uniform(0.5, 3.0)
        for quantizer in quantizers:
            for bits in WIDTHS:
                if quantizer == "kmeans" and bits == 2:
                    continue
                quantized = bits < 32
                damage = scale * rng.uniform(0.5, 1.5) * 4.0**-bits if quantized else 0.0
                size = scale * bits * (rng.uniform(1.0, 1.2) if quantizer == "kmeans" and quantized else 1.0)
                latency = scale * (rng.uniform(0.5, 1.0) if quantizer == "kmeans" and quantized else bits / 8)
                cells.append(Cell(knob, quantizer_knob, QuantChoice(quantizer, bits), Cost(damage, size, latency)))
    bits_knobs = {"a": WIDTHS, "b": WIDTHS, "c": WIDTHS}
    defaults = {"a": 8, "b": 8, "c": 8, "q": "uniform"}
    return AllocationProblem(bits_knobs, {"q": ("uniform", "kmeans")}, defaults, tuple(cells), Cost(0.0, 5.0, 0.5))


def enumerate_costs(problem: AllocationProblem) -> list[tuple[dict, Cost]]:
    """Every assignment the knobs allow, with its cost (a width the quantizer cannot do is skipped)."""
    knobs = problem.knobs
    found = []
    for values in itertools.product(*knobs.values()):
        assignment = dict(zip(knobs, values))
        try:
            found.append((assignment, problem.cost(assignment)))
        except ValueError:
            continue
    return found


def within(cost: Cost, budget: Budget) -> bool:
    return cost.size_bytes <= budget.size_bytes + 1e-9 and cost.latency_ms <= budget.latency_ms + 1e-9


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_ilp_is_optimal_and_within_budget_on_every_budget_of_a_grid(seed):
    problem = made_up_problem(seed)
    every = enumerate_costs(problem)
    assert len(every) < 4**3 * 2  # kmeans at 2 bits is excluded
    sizes = sorted({cost.size_bytes for _, cost in every})
    latencies = sorted({cost.latency_ms for _, cost in every})
    for size in [sizes[0] - 1, *sizes[:: max(1, len(sizes) // 6)], sizes[-1]]:
        for latency in [latencies[0], *latencies[:: max(1, len(latencies) // 4)], latencies[-1]]:
            budget = Budget(size, latency)
            feasible = [cost.damage for _, cost in every if within(cost, budget)]
            solution = solve(problem, budget)
            if not feasible:
                assert solution is None
                continue
            assert solution is not None and within(solution.cost, budget)
            assert solution.cost.damage == pytest.approx(min(feasible), rel=1e-6, abs=1e-12)
            assert solution.cost == problem.cost(solution.assignment)


def test_the_product_of_a_bits_and_a_quantizer_choice_is_never_a_forbidden_pair():
    """Both bits knobs under q share its choice; kmeans at 2 bits has no cell, so it is never chosen."""
    problem = made_up_problem(0)
    for allocation in predicted_front(problem, size_points=6, latency_points=3):
        assignment = allocation.assignment
        assert set(assignment) == {"a", "b", "c", "q"}
        assert not (assignment["q"] == "kmeans" and 2 in (assignment["a"], assignment["b"]))


def test_the_predicted_front_is_distinct_budgeted_and_free_of_dominated_points():
    problem = made_up_problem(1)
    front = predicted_front(problem, size_points=6, latency_points=3)
    assert len(front) >= 4
    assert len({tuple(sorted(allocation.assignment.items())) for allocation in front}) == len(front)
    assert [allocation.cost.size_bytes for allocation in front] == sorted((a.cost.size_bytes for a in front), reverse=True)
    for allocation in front:
        assert within(allocation.cost, allocation.budget)
        for other in front:  # a cheaper, less damaging one would have fitted this one's budget
            assert not (
                other.cost.damage < allocation.cost.damage - 1e-12
                and other.cost.size_bytes <= allocation.cost.size_bytes
                and other.cost.latency_ms <= allocation.cost.latency_ms
            )


def test_least_damage_within_sizes_is_the_optimum_under_each_size_whatever_its_latency():
    problem = made_up_problem(2)
    every = enumerate_costs(problem)
    sizes = sorted({cost.size_bytes for _, cost in every})
    budgets = [sizes[0] - 1, sizes[len(sizes) // 3], sizes[len(sizes) // 2], sizes[len(sizes) // 2] + 1e-3, sizes[-1]]
    found = least_damage_within_sizes(problem, budgets)
    best = {budget: min(cost.damage for _, cost in every if cost.size_bytes <= budget) for budget in budgets[1:]}
    assert len(found) == len({tuple(sorted(allocation.assignment.items())) for allocation in found}) <= len(best)
    sizes_found = [allocation.cost.size_bytes for allocation in found]
    assert sizes_found == sorted(sizes_found, reverse=True)
    for budget, damage in best.items():  # each budget's optimum is among them, whatever latency it costs
        assert any(a.cost.size_bytes <= budget and a.cost.damage == pytest.approx(damage, abs=1e-12) for a in found)
    assert all(allocation.budget.latency_ms is None for allocation in found)


def test_a_problem_limited_to_some_widths_solves_to_the_optimum_among_them():
    problem = made_up_problem(0)
    limited = problem.limited_to({"a": (4, 8), "b": (8,)})
    allowed = [(a, cost) for a, cost in enumerate_costs(problem) if a["a"] in (4, 8) and a["b"] == 8]
    assert sorted(map(repr, enumerate_costs(limited))) == sorted(map(repr, allowed))  # c keeps every width
    sizes = sorted({cost.size_bytes for _, cost in allowed})
    for size in sizes[:: max(1, len(sizes) // 5)]:
        solution = solve(limited, Budget(size_bytes=size))
        assert solution is not None and solution.assignment["a"] in (4, 8) and solution.assignment["b"] == 8
        best = min(cost.damage for _, cost in allowed if cost.size_bytes <= size)
        assert solution.cost.damage == pytest.approx(best, rel=1e-6, abs=1e-12)


def test_spread_keeps_both_ends_and_evenly_spaced_items():
    assert spread(list(range(10)), 4) == [0, 3, 6, 9]
    assert spread([1, 2], 4) == [1, 2]


@pytest.fixture(scope="module")
def priced():
    """The tiny ResNet with a per-stage quantizer knob (uniform or pow2), bits per stage, float16 side data."""
    torch.manual_seed(0)
    model_kwargs = dict(num_mel_bins=16, base_width=4, blocks=(1, 1, 1, 1), embedding_dim=16)
    spec = ModelSpec("resnet", model_kwargs, 16, 100, 16000, side_bits=16)
    model = spec.build()
    config = parse_space_config(
        {
            "quantizer": "uniform",
            "knobs": [
                {
                    "name": "quantizer",
                    "groups": ["layer1", "layer2", "layer3", "layer4"],
                    "granularity": "stage",
                    "quantizer": ["uniform", "pow2"],
                },
                {"name": "bits", "layers": ["*"], "granularity": "stage", "bits": [2, 4, 8, 32]},
                {"name": "activation_bits", "choices": [32, 8], "default": 8},
            ],
        }
    )
    space = SearchSpace.for_model(config, spec, model)
    state = model.state_dict()
    activation_bits = space.default_activation_bits()
    stats = layer_choice_stats(spec, state, layer_choices(space), activation_bits)
    table = PerturbationEstimator().table(SensitivityProblem(spec, state, stats))
    return spec, state, space, allocation_problem(space, spec, state, table, stats, "cortex-a72")


def test_predicted_size_and_latency_are_those_of_the_compressed_model(priced):
    """Per-layer packed entries and per-layer latencies add up: the linear model is exact once a layer is quantized."""
    spec, state, space, problem = priced
    rng = random.Random(0)
    cost_model = CostModel()
    for _ in range(6):
        assignment = {knob: rng.choice(values) for knob, values in problem.knobs.items()}
        if all(assignment[knob] == 32 for knob in problem.bits_knobs):
            continue
        candidate = candidate_of(space, assignment)
        plan = space.plan(candidate)
        compressed = compress(spec, state, plan.layer_bits, plan.layer_quantizers)
        predicted = problem.cost(problem.assignment(candidate))
        assert problem.assignment(candidate) == assignment
        assert predicted.size_bytes == compressed.description.size_bytes
        assert predicted.latency_ms == pytest.approx(cost_model.estimate(compressed.description, "cortex-a72").latency_ms)


def test_ilp_candidates_are_valid_candidates_with_value_knobs_at_their_default(priced):
    _, _, space, problem = priced
    candidates = ilp_candidates(space, problem)
    assert len(candidates) >= 3
    for candidate in candidates:
        space.plan(candidate)
        assert candidate["activation_bits"] == 8  # the declared default, not the first choice
        assert any(candidate[knob] != 32 for knob in space.groups)  # the all-FP32 reference is left out
    sizes = [problem.cost(problem.assignment(candidate)).size_bytes for candidate in candidates]
    assert sizes == sorted(sizes, reverse=True)


def test_a_space_whose_default_candidate_trains_a_student_is_refused(priced):
    spec, state, space, _ = priced
    config = parse_space_config({"bits": [4, 8], "knobs": [{"name": "student.width", "choices": [0.5, 1.0]}]})
    with pytest.raises(AllocationUnavailable, match="trains a student"):
        check_priceable(SearchSpace.for_model(config, spec))
    check_priceable(space)
