"""`search space CONFIG`: knobs, choices, matched layers and size, or a one-line error naming the knob."""

from pathlib import Path

from search.cli import main
from search.config import load_config
from search.space_report import build_space, size_text

CONFIGS = Path(__file__).resolve().parents[2] / "configs"

TINY = """
name: tiny
features: {num_mel_bins: 24}
model: {family: resnet, base_width: 4, blocks: [2, 1, 1, 1], embedding_dim: 16}
space:
  baselines: [8]
  knobs:
"""


def write(tmp_path: Path, knobs: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(TINY + knobs)
    return path


def test_demo_space_prints_its_knobs_layers_and_size(capsys):
    assert main(["space", str(CONFIGS / "demo.yaml")]) == 0
    out = capsys.readouterr().out
    assert "bits.layer3" in out and "[2, 3, 4, 5, 6, 8, 32]" in out and "layer3.0.shortcut.0" in out
    assert "size: 117,649 candidates" in out and "every quantizable layer has a bits knob" in out
    assert "fidelity ladder" in out


def test_patterns_their_matches_and_fp32_layers_are_printed(tmp_path, capsys):
    path = write(
        tmp_path,
        """    - {name: quantizer.back, groups: [layer4, embedding], quantizer: [uniform, binary]}
    - {name: bits.back, layers: ["layer4.*", "embedding"], bits: [1, 4, 8]}
    - {name: bits.front, layers: ["stem*", "layer1.*"], bits: [4, 8]}
    - {name: activation_bits, choices: [8, 32]}
    - {name: distill.weight, range: {low: 0.1, high: 10, log: true}, when: {activation_bits: 8}}
""",
    )
    assert main(["space", str(path)]) == 0
    out = capsys.readouterr().out
    assert "layer1.*" in out and "layer1.0.conv1, layer1.0.conv2, layer1.1.conv1, layer1.1.conv2" in out
    assert "bits.back@binary" in out and "bits.back@uniform" in out and "quantizer is binary" in out
    assert "activation_bits = 8" in out and "0.1..10 log" in out
    assert "FP32 in every candidate (no bits knob): layer2.0.conv1" in out
    assert "size: infinite (continuous: distill.weight)" in out


def test_size_of_a_discrete_knobs_space(tmp_path):
    path = write(
        tmp_path,
        """    - {name: quantizer.back, groups: [layer4, embedding], quantizer: [uniform, binary]}
    - {name: bits.back, layers: ["layer4.*", "embedding"], bits: [1, 4, 8]}
    - {name: share, choices: [false, true]}
""",
    )
    assert size_text(build_space(load_config(path))) == f"{(2 + 1) * 2:,} candidates"


def test_space_error_is_one_line_naming_the_knob_and_exit_2(tmp_path, capsys):
    path = write(tmp_path, '    - {name: bits.front, layers: ["stm*"], bits: [4, 8]}\n')
    assert main(["space", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err
    assert 'space.knobs[bits.front].layers: pattern "stm*" matches no quantizable layer of resnet' in err
