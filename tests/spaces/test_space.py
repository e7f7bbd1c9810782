"""The search space compiled against a model: define-by-run sampling, plans, size, model-level errors."""

import functools

import optuna
import pytest
import torch
import yaml

from spaces.compress import ModelSpec
from spaces.plan import DistillationPlan, LayerQuantization, StudentPlan
from spaces.quant import QUANTIZERS
from spaces.space import SearchSpace, SpaceConfig, SpaceError, model_taps, parse_space_config

GROUPS = {"stem": ["stem.0"], "layer1": ["layer1.0.conv1", "layer1.0.conv2"], "embedding": ["embedding"]}
RESNET = ModelSpec("resnet", dict(num_mel_bins=24, base_width=4, blocks=(2, 1, 1, 1), embedding_dim=16), 24, 100, 16000)
XVECTOR = ModelSpec("xvector", dict(num_mel_bins=24, channels=16, pooling_channels=32, embedding_dim=16), 24, 100, 16000)
ECAPA = ModelSpec(
    "ecapa_tdnn",
    dict(num_mel_bins=24, channels=16, scale=4, se_channels=8, attention_channels=8, mfa_channels=32, embedding_dim=16),
    24,
    100,
    16000,
)


@functools.cache
def resnet_layout() -> tuple[dict, tuple]:
    """Layer groups and taps of the RESNET model, built once (what `SearchSpace.for_model` reads)."""
    model = RESNET.build()
    return model.layer_groups(), model_taps(model, RESNET.one_second_input())


def resnet_space(text: str) -> SearchSpace:
    groups, taps = resnet_layout()
    return SearchSpace(parse_space_config(yaml.safe_load(text)), groups, "resnet", taps)


def random_trials(space: SearchSpace, count: int, sampler=None):
    """`count` trials of a real Optuna study driven by the space's define-by-run function."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=sampler or optuna.samplers.RandomSampler(seed=0))
    trials = []
    for index in range(count):
        trial = study.ask()
        space.suggest(trial)
        study.tell(trial, float(index % 7))
        trials.append(trial.params)
    return trials


class _ScriptedTrial:
    """Answers each categorical with the choice its script names (0 past the script), recording the choice counts."""

    def __init__(self, script):
        self.script, self.counts, self.params = script, [], {}

    def suggest_categorical(self, name, choices):
        position = len(self.counts)
        self.counts.append(len(choices))
        self.params[name] = choices[self.script[position] if position < len(self.script) else 0]
        return self.params[name]


def every_candidate(space: SearchSpace) -> list[dict]:
    """All candidates of a categorical space, by depth-first search over the define-by-run walk."""
    found, scripts = [], [[]]
    while scripts:
        script = scripts.pop()
        trial = _ScriptedTrial(script)
        space.suggest(trial)
        if len(trial.counts) > len(script):
            scripts += [[*script, choice] for choice in range(trial.counts[len(script)])]
        else:
            found.append(trial.params)
    return found


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


def test_block_granularity_splits_repeated_blocks_of_a_stage():
    space = resnet_space("bits: [4, 8]\ngranularity: block\n")
    assert list(space.groups)[:4] == ["bits.stem", "bits.layer1.0", "bits.layer1.1", "bits.layer2.0"]
    assert space.groups["bits.layer2.0"] == ["layer2.0.conv1", "layer2.0.conv2", "layer2.0.shortcut.0"]


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
        (dict(granularity="module"), "space.granularity='module'"),
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


PATTERNS = """
knobs:
  - name: bits.front
    layers: ["stem*", "layer1.*"]
    bits: [4, 8]
  - name: bits.back
    groups: [layer4, embedding]
    bits: [2, 4, 32]
