"""Loading data sets: HGB heterogeneous graphs, 20 Newsgroups and Mini-ImageNet kNN graphs.

``load_hgb`` returns a :class:`torch_geometric.data.HeteroData`, ``load_20news`` and
``load_mini_imagenet`` a homogeneous :class:`torch_geometric.data.Data` with a kNN
graph (:func:`knn_graph`). ``DATASETS`` names every data set brlgraph knows; see
``docs/CONTRACTS.md`` for the attributes each loader provides.
"""

from brlgraph.data.hgb import HGB_NAMES, load_hgb
from brlgraph.data.sources import manifest

#: Every data set brlgraph knows, as spelled in its manifest and error messages.
DATASETS: tuple[str, ...] = tuple(manifest())

__all__ = ["DATASETS", "HGB_NAMES", "load_hgb"]
