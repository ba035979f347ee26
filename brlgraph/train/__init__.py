"""Training: configs, the training loop, metrics, checkpoints and multi-seed reproductions.

- :mod:`brlgraph.train.config`: the run configuration (TOML files, ``--set`` overrides);
- :mod:`brlgraph.train.experiment`: one run, data -> sequences -> model -> fit -> evaluate;
- :mod:`brlgraph.train.loop`: the optimiser loop with early stopping and exact resume;
- :mod:`brlgraph.train.metrics`, :mod:`brlgraph.train.checkpoint`;
- :mod:`brlgraph.train.runner`: reproductions over seeds beside the published rows.
"""
