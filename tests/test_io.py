"""brlgraph.io: atomic files with the umask's mode, whole-line appends beside other
writers, JSON without NaN, and run folders owned by one run."""

from __future__ import annotations

import json
import math
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from brlgraph.errors import ConfigError
from brlgraph.io import (
    LOCK_NAME,
    append_line,
    atomic_torch_save,
    atomic_write,
    json_text,
    run_folder_lock,
)

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def umask():
    """Set the umask for the test, restore it afterwards."""
    old = os.umask(0o022)
    os.umask(old)

    def set_mask(mask: int) -> None:
        os.umask(mask)

    yield set_mask
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_written_files_follow_the_umask(tmp_path, umask, mask):
    umask(mask)
    with atomic_write(tmp_path / "a.txt") as f:
        f.write("x")
    atomic_torch_save({"a": 1}, tmp_path / "b.pt")
    append_line(tmp_path / "c.jsonl", "{}")
    for name in ("a.txt", "b.pt", "c.jsonl"):
        assert _mode(tmp_path / name) == 0o666 & ~mask, name


def test_atomic_write_leaves_the_old_file_on_error(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(path) as f:
        f.write("new, half")
        raise RuntimeError
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["f.txt"]


APPENDER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, sys.argv[1])
    from brlgraph.io import append_line
    start = float(sys.argv[4])
    while time.time() < start:  # both writers begin together
        pass
    for i in range(200):
        append_line(sys.argv[2], f'{{"writer": "{sys.argv[3]}", "i": {i}, "pad": "' + "x" * 300 + '"}')
""")


def test_two_processes_appending_at_once_keep_every_line(tmp_path):
    import time

    path = tmp_path / "results.jsonl"
    start = str(time.time() + 1.0)
    procs = [subprocess.Popen([sys.executable, "-c", APPENDER, str(REPO_ROOT), str(path), name, start])
             for name in ("a", "b")]
    for proc in procs:
        assert proc.wait(timeout=120) == 0
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(records) == 400
    for name in ("a", "b"):
        assert [r["i"] for r in records if r["writer"] == name] == list(range(200))


def test_append_line_refuses_a_line_break(tmp_path):
    with pytest.raises(ValueError, match="newline"):
        append_line(tmp_path / "r.jsonl", '{"a": 1}\n{"b": 2}')
    assert not (tmp_path / "r.jsonl").exists()


def test_json_text_writes_null_for_what_json_cannot_hold():
    text = json_text({"loss": math.nan, "best": [math.inf, -math.inf, 1.5], "n": 3}, sort_keys=True)
    assert text == '{"best": [null, null, 1.5], "loss": null, "n": 3}'
    assert json.loads(text)["loss"] is None


# --------------------------------------------------------------------------- run folders

HOLDER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, sys.argv[1])
    from brlgraph.errors import ConfigError
    from brlgraph.io import run_folder_lock
    try:
        with run_folder_lock(sys.argv[2]):
            print("locked", flush=True)
            time.sleep(float(sys.argv[3]))
    except ConfigError as err:
        print(f"refused: {err}", flush=True)
""")


def test_a_second_run_on_a_folder_is_refused_and_named(tmp_path):
    out = tmp_path / "run"
    with run_folder_lock(out):
        assert (out / LOCK_NAME).read_text().strip() == str(os.getpid())
        # another process
        proc = subprocess.run([sys.executable, "-c", HOLDER, str(REPO_ROOT), str(out), "0"],
                              capture_output=True, text=True, timeout=120)
        assert proc.stdout.startswith("refused: ")
        assert str(out) in proc.stdout and f"pid {os.getpid()}" in proc.stdout
        # and this process again (a second lock of the same folder)
        with pytest.raises(ConfigError, match="in use by another run"), run_folder_lock(out):
            pass
    assert not (out / LOCK_NAME).exists()  # released: the lock file goes with it
    with run_folder_lock(out):  # and the folder can be taken again
        pass


def test_a_killed_holder_leaves_the_folder_free(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(REPO_ROOT), str(out), "60"],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    proc.kill()
    proc.wait(timeout=60)
    proc.stdout.close()
    assert (out / LOCK_NAME).exists()  # a kill -9 cannot clean up; the kernel drops the lock
    with run_folder_lock(out):
        assert (out / LOCK_NAME).read_text().strip() == str(os.getpid())


def test_a_folder_made_for_a_run_that_wrote_nothing_is_removed(tmp_path):
    out = tmp_path / "a" / "b" / "run"
    with pytest.raises(RuntimeError), run_folder_lock(out):
        assert out.is_dir()
        raise RuntimeError("the data could not be loaded")
    assert not (tmp_path / "a").exists()
    with run_folder_lock(out):
        (out / "checkpoint.pt").write_bytes(b"x")
    assert os.listdir(out) == ["checkpoint.pt"]
    existing = tmp_path / "existing"
    existing.mkdir()
    with run_folder_lock(existing):
        pass
    assert existing.is_dir()  # not made here: kept, empty or not


def _unwritable_folder(tmp_path: Path) -> Path:
    """A folder this process cannot create files in: a read-only one, or for root
    (whom modes do not stop) sysfs."""
    if os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o555)
        return folder
    return Path("/sys")


@pytest.mark.parametrize("case", ["file", "under a file", "not writable", "under /dev/null"])
def test_an_unusable_folder_is_one_config_error(tmp_path, case):
    (tmp_path / "f").write_text("x")
    out = {"file": tmp_path / "f", "under a file": tmp_path / "f" / "run",
           "not writable": _unwritable_folder(tmp_path), "under /dev/null": Path("/dev/null/run")}[case]
    if case == "not writable":
        try:
            (out / ".probe").touch()
        except OSError:
            pass
        else:
            (out / ".probe").unlink()
            pytest.skip(f"{out} is writable here")
    with pytest.raises(ConfigError) as err, run_folder_lock(out):
        pass
    message = str(err.value)
    assert str(out) in message and "choose another --out" in message and "\n" not in message
