"""The `space:` YAML language parsed and checked without a model (spaces/space_language.py, spaces/knobs.py)."""

import math

import pytest
import yaml

from spaces.knobs import UNSET, Condition, KnobConfig, Range, SpaceError
from spaces.space_language import DEFAULT_BITS, SpaceConfig, parse_space_config

FULL = """
quantizer: uniform
baselines: [8, 4]
knobs:
  - name: bits.front
    layers: ["stem*", "layer1.*"]
    bits: [4, 6, 8, 32]
  - name: quantizer.back
    groups: [layer3, layer4]
    granularity: stage
    quantizer: [uniform, pow2, kmeans]
  - name: activation_bits
    choices: [8, 32]
  - name: student.family
    choices: [null, xvector]
  - name: student.width
    range: {low: 0.25, high: 1, step: 0.25}
    default: 1
    when: {student.family: {ne: null}}
  - name: distill.taps
    choices: [[embedding], [frame3, embedding], pooled+embedding]
    when: {student.width: {lt: 1.0}}
  - name: distill.weight
    range: {low: 0.1, high: 10, log: true}
    when: {student.family: xvector}
  - name: distill.mode
    choices: [sum, concat]
  - name: share
    choices: [false, true]
"""


def parse(text: str) -> SpaceConfig:
    return parse_space_config(yaml.safe_load(text))


def test_missing_block_is_the_shorthand_with_default_bits_per_stage():
    config = parse_space_config(None)
    assert config == SpaceConfig()
    (knob,) = config.all_knobs
    assert (knob.name, knob.role, knob.domain, knob.layers, knob.granularity) == ("bits", "bits", DEFAULT_BITS, ("*",), "stage")


def test_shorthand_keeps_its_bits_and_granularity():
    (knob,) = parse("bits: [4, 8]\ngranularity: layer\nbaselines: [8]\n").all_knobs
    assert knob.domain == (4, 8) and knob.granularity == "layer"


def test_knobs_parse_into_typed_domains_and_conditions():
    knobs = {knob.name: knob for knob in parse(FULL).knobs}
    assert knobs["bits.front"] == KnobConfig("bits.front", "bits", (4, 6, 8, 32), layers=("stem*", "layer1.*"))
    assert knobs["quantizer.back"].groups == ("layer3", "layer4") and knobs["quantizer.back"].granularity == "stage"
    assert knobs["student.family"].domain == (None, "xvector")
    assert knobs["student.width"].domain == Range(0.25, 1.0, 0.25)
    assert knobs["student.width"].default == 1.0 and isinstance(knobs["student.width"].default, float)
    assert knobs["student.width"].when == (Condition("student.family", "ne", None),)
    assert knobs["distill.taps"].domain == ("embedding", "frame3+embedding", "pooled+embedding")
    assert knobs["distill.weight"].domain == Range(0.1, 10.0, None, log=True)
    assert knobs["distill.weight"].when == (Condition("student.family", "eq", "xvector"),)
    assert knobs["share"].domain == (False, True) and knobs["share"].default is UNSET


def test_knobs_replace_the_shorthand_bits_when_they_declare_bits():
    config = parse(FULL)
    assert [knob.name for knob in config.all_knobs] == [knob.name for knob in config.knobs]
    without_bits = parse("bits: [4, 8]\nknobs:\n  - {name: activation_bits, choices: [8]}\n")
    assert [knob.name for knob in without_bits.all_knobs] == ["bits", "activation_bits"]


def test_resolved_form_reads_back_to_an_equal_config():
    config = parse(FULL)
    assert parse_space_config(yaml.safe_load(yaml.safe_dump(config.to_dict()))) == config
    shorthand = parse("bits: [2, 4]\ngranularity: block\nbaselines: [4]\nside_bits: 16\n")
    assert shorthand.side_bits == 16
    assert parse_space_config(shorthand.to_dict()) == shorthand
    assert parse("bits: [4]\n").side_bits == 32


def test_ranges_count_their_values():
    assert Range(0.25, 1.0, 0.25).values() == (0.25, 0.5, 0.75, 1.0)
    assert Range(2, 8, integer=True).count == 7
    assert math.isinf(Range(0.1, 10.0, log=True).count)
    assert Range(0.25, 1.0, 0.25).contains(0.75) and not Range(0.25, 1.0, 0.25).contains(0.6)


@pytest.mark.parametrize(
    "operator, operand, value, holds",
    [
        ("eq", 8, 8, True),
        ("ne", None, "xvector", True),
        ("lt", 1.0, 1.0, False),
        ("le", 1.0, 1.0, True),
        ("gt", 0.5, 0.75, True),
        ("ge", 0.5, 0.25, False),
        ("in", ("uniform", "pow2"), "pow2", True),
        ("not_in", ("uniform", "pow2"), "pow2", False),
    ],
)
def test_conditions_compare_the_earlier_value(operator, operand, value, holds):
    assert Condition("knob", operator, operand).holds({"knob": value}) is holds


def test_condition_on_an_inactive_knob_never_holds():
    assert not Condition("student.width", "ne", 0.5).holds({})


KNOB = "knobs:\n  - {name: bits.all, layers: ['*'], bits: [4, 8]}\n"


