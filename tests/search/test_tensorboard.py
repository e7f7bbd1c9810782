import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import api_pb2, metadata

from search.pareto import Objective, hypervolume_history, pareto_front
from search.run_dir import RunDirectory
from search.tensorboard import write_tensorboard
from search.tensorboard_figures import front_figures

OBJECTIVES = [Objective("eer", "min"), Objective("size_bytes", "min"), Objective("latency_ms", "min")]
REFERENCE = {
    "trial": "fp32", "status": "reference", "eer": 0.05, "min_dcf": 0.5, "size_bytes": 800_000.0, "latency_ms": 5.0
}
BOOKKEEPING = {"steps": 0, "feasible": True, "node": "f" * 56, "attempts": 1, "error": ""}
"""Columns of every finished row that are neither knob nor metric: kept out of the HParams table."""
TRIALS = [
    {"trial": 0, "status": "complete", "bits.stem": 8, "bits.layer1": 8, "bits.head": 8,
     "eer": 0.051, "min_dcf": 0.51, "size_bytes": 200_000.0, "latency_ms": 3.0, **BOOKKEEPING, "seconds": 1.5},
    {"trial": 1, "status": "complete", "bits.stem": 4, "bits.layer1": 4, "bits.head": 4,
     "eer": 0.060, "min_dcf": 0.55, "size_bytes": 100_000.0, "latency_ms": 3.1, **BOOKKEEPING, "seconds": 1.2},
    {"trial": 2, "status": "failed", "bits.stem": 2, "bits.layer1": 2, "bits.head": 2, "attempts": 2,
     "error": "ValueError: diverged", "seconds": None},
    {"trial": 3, "status": "complete", "bits.stem": 6, "bits.layer1": 3,
     "eer": 0.070, "min_dcf": 0.60, "size_bytes": 180_000.0, "latency_ms": 3.2, **BOOKKEEPING, "seconds": 1.1},
    {"trial": 4, "status": "complete", "bits.stem": 8, "bits.layer1": 2, "bits.head": 3,
     "eer": 0.090, "min_dcf": 0.70, "size_bytes": 90_000.0, "latency_ms": 3.0, **BOOKKEEPING, "seconds": 1.3},
    {"trial": 5, "status": "complete", "bits.stem": 3, "bits.layer1": 4, "bits.head": 6,
     "eer": 0.055, "min_dcf": 0.52, "size_bytes": 120_000.0, "latency_ms": 3.1, **BOOKKEEPING, "seconds": 1.4},
    {"trial": 12, "status": "complete", "bits.stem": 8, "bits.layer1": 4, "bits.head": 8,
     "eer": 0.080, "min_dcf": 0.65, "size_bytes": 190_000.0, "latency_ms": 3.3, **BOOKKEEPING, "seconds": 1.0},
    {"trial": 13, "status": "stopped", "bits.stem": 2, "bits.layer1": 2, "bits.head": 2,  # metrics of a lower rung
     "eer": 0.200, "min_dcf": 0.90, "size_bytes": 50_000.0, "latency_ms": 3.0, **BOOKKEEPING, "seconds": 0.5},
]
STATUS = {"complete": api_pb2.STATUS_SUCCESS, "stopped": api_pb2.STATUS_UNKNOWN, "failed": api_pb2.STATUS_FAILURE}
KNOBS = {"bits/stem": "bits.stem", "bits/layer1": "bits.layer1", "bits/head": "bits.head"}
METRIC_TAGS = {  # HParams metric tag -> (trials.csv column, factor): objectives first, then the rest
    "EER (%)": ("eer", 100), "size (kB)": ("size_bytes", 1e-3), "latency (ms)": ("latency_ms", 1),
    "minDCF": ("min_dcf", 1), "trial time (s)": ("seconds", 1),
}


def _make_run(path) -> RunDirectory:
    run = RunDirectory(path)
    run.write_config({"name": "synthetic", "objectives": [[o.metric, o.direction] for o in OBJECTIVES]})
    run.write_reference(REFERENCE)
    for row in TRIALS:
        run.append_trial(row)
    complete = [row for row in TRIALS if row["status"] == "complete"]
    members = [complete[index] for index in pareto_front(complete, OBJECTIVES)]
    run.write_pareto([{"metric": o.metric, "direction": o.direction} for o in OBJECTIVES], REFERENCE, members)
    run.write_hypervolume(hypervolume_history(TRIALS, OBJECTIVES, REFERENCE))
    return run


