"""Published results that ``brlgraph reproduce`` sets ours beside (HGB, the kNN graphs, OGB).

Numbers (%, mean over 5 seeds, HGB protocol) as collected in the project's
``docs/ANCHORS.md`` ("HGB node classification"), from the papers of HINormer
(Mao et al., WWW 2023), SeHGNN (Yang et al., AAAI 2023, without label
propagation), LMSPS (Li et al., 2024) and the best published figure per data set
(label-propagation methods included). Each entry is (Micro-F1, Macro-F1).
"""

from __future__ import annotations

PUBLISHED_HGB: dict[str, dict[str, tuple[float, float]]] = {
    "HINormer": {"DBLP": (94.94, 94.57), "IMDB": (67.83, 64.65),
                 "ACM": (93.83, 93.91), "Freebase": (64.92, 52.18)},
    "SeHGNN (no label propagation)": {"DBLP": (95.24, 94.86), "IMDB": (68.21, 66.63),
                                      "ACM": (93.87, 93.95), "Freebase": (63.41, 50.71)},
    "LMSPS (2024)": {"DBLP": (95.66, 95.35), "IMDB": (68.70, 66.99),
                     "ACM": (94.69, 94.73), "Freebase": (66.09, 53.26)},
    "best published": {"DBLP": (95.70, 95.39), "IMDB": (70.84, 67.99),
                       "ACM": (94.69, 94.73), "Freebase": (67.08, 54.28)},
}

#: NodeFormer protocol, kNN graph k = 5, accuracy (%), from docs/ANCHORS.md
PUBLISHED_KNN: dict[str, float] = {"20News": 66.01, "Mini-ImageNet": 86.77}

#: OGB node property prediction on ogb's official splits (%, mean +- std over the
#: published runs): accuracy, ROC-AUC for ogbn-proteins; (mean, std), std None where the
#: source gives one run. Sources and the rows left out are in docs/ogb.md.
PUBLISHED_OGB: dict[str, dict[str, tuple[float, float | None]]] = {
    "SGFormer": {"ogbn-arxiv": (72.63, 0.13), "ogbn-proteins": (79.53, 0.38)},
    "NodeFormer": {"ogbn-proteins": (77.45, 1.15)},
    "Polynormer (first run)": {"ogbn-arxiv": (73.45, None), "ogbn-products": (83.82, None)},
}
