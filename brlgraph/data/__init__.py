"""Loading data sets: HGB heterogeneous graphs, 20 Newsgroups and Mini-ImageNet kNN graphs.

``load_hgb`` returns a :class:`torch_geometric.data.HeteroData`; ``load_20news`` and
``load_mini_imagenet`` a homogeneous :class:`torch_geometric.data.Data` with an
exact kNN graph (:func:`knn_graph`). ``DATASETS`` names every data set brlgraph
knows (its manifest); see ``docs/CONTRACTS.md`` for the attributes each loader
provides and ``datasets/README.md`` for where the files come from.
"""

from brlgraph.data.hgb import HGB_NAMES, load_hgb
from brlgraph.data.knn import knn_graph
from brlgraph.data.mini_imagenet import load_mini_imagenet
from brlgraph.data.newsgroups import load_20news
from brlgraph.data.sources import manifest

#: Every data set brlgraph knows, as spelled in its manifest and error messages.
DATASETS: tuple[str, ...] = tuple(manifest())

__all__ = ["DATASETS", "HGB_NAMES", "knn_graph", "load_20news", "load_hgb", "load_mini_imagenet"]
