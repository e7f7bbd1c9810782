"""Packaging: ready configs are package data found by name, `search init`, `--version`, name clashes."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from search.cli import main
from search.config import DEFAULT_CONFIG, ConfigError, load_config
from search.config_init import write_starting_config
from search.name_clash import name_clashes, version
from search.ready_configs import config_source, ready_config_names, ready_configs_folder

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("search", "spaces", "evaluators", "hwcost")


def test_the_ready_configs_live_in_the_package_and_the_checkout_links_to_them():
    folder = ready_configs_folder()
    assert folder == ROOT / "search" / "configs" and (ROOT / "configs").resolve() == folder
    assert {"demo", "sv_resnet", "extraction"} <= set(ready_config_names())
    assert DEFAULT_CONFIG == folder / "demo.yaml"


def test_a_config_argument_is_a_file_first_then_a_ready_config_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert config_source("demo") == config_source("demo.yaml") == ready_configs_folder() / "demo.yaml"
    (tmp_path / "demo").write_text("name: local\n")
    assert config_source("demo") == Path("demo")  # a file in the working directory wins
    with pytest.raises(ConfigError, match="no ready config of that name; ready configs: demo, "):
        config_source("nonesuch")


def test_the_ready_configs_keep_nothing_relative_to_the_working_directory():
    """Their cache is the per-user one; their corpus paths are relative to their own folder."""
    for name in ready_config_names():
        text = (ready_configs_folder() / f"{name}.yaml").read_text()
        assert "cache_dir" not in text and "path: ../shared" not in text, name


@pytest.mark.parametrize("source", ["demo", "sv_an4"])
def test_init_writes_the_ready_config_under_a_new_name(source, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["init", "my-exp", "--from", source]) == 0
    assert "search run my-exp.yaml" in capsys.readouterr().out
    written, ready = load_config(tmp_path / "my-exp.yaml"), load_config(source)
    assert written.name == "my-exp"
    assert {**written.to_dict(), "name": ready.name} == ready.to_dict()  # relative paths kept their meaning
    assert (tmp_path / "my-exp.yaml").read_text().startswith("#")  # the comments came along


def test_init_refuses_to_overwrite_and_leaves_no_file_for_a_bad_name(tmp_path, capsys):
    path = write_starting_config("again", folder=tmp_path)
    with pytest.raises(ConfigError, match="already exists"):
        write_starting_config("again", folder=tmp_path)
    assert path.read_text().count("name: again") == 1
    with pytest.raises(ConfigError, match="characters; at most 100"):
        write_starting_config("x" * 101, folder=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again.yaml"]


def test_version_is_the_installed_distribution_s(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == f"search (speaker-compress) {version()}"
    assert version() != "unknown"


def test_an_installed_distribution_named_like_our_packages_is_warned_about(tmp_path, monkeypatch, capsys):
    assert name_clashes() == []
    metadata = tmp_path / "spaces-9.9.dist-info"
    metadata.mkdir()
    (metadata / "METADATA").write_text("Metadata-Version: 2.1\nName: spaces\nVersion: 9.9\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    (clash,) = name_clashes()
    assert clash.package == "spaces" and "'spaces' 9.9" in clash.owner
    with pytest.raises(SystemExit):
        main(["--version"])
    err = capsys.readouterr().err
    assert "warning: top-level package 'spaces' is also provided by the installed distribution 'spaces' 9.9" in err


def test_a_wheel_ships_the_ready_configs_and_finds_them_when_installed(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "wheel"), str(source)], check=True)
    (wheel,) = (tmp_path / "wheel").glob("*.whl")
    shipped = {Path(name).stem for name in zipfile.ZipFile(wheel).namelist() if name.startswith("search/configs/")}
    assert shipped == set(ready_config_names())
    site = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True)
    found = subprocess.run(
        [sys.executable, "-c", "from search.ready_configs import config_source; print(config_source('demo'))"],
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(found.stdout.strip()) == site / "search" / "configs" / "demo.yaml"
