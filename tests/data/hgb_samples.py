"""A small HGB data set in the real file formats, for the format, error and fuzz tests."""

from __future__ import annotations

import json
from pathlib import Path

# A small data set in HGB's real layout: two feature formats (floats for authors,
# single-digit counts for papers), a featureless type, a link type with its
# reverse, one without (paper->venue) and a non-symmetric self relation (cite).
SMALL_INFO = {
    "node.dat": {"node type": {"0": "author", "1": "paper", "2": "venue"}},
    "link.dat": {"link type": {
        "0": {"start": 0, "end": 1, "meaning": "author-paper"},
        "1": {"start": 1, "end": 0, "meaning": "paper-author"},
        "2": {"start": 1, "end": 2, "meaning": "paper-venue"},
        "3": {"start": 1, "end": 1, "meaning": "paper-cite-paper"},
    }},
    "label.dat": {"node type": {"0": {"0": "db", "1": "ml", "2": "ir"}}},
}
SMALL_FILES = {
    "info.dat": json.dumps(SMALL_INFO, indent=1) + "\n",
    "node.dat": (
        "0\tAda\t0\t0.5,-1.25\n"
        "1\tBob\t0\t1e-3,2\n"
        "2\tCy\t0\t0,0\n"
        "3\tDee\t0\t3.5,4\n"
        "4\tp1\t1\t1,0,2\n"
        "5\tp2\t1\t0,0,1\n"
        "6\tp3\t1\t9,1,0\n"
        "7\tp4\t1\t0,1,1\n"
        "8\tvenue a\t2\n"
        "9\tvenue b\t2\n"
    ),
    "link.dat": (
        "0\t4\t0\t1.0\n1\t4\t0\t1.0\n2\t5\t0\t1.0\n3\t6\t0\t1.0\n3\t7\t0\t1.0\n"
        "4\t0\t1\t1.0\n4\t1\t1\t1.0\n5\t2\t1\t1.0\n6\t3\t1\t1.0\n7\t3\t1\t1.0\n"
        "4\t8\t2\t1.0\n5\t8\t2\t1.0\n6\t9\t2\t1.0\n7\t9\t2\t1.0\n"
        "5\t4\t3\t1.0\n6\t4\t3\t1.0\n7\t6\t3\t1.0\n"
    ),
    "label.dat": "0\tAda\t0\t1\n2\tCy\t0\t0\n",
    "label.dat.test": "1\tBob\t0\t2\n3\tDee\t0\t1\n",
}


def write_hgb(folder: Path, files: dict[str, str | bytes]) -> Path:
    """Write an HGB data set's files (text or bytes) into ``folder``; return it."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        path = folder / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return folder
