"""The docs cannot go stale: generated tables match their JSON, links resolve, the README starts with set-up."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")


def _load_renderer():
    spec = importlib.util.spec_from_file_location("render_docs", ROOT / "benchmarks" / "render_docs.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


render_docs = _load_renderer()


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    return {_slug(line.lstrip("#")) for line in page.read_text().splitlines() if line.startswith("#")}


def _broken_links(page: Path) -> list[str]:
    """Relative links of `page` whose file (or heading anchor) does not exist."""
    broken = []
    for match in LINK.finditer(page.read_text()):
        target = match["target"]
        if re.match(r"[a-z]+:", target):
            continue
        path_part, _, anchor = target.partition("#")
        path = (page.parent / path_part).resolve() if path_part else page
        if not path.exists() or (anchor and path.suffix == ".md" and anchor not in _anchors(path)):
            broken.append(f"{page.relative_to(ROOT)}: {target}")
    return broken


def test_every_generated_table_matches_what_its_json_renders_to():
    stale = render_docs.stale_tables(render_docs.pages(), render_docs.Results())
    assert not stale, "run `.venv/bin/python benchmarks/render_docs.py`; stale:\n" + "\n".join(stale)


def test_check_mode_exits_zero_when_nothing_is_stale():
    assert render_docs.main(["--check"]) == 0


def test_check_mode_names_a_hand_edited_table(tmp_path):
    page = tmp_path / "page.md"
    rendered = render_docs.render_table("quant_table", render_docs.Results())
    page.write_text(f"<!-- table:quant_table -->\n{rendered.replace('FP32', 'fp32', 1)}<!-- /table -->\n")
    assert render_docs.stale_tables([page], render_docs.Results()) == [f"{page}: quant_table"]


def test_a_page_naming_an_unknown_table_is_reported(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("<!-- table:no_such_table -->\n<!-- /table -->\n")
    (stale,) = render_docs.stale_tables([page], render_docs.Results())
    assert "no_such_table" in stale and "unknown table" in stale


def test_an_unclosed_table_marker_is_reported(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("<!-- table:quant_table -->\n| a |\n")
    (stale,) = render_docs.stale_tables([page], render_docs.Results())
    assert "marker" in stale


def test_readme_starts_with_the_two_set_up_commands():
    lines = README.read_text().splitlines()
    body = [line for line in lines[1:] if line.strip()]
    assert lines[0].startswith("# ")
    assert body[0] == "```bash"
    assert body[1].startswith("make demo ")
    assert body[2].startswith("make test ")
    assert body[3] == "```"


def test_every_docs_link_in_the_readme_resolves():
    links = [match["target"] for match in LINK.finditer(README.read_text()) if match["target"].startswith("docs/")]
    assert links, "the README links no docs/ page"
    assert not _broken_links(README)


@pytest.mark.parametrize("page", sorted((ROOT / "docs").rglob("*.md")), ids=lambda page: page.name)
def test_every_relative_link_of_a_docs_page_resolves(page):
    assert not _broken_links(page)