"""


def test_patterns_and_groups_address_layers_and_the_rest_stays_fp32():
    space = resnet_space(PATTERNS)
    assert space.groups["bits.front"] == ["stem.0", "layer1.0.conv1", "layer1.0.conv2", "layer1.1.conv1", "layer1.1.conv2"]
    assert space.groups["bits.back"] == ["layer4.0.conv1", "layer4.0.conv2", "layer4.0.shortcut.0", "embedding"]
    assert space.fp32_layers == tuple(layer for layer in space.layers if layer.startswith(("layer2", "layer3")))
    plan = space.plan({"bits.front": 4, "bits.back": 32})
    assert set(plan.layers) == set(space.groups["bits.front"]) and plan.student is None and plan.distillation is None


QUANTIZER_KNOB = """
baselines: [8, 4]
knobs:
  - name: quantizer.back
    groups: [layer3, layer4, embedding]
    quantizer: [uniform, kmeans, binary]
  - name: bits.back
    layers: ["layer3.*", "layer4.*", "embedding"]
    bits: [1, 2, 4, 8]
  - name: bits.front
    groups: [stem, layer1, layer2]
    bits: [4, 8]
"""


def test_bits_are_suggested_under_the_chosen_quantizer():
    space = resnet_space(QUANTIZER_KNOB)
    assert space.knobs["bits.back@binary"] == (1,)
    assert space.knobs["bits.back@uniform"] == (2, 4, 8)
    assert space.knobs["bits.back@kmeans"] == (1, 2, 4, 8)
    assert space.knobs["bits.front"] == (4, 8)
    seen = set()
    for candidate in random_trials(space, 40):
        kind = candidate["quantizer.back"]
        assert [name for name in candidate if name.startswith("bits.back")] == [f"bits.back@{kind}"]
        plan = space.plan(candidate)
        for layer in space.groups["bits.back"]:
            assert plan.layers[layer].quantizer == kind and plan.layers[layer].bits in QUANTIZERS[kind].allowed_bits
        assert {plan.layers[layer].quantizer for layer in space.groups["bits.front"]} == {"uniform"}
        seen.add(kind)
    assert seen == {"uniform", "kmeans", "binary"}


def test_size_counts_each_quantizer_branch():
    space = resnet_space(QUANTIZER_KNOB)
    assert space.size == (1 + 3 + 4) * 2 == len(every_candidate(space))


def test_baselines_use_the_default_quantizer_and_a_named_one_on_request():
    space = resnet_space(QUANTIZER_KNOB)
    assert space.uniform_candidate(8) == {"quantizer.back": "uniform", "bits.back@uniform": 8, "bits.front": 8}
    assert space.uniform_candidate({"bits.back": 1, "bits.front": 4}, "binary") == {
        "quantizer.back": "binary",
        "bits.back@binary": 1,
        "bits.front": 4,
    }
    with pytest.raises(SpaceError, match=r"bits.back@binary: 4 is not among its choices \[1\]"):
        space.uniform_candidate(4, "binary")


CONDITIONAL = """
knobs:
  - name: bits.all
    layers: ["*"]
    bits: [4, 8]
  - name: activation_bits
    choices: [8, 32]
  - name: student.family
    choices: [null, xvector]
  - name: student.width
    range: {low: 0.25, high: 1.0, step: 0.25}
    when: {student.family: {ne: null}}
  - name: distill.taps
    choices: [[embedding], [layer2, embedding]]
    when: {student.width: {lt: 1.0}}
  - name: distill.weight
    range: {low: 0.1, high: 10, log: true}
    when: {student.width: {lt: 1.0}}
  - name: distill.mode
    choices: [sum, concat]
    when: {student.width: {lt: 1.0}}
  - name: share
    choices: [false, true]
