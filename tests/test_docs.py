"""The docs a newcomer reads can be trusted to lead somewhere: every link to a file of the
repository finds it (and the heading it names), and no doc, module or test points to a
document that is not in the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# Where the repository speaks of itself: the docs, the code, its tests and benchmarks.
SOURCES = [*DOCS, REPO / "sample_config.toml", REPO / "pyproject.toml",
           *sorted(path for folder in ("sellix_lite", "tests", "bench", "templates", "static")
                   for path in (REPO / folder).rglob("*")
                   if path.suffix in {".py", ".html", ".js", ".css", ".toml"})]
# A section sign, or the name of the document the sections were of (spelt so that this
# file does not match itself).
OUTSIDE_REFERENCE = re.compile(r"\u00a7|\bCONTRAC[T]\b")

FENCED_CODE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
HTML_ANCHOR = re.compile(r"<a\s+(?:id|name)=\"([^\"]+)\"")


def prose(text: str) -> str:
    """`text` without code, where brackets and parentheses are not links."""
    return INLINE_CODE.sub("", FENCED_CODE.sub("", text))


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: its words in lower case joined by hyphens, with
    markup and punctuation dropped."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor of a Markdown file: its headings' (repeats numbered as GitHub numbers
    them) and the explicit `<a id=...>` ones."""
    text = path.read_text()
    found, seen = set(), {}
    for heading in HEADING.findall(FENCED_CODE.sub("", text)):
        base = slug(heading)
        found.add(f"{base}-{seen[base]}" if base in seen else base)
        seen[base] = seen.get(base, 0) + 1
    return found | set(HTML_ANCHOR.findall(text))


def local_links(path: Path) -> list[str]:
    return [target for target in LINK.findall(prose(path.read_text()))
            if not re.match(r"[a-z][a-z0-9+.-]*:", target)]  # http:, https:, mailto:


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: path.relative_to(REPO).as_posix())
def test_every_local_link_finds_its_file_and_heading(doc):
    broken = []
    for target in local_links(doc):
        file_part, _, anchor = target.partition("#")
        linked = (doc.parent / file_part).resolve() if file_part else doc
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target}: no such heading")
    assert not broken, broken


def test_the_link_checker_sees_what_it_looks_for(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n## The `/v1` API — errors\n\n## Notes\n\n## Notes\n\n"
                    '<a id="kept"></a>Text with [a](other.md#x), [b](#notes-1), '
                    "[c](https://example.com) and `[d](code.md)`.\n\n"
                    "```\n[e](fenced.md)\n```\n")
    assert anchors(page) == {"title", "the-v1-api--errors", "notes", "notes-1", "kept"}
    assert local_links(page) == ["other.md#x", "#notes-1"]


@pytest.mark.parametrize("path", SOURCES, ids=lambda path: path.relative_to(REPO).as_posix())
def test_nothing_refers_to_a_document_outside_the_repository(path):
    lines = [f"{number}: {line.strip()}"
             for number, line in enumerate(path.read_text().splitlines(), 1)
             if OUTSIDE_REFERENCE.search(line)]
    assert not lines, f"{path.name} points outside the repository; link to docs/ instead"
