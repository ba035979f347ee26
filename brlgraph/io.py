"""Safe file writing: atomic files, whole-line appends, run folders owned by one run.

- :func:`atomic_write`: a file is either fully written or not there at all;
- :func:`append_line`: one line appended in a single write, safe beside other appenders;
- :func:`run_folder_lock`: a run folder is written by one run at a time;
- :func:`json_text`: JSON that stays JSON (no bare ``NaN`` or ``Infinity``).

Files are created with the permissions the umask allows (``0o666 & ~umask``), as
``open`` would make them.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from brlgraph.errors import ConfigError

#: the lock file of a run folder (see :func:`run_folder_lock`)
LOCK_NAME = ".lock"


def file_mode() -> int:
    """The mode ``open`` gives a new file: ``0o666`` less the umask. A file made with
    ``tempfile.mkstemp`` (0600) is given it before it takes its final name."""
    return 0o666 & ~_umask()


def _umask() -> int:
    """The process's umask, read without changing it where Linux tells it (another
    thread creating a file meanwhile would otherwise get the temporary umask)."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", **open_kwargs: Any) -> Iterator[IO]:
    """Open a temporary file beside ``path``; rename it over ``path`` on success.

    On any exception the temporary file is removed and ``path`` is untouched, so
    a crash never leaves a half-written file behind. The file gets the mode a
    plain ``open`` would give it (``mkstemp`` makes it 0600 whatever the umask).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, file_mode())
        with os.fdopen(fd, mode, **open_kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def append_line(path: str | os.PathLike, line: str) -> None:
    """Append ``line`` and a newline to ``path`` (created when missing) in one ``write``.

    The descriptor is opened with ``O_APPEND``, so the kernel moves to the end and
    writes as one step: lines of processes appending at once never interleave or
    overwrite each other (Linux, regular files), and a process killed at any moment
    has written its line whole or not at all. ``line`` must not hold a newline.
    """
    if "\n" in line:
        raise ValueError("append_line: the line holds a newline; one record is one line")
    data = (line + "\n").encode()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        written = os.write(fd, data)
        if written != len(data):  # only a full disk or a size limit does this to a regular file
            raise OSError(errno.ENOSPC, f"{path}: only {written} of {len(data)} bytes of a line "
                                        "were written; the last line of the file is incomplete")
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` through :func:`atomic_write`."""
    import torch

    with atomic_write(path, "wb") as f:
        torch.save(obj, f)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def json_text(obj: Any, **kwargs: Any) -> str:
    """``json.dumps(obj)`` with every NaN or infinite float written as ``null``.

    Python's ``json`` writes them as the bare words ``NaN`` and ``Infinity``, which
    no other JSON reader accepts; a metric that is not a number is written as
    "no value" instead.
    """
    return json.dumps(_finite(obj), allow_nan=False, **kwargs)


def _holder(lock_file: Path) -> str:
    """``" (held by pid N)"`` from the lock file, or ``""`` when it names no live process."""
    with contextlib.suppress(OSError, ValueError):
        pid = int(lock_file.read_text().split()[0])
        with contextlib.suppress(PermissionError):
            os.kill(pid, 0)
        return f" (held by pid {pid})"
    return ""


def _make_folder(path: Path) -> list[Path]:
    """Create ``path`` and its missing parents; return those created (innermost first).
    A path that cannot be a folder is a ConfigError naming it."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"output folder {path} is a file, not a folder; choose another --out")
    created: list[Path] = []
    for folder in [path, *path.parents]:
        if folder.exists() or folder.is_symlink():
            break
        created.append(folder)
    try:
        for folder in reversed(created):
            with contextlib.suppress(FileExistsError):  # made by another run meanwhile
                folder.mkdir()
        if not path.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
    except OSError as err:
        for folder in created:
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise ConfigError(f"output folder {path} cannot be created ({err.strerror or err}); "
                          "choose another --out") from None
    return created


@contextlib.contextmanager
def run_folder_lock(path: str | os.PathLike) -> Iterator[Path]:
    """Own the run folder ``path`` for the block: create it, then hold an exclusive,
    advisory ``fcntl.flock`` on ``path/.lock`` (which holds this process's pid).

    A second run (another process, or the same one) on the folder is refused at once
    with a :class:`~brlgraph.errors.ConfigError` naming the folder and, when known,
    the holder's pid. A folder that cannot be created or written is refused the same
    way. The kernel drops the lock when its holder ends, so a killed run never
    leaves the folder locked. On leaving, the lock file is removed, and so is the
    folder when it was created here and the run wrote nothing into it.

    Under ``torchrun`` (``RANK`` set) the processes of one run share the folder:
    rank 0 alone takes the lock.
    """
    import fcntl

    path = Path(path)
    if os.environ.get("RANK", "0") not in ("", "0"):
        yield path
        return
    created = _make_folder(path)
    lock_file = path / LOCK_NAME
    fd = -1
    try:
        while True:
            try:
                fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as err:
                raise ConfigError(f"output folder {path} is not writable ({err.strerror}); "
                                  "choose another --out") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                fd = -1
                raise ConfigError(f"output folder {path} is in use by another run{_holder(lock_file)}; "
                                  "wait for it to end, or choose another --out") from None
            # The holder before us may have removed the file between our open and our
            # lock: then we hold a lock nobody else can see; take the new file's.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(lock_file))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
            fd = -1
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield path
    finally:
        if fd >= 0:
            # removed while still locked, so a waiting process sees the file change
            with contextlib.suppress(OSError):
                os.unlink(lock_file)
            os.close(fd)
        for folder in created:  # innermost first; rmdir refuses a folder with files in it
            try:
                folder.rmdir()
            except OSError:
                break