"""


def test_conditional_knobs_exist_only_when_their_condition_holds():
    space = resnet_space(CONDITIONAL)
    trials = random_trials(space, 60)
    for candidate in trials:
        has_student = candidate["student.family"] is not None
        assert ("student.width" in candidate) == has_student
        distilled = has_student and candidate["student.width"] < 1.0
        assert {"distill.taps", "distill.weight", "distill.mode"} <= set(candidate) if distilled else not any(
            name.startswith("distill.") for name in candidate
        )
        space.plan(candidate)
    assert any("distill.weight" in candidate for candidate in trials)
    assert any(candidate["student.family"] is None for candidate in trials)


def test_plan_compiles_student_distillation_activations_and_sharing():
    space = resnet_space(CONDITIONAL)
    candidate = {
        "bits.all": 4,
        "activation_bits": 8,
        "student.family": "xvector",
        "student.width": 0.5,
        "distill.taps": "layer2+embedding",
        "distill.weight": 2.5,
        "distill.mode": "concat",
        "share": True,
    }
    plan = space.plan(candidate)
    assert plan.layers["layer2.0.conv1"] == LayerQuantization(4, "uniform") and len(plan.layers) == len(space.layers)
    assert plan.activation_bits == 8 and plan.share is True
    assert plan.student == StudentPlan("xvector", 0.5, 1.0)
    assert plan.distillation == DistillationPlan(("layer2", "embedding"), 2.5, "concat")
    teacher_only = space.plan({"bits.all": 8, "activation_bits": 32, "student.family": None, "share": False})
    assert teacher_only.student is None and teacher_only.distillation is None and teacher_only.activation_bits == 32


def test_plan_replays_the_conditions_on_the_candidate():
    space = resnet_space(CONDITIONAL)
    full_width = {"bits.all": 4, "activation_bits": 8, "student.family": "xvector", "student.width": 1.0, "share": False}
    assert space.plan(full_width).distillation is None
    with pytest.raises(SpaceError, match=r"unknown \['distill.weight'\]"):
        space.plan({**full_width, "distill.weight": 1.0})
    with pytest.raises(SpaceError, match=r"missing \['distill.mode', 'distill.taps', 'distill.weight'\]"):
        space.plan({**full_width, "student.width": 0.5})
    with pytest.raises(SpaceError, match=r"candidate student.width=0.6: not among the choices 0.25..1 step 0.25"):
        space.plan({**full_width, "student.width": 0.6})


def test_size_follows_conditions_and_is_infinite_with_a_continuous_range():
    discrete = resnet_space(
        """
knobs:
  - {name: bits.all, layers: ["*"], bits: [4, 8]}
  - {name: activation_bits, choices: [8, 32]}
  - {name: share, choices: [false, true], when: {activation_bits: 8}}
  - {name: student.width, range: {low: 0.5, high: 1.0, step: 0.25}, when: {share: true}}
