"""The README and docs/ against the tree: links resolve, figures match their reports, names match
the contract. Fast and torch-free; a failure names the page, the link or the figure.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from rowgen import contract
from rowgen.config import ModelConfig

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")  # [text](target) and ![alt](target)
NUMBER = re.compile(r"(?<![\w.])\d[\d,]*(?:\.\d+)?(?:e-?\d+)?(?![\w.])")


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # no headings in code
    return {slug(h) for h in re.findall(r"^#+ (.+)$", text, flags=re.M)}


def links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_point_into_the_tree(page: Path) -> None:
    broken = []
    for target in links(page):
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif REPO not in file.parents:
            broken.append(f"{target}: outside the repository")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target}: no such heading")
    assert not broken, f"{page.name}: " + "; ".join(broken)


def table_rows(page: Path, heading: str) -> list[list[str]]:
    """The cells of the first table under `heading` (header and rule rows left out)."""
    text = page.read_text().split(f"\n{heading}\n", 1)[1]
    rows = re.search(r"(?m)^(\|.*\|\n)+", text).group(0).splitlines()[2:]
    return [[c.strip() for c in row.strip("|").split("|")] for row in rows]


def numbers(text: str) -> set[str]:
    return set(NUMBER.findall(text))


def test_readme_figures_are_copied_from_their_reports() -> None:
    rows = table_rows(REPO / "README.md", "## Figures")
    assert rows, "README.md: no figures table under '## Figures'"
    for measure, *figures, report in rows:
        (target,) = LINK.findall(report)
        written = numbers((REPO / target).read_text())
        missing = numbers(" ".join(figures)) - written
        assert not missing, f"README.md, {measure!r}: {sorted(missing)} not in {target}"


def test_soak_figures_are_copied_from_soak_json() -> None:
    rows = table_rows(REPO / "docs" / "reliability.md", "## Soak")
    results = json.loads((REPO / "artifacts" / "bench" / "soak.json").read_text())["results"]
    assert len(rows) == len(results), "docs/reliability.md: one soak row per target"
    for row, result in zip(rows, results, strict=True):
        written = {
            str(v)
            for part in ("start", "end")
            for v in (result[part]["rss_mb"], result[part]["disk_mb"])
        }
        written |= {str(result["requests"]), str(result["errors"])}
        written.add(str(result["after_stop"]["disk_mb"]))
        assert numbers(" ".join(row[1:])) == written, f"docs/reliability.md soak: {row[0]}"


def test_contract_page_names_every_program_and_tensor() -> None:
    page = (REPO / "docs" / "contract.md").read_text()
    names = {contract.MANIFEST, *contract.BUNDLE_FILES, *contract.SAMPLE_FILES}
    for cell in ("rnn", "lstm", "gru"):
        for mode in ("stream", "window"):
            config = ModelConfig(cell, mode, 8, 1)
            specs = contract.step_inputs(config) + contract.step_outputs(config)
            names |= {s.name for s in specs}
    sampler = ModelConfig("lstm", "stream", 8, 1, "cvae", 4)
    names |= {s.name for s in contract.sample_inputs(4) + contract.complete_outputs()}
    names |= {n.replace("lstm", "<bundle>") for n in contract.serving_names("lstm", sampler)}
    names |= set(contract.metadata_props(sampler))
    held = ModelConfig("lstm", "stream", 8, 1, "flow", 28, 16, 3, "euler", 10)  # holds a class
    names |= {
        s.name for s in contract.sample_step_inputs(held) + contract.sample_step_outputs(held)
    }
    missing = sorted(n for n in names if f"`{n}`" not in page)
    assert not missing, f"docs/contract.md does not name {missing} (rowgen/contract.py does)"
