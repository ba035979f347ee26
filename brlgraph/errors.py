"""The project's own exception types.

Every error a user can cause (a bad file, a wrong option, missing data, a
checkpoint from elsewhere) is raised as one of these, with a message that names
the file or option and says what to do. The CLI prints them as one line, without
a traceback.
"""

from __future__ import annotations


class BRLGraphError(Exception):
    """Base class of all user-facing errors of brlgraph."""


class DataError(BRLGraphError):
    """A data set is missing, malformed, or fails its checksum."""


class ConfigError(BRLGraphError, ValueError):
    """A configuration file or option is invalid. Also a ``ValueError``, as PyTorch's own
    modules raise for a bad argument: the modules of :mod:`brlgraph.nn` raise it for
    bad sizes and options, so code that catches ``ValueError`` around a layer keeps working."""


class CheckpointError(BRLGraphError):
    """A checkpoint cannot be read or does not belong to this run."""