"""
    )
    # bits 2 x (activation 32: 1 + activation 8: (share false: 1 + share true: 3 widths))
    assert discrete.size == 2 * (1 + (1 + 3))
    assert resnet_space(CONDITIONAL).size == float("inf")


def test_optuna_samplers_run_the_conditional_space():
    knobs = CONDITIONAL.replace(
        "knobs:\n  - name: bits.all\n    layers: [\"*\"]\n    bits: [4, 8]",
        "knobs:\n  - {name: quantizer.all, layers: ['*'], quantizer: [uniform, kmeans, binary]}\n"
        "  - {name: bits.all, layers: ['*'], bits: [1, 4, 8]}",
    )
    space = resnet_space(knobs)
    assert "bits.all@binary" in space.knobs
    for sampler in (optuna.samplers.NSGAIISampler(population_size=4, seed=0), optuna.samplers.TPESampler(seed=0)):
        for candidate in random_trials(space, 12, sampler):
            plan = space.plan(candidate)
            assert all(layer.bits in QUANTIZERS[layer.quantizer].allowed_bits for layer in plan.layers.values())


def test_candidate_from_row_keeps_the_parameters():
    space = resnet_space(QUANTIZER_KNOB)
    row = {"trial": 3, "status": "complete", "quantizer.back": "binary", "bits.back@binary": 1, "bits.back@uniform": "",
           "bits.front": 8, "eer": 0.1}
    candidate = space.candidate_from_row(row)
    assert candidate == {"quantizer.back": "binary", "bits.back@binary": 1, "bits.front": 8}
    assert space.plan(candidate).layers["embedding"] == LayerQuantization(1, "binary")


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "knobs:\n  - {name: bits.a, layers: ['stm*'], bits: [4]}\n",
            'space.knobs[bits.a].layers: pattern "stm*" matches no quantizable layer of resnet; layers: stem.0, layer1.0.conv1',
        ),
        (
            "knobs:\n  - {name: bits.a, layers: ['layer1.conv1'], bits: [4]}\n",
            'space.knobs[bits.a].layers: "layer1.conv1" is not a quantizable layer of resnet',
        ),
        ("knobs:\n  - {name: bits.a, groups: [layer5], bits: [4]}\n", "space.knobs[bits.a].groups: unknown group 'layer5' of resnet"),
        (
            "knobs:\n  - {name: bits.a, layers: ['*'], bits: [1, 4]}\n",
            "space.knobs[bits.a].bits: 1 bits not supported by quantizer 'uniform'; uniform allows [2, 3, 4, 5, 6, 7, 8]",
        ),
        (
            "knobs:\n  - {name: quantizer.a, layers: ['*'], quantizer: [uniform, pow2]}\n  - {name: bits.a, layers: ['*'], bits: [1, 4]}\n",
            "space.knobs[bits.a].bits: 1 bits not supported by quantizer 'pow2' + 'uniform'",
        ),
        (
            "knobs:\n  - {name: quantizer.a, layers: ['*'], quantizer: [uniform, binary]}\n  - {name: bits.a, layers: ['*'], bits: [2, 4]}\n",
            "space.knobs[bits.a].bits: quantizer 'binary' allows none of [2, 4]; binary allows [1] (quantizers chosen by quantizer.a)",
        ),
        (
            "knobs:\n  - {name: bits.a, layers: ['layer1.*'], bits: [4]}\n  - {name: bits.b, groups: [layer1], bits: [8]}\n",
            "space.knobs[bits.b]: layer 'layer1.0.conv1' is also set by bits knob 'bits.a'",
        ),
        (
            "bits: [4]\nknobs:\n  - {name: quantizer.a, layers: ['*'], quantizer: [uniform]}\n  - {name: quantizer.b, groups: [stem], quantizer: [pow2]}\n",
            "space.knobs[quantizer.b]: layer 'stem.0' is also set by quantizer knob 'quantizer.a'",
        ),
        (
            "knobs:\n  - {name: bits.a, groups: [stem], bits: [4]}\n  - {name: quantizer.a, groups: [embedding], quantizer: [pow2]}\n",
            "space.knobs[quantizer.a]: no bits knob covers its layers ['embedding']",
        ),
        (
            "knobs:\n  - {name: bits.a, layers: ['*'], bits: [4]}\n  - {name: distill.taps, choices: [[frame9]]}\n",
            "space.knobs[distill.taps].choices: unknown tap 'frame9' of resnet; taps: ['stem', 'layer1'",
        ),
        (
            "knobs:\n  - {name: bits.layer1, groups: [stem], bits: [4]}\n  - {name: bits, groups: [layer1], granularity: stage, bits: [8]}\n",
            "space.knobs[bits]: knob name 'bits.layer1' is already used by space.knobs[bits.layer1]",
        ),
        (
            "knobs:\n  - {name: bits.a, layers: ['*'], bits: [1, 4]}\n  - {name: quantizer.a, layers: ['*'], quantizer: [uniform, kmeans]}\n",
            "space.knobs[bits.a]: its bit widths depend on the quantizer chosen by quantizer.a; declare quantizer.a before it",
        ),
        (
            "baselines: [6]\nknobs:\n  - {name: bits.a, layers: ['*'], bits: [4, 8]}\n",
            "space.baselines: uniform 6 bits: bits.a: 6 is not among its choices [4, 8]",
        ),
    ],
)
def test_space_errors_against_the_model_name_the_knob(text, message):
    with pytest.raises(SpaceError) as raised:
        resnet_space(text)
    assert message in str(raised.value)


@pytest.mark.parametrize("spec", [RESNET, XVECTOR, ECAPA], ids=lambda spec: spec.family)
def test_space_reads_each_familys_taps_from_forward_with_taps(spec):
    model = spec.build()
    space = SearchSpace.for_model(SpaceConfig(), spec, model)
    with torch.no_grad():
        embedding, taps = model.eval().forward_with_taps(spec.one_second_input())
    assert space.taps == tuple(taps) and "embedding" in space.taps
    assert torch.equal(embedding, model(spec.one_second_input()))
    assert space.family == spec.family and space.size == 7 ** len(model.layer_groups())
