"""What the benchmarks share: resumable result files, tables, plots, progress, memory.

- :class:`ResultStore`: one JSON line per finished cell (e.g. one model, depth and
  seed), keyed, so that a sweep interrupted or split over several commands never
  recomputes a finished cell.
- :func:`write_table`: Markdown + CSV (the reproduction tables' writer).
- :func:`plotting`: matplotlib when the optional ``plot`` extra is installed, else
  ``None`` and one line saying so; tables are written either way.
- :func:`save_figure`: a PNG whose footer names the command that made it.
- :func:`peak_rss_mib`, :func:`run_isolated`: peak resident memory of a call, measured
  in a fresh process (the CPU allocator has no peak counter of its own).
- :data:`RENAMED`: the names an ongoing restructure of the project renames, kept here
  so that adapting the benchmarks is one edit.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import resource
import shlex
import statistics
import sys
import textwrap
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from brlgraph.errors import BRLGraphError, ConfigError
from brlgraph.io import append_line, atomic_write
from brlgraph.train.runner import to_markdown
from brlgraph.train.runner import write_table as _write_table

#: Module arguments and config keys as this version of brlgraph spells them. The
#: benchmarks read every such name from here.
RENAMED: dict[str, str] = {
    # BRLFormer / BRLGraphSequenceModel keyword arguments
    "model.hidden_kwarg": "hidden_channels",
    "model.reservoir_kwarg": "reservoir_size",
    # BRLConv / BRLAttention keyword argument of the reservoir size
    "conv.reservoir_kwarg": "reservoir_size",
    # config keys (``--set`` style)
    "config.hidden": "model.hidden_channels",
    "config.reservoir": "model.reservoir_size",
    "config.seq_len": "sequences.seq_len",
}


def model_kwargs(hidden: int, reservoir: int) -> dict[str, int]:
    """``hidden`` and ``reservoir`` as keyword arguments of ``BRLFormer`` / ``from_data``."""
    return {RENAMED["model.hidden_kwarg"]: hidden, RENAMED["model.reservoir_kwarg"]: reservoir}


def config_key(name: str) -> str:
    """The ``--set`` key of ``hidden``, ``reservoir`` or ``seq_len``."""
    return RENAMED[f"config.{name}"]


def config_value(config, name: str) -> Any:
    """The value of ``hidden``, ``reservoir`` or ``seq_len`` in a ``Config``."""
    section, key = config_key(name).split(".")
    return getattr(getattr(config, section), key)


def graph_view_class():
    """``GraphView`` (imported from where this version of brlgraph keeps it)."""
    from brlgraph.graph import GraphView

    return GraphView


def block_options(attention: str, window: int, reservoir: int,
                  extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Options of ``make_attention(attention, ...)`` for a block with this window and
    reservoir size (those the backend takes)."""
    from brlgraph.nn.brlformer import backend_options

    return backend_options(attention, window, reservoir, extra)


