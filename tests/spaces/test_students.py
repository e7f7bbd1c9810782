import pytest
import torch

from spaces.compress import ModelSpec, quantizable_layers
from spaces.models import build_model
from spaces.plan import LayerQuantization, StudentPlan
from spaces.students import SharedModelSpec, StudentError, build_student, student_layers, student_spec

XVECTOR = ModelSpec("xvector", dict(num_mel_bins=20, channels=32, pooling_channels=64, embedding_dim=16), 20, 100, 16000)
RESNET = ModelSpec("resnet", dict(num_mel_bins=20, base_width=8, blocks=(2, 2, 2, 2), embedding_dim=16), 20, 100, 16000)
ECAPA = ModelSpec(
    "ecapa_tdnn",
    dict(num_mel_bins=20, channels=32, embedding_dim=16, scale=4, se_channels=8, attention_channels=8, mfa_channels=48),
    20,
    100,
    16000,
)


def parameter_count(model: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


@pytest.mark.parametrize(
    ("width", "depth", "kwargs"),
    [
        (1.0, 1.0, dict(channels=32, pooling_channels=64, frame_layers=5)),
        (0.5, 1.0, dict(channels=16, pooling_channels=32, frame_layers=5)),
        (0.25, 0.6, dict(channels=8, pooling_channels=16, frame_layers=3)),
        (0.5, 1.4, dict(channels=16, pooling_channels=32, frame_layers=7)),
    ],
)
def test_xvector_students_have_the_parameter_count_of_their_arguments(width, depth, kwargs):
    spec, model = build_student(XVECTOR, StudentPlan("xvector", width, depth))
    assert {key: spec.kwargs[key] for key in kwargs} == kwargs and spec.kwargs["embedding_dim"] == 16
    reference = build_model("xvector", num_mel_bins=20, embedding_dim=16, **kwargs)
    assert parameter_count(model) == parameter_count(reference)
    assert model(torch.randn(2, 40, 20)).shape == (2, 16)


def test_resnet_depth_scales_every_stage_and_width_the_base():
    spec, model = build_student(RESNET, StudentPlan("resnet", 0.5, 0.5))
    assert spec.kwargs["base_width"] == 4 and spec.kwargs["blocks"] == (1, 1, 1, 1)
    reference = build_model("resnet", num_mel_bins=20, base_width=4, blocks=(1, 1, 1, 1), embedding_dim=16)
    assert parameter_count(model) == parameter_count(reference)
    assert student_spec(RESNET, StudentPlan("resnet", 1.0, 1.5)).kwargs["blocks"] == (3, 3, 3, 3)


def test_ecapa_channels_stay_a_multiple_of_the_scale_and_depth_sets_the_blocks():
    spec, model = build_student(ECAPA, StudentPlan("ecapa_tdnn", 0.3, 0.34))
    assert spec.kwargs["channels"] == 8 and spec.kwargs["channels"] % spec.kwargs["scale"] == 0
    assert spec.kwargs["blocks"] == 1 and spec.kwargs["mfa_channels"] == 14
    assert model(torch.randn(2, 40, 20)).shape == (2, 16)


def test_smaller_multipliers_give_fewer_parameters():
    counts = [parameter_count(build_student(ECAPA, StudentPlan("ecapa_tdnn", width, 1.0))[1]) for width in (1, 0.5, 0.25)]
    assert counts[0] == parameter_count(ECAPA.build()) and counts[0] > counts[1] > counts[2]


def test_student_of_another_family_scales_its_defaults_and_keeps_the_embedding_size():
    spec = student_spec(XVECTOR, StudentPlan("ecapa_tdnn", 0.125, 1.0))
    assert spec.family == "ecapa_tdnn" and spec.kwargs["channels"] == 64 and spec.kwargs["mfa_channels"] == 192
    assert spec.kwargs["embedding_dim"] == 16 and spec.num_mel_bins == 20


def test_sliced_student_starts_from_the_teachers_leading_channels():
    torch.manual_seed(0)
    teacher = XVECTOR.build()
    _, student = build_student(XVECTOR, StudentPlan("xvector", 0.5, 1.0), teacher.state_dict())
    assert torch.equal(student.frame2.conv.weight, teacher.frame2.conv.weight[:16, :16])
    assert torch.equal(student.frame2.norm.running_var, teacher.frame2.norm.running_var[:16])
    assert torch.equal(student.embedding.weight, teacher.embedding.weight)
    _, full = build_student(XVECTOR, StudentPlan("xvector"), teacher.state_dict())
    features = torch.randn(2, 40, 20)
    assert torch.equal(full.eval()(features), teacher.eval()(features))


def test_random_student_differs_from_the_teacher():
    torch.manual_seed(0)
    teacher = XVECTOR.build()
    _, student = build_student(XVECTOR, StudentPlan("xvector"))
    assert not torch.equal(student.frame2.conv.weight, teacher.frame2.conv.weight)


def test_shared_student_is_built_tied_and_keeps_the_first_blocks_slice():
    teacher = RESNET.build()
    spec, student = build_student(RESNET, StudentPlan("resnet"), teacher.state_dict(), share=True)
    assert isinstance(spec, SharedModelSpec)
    assert student.layer1[1].conv1.weight is student.layer1[0].conv1.weight
    assert torch.equal(student.layer1[1].conv1.weight, teacher.layer1[0].conv1.weight)
    rebuilt = spec.build()
    assert rebuilt.layer1[1].conv2.weight is rebuilt.layer1[0].conv2.weight


def test_plan_layers_carry_over_by_block_depth_then_by_name():
    teacher = XVECTOR.build()
    plan = {name: LayerQuantization(2 + index % 6, "uniform") for index, name in enumerate(quantizable_layers(teacher))}
    _, shallow = build_student(XVECTOR, StudentPlan("xvector", 0.5, 0.6))
    carried = student_layers(plan, teacher, shallow)
    assert list(carried) == quantizable_layers(shallow)
    assert carried["frame1.conv"] == plan["frame1.conv"] and carried["frame2.conv"] == plan["frame3.conv"]
    assert carried["frame3.conv"] == plan["frame5.conv"] and carried["embedding"] == plan["embedding"]
    _, deep = build_student(RESNET, StudentPlan("resnet", 0.5, 1.5))
    resnet_plan = {name: LayerQuantization(4) for name in quantizable_layers(RESNET.build()) if name.startswith("layer2.")}
    carried = student_layers(resnet_plan, RESNET.build(), deep)
    assert sorted(carried) == [name for name in quantizable_layers(deep) if name.startswith("layer2.")]
    _, other = build_student(XVECTOR, StudentPlan("resnet", 0.25))
    across = student_layers({"frame1.conv": LayerQuantization(8)}, teacher, other)  # by position in forward order
    assert across["stem.0"] == LayerQuantization(8) and "embedding" not in across


def test_tied_layers_follow_their_owners_quantization():
    _, student = build_student(RESNET, StudentPlan("resnet"), share=True)
    plan = {"layer1.0.conv1": LayerQuantization(4, "kmeans"), "layer1.1.conv1": LayerQuantization(8, "uniform")}
    carried = student_layers(plan, RESNET.build(), student)
    assert carried["layer1.1.conv1"] == LayerQuantization(4, "kmeans")


@pytest.mark.parametrize(
    ("student", "message"),
    [
        (StudentPlan("conformer"), "student.family='conformer': unknown family"),
        (StudentPlan("xvector", width=0.0), "student.width=0.0: must be > 0"),
        (StudentPlan("xvector", depth=-1.0), "student.depth=-1.0: must be > 0"),
    ],
)
def test_bad_students_are_clear_errors(student, message):
    with pytest.raises(StudentError, match=message.replace("(", r"\(").replace(".", r"\.")):
        build_student(XVECTOR, student)


def test_slicing_across_families_is_refused():
    with pytest.raises(StudentError, match="cannot slice a 'xvector' teacher"):
        build_student(XVECTOR, StudentPlan("resnet", 0.25), XVECTOR.build().state_dict())


def test_depth_arguments_set_the_blocks_and_their_taps():
    xvector = build_model("xvector", num_mel_bins=20, channels=8, pooling_channels=12, embedding_dim=16, frame_layers=3)
    taps = xvector.eval().forward_with_taps(torch.randn(2, 30, 20))[1]
    assert [name for name in taps if name.startswith("frame")] == ["frame1", "frame2", "frame3"]
    assert taps["frame3"].shape == (2, 12, 30) and xvector.frame3.conv.kernel_size == (1,)
    ecapa = build_model("ecapa_tdnn", **{**ECAPA.kwargs, "blocks": 2})
    taps = ecapa.eval().forward_with_taps(torch.randn(2, 30, 20))[1]
    assert [name for name in taps if name.startswith("block")] == ["block1", "block2"]
    assert ecapa.mfa.in_channels == 2 * 32 and ecapa.block2.res2.convs[0].conv.dilation == (3,)


@pytest.mark.parametrize(
    ("family", "kwargs", "message"),
    [("xvector", dict(frame_layers=1), "model.frame_layers=1: must be >= 2"), ("ecapa_tdnn", dict(blocks=0), "model.blocks=0")],
)
def test_impossible_depths_are_clear_errors(family, kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_model(family, **kwargs)