def _load(path) -> EventAccumulator:
    accumulator = EventAccumulator(str(path), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def _hparams_content(accumulator: EventAccumulator, tag: str) -> bytes:
    return accumulator.PluginTagToContent(metadata.PLUGIN_NAME)[tag]


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    run = _make_run(tmp_path_factory.mktemp("run"))
    return run, write_tensorboard(run)


def _session_start(root, row):
    accumulator = _load(root / "hparams" / f"trial-{row['trial']:04d}")
    return accumulator, metadata.parse_session_start_info_plugin_data(
        _hparams_content(accumulator, metadata.SESSION_START_INFO_TAG)
    )


def test_every_trial_has_a_session_with_its_knobs_as_integers_and_its_status(written):
    _, root = written
    for row in TRIALS:
        accumulator, start = _session_start(root, row)
        knobs = {name: value.string_value for name, value in start.hparams.items()}
        assert {name: knobs[name].strip() for name in KNOBS} == {name: str(row.get(key, 32)) for name, key in KNOBS.items()}
        assert knobs["bits"] == "/".join("f" if row.get(key, 32) == 32 else str(row[key]) for key in KNOBS.values())
        end = metadata.parse_session_end_info_plugin_data(_hparams_content(accumulator, metadata.SESSION_END_INFO_TAG))
        assert end.status == STATUS[row["status"]]


def test_sessions_are_named_by_zero_padded_trial_numbers_so_text_order_is_trial_order(written):
    _, root = written
    names = [_session_start(root, row)[1].group_name for row in TRIALS]
    assert names == [f"{row['trial']:04d}" for row in TRIALS] and sorted(names) == names


def test_metrics_are_in_display_units_at_the_trials_number_and_failed_trials_have_none(written):
    _, root = written
    for row in TRIALS:
        accumulator, _ = _session_start(root, row)
        if row["status"] == "failed":
            assert accumulator.Tags()["scalars"] == []
            continue
        for tag, (key, scale) in METRIC_TAGS.items():
            (event,) = accumulator.Scalars(tag)
            assert (event.step, event.value) == (row["trial"], pytest.approx(row[key] * scale, rel=1e-6))


def test_on_front_and_front_rank_mark_the_recorded_front_and_the_layers_behind_it(written):
    run, root = written
    members = {member["trial"] for member in run.read_pareto()["members"]}
    assert members == {0, 1, 4, 5}
    ranks = {}
    for row in TRIALS:
        if row["status"] != "failed":
            accumulator, _ = _session_start(root, row)
            (on_front,) = accumulator.Scalars("on_front")
            assert on_front.value == float(row["trial"] in members)
            has_rank = "front_rank" in accumulator.Tags()["scalars"]
            ranks[row["trial"]] = accumulator.Scalars("front_rank")[0].value if has_rank else None
    assert ranks == {0: 1, 1: 1, 3: 2, 4: 1, 5: 1, 12: 3, 13: None}  # a stopped trial may not enter the front


def test_experiment_summary_lists_knobs_without_bookkeeping_and_metrics_with_units(written):
    _, root = written
    accumulator = _load(root / "hparams")
    experiment = metadata.parse_experiment_plugin_data(_hparams_content(accumulator, metadata.EXPERIMENT_TAG))
    assert [info.name for info in experiment.hparam_infos] == ["bits", *KNOBS]
    assert all(info.type == api_pb2.DATA_TYPE_STRING for info in experiment.hparam_infos)
    head = next(info for info in experiment.hparam_infos if info.name == "bits/head")
    domain = [value.string_value for value in head.domain_discrete.values]
    assert domain == [" 2", " 3", " 4", " 6", " 8", "32"]  # sorted as text, in numeric order
    tags = [info.name.tag for info in experiment.metric_infos]
    assert tags == ["on_front", "front_rank", *METRIC_TAGS]
    assert [info.display_name for info in experiment.metric_infos][2:] == list(METRIC_TAGS)


def test_hypervolume_scalar_has_one_value_per_finished_trial_matching_the_csv(written):
    run, root = written
    events = _load(root / "search").Scalars("hypervolume")
    assert [event.step for event in events] == list(range(1, len(TRIALS) + 1))
    assert [event.value for event in events] == pytest.approx(run.read_hypervolume(), rel=1e-6)


def test_front_size_and_best_eer_under_size_budgets_per_step(written):
    _, root = written
    accumulator = _load(root / "search")
    assert [event.value for event in accumulator.Scalars("front_size")] == [1, 2, 2, 2, 3, 4, 4, 4]
    quarter = accumulator.Scalars("best_eer/size_le_fp32_div_4")
    assert [(event.step, event.value) for event in quarter] == [
        (1, pytest.approx(0.051)), (2, pytest.approx(0.051)), (3, pytest.approx(0.051)),
        (4, pytest.approx(0.051)), (5, pytest.approx(0.051)), (6, pytest.approx(0.051)), (7, pytest.approx(0.051)),
        (8, pytest.approx(0.051)),
    ]
    sixth = accumulator.Scalars("best_eer/size_le_fp32_div_6")
    assert [(event.step, event.value) for event in sixth] == [
        (2, pytest.approx(0.060)), (3, pytest.approx(0.060)), (4, pytest.approx(0.060)),
        (5, pytest.approx(0.060)), (6, pytest.approx(0.055)), (7, pytest.approx(0.055)),
        (8, pytest.approx(0.055)),
    ]


def test_pareto_figures_and_bits_heatmap_are_images(written):
    _, root = written
    accumulator = _load(root / "search")
    expected = {
        "pareto/eer_vs_size_bytes", "pareto/eer_vs_latency_ms", "pareto/size_bytes_vs_latency_ms", "front/bits_heatmap",
        "quality/eer_vs_size_bytes_by_quantizer",
    }
    assert set(accumulator.Tags()["images"]) == expected
    for tag in expected:
        (image,) = accumulator.Images(tag)
        assert image.step == len(TRIALS)
        assert image.encoded_image_string.startswith(b"\x89PNG")


def test_pareto_figure_axes_name_units_and_plot_values_in_them():
    members = [row for row in TRIALS if row["trial"] in (0, 1, 4, 5)]
    figure = front_figures(TRIALS, OBJECTIVES, REFERENCE, members)["pareto/eer_vs_size_bytes"]
    axes = figure.axes[0]
    assert (axes.get_xlabel(), axes.get_ylabel()) == ("size (kB)", "EER (%)")
    front = next(c for c in axes.collections if c.get_label() == "Pareto front")
    expected = sorted((row["size_bytes"] / 1e3, row["eer"] * 100) for row in members)
    assert sorted(front.get_offsets().tolist()) == [pytest.approx(point) for point in expected]


def test_quantizer_figure_has_one_series_per_quantizer_kind():
    complete = [dict(row, quantizer=kind) for row, kind in zip(
        [row for row in TRIALS if row["status"] == "complete"], ["uniform", "kmeans", "uniform", "pow2", "kmeans", "pow2"]
    )]
    figure = front_figures(complete, [Objective("eer", "min"), Objective("size_bytes", "min")], REFERENCE, [])[
        "quality/eer_vs_size_bytes_by_quantizer"
    ]
    labels = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert labels == ["kmeans", "pow2", "uniform"]


def test_writing_twice_replaces_instead_of_duplicating(tmp_path):
    run = _make_run(tmp_path)
    write_tensorboard(run)
    root = write_tensorboard(run)
    event_files = sorted(path.parent.relative_to(root).as_posix() for path in root.rglob("events.out.tfevents.*"))
    sessions = [f"hparams/trial-{row['trial']:04d}" for row in TRIALS]
    assert event_files == sorted(["hparams", "search", *sessions])
    for session in sessions:
        assert len(_load(root / session).Tensors(metadata.SESSION_START_INFO_TAG)) == 1
    assert len(_load(root / "search").Scalars("hypervolume")) == len(TRIALS)
