"""The user docs read as a product's: the README is short and opens with what a newcomer needs, no doc speaks
of how the work was organised, and every relative link points at a file that exists."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
USER_DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# words about how the project was worked on, not about what it does; text in `code` is exempt (API names such
# as peft's merge_and_unload), and so is CHANGELOG.md, which is the history
HISTORY = re.compile(r"\b(issues?|sessions?|lent|rounds?|merges?|merged|merging|final code|ci run|\.ci/run|"
                     r"this task|earlier machine|no gpu machine|was lent|so far|not yet measured|to correct)\b",
                     re.IGNORECASE)


def prose(path: Path) -> str:
    """The doc without fenced code blocks and inline code spans."""
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.DOTALL)
    return re.sub(r"`[^`\n]*`", "", text)


@pytest.mark.parametrize("path", USER_DOCS, ids=lambda p: p.name)
def test_no_doc_speaks_of_how_the_work_was_organised(path):
    hits = [(n, m.group(0)) for n, line in enumerate(prose(path).splitlines(), 1) for m in HISTORY.finditer(line)]
    assert not hits, f"{path.name}: history words (CHANGELOG.md is the place for them): {hits[:10]}"


def test_history_lint_catches_a_history_word(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text("Fixed in this round. `merge_and_unload` is an API name.\n")
    assert [m.group(0) for m in HISTORY.finditer(prose(doc))] == ["round"]


def test_readme_is_short_and_its_first_screen_holds_the_essentials():
    text = (ROOT / "README.md").read_text()
    assert len(re.findall(r"\S+", text)) <= 1100
    first_screen = "\n".join(text.splitlines()[:60])
    for needed in ("make run", "make test", "MFN", "BWT", "synthetic", "tiny"):
        assert needed in first_screen, needed


@pytest.mark.parametrize("path", USER_DOCS + [ROOT / "CHANGELOG.md"], ids=lambda p: p.name)
def test_relative_links_point_at_files_that_exist(path):
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text()):
        if "://" not in target and not target.startswith("mailto:"):
            assert (path.parent / target).exists(), f"{path.name} links to {target}, which does not exist"
