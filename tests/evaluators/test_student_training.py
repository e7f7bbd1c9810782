import numpy as np
import pytest
import torch

from evaluators.verification_fidelity import VerificationFidelity
from evaluators.finetune_data import FineTuneData
from evaluators.finetune_loss import speaker_centroids
from evaluators.metrics import verification_metrics
from evaluators.student_training import DistillationConfig, StudentTrainer, trains_student
from evaluators.training import TeacherConfig, TrainingError, embed_utterances, train_speaker_model
from spaces.compress import ModelSpec, compress, load_packed_model, rebuild_compressed
from spaces.plan import CompressionPlan, DistillationPlan, LayerQuantization, StudentPlan
from spaces.quant.integer_activations import activation_quantizers
from spaces.quant.qat import fake_quantized_layers

BINS = 16
VOICE_BINS = 8
SPEC = ModelSpec("xvector", dict(num_mel_bins=BINS, channels=32, pooling_channels=48, embedding_dim=16), BINS, 100, 16000)
FIDELITY = VerificationFidelity(steps=(0, 20, 40), batch_size=16, crop_frames=40)


def speaker_features(speakers: int, utterances: int, seed: int) -> tuple[list[torch.Tensor], list[int]]:
    """Utterances of `speakers` voices: a spectral shape in the first bins, masked by a larger
    per-utterance channel offset in the others, so a random network tells voices apart poorly."""
    generator = torch.Generator().manual_seed(seed)
    voices = torch.zeros(speakers, BINS)
    voices[:, :VOICE_BINS] = 3.0 * torch.randn(speakers, VOICE_BINS, generator=generator)
    features, labels = [], []
    for speaker in range(speakers):
        for utterance in range(utterances):
            channel = torch.zeros(BINS)
            channel[VOICE_BINS:] = 3.0 * torch.randn(BINS - VOICE_BINS, generator=generator)
            frames = 50 + 10 * (utterance % 3)
            features.append(voices[speaker] + channel + torch.randn(frames, BINS, generator=generator))
            labels.append(speaker)
    return features, labels


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models gain nothing from threads, and lose much on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def teacher(one_thread):
    """A teacher trained on 8 voices, data with its centroids, and 8 unseen test voices."""
    from evaluators.features import FeatureSet

    features, labels = speaker_features(8, 6, seed=0)
    train = FeatureSet(features, labels, [str(label) for label in labels], [str(i) for i in range(len(labels))])
    torch.manual_seed(0)
    model = SPEC.build()
    state = train_speaker_model(model, 16, train, TeacherConfig(steps=60, batch_size=16, crop_frames=40), seed=0)
    data = FineTuneData(features, labels, speaker_centroids(model, features, labels))
    return state, data, speaker_features(8, 5, seed=1)


def equal_error_rate(model: torch.nn.Module, test: tuple[list[torch.Tensor], list[int]]) -> float:
    embeddings = embed_utterances(model, test[0]).numpy()
    return verification_metrics(embeddings, np.asarray(test[1]), 10_000, 0).eer


def trainer(
    teacher, plan: CompressionPlan, config: DistillationConfig = DistillationConfig(), fidelity=FIDELITY, seed: int = 0
):
    state, data, _ = teacher
    return StudentTrainer(SPEC, state, plan, data, fidelity, config, seed=seed)


NARROW = StudentPlan("xvector", 0.5, 0.6)


def test_a_short_distillation_run_improves_the_students_eer_over_its_random_init(teacher):
    """Over three seeds (one EER on 40 test utterances is noisy): every student improves, by 5 points on average."""
    test = teacher[2]
    plan = CompressionPlan(student=NARROW, distillation=DistillationPlan(("frame3", "embedding")))
    pairs = []
    for seed in range(3):
        student = trainer(teacher, plan, DistillationConfig(init="random"), seed=seed)
        before = equal_error_rate(student.compressed().model, test)
        student.train_to(40)
        pairs.append((before, equal_error_rate(student.compressed().model, test)))
    assert all(after < before for before, after in pairs), pairs
    assert np.mean([before - after for before, after in pairs]) > 0.05, pairs


def test_a_short_distillation_run_lowers_the_distillation_loss(teacher):
    plan = CompressionPlan(student=NARROW, distillation=DistillationPlan(("frame5", "embedding"), mode="concat"))
    student = trainer(teacher, plan, DistillationConfig(init="random", task_weight=0.0))
    crops = torch.stack([features[:40] for features in teacher[1].features[::6]])

    def distillation_loss() -> float:
        student.student.eval()
        with torch.no_grad():
            return student.distillation(
                student.student.forward_with_taps(crops)[1], student.teacher.forward_with_taps(crops)[1]
            ).item()

    before = distillation_loss()
    student.train_to(20)
    assert distillation_loss() < 0.7 * before


def test_rungs_continue_training_instead_of_restarting(teacher):
    plan = CompressionPlan(student=NARROW, distillation=DistillationPlan(("embedding",)))
    stepped, direct = trainer(teacher, plan), trainer(teacher, plan)
    stepped.train_to(5)
    stepped.train_to(10)
    direct.train_to(10)
    for key, value in direct.student.state_dict().items():
        assert torch.equal(value, stepped.student.state_dict()[key]), key
    with pytest.raises(ValueError, match="back to 5 steps: 10 already done"):
        stepped.train_to(5)