@pytest.mark.parametrize(
    "text, message",
    [
        ("knobs:\n  - {name: bits.a, layers: ['*'], bits: []}\n", "space.knobs[bits.a].bits: empty choice list"),
        ("knobs:\n  - {name: activation_bits, choices: []}\n", "space.knobs[activation_bits].choices: empty choice list"),
        ("knobs:\n  - {name: student.width, range: {low: 1.0, high: 0.5}}\n", "space.knobs[student.width].range: low=1.0 > high=0.5"),
        ("knobs:\n  - {name: quantizer.a, layers: ['*'], quantizer: [uniform, fancy]}\n", "space.knobs[quantizer.a].quantizer='fancy': unknown quantizer"),
        ("knobs:\n  - {name: bits.a, layers: ['*'], bits: [4, 9]}\n", "space.knobs[bits.a].bits: impossible bit width 9"),
        (KNOB + "  - {name: bits.all, layers: ['x'], bits: [4]}\n", "space.knobs[bits.all]: duplicate knob name"),
        ("knobs:\n  - {name: share, choices: [true], when: {student.widht: {lt: 1}}}\n", "space.knobs[share].when: unknown knob 'student.widht'"),
        (
            "knobs:\n  - {name: share, choices: [true], when: {activation_bits: 8}}\n  - {name: activation_bits, choices: [8, 32]}\n",
            "space.knobs[share].when: unknown knob 'activation_bits'; a condition names a knob declared before it: []",
        ),
        ("knobs:\n  - {name: teacher.lr, choices: [1]}\n", "space.knobs[teacher.lr]: unknown knob"),
        ("knobs:\n  - {name: front, layers: ['*'], bits: [4]}\n", "space.knobs[front]: a bits knob is named `bits` or `bits.<label>`"),
        ("knobs:\n  - {name: bits.a, choices: [4]}\n", "space.knobs[bits.a]: a bits knob lists its values under `bits:`"),
        ("knobs:\n  - {name: bits, layers: ['*'], bits: [4]}\n", "space.knobs[bits]: name it `bits.<label>`"),
        ("knobs:\n  - {name: bits.a, bits: [4]}\n", "space.knobs[bits.a]: a bits knob addresses layers"),
        ("knobs:\n  - {name: bits.a, layers: ['*'], granularity: channel, bits: [4]}\n", "space.knobs[bits.a].granularity='channel'"),
        ("knobs:\n  - {name: share, layers: ['*'], choices: [true]}\n", "space.knobs[share].layers: only bits and quantizer knobs"),
        ("knobs:\n  - {name: bits.a, layers: ['*'], bits: [4], range: {low: 1, high: 2}}\n", "needs exactly one of"),
        ("knobs:\n  - {name: bits.a, layer: ['*'], bits: [4]}\n", "space.knobs[bits.a]: unknown key 'layer'"),
        ("knobs:\n  - {layers: ['*'], bits: [4]}\n", "space.knobs[0]: each knob is a mapping with a `name`"),
        ("knobs:\n  - {name: activation_bits, choices: [8, 9]}\n", "space.knobs[activation_bits].choices: 9: activation bits must be one of"),
        ("knobs:\n  - {name: share, range: {low: 0, high: 1}}\n", "space.knobs[share].range: share takes a list of choices"),
        ("knobs:\n  - {name: student.width, range: {low: 0.25, high: 1, step: 0.3}}\n", "is not a multiple of step=0.3"),
        ("knobs:\n  - {name: distill.weight, range: {low: 0, high: 1, log: true}}\n", "a log range needs low > 0"),
        ("knobs:\n  - {name: student.width, choices: [0.5, 0]}\n", "space.knobs[student.width].choices: 0.0: must be > 0"),
        ("knobs:\n  - {name: student.family, choices: [vgg]}\n", "space.knobs[student.family].choices: 'vgg': unknown family"),
        ("knobs:\n  - {name: distill.mode, choices: [mean]}\n", "space.knobs[distill.mode].choices: 'mean': expected one of"),
        ("knobs:\n  - {name: distill.taps, choices: [[embedding, embedding]]}\n", "distinct tap names"),
        ("knobs:\n  - {name: share, choices: [true, true]}\n", "space.knobs[share].choices: duplicate choice True"),
        ("knobs:\n  - {name: share, choices: [true], default: false}\n", "space.knobs[share].default: False is not in the knob's domain"),
        (
            "knobs:\n  - {name: activation_bits, choices: [8, 32]}\n  - {name: share, choices: [true], when: {activation_bits: 4}}\n",
            "space.knobs[share].when.activation_bits: 4 is never a value of activation_bits [8, 32]",
        ),
        (
            "knobs:\n  - {name: distill.mode, choices: [sum]}\n  - {name: share, choices: [true], when: {distill.mode: {lt: 1}}}\n",
            "space.knobs[share].when.distill.mode: lt needs a numeric knob",
        ),
        (
            "knobs:\n  - {name: share, choices: [true]}\n  - {name: activation_bits, choices: [8], when: {share: {near: 1}}}\n",
            "unknown operator 'near'",
        ),
        (
            "knobs:\n  - {name: bits, layers: ['*'], granularity: stage, bits: [4]}\n  - {name: share, choices: [true], when: {bits: 4}}\n",
            "'bits' is expanded per stage",
        ),
        ("bits: [4, 8]\n" + KNOB, "space.bits: the shorthand builds bits knobs only when `knobs` has none"),
        ("granularity: layer\n" + KNOB, "space.granularity: the shorthand"),
        ("knobs: {name: share}\n", "space.knobs={'name': 'share'}: expected a list"),
        ("colour: red\n", "space: unknown key 'colour'"),
        ("side_bits: 8\n", "space.side_bits=8: expected one of [32, 16]"),
        ("quantizer: binary\nbaselines: [4]\nbits: [1]\n", "space.baselines: 4 bits not supported by quantizer 'binary'"),
        ("bits: [2, 4, 8]\nbaselines: [8, 6]\n", "space.baselines: 6 bits is not among space.bits [2, 4, 8]"),
    ],
)
def test_bad_space_names_the_knob(text, message):
    with pytest.raises(SpaceError) as raised:
        parse(text)
    assert message in str(raised.value)
