"""The project's own exception types.

Every error a user can cause (a bad file, a wrong option, missing data, a
checkpoint from elsewhere) is raised as one of these, with a message that names
the file or option and says what to do. The CLI prints them as one line, without
a traceback.

Things a user should know but that do not stop the run (a cache entry rebuilt, a
file that is suspicious but valid) are :func:`notice` lines on stderr.
"""

from __future__ import annotations

import sys


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


class TrainingError(BRLGraphError):
    """Training cannot go on (the loss is no longer a finite number)."""


def notice(message: str) -> None:
    """Tell the user ``message`` as one line on stderr, ``brlgraph: warning: ...``: the
    one channel of every warning, so each reads like the CLI's errors, in a worker
    process of ``reproduce --jobs`` as much as in the main one."""
    print(f"brlgraph: warning: {' '.join(message.split())}", file=sys.stderr, flush=True)