def test_a_quantized_student_trains_quantization_aware_over_the_last_fraction(teacher):
    plan = CompressionPlan(
        layers={"frame1.conv": LayerQuantization(4), "frame5.conv": LayerQuantization(3, "kmeans")},
        student=NARROW,
        distillation=DistillationPlan(("embedding",), weight=2.0),
    )
    fidelity = VerificationFidelity(steps=(8,), batch_size=8, crop_frames=40)
    student = trainer(teacher, plan, DistillationConfig(quantized_fraction=0.25), fidelity)
    student.train_to(5)
    assert not student.quantizing and student.compressed().description.layer("frame1.conv").weight_bits == 4
    student.train_to(6)
    assert set(fake_quantized_layers(student.student)) == {"frame1.conv", "frame3.conv"}  # frame3: the student's last
    student.train_to(8)
    compressed = student.compressed()
    assert compressed.description.layer("frame3.conv").weight_bits == 3
    assert compressed.description.layer("frame3.conv").quantizer == "kmeans"
    features = torch.randn(2, 50, BINS)
    rebuilt = load_packed_model(student.spec, compressed.packed)
    assert torch.allclose(rebuilt(features), compressed.model(features), atol=1e-5)
    student.train_to(8)  # the snapshot left the training model intact
    assert student.quantizing and student.student(features).shape == (2, 16)


@pytest.mark.parametrize("activation_bits", [8, 4])
def test_a_student_with_quantized_activations_calibrates_them_learns_their_steps_and_packs_them(teacher, activation_bits):
    state, data, _ = teacher
    layers = {name: LayerQuantization(8) for name in ("frame1.conv", "frame3.conv", "segment1")}
    plan = CompressionPlan(layers=layers, student=NARROW, distillation=DistillationPlan(("embedding",)), activation_bits=activation_bits)
    generator = torch.Generator().manual_seed(3)
    calibration = [torch.randn(4, 40, BINS, generator=generator) for _ in range(2)]
    fidelity = VerificationFidelity(steps=(2, 6), batch_size=8, crop_frames=40)
    student = StudentTrainer(SPEC, state, plan, data, fidelity, DistillationConfig(quantized_fraction=0.5), 0, calibration)
    student.train_to(2)
    assert not student.quantizing and not activation_quantizers(student.student)
    post_training = student.compressed()  # the student so far, quantized post-training with calibrated activations
    assert _steps(post_training.model) and {q.bits for q in activation_quantizers(post_training.model).values()} == {activation_bits}
    student.train_to(3)
    calibrated = _steps(student.student)  # attached with the fake-quantizers
    student.train_to(6)
    learned = _steps(student.student)
    assert calibrated.keys() == learned.keys() and calibrated != learned
    compressed = student.compressed()
    assert _steps(compressed.model) == learned
    assert {layer.activation_bits for layer in compressed.description.layers} == {activation_bits}
    rebuilt = rebuild_compressed(student.spec, compressed.packed, activation_bits=activation_bits)
    features = torch.randn(2, 50, BINS, generator=generator)
    with torch.no_grad():
        assert torch.equal(rebuilt.model(features), compressed.model(features))


def _steps(model):
    return {point: quantizer.step.item() for point, quantizer in activation_quantizers(model).items()}


def test_shared_student_trains_one_set_of_codes_and_packs_it_once(teacher):
    layers = {f"frame{index}.conv": LayerQuantization(4) for index in range(1, 6)}
    deep = StudentPlan("xvector", 0.5, 1.4)
    sizes = {}
    for share in (False, True):
        plan = CompressionPlan(layers=layers, student=deep, distillation=DistillationPlan(("embedding",)), share=share)
        student = trainer(teacher, plan, fidelity=VerificationFidelity(steps=(4,), batch_size=8, crop_frames=40))
        student.train_to(4)
        quantizers = fake_quantized_layers(student.student)
        compressed = student.compressed()
        sizes[share] = compressed.description.size_bytes
    assert quantizers["frame5.conv"] is quantizers["frame4.conv"]  # frame4..frame6 are tied 1x1 layers
    assert compressed.description.layer("frame5.conv").shared_with == "frame4.conv"
    assert compressed.model.frame5.conv.weight is compressed.model.frame4.conv.weight
    assert sizes[True] < sizes[False]


def test_distilling_into_the_teachers_own_architecture_quantizes_from_the_first_step(teacher):
    plan = CompressionPlan(layers={"frame2.conv": LayerQuantization(2)}, distillation=DistillationPlan(("frame4",)))
    assert trains_student(plan) and not trains_student(CompressionPlan(layers=plan.layers))
    student = trainer(teacher, plan)
    assert student.quantizing  # TinyWASE: the full-precision teacher is the target of the quantized model
    first = student.compressed()
    assert first.description.layer("frame2.conv").weight_bits == 2
    assert first.description.params == compress(SPEC, teacher[0], {}).description.params


def test_training_without_any_loss_is_a_clear_error(teacher):
    with pytest.raises(TrainingError, match="without a loss"):
        trainer(teacher, CompressionPlan(student=NARROW), DistillationConfig(task_weight=0.0))


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("init", "copy", "distillation.init='copy': expected one of \\['slice', 'random'\\]"),
        ("learning_rate", 0.0, "distillation.learning_rate=0.0: must be > 0"),
        ("quantized_fraction", 1.5, "distillation.quantized_fraction=1.5: must be in \\[0, 1\\]"),
        ("frame_loss", "dtw", "distillation.frame_loss='dtw'"),
    ],
)
def test_bad_distillation_settings_are_clear_errors(key, value, message):
    with pytest.raises(ValueError, match=message):
        DistillationConfig(**{key: value})
