"""The quality predictor on synthetic trials of known additive structure, scored on held-out trials."""

import numpy as np
import pytest
from scipy.stats import spearmanr

from evaluators.layer_quantization import QuantChoice
from search.allocation import AllocationProblem, Cell, Cost
from search.predictor import QualityPredictor, log_damage, monotone_line, prior_for

WIDTHS = (2, 3, 4, 5, 6, 8)
KNOBS = tuple(f"bits.k{index}" for index in range(6))
TRUE_WEIGHTS = np.array([4.0, 0.2, 1.0, 2.0, 0.5, 3.0])
KMEANS_GAIN = 0.5
"""Truth: k-means halves the damage of knob k0's layers (the quantizer knob q sets them)."""


def problem(prior_weights) -> AllocationProblem:
    """Damage prior = weight x 4^-bits per knob (k0 under quantizer knob q, no kmeans gain known)."""
    cells = []
    for knob, weight in zip(KNOBS, prior_weights):
        quantizer_knob, quantizers = ("q", ("uniform", "kmeans")) if knob == KNOBS[0] else (None, ("uniform",))
        for quantizer in quantizers:
            for bits in WIDTHS:
                cells.append(Cell(knob, quantizer_knob, QuantChoice(quantizer, bits), Cost(weight * 4.0**-bits, bits, 0.0)))
    defaults = {**dict.fromkeys(KNOBS, 8), "q": "uniform"}
    return AllocationProblem({knob: WIDTHS for knob in KNOBS}, {"q": ("uniform", "kmeans")}, defaults, tuple(cells))


def trials(count: int, seed: int) -> tuple[list[dict], np.ndarray]:
    """Random assignments and a saturating quality (an EER-like curve) of their true additive damage, with noise."""
    rng = np.random.default_rng(seed)
    assignments = []
    for _ in range(count):
        assignment = {knob: int(rng.choice(WIDTHS)) for knob in KNOBS}
        assignment["q"] = str(rng.choice(["uniform", "kmeans"]))
        assignments.append(assignment)
    def damage_of(assignment: dict) -> float:
        gain = KMEANS_GAIN if assignment["q"] == "kmeans" else 1.0
        return sum(w * 4.0 ** -assignment[k] * (gain if k == KNOBS[0] else 1.0) for k, w in zip(KNOBS, TRUE_WEIGHTS))

    damage = np.array([damage_of(assignment) for assignment in assignments])
    quality = 0.5 * (1 - np.exp(-20 * damage)) + rng.normal(0, 0.002, count)
    return assignments, quality


@pytest.mark.parametrize("seed", [0, 1])
def test_the_predictor_ranks_held_out_trials_far_better_than_a_constant(seed):
    """A prior with the right structure but noisy weights; the fit corrects scale, curvature and the k-means gain."""
    noisy = TRUE_WEIGHTS * np.random.default_rng(100 + seed).lognormal(0, 0.5, len(TRUE_WEIGHTS))
    train, train_quality = trials(60, seed)
    held_out, quality = trials(60, seed + 10)
    model = problem(noisy)
    predictor = QualityPredictor(model, prior_for("eer", model), seed=seed).fit(train, train_quality)
    predicted = predictor.predict(held_out)
    assert spearmanr(predicted, quality)[0] >= 0.8
    constant_error = np.mean((quality - train_quality.mean()) ** 2)
    assert np.mean((predicted - quality) ** 2) < 0.3 * constant_error


def test_the_correction_learns_what_the_prior_misses():
    """A prior blind to the most damaging knob ranks poorly; the fitted correction recovers most of it."""
    blind = TRUE_WEIGHTS.copy()
    blind[0] = 0.0
    train, train_quality = trials(80, 3)
    held_out, quality = trials(60, 4)
    model = problem(blind)
    prior_only = QualityPredictor(model, prior_for("eer", model), min_correction=10**6).fit(train, train_quality)
    corrected = QualityPredictor(model, prior_for("eer", model)).fit(train, train_quality)
    prior_rho = spearmanr(prior_only.predict(held_out), quality)[0]
    corrected_rho = spearmanr(corrected.predict(held_out), quality)[0]
    assert corrected_rho > prior_rho + 0.1 and corrected_rho >= 0.8


def test_without_trials_the_prior_itself_ranks_and_costs_have_their_own_prior():
    assignments, _ = trials(10, 5)
    model = problem(TRUE_WEIGHTS)
    unfitted = QualityPredictor(model, prior_for("eer", model)).fit([], [])
    damages = [model.cost(a).damage for a in assignments]
    assert np.array_equal(np.argsort(unfitted.predict(assignments)), np.argsort(damages))
    sizes = QualityPredictor(model, prior_for("size_bytes", model)).fit([], []).predict(assignments)
    assert np.allclose(sizes, [sum(a[k] for k in KNOBS) for a in assignments])


def test_the_line_never_inverts_the_prior():
    """A few trials where more damage happened to score better keep the prior's order, at their spread."""
    priors = np.array([0.0, 1.0, 2.0, 3.0])
    targets = np.array([0.30, 0.25, 0.20, 0.22])
    intercept, slope = monotone_line(priors, targets)
    assert slope > 0
    assert np.isclose(np.std(intercept + slope * priors), np.std(targets))
    assert np.isclose(np.mean(intercept + slope * priors), np.mean(targets))
    rising = np.array([0.1, 0.2, 0.3, 0.5])
    assert np.allclose(monotone_line(priors, rising), np.polyfit(priors, rising, 1)[::-1])


def test_the_correction_is_kept_only_when_it_cross_validates_better():
    """Quality = a line in the prior plus noise: trees could only fit the noise, so the line is used alone;
    a quality the prior is blind to part of keeps its correction."""
    model = problem(TRUE_WEIGHTS)
    prior = prior_for("eer", model)
    train, _ = trials(60, 7)
    rng = np.random.default_rng(7)
    linear = np.array([0.1 + 0.02 * prior(model.cost(a)) for a in train]) + rng.normal(0, 0.01, len(train))
    assert not QualityPredictor(model, prior).fit(train, linear).corrected
    blind = problem(np.where(np.arange(len(TRUE_WEIGHTS)) == 0, 0.0, TRUE_WEIGHTS))
    train, quality = trials(80, 3)
    assert QualityPredictor(blind, prior_for("eer", blind)).fit(train, quality).corrected


def test_log_damage_is_finite_without_damage_and_orders_as_the_damage():
    model = problem(TRUE_WEIGHTS)
    prior = log_damage(model)
    values = [prior(Cost(damage)) for damage in (0.0, 1e-9, 1e-3, 1.0, 100.0)]
    assert all(np.isfinite(values)) and values == sorted(values) and len(set(values)) == len(values)
