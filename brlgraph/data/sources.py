"""Where raw data files come from: the manifest, local folders, checksums, downloads.

The manifest (``manifest.json`` beside this module) lists every data set
brlgraph knows, the archive it ships as, the SHA-256 of that archive and of the
files inside it, and the official download URLs. Raw files are looked for, in
order, under

1. the ``root`` argument of a loader,
2. the folder named by ``BRLGRAPH_DATA``,
3. ``<cache>/downloads`` (where :func:`download` puts verified downloads),

each holding the manifest's relative path (``hgb/DBLP.zip``) or the extracted
folder (``hgb/DBLP/``). Nothing is downloaded unless asked for: a download is
streamed to a temporary file, checked against the manifest and only then
renamed into place, so a failed or tampered download never lands in the cache.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from brlgraph.errors import DataError
from brlgraph.io import file_mode

MANIFEST_PATH = Path(__file__).with_name("manifest.json")
_CHUNK = 1 << 20


@functools.lru_cache(maxsize=1)
def manifest() -> dict[str, dict[str, Any]]:
    """The known data sets, by canonical name (``DBLP``, ``20News``, ...)."""
    with open(MANIFEST_PATH, encoding="utf-8") as f:
        return json.load(f)["datasets"]


def canonical_name(name: str) -> str:
    """Map a data set name in any letter case to its manifest spelling."""
    by_lower = {key.lower(): key for key in manifest()}
    try:
        return by_lower[name.lower()]
    except KeyError:
        known = ", ".join(manifest())
        raise DataError(f"unknown data set {name!r}; known data sets: {known}") from None


def cache_root() -> Path:
    """The processed-data cache: ``BRLGRAPH_CACHE`` or ``~/.cache/brlgraph``."""
    env = os.environ.get("BRLGRAPH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "brlgraph"


def search_roots(root: str | os.PathLike | None = None) -> list[Path]:
    """The folders raw files are looked for in, in order of preference."""
    roots = []
    if root is not None:
        roots.append(Path(root).expanduser())
    env = os.environ.get("BRLGRAPH_DATA")
    if env:
        roots.append(Path(env).expanduser())
    roots.append(cache_root() / "downloads")
    return roots


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Located:
    """A data set's raw files found on disk: an archive or an extracted folder."""

    name: str
    path: Path
    is_archive: bool


def locate(name: str, root: str | os.PathLike | None = None) -> Located | None:
    """Find the raw files of ``name``; ``None`` when they are nowhere to be found."""
    name = canonical_name(name)
    entry = manifest()[name]
    relative = entry.get("archive")
    if not relative:  # a data set kept as a folder of files (Mini-ImageNet)
        for base in search_roots(root):
            if entry.get("folder") and (base / entry["folder"]).is_dir() and any((base / entry["folder"]).iterdir()):
                return Located(name, base / entry["folder"], False)
        return None
    relative = Path(relative)
    folder = relative.with_name(relative.name.split(".")[0])  # hgb/DBLP.zip -> hgb/DBLP
    for base in search_roots(root):
        for candidate in (base / relative, base / relative.name):
            if candidate.is_file():
                return Located(name, candidate, True)
        for candidate in (base / folder, base / folder.name):
            if candidate.is_dir() and any(candidate.iterdir()):
                return Located(name, candidate, False)
    return None


def looked_in(name: str, root: str | os.PathLike | None = None) -> str:
    """Human-readable list of the places :func:`locate` tried, for error messages."""
    entry = manifest()[canonical_name(name)]
    relative = entry.get("archive") or entry.get("folder") or name
    places = [str(base / relative) for base in search_roots(root)]
    return ", ".join(places)


def missing_message(name: str, root: str | os.PathLike | None = None) -> str:
    name = canonical_name(name)
    entry = manifest()[name]
    msg = (
        f"data set {name} not found; looked for {looked_in(name, root)} "
        f"(and the extracted folder beside each). Put the files there, pass root=..., "
        f"or set BRLGRAPH_DATA to a folder holding {entry.get('archive') or entry.get('folder')}"
    )
    if entry.get("urls"):
        msg += f"; with internet access run `brlgraph data download {name}`"
    return msg


def verify_file(path: Path, expected: str | None, alternatives: list[str] | None = None) -> str:
    """Check ``path``'s SHA-256 against the manifest; return the digest."""
    digest = sha256_file(path)
    accepted = {expected, *(alternatives or [])} - {None}
    if accepted and digest not in accepted:
        raise DataError(
            f"{path}: checksum mismatch (sha256 {digest}, expected {expected}); the file is "
            f"corrupt or a different release. Replace it with the official file"
        )
    return digest


def download(name: str, *, progress: bool = True) -> Path:
    """Download ``name``'s archive from its official URL into ``<cache>/downloads``.

    The download is checked against the manifest's SHA-256 (or, for archives
    with no recorded checksum, the checksums of the files inside it) before it
    is renamed into place.
    """
    name = canonical_name(name)
    entry = manifest()[name]
    if not entry.get("urls"):
        raise DataError(f"data set {name} has no official download; provide its files yourself")
    target = cache_root() / "downloads" / entry["archive"]
    if target.is_file():
        verify_file(target, entry.get("sha256"), entry.get("alt_sha256"))
        return target
    errors = []
    for url in entry["urls"]:
        try:
            _download_to(url, target, entry, progress=progress)
            return target
        except (urllib.error.URLError, OSError, ValueError) as err:
            errors.append(f"{url}: {err}")
    raise DataError(f"could not download {name}: " + "; ".join(errors))


def _download_to(url: str, target: Path, entry: dict[str, Any], *, progress: bool) -> None:
    """Stream ``url`` to a temporary file beside ``target``; rename it there once verified."""
    import tempfile

    from tqdm import tqdm

    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    os.fchmod(fd, file_mode())  # the archive is kept: the umask's mode, not mkstemp's 0600
    tmp = Path(tmp_name)
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "brlgraph"})
        digest = hashlib.sha256()
        with urllib.request.urlopen(request, timeout=60) as response, os.fdopen(fd, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {target.name}",
                      file=sys.stderr, disable=not progress) as bar:
                while block := response.read(_CHUNK):
                    out.write(block)
                    digest.update(block)
                    bar.update(len(block))
            out.flush()
            os.fsync(out.fileno())
        expected = entry.get("sha256")
        accepted = {expected, *(entry.get("alt_sha256") or [])} - {None}
        if accepted and digest.hexdigest() not in accepted:
            raise DataError(
                f"download from {url}: checksum mismatch (sha256 {digest.hexdigest()}, "
                f"expected {expected}); not kept"
            )
        if not accepted and entry.get("members"):
            _verify_archive_members(tmp, entry["members"], url)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _verify_archive_members(path: Path, members: dict[str, str], label: str) -> None:
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            by_base = {Path(n).name: n for n in archive.namelist() if not n.endswith("/")}
            for member, expected in members.items():
                if member not in by_base:
                    raise DataError(f"{label}: archive lacks {member}; not kept")
                digest = hashlib.sha256(archive.read(by_base[member])).hexdigest()
                if digest != expected:
                    raise DataError(f"{label}: {member} checksum mismatch; not kept")
    except zipfile.BadZipFile as err:
        raise DataError(f"{label}: not a zip archive ({err}); not kept") from None
