"""The ``brlgraph`` command line (``brlgraph`` or ``python -m brlgraph``)."""