# ----------------------------------------------------------------------------- results
class ResultStore:
    """Finished cells of a sweep, one JSON line each in ``path``.

    A cell is identified by the values of ``key_fields`` in its record; :meth:`get`
    finds a finished one, :meth:`add` appends one (atomically: a crash never leaves
    half a line). A later line with the same key replaces an earlier one.
    """

    def __init__(self, path: str | Path, key_fields: Sequence[str]) -> None:
        self.path, self.key_fields = Path(path), tuple(key_fields)
        self._records: dict[tuple, dict[str, Any]] = {}
        if self.path.exists():
            for n, line in enumerate(self.path.read_text().splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    raise ConfigError(f"{self.path}, line {n}: not a JSON record; remove the line "
                                      "or the file to recompute its cells") from None
                self._records[self.key(record)] = record

    def key(self, record: dict[str, Any]) -> tuple:
        try:
            return tuple(record[k] for k in self.key_fields)
        except KeyError as err:
            raise ConfigError(f"{self.path}: a record has no {err.args[0]!r}; it was written by "
                              "another benchmark (use another --out)") from None

    def get(self, **key: Any) -> dict[str, Any] | None:
        return self._records.get(tuple(key[k] for k in self.key_fields))

    def add(self, record: dict[str, Any]) -> None:
        append_line(self.path, json.dumps(record, sort_keys=True))
        self._records[self.key(record)] = record

    def records(self) -> list[dict[str, Any]]:
        return list(self._records.values())

    def __len__(self) -> int:
        return len(self._records)


# ----------------------------------------------------------------------------- tables
def write_table(out: str | Path, stem: str, frame: pd.DataFrame) -> None:
    """``frame`` as ``out/<stem>.md`` and ``out/<stem>.csv`` (atomic writes)."""
    _write_table(Path(out), stem, frame)


def markdown(frame: pd.DataFrame) -> str:
    return to_markdown(frame)


def mean_std_text(values: Sequence[float], digits: int = 2, scale: float = 1.0) -> str:
    """``mean ± std`` of ``values`` times ``scale`` (``n/a`` when empty; one value: no ±)."""
    vals = [scale * v for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return "n/a"
    if len(vals) == 1:
        return f"{vals[0]:.{digits}f}"
    return f"{statistics.fmean(vals):.{digits}f} ± {statistics.stdev(vals):.{digits}f}"


def fmt(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


# ----------------------------------------------------------------------------- plots
PLOT_HINT = "pip install 'brlgraph[plot]' (matplotlib) to get the plots"


def plotting(log: Callable[[str], None] | None = None):
    """``matplotlib.pyplot`` (non-interactive backend), or ``None`` with one line on
    ``log`` saying that the plots are skipped and the tables were written."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError:
        (log or _stderr)(f"brlgraph: matplotlib is not installed: tables were written, plots were "
                         f"skipped ({PLOT_HINT})")
        return None
    return plt


#: the footer's font size (points) and its characters per inch of figure width (a
#: monospace-like estimate that leaves a margin for the proportional font)
_FOOTER_PT, _FOOTER_CHARS_PER_INCH = 6, 17


def save_figure(fig, path: str | Path, command: str) -> Path:
    """Save ``fig`` as a PNG at ``path`` with the command that made it as its footer,
    wrapped over as many lines as the figure's width needs (the plots stay above it)."""
    path = Path(path)
    width, height = fig.get_size_inches()
    lines = textwrap.wrap(f"made by: {command}", max(30, int(width * _FOOTER_CHARS_PER_INCH)),
                          break_on_hyphens=False)
    fig.text(0.01, 0.005, "\n".join(lines), fontsize=_FOOTER_PT, color="0.35", ha="left",
             va="bottom")
    footer = (len(lines) * _FOOTER_PT * 1.25 + 4) / 72 / height  # figure fraction
    fig.tight_layout(rect=(0, min(footer, 0.3), 1, 1))
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=130)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def progress(iterable: Iterable, total: int | None = None, desc: str = "", enabled: bool = True) -> Iterator:
    """A tqdm progress bar on stderr (nothing when ``enabled`` is False)."""
    from tqdm import tqdm

    return iter(tqdm(iterable, total=total, desc=desc, file=sys.stderr, disable=not enabled,
                     dynamic_ncols=True, leave=False))


# ----------------------------------------------------------------------------- machine
def machine() -> dict[str, Any]:
    """What a benchmark ran on, for its result file: the CPU's model name and widest
    vector extension (the fused kernel is compiled with ``-march=native``, so its
    timings depend on it), cores and torch version. Each benchmark records its own
    thread count beside it."""
    import platform

    import torch

    from brlgraph.ops.brl.fused import cpu_flags, cpuinfo_line

    model = cpuinfo_line("model name").partition(":")[2].strip()
    flags = set(cpu_flags().split())
    return {"cpu": model or platform.processor() or platform.machine(),
            "vector": next((x for x in ("avx512f", "avx2", "asimd") if x in flags), "other"),
            "cpus": os.cpu_count(), "torch": torch.__version__}


def machine_text() -> str:
    """:func:`machine` in one line, for a benchmark's printed header."""
    m = machine()
    return f"{m['cpu']} ({m['vector']}), {m['cpus']} cpus, torch {m['torch']}"


# ----------------------------------------------------------------------------- memory
def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, MiB (``ru_maxrss``; KiB on Linux)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def current_rss_mib() -> float:
    """Resident memory of this process now, MiB (``/proc/self/statm``; NaN elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return float("nan")


def _isolated_entry(fn: Callable[..., dict[str, Any]], args: tuple, queue, parent: int) -> None:
    _exit_with_parent(parent)
    try:
        queue.put(("ok", fn(*args)))
    except BRLGraphError as err:  # the parent re-raises it as it is: one line, no traceback
        queue.put(("raise", err))
    except BaseException as err:  # report every other failure to the parent, memory errors included
        queue.put(("error", f"{type(err).__name__}: {err}"))


def _exit_with_parent(parent: int, interval: float = 2.0) -> None:
    """End this (child) process once ``parent`` is gone: a sweep killed from outside
    (SIGTERM, SIGKILL) must not leave its running cell writing the run folder."""
    import threading
    import time

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def check_choices(kind: str, values: Iterable[str], allowed: Sequence[str]) -> None:
    """A ``ConfigError`` naming the first of ``values`` that is not in ``allowed``."""
    for value in values:
        if value not in allowed:
            raise ConfigError(f"unknown {kind} {value!r}; choose from {', '.join(allowed)}")


def run_isolated(fn: Callable[..., dict[str, Any]], *args: Any, threads: int | None = None) -> dict[str, Any]:
    """Run ``fn(*args)`` in a fresh (spawned) process and return its dict.

    The child's peak resident memory then belongs to that call alone: ``fn`` reads
    :func:`peak_rss_mib` itself. ``fn`` must be importable (a module-level function).
    brlgraph's own errors (:class:`~brlgraph.errors.BRLGraphError`) raised in the child
    are raised again here; any other failure, or the child dying without an answer
    (killed for memory), raises ``RuntimeError`` naming it. The child ends when this
    process does, and is terminated when this call is interrupted.
    """
    import queue as queues

    ctx = multiprocessing.get_context("spawn")
    channel = ctx.Queue()
    env_threads = threads or int(os.environ.get("OMP_NUM_THREADS", "0") or 0) or None
    proc = ctx.Process(target=_isolated_entry,
                       args=(_with_threads, (fn, args, env_threads), channel, os.getpid()))
    proc.start()
    try:
        while True:
            try:
                status, value = channel.get(timeout=1.0)
                break
            except queues.Empty:
                if not proc.is_alive() and channel.empty():
                    raise RuntimeError(f"the isolated process of {fn.__name__} ended without an answer "
                                       f"(exit code {proc.exitcode}; killed for memory?)") from None
    except BaseException:
        proc.terminate()
        raise
    finally:
        proc.join()
    if status == "raise":
        raise value
    if status != "ok":
        raise RuntimeError(value)
    return value


def _with_threads(fn: Callable[..., dict[str, Any]], args: tuple, threads: int | None) -> dict[str, Any]:
    if threads:
        import torch

        torch.set_num_threads(threads)
    return fn(*args)


def command_line(prog: str = "brlgraph") -> str:
    """The command as it was typed, quoted where the shell needs it (for figure footers
    and table notes)."""
    return shlex.join([prog, *sys.argv[1:]])


# ----------------------------------------------------------------------------- time limits
class TimeLimitReached(Exception):
    """Raised when a sweep's ``--time-limit`` has passed; what finished is kept."""


class Deadline:
    """A wall-clock limit for a sweep (``None``: none). Long cells check it after each
    epoch (or block of steps), having saved a checkpoint, so the next command resumes."""

    def __init__(self, seconds: float | None = None) -> None:
        import time

        self.seconds = seconds
        self._end = None if seconds is None else time.monotonic() + seconds

    def expired(self) -> bool:
        import time

        return self._end is not None and time.monotonic() >= self._end

    def check(self) -> None:
        if self.expired():
            raise TimeLimitReached(f"time limit of {self.seconds / 60:.0f} min reached")


def legend(ax, **kwargs) -> None:
    """``ax.legend`` when something on ``ax`` has a label (an empty legend warns)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kwargs)
