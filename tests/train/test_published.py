"""The published rows that ``brlgraph reproduce`` sets ours beside agree with docs/ANCHORS.md."""

from __future__ import annotations

import re
from pathlib import Path

from brlgraph.train.published import PUBLISHED_HGB, PUBLISHED_KNN

ANCHORS = Path(__file__).resolve().parents[2] / "docs" / "ANCHORS.md"


def _table_rows(section: str) -> dict[str, list[str]]:
    """The rows of the first Markdown table after heading ``section``: first cell -> the others."""
    text = ANCHORS.read_text(encoding="utf-8").split(section, 1)[1]
    rows = {}
    for line in text.splitlines():
        if line.startswith("|---"):
            continue
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0]] = cells[1:]
        elif rows:
            break
    return rows


def test_hgb_rows_are_the_figures_of_anchors_md():
    rows = _table_rows("## HGB node classification")
    datasets = rows.pop("method")
    assert datasets == ["DBLP", "IMDB", "ACM", "Freebase"]
    for method, figures in PUBLISHED_HGB.items():
        # ANCHORS.md names the last row "best published (label propagation methods included)"
        [row] = [cells for name, cells in rows.items() if re.sub(r" \(label.*\)$", "", name) == method]
        for dataset, cell in zip(datasets, row, strict=True):
            macro, micro = (float(x) for x in cell.split(" / "))  # ANCHORS.md: Macro / Micro
            assert figures[dataset] == (micro, macro), (method, dataset)


def test_best_published_is_at_least_every_other_row():
    best = PUBLISHED_HGB["best published"]
    for method, figures in PUBLISHED_HGB.items():
        for dataset, (micro, macro) in figures.items():
            assert best[dataset][0] >= micro and best[dataset][1] >= macro, (method, dataset)


def test_knn_rows_are_the_figures_of_anchors_md():
    rows = _table_rows("## kNN graphs")
    by_name = {name.split(" (")[0]: float(cells[0]) for name, cells in rows.items() if name != "data"}
    assert PUBLISHED_KNN == by_name
