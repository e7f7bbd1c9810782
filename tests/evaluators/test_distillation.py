import pytest
import torch
from torch import nn

from evaluators.distillation import (
    DistillationError,
    DistillationLoss,
    align_time,
    check_distillation,
    match_taps,
)
from spaces.compress import ModelSpec
from spaces.plan import DistillationPlan, StudentPlan
from spaces.students import build_student

TEACHER = ModelSpec("xvector", dict(num_mel_bins=20, channels=32, pooling_channels=48, embedding_dim=16), 20, 100, 16000)
RESNET = ModelSpec("resnet", dict(num_mel_bins=20, base_width=4, blocks=(1, 1, 1, 1), embedding_dim=16), 20, 100, 16000)
PLANS = [
    DistillationPlan(("embedding",)),
    DistillationPlan(("frame3",)),
    DistillationPlan(("frame2", "frame5", "segment1")),
    DistillationPlan(("frame5", "embedding"), mode="concat"),
]
LOSS_SETTINGS = [("cosine", "frames"), ("relative_mse", "statistics")]


def taps_of(model: nn.Module, features: torch.Tensor) -> dict[str, torch.Tensor]:
    return model.eval().forward_with_taps(features)[1]


def frozen(taps: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: tap.detach() for name, tap in taps.items()}


@pytest.mark.parametrize("plan", PLANS, ids=lambda plan: f"{plan.mode}-{'+'.join(plan.taps)}")
@pytest.mark.parametrize(("utterance_loss", "frame_loss"), LOSS_SETTINGS)
def test_loss_is_zero_for_a_student_equal_to_its_teacher_and_positive_otherwise(plan, utterance_loss, frame_loss):
    torch.manual_seed(0)
    teacher = TEACHER.build()
    features = torch.randn(4, 40, 20)
    taps = taps_of(teacher, features)
    loss = DistillationLoss(plan, taps, taps, utterance_loss, frame_loss)
    assert len(list(loss.parameters())) == 0  # equal widths: no projection
    assert loss(taps, taps).item() == pytest.approx(0.0, abs=1e-6)
    other = taps_of(TEACHER.build(), features)
    assert loss(other, taps).item() > 0.01


@pytest.mark.parametrize(
    ("plan", "utterance_loss", "frame_loss"),
    [(plan, *LOSS_SETTINGS[index % 2]) for index, plan in enumerate(PLANS)],
    ids=lambda value: f"{value.mode}-{'+'.join(value.taps)}" if isinstance(value, DistillationPlan) else value,
)
def test_a_few_steps_lower_the_loss_of_a_narrow_shallow_student(plan, utterance_loss, frame_loss):
    torch.manual_seed(0)
    teacher = TEACHER.build().eval()
    _, student = build_student(TEACHER, StudentPlan("xvector", 0.5, 0.6))
    features = torch.randn(8, 40, 20)
    teacher_taps = frozen(taps_of(teacher, features))
    loss = DistillationLoss(plan, teacher_taps, taps_of(student, features), utterance_loss, frame_loss)
    if plan.taps != ("embedding",):  # the embedding keeps the teacher's size
        assert len(list(loss.parameters())) > 0  # narrower taps: learned projections
    student.train()
    optimizer = torch.optim.Adam([*student.parameters(), *loss.parameters()], lr=0.01)
    losses = []
    for _ in range(10):
        value = loss(student.forward_with_taps(features)[1], teacher_taps)
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
        losses.append(value.item())
    assert losses[-1] < 0.7 * losses[0]


def test_gradients_reach_the_student_and_projections_never_the_teacher():
    torch.manual_seed(0)
    teacher = TEACHER.build().eval()
    _, student = build_student(TEACHER, StudentPlan("xvector", 0.5))
    features = torch.randn(4, 40, 20)
    teacher_taps = taps_of(teacher, features)  # not detached: the loss itself must stop the gradient
    loss = DistillationLoss(DistillationPlan(("frame3", "embedding")), teacher_taps, taps_of(student, features))
    loss(student.train().forward_with_taps(features)[1], teacher_taps).backward()
    assert all(parameter.grad is None for parameter in teacher.parameters())
    assert student.frame1.conv.weight.grad is not None and student.frame1.conv.weight.grad.abs().sum() > 0
    assert all(parameter.grad is not None for parameter in loss.parameters())


def test_frame_level_taps_of_different_lengths_are_aligned_in_time():
    torch.manual_seed(0)
    teacher, student = RESNET.build().eval(), TEACHER.build().eval()
    features = torch.randn(2, 48, 20)
    teacher_taps, student_taps = taps_of(teacher, features), taps_of(student, features)
    assert teacher_taps["layer4"].shape[-1] == 6 and student_taps["frame5"].shape[-1] == 48
    loss = DistillationLoss(DistillationPlan(("layer4",)), teacher_taps, student_taps)
    assert loss.matched == {"layer4": "frame5"}
    assert torch.isfinite(loss(student_taps, teacher_taps))
    ramp = torch.linspace(0, 1, 48).repeat(1, 3, 1)
    assert torch.allclose(align_time(ramp, 6)[0, 0], torch.linspace(0, 1, 48).reshape(6, 8).mean(1), atol=1e-6)


def test_concatenation_matches_one_vector_of_every_tap():
    torch.manual_seed(0)
    teacher = TEACHER.build()
    _, student = build_student(TEACHER, StudentPlan("xvector", 0.5))
    features = torch.randn(2, 40, 20)
    plan = DistillationPlan(("frame2", "frame5", "embedding"), mode="concat")
    loss = DistillationLoss(plan, taps_of(teacher, features), taps_of(student, features))
    projection = loss.projections["concat"]
    assert (projection.in_features, projection.out_features) == (2 * 16 + 2 * 24 + 16, 2 * 32 + 2 * 48 + 16)


def test_taps_match_by_relative_depth_within_their_level():
    torch.manual_seed(0)
    features = torch.randn(2, 40, 20)
    teacher_taps = taps_of(TEACHER.build(), features)
    _, shallow = build_student(TEACHER, StudentPlan("xvector", 1.0, 0.6))
    names = ["frame1", "frame3", "frame5", "pooled", "embedding"]
    matched = match_taps(teacher_taps, taps_of(shallow, features), names)
    assert matched == dict(zip(names, ["frame1", "frame2", "frame3", "pooled", "embedding"]))
    same = match_taps(teacher_taps, teacher_taps, list(teacher_taps))
    assert same == {name: name for name in teacher_taps}


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        (DistillationPlan(("frame9",)), "distill.taps: unknown tap 'frame9'; available taps: \\['frame1'"),
        (DistillationPlan(()), "distill.taps: empty"),
        (DistillationPlan(("embedding", "embedding")), "a tap is named twice"),
        (DistillationPlan(("embedding",), mode="product"), "distill.mode='product': expected one of"),
        (DistillationPlan(("embedding",), weight=-1.0), "distill.weight=-1.0: must be >= 0"),
    ],
)
def test_bad_tap_names_modes_and_weights_are_clear_errors(plan, message):
    with pytest.raises(DistillationError, match=message):
        check_distillation(plan, ["frame1", "frame2", "embedding"])


def test_bad_loss_names_are_clear_errors():
    taps = taps_of(TEACHER.build(), torch.randn(2, 40, 20))
    with pytest.raises(DistillationError, match="utterance_loss='l1'"):
        DistillationLoss(DistillationPlan(("embedding",)), taps, taps, utterance_loss="l1")
    with pytest.raises(DistillationError, match="frame_loss='dtw'"):
        DistillationLoss(DistillationPlan(("embedding",)), taps, taps, frame_loss="dtw")
