import json

from rich.console import Console

from search.cli import main
from search.config import DEFAULT_CONFIG, load_config
from search.cost_report import cost_table, estimate_candidate

UNIFORM_4 = {f"bits.{group}": 4 for group in ("stem", "layer1", "layer2", "layer3", "layer4", "embedding")}


def test_quantized_candidate_costs_less_than_fp32_teacher():
    config = load_config(DEFAULT_CONFIG)
    fp32 = estimate_candidate(config, {}, "cortex-a72")
    four_bit = estimate_candidate(config, UNIFORM_4, "cortex-a72")
    assert four_bit.storage_bytes < fp32.storage_bytes / 6
    assert four_bit.latency_ms < fp32.latency_ms
    assert {layer.kernel_class for layer in four_bit.layers if layer.kind == "conv2d"} == {"lowbit"}


def test_show_prints_every_layer_for_each_target(capsys, tmp_path):
    candidate_file = tmp_path / "candidate.json"
    candidate_file.write_text(json.dumps(UNIFORM_4))
    assert main(["hwcost", "show", "--target", "cortex-a53", "--candidate", str(candidate_file)]) == 0
    out = capsys.readouterr().out
    assert "candidate on cortex-a53" in out and "layer4.0.conv2" in out and "lowbit" in out and "total" in out


def test_show_rejects_bad_candidate_and_target(capsys):
    assert main(["hwcost", "show", "--candidate", '{"bits.stem": 8}']) == 2
    assert "missing ['bits.embedding'" in capsys.readouterr().err
    assert main(["hwcost", "show", "--candidate", "{not json"]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    assert main(["hwcost", "show", "--target", "pentium"]) == 2
    assert "--target: unknown target 'pentium'" in capsys.readouterr().err


def test_show_fits_100_columns_and_wraps_long_layer_names_after_their_dots():
    config = load_config("extraction")  # layer names up to 34 characters
    estimate = estimate_candidate(config, {}, "cortex-a72")
    console = Console(width=100, record=True)
    console.print(cost_table(estimate, "FP32 teacher on cortex-a72", console.width))
    lines = console.export_text().splitlines()
    assert max(len(line) for line in lines) <= 100 and "…" not in "".join(lines)
    names = [line[: line.index(" ", 1)].strip() for line in lines if line.startswith(" ") and line[1:2].strip()]
    joined = "\n".join(names).replace(".\n", ".")  # a wrapped name continues on the next line after a dot
    assert all(layer.name in joined.split("\n") for layer in estimate.layers)
    assert any(len(layer.name) > 20 for layer in estimate.layers)
    assert "eltwise: elementwise" in " ".join(lines)
