"""Hutchinson traces against the exact Hessian, and the sensitivity estimators on a tiny ResNet."""

import pytest
import torch
from scipy.stats import spearmanr
from torch import nn
from torch.func import functional_call

from evaluators.data.cache import cached_tensors
from evaluators.finetune_data import sample_crops
from evaluators.finetune_loss import FineTuneLoss
from evaluators.hutchinson import hutchinson_traces
from evaluators.layer_quantization import QuantChoice, layer_choice_stats
from evaluators.sensitivity_estimators import (
    ESTIMATORS,
    HessianTraceEstimator,
    LossIncreaseEstimator,
    PerturbationEstimator,
    SensitivityData,
    SensitivityProblem,
    SensitivityTable,
    get_estimator,
)
from spaces.compress import ModelSpec, quantizable_layers

pytestmark = pytest.mark.usefixtures("single_thread")

SPEC = ModelSpec("resnet", dict(num_mel_bins=16, base_width=4, blocks=(1, 1, 1, 1), embedding_dim=16), 16, 100, 16000)
WIDTHS = (2, 4, 8)


def _exact_block_trace(model: nn.Module, name: str, loss_of) -> float:
    """Tr of the Hessian of the loss with respect to one parameter, the others held fixed."""
    parameters = dict(model.named_parameters())

    def loss(weight: torch.Tensor) -> torch.Tensor:
        return loss_of(lambda x: functional_call(model, {**parameters, name: weight}, (x,)))

    weight = parameters[name].detach()
    hessian = torch.autograd.functional.hessian(loss, weight)
    return float(hessian.reshape(weight.numel(), weight.numel()).trace())


def test_hutchinson_trace_matches_the_exact_hessian_trace_of_each_layer():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    batches = [(torch.randn(8, 3), torch.randn(8, 2)) for _ in range(2)]
    names = ["0.weight", "2.weight"]
    exact = {
        name: sum(
            _exact_block_trace(model, name, lambda forward, x=x, y=y: nn.functional.mse_loss(forward(x), y))
            for x, y in batches
        )
        / len(batches)
        for name in names
    }
    parameters = dict(model.named_parameters())
    losses = [lambda x=x, y=y: nn.functional.mse_loss(model(x), y) for x, y in batches]
    estimated = hutchinson_traces({name: parameters[name] for name in names}, losses, 2000, torch.Generator().manual_seed(0))
    assert all(abs(value) > 1e-3 for value in exact.values())
    for name in names:
        assert estimated[name] == pytest.approx(exact[name], rel=0.05)


def test_one_probe_is_exact_when_the_hessian_is_diagonal():
    """Rademacher signs square to one, so only off-diagonal terms make the estimate noisy."""
    weight = torch.tensor([1.0, -2.0, 0.5], requires_grad=True)
    curvature = torch.tensor([3.0, 1.0, 7.0])
    traces = hutchinson_traces({"w": weight}, [lambda: (curvature * weight**4).sum()], 1, torch.Generator().manual_seed(1))
    assert traces["w"] == pytest.approx(float((12 * curvature * weight.detach() ** 2).sum()))


@pytest.fixture(scope="module")
def problem():
    """The tiny ResNet at uniform 2/4/8 bits, on distillation-loss batches (the teacher is the loss's minimum)."""
    torch.manual_seed(0)
    model = SPEC.build()
    generator = torch.Generator().manual_seed(0)
    features = [torch.randn(50, 16, generator=generator) + index % 3 for index in range(9)]
    labels = torch.tensor([index % 3 for index in range(9)])
    batches = tuple(sample_crops(features, labels, 16, 30, generator) for _ in range(2))
    loss = FineTuneLoss(None, margin=0.2, scale=30.0, distillation_weight=5.0, classification_weight=0.0)
    state = model.state_dict()
    choices = {layer: [QuantChoice("uniform", bits) for bits in WIDTHS] for layer in quantizable_layers(model)}
    return SensitivityProblem(SPEC, state, layer_choice_stats(SPEC, state, choices), SensitivityData(batches, loss, "tiny"))


def test_fewer_bits_mean_more_error_and_fewer_stored_bytes(problem):
    for stats in problem.layers.values():
        figures = [stats.stats(QuantChoice("uniform", bits)) for bits in (*WIDTHS, 32)]
        errors = [figure.perturbation for figure in figures]
        stored = [figure.stored_bytes for figure in figures]
        assert errors == sorted(errors, reverse=True) and errors[-1] == 0.0
        assert stored == sorted(stored) and stored[-1] == stats.fp32_bytes


def test_hessian_damage_tracks_the_measured_loss_increase_of_each_layer(problem):
    """At the loss's minimum the increase is half the quadratic term, so the ranks agree and the
    Hutchinson damage (Tr(H)/n * ||dW||^2, the quadratic term for an isotropic block) is about twice it."""
    hessian = HessianTraceEstimator(probes=4).table(problem)
    measured = LossIncreaseEstimator(batch_size=32).table(problem)
    layers = list(problem.layers)
    for bits in WIDTHS:
        choice = QuantChoice("uniform", bits)
        predicted = [hessian.damage(layer, choice) for layer in layers]
        increase = [measured.damage(layer, choice) for layer in layers]
        assert spearmanr(predicted, increase)[0] > 0.7
        assert 1.0 < sum(predicted) / sum(increase) < 4.0
    for layer in layers:
        sensitivity = hessian.layers[layer]
        assert all(
            damage == pytest.approx(max(0.0, sensitivity.curvature * sensitivity.perturbation[choice]))
            for choice, damage in sensitivity.damage.items()
        )


def test_the_data_free_proxy_is_the_relative_weight_error(problem):
    table = PerturbationEstimator().table(problem)
    for layer, stats in problem.layers.items():
        for choice, figures in stats.choices.items():
            assert table.damage(layer, choice) == pytest.approx(figures.perturbation / stats.weight_energy)
        assert table.damage(layer, QuantChoice("uniform", 32)) == 0.0


def test_a_table_survives_the_cache_unchanged(problem, tmp_path):
    table = HessianTraceEstimator(probes=1, batches=1).table(problem)
    entry = cached_tensors(tmp_path, "sensitivity", "key", table.to_entry)
    reloaded = SensitivityTable.from_entry(cached_tensors(tmp_path, "sensitivity", "key", lambda: pytest.fail("rebuilt")))
    assert SensitivityTable.from_entry(entry) == table == reloaded
    assert reloaded.settings == {"probes": 1, "batches": 1, "batch_size": 32, "seed": 0}


def test_data_driven_estimators_refuse_a_problem_without_batches(problem):
    without_data = SensitivityProblem(problem.spec, problem.teacher_state, problem.layers)
    with pytest.raises(ValueError, match="'hessian' needs data"):
        HessianTraceEstimator().table(without_data)
    assert PerturbationEstimator().table(without_data).layers.keys() == problem.layers.keys()


def test_estimators_are_found_by_name_and_an_unknown_one_lists_them():
    assert all(get_estimator(name).name == name for name in ESTIMATORS)
    with pytest.raises(ValueError, match="unknown; available: hessian, loss-increase, perturbation"):
        get_estimator("fisher")
