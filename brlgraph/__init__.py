"""brlgraph: BRL-Attention graph transformers for heterogeneous and large graphs.

The package is layered; each layer depends only on the ones before it:

    brlgraph.data       -> loading data sets (HGB, kNN graphs)
    brlgraph.sequences  -> turning graphs into token sequences
    brlgraph.ops        -> attention operators (reference + fast paths)
    brlgraph.nn         -> modules (BRLAttention, baselines, BRLFormer, BRLConv)
    brlgraph.train      -> training loop, metrics, checkpoints, configs
    brlgraph.cli        -> the ``brlgraph`` command line
"""

from brlgraph.errors import BRLGraphError, CheckpointError, ConfigError, DataError

__version__ = "0.1.0"

__all__ = ["BRLGraphError", "CheckpointError", "ConfigError", "DataError", "__version__"]
