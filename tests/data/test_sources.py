"""Locating raw files and verified downloads (a file:// URL stands in for the network)."""

from __future__ import annotations

import hashlib
import os
import zipfile

import pytest

from brlgraph.data import load_hgb, sources
from brlgraph.errors import DataError
from tests.data.hgb_samples import SMALL_FILES


def test_manifest_matches_the_shared_checksums(shared_data):
    listed = {}
    for line in (shared_data / "SHA256SUMS").read_text().splitlines():
        digest, path = line.split()
        listed[path] = digest
    for name in ("DBLP", "ACM", "IMDB", "20News"):
        entry = sources.manifest()[name]
        assert listed[entry["archive"]] == entry["sha256"]
    freebase = sources.manifest()["Freebase"]
    for member, digest in freebase["members"].items():
        assert listed[f"{freebase['labels_only']}/{member}"] == digest


@pytest.fixture
def small_zip(tmp_path):
    path = tmp_path / "upstream" / "ACM.zip"
    path.parent.mkdir()
    with zipfile.ZipFile(path, "w") as z:
        for name, text in SMALL_FILES.items():
            z.writestr(name, text)
    return path


def test_download_is_verified_and_lands_in_the_cache(small_zip, cache_dir, monkeypatch, tmp_path):
    entry = sources.manifest()["ACM"]
    monkeypatch.setitem(entry, "urls", [small_zip.as_uri()])
    monkeypatch.setitem(entry, "sha256", hashlib.sha256(small_zip.read_bytes()).hexdigest())
    monkeypatch.setitem(entry, "alt_sha256", [])
    monkeypatch.delenv("BRLGRAPH_DATA", raising=False)
    data = load_hgb("ACM", root=tmp_path / "empty", download=True)
    assert data["author"].num_nodes == 4  # the small data set, now in the download cache
    assert (cache_dir / "downloads" / "hgb" / "ACM.zip").is_file()
    assert sources.locate("ACM").path == cache_dir / "downloads" / "hgb" / "ACM.zip"
    umask = os.umask(0o022)
    os.umask(umask)
    assert (cache_dir / "downloads" / "hgb" / "ACM.zip").stat().st_mode & 0o777 == 0o666 & ~umask


def test_download_with_wrong_checksum_is_not_kept(small_zip, cache_dir, monkeypatch):
    entry = sources.manifest()["ACM"]
    monkeypatch.setitem(entry, "urls", [small_zip.as_uri()])
    monkeypatch.delenv("BRLGRAPH_DATA", raising=False)
    with pytest.raises(DataError, match="checksum mismatch.*not kept"):
        sources.download("ACM", progress=False)
    assert [p for p in cache_dir.rglob("*") if p.is_file()] == []


def test_download_without_archive_checksum_checks_members(small_zip, cache_dir, monkeypatch):
    entry = sources.manifest()["Freebase"]
    monkeypatch.setitem(entry, "urls", [small_zip.as_uri()])
    with pytest.raises(DataError, match=r"info\.dat checksum mismatch; not kept"):
        sources.download("Freebase", progress=False)
    digests = {n: hashlib.sha256(SMALL_FILES[n].encode()).hexdigest() for n in entry["members"]}
    monkeypatch.setitem(entry, "members", digests)
    assert sources.download("Freebase", progress=False).is_file()


def test_unreachable_download(cache_dir, monkeypatch, tmp_path):
    monkeypatch.setitem(sources.manifest()["ACM"], "urls", [(tmp_path / "gone.zip").as_uri()])
    with pytest.raises(DataError, match="could not download ACM"):
        sources.download("ACM", progress=False)
    with pytest.raises(DataError, match="no official download"):
        sources.download("Mini-ImageNet")
