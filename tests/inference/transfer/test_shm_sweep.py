"""Segment files of processes killed before their exit handlers ran are swept by the next process
that makes a segment: only regular files of this pid namespace and this user, of a pid that no
longer runs; odd names are left alone and never make the sweep (or the segment) fail."""
import os
import subprocess
import sys

import pytest
import torch

from inference.transfer import shm_segments as seg


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", ""])
    proc.wait(30)
    return proc.pid


@pytest.fixture
def shm_dir(tmp_path, monkeypatch):
    if seg.NAMESPACE is None:
        pytest.skip("no /proc/self/ns/pid here: the sweep is off by design")
    monkeypatch.setattr(seg, "SHM_DIR", str(tmp_path))
    return tmp_path


def _plant(where, names):
    for name in names:
        (where / name).write_bytes(b"\0" * 64)


def test_sweep_removes_only_files_of_processes_that_are_gone(shm_dir):
    dead, ns = _dead_pid(), seg.NAMESPACE
    stale = [f"docpipe-kv-{ns}-{dead}-aa", f"docpipe-kv-{ns}-{dead}-bb"]
    kept = [f"docpipe-kv-{ns}-{os.getppid()}-cc", f"docpipe-kv-{ns}-{os.getpid()}-dd",  # running
            f"docpipe-kv-{int(ns) + 1}-{dead}-ee", f"docpipe-kv-{dead}-ff",  # another namespace, the old form
            f"other-{ns}-{dead}-gg", f"docpipe-kv-{ns}-x{dead}-hh",  # not ours, malformed
            f"docpipe-kv-{ns}-\u00b2-ii", f"docpipe-kv-{ns}-{1 << 40}-jj", f"docpipe-kv-{ns}-0-kk"]  # odd pids
    _plant(shm_dir, stale + kept)
    os.symlink(shm_dir / kept[0], shm_dir / f"docpipe-kv-{ns}-{dead}-ll")  # not a regular file
    kept.append(f"docpipe-kv-{ns}-{dead}-ll")
    removed = seg.sweep_stale_segments()
    assert sorted(removed) == sorted(str(shm_dir / n) for n in stale)
    assert sorted(p.name for p in shm_dir.iterdir()) == sorted(kept)


def test_sweep_spares_other_users_files_and_pids_it_may_not_signal(shm_dir, monkeypatch):
    dead, ns = _dead_pid(), seg.NAMESPACE
    _plant(shm_dir, [f"docpipe-kv-{ns}-{dead}-aa"])
    uid = os.getuid()
    monkeypatch.setattr(seg.os, "getuid", lambda: uid + 1)  # the file is another user's
    assert seg.sweep_stale_segments() == []
    monkeypatch.undo()
    monkeypatch.setattr(seg, "SHM_DIR", str(shm_dir))

    def no_permission(pid, sig):
        raise PermissionError("another user's process")
    monkeypatch.setattr(seg.os, "kill", no_permission)  # a live process of another user
    assert seg.sweep_stale_segments() == []
    assert [p.name for p in shm_dir.iterdir()] == [f"docpipe-kv-{ns}-{dead}-aa"]


def test_no_sweep_without_a_known_pid_namespace(shm_dir, monkeypatch):
    dead = _dead_pid()
    _plant(shm_dir, [f"docpipe-kv-None-{dead}-aa", f"docpipe-kv-0-{dead}-bb"])
    monkeypatch.setattr(seg, "NAMESPACE", None)
    assert seg.sweep_stale_segments() == [] and len(list(shm_dir.iterdir())) == 2


def test_a_process_sweeps_once_when_it_makes_its_first_segment(shm_dir, monkeypatch):
    monkeypatch.setattr(seg, "_swept", False)
    stale = shm_dir / f"docpipe-kv-{seg.NAMESPACE}-{_dead_pid()}-aa"
    stale.write_bytes(b"\0" * 64)
    made = []
    try:
        path, mapped = seg.create_segment(4096)
        made.append(path)
        assert not stale.exists() and os.path.basename(path).startswith(f"docpipe-kv-{seg.NAMESPACE}-{os.getpid()}-")
        assert mapped.numel() == 4096 and torch.count_nonzero(mapped) == 0
        stale.write_bytes(b"\0" * 64)  # another one appears later: not this process's job any more
        made.append(seg.create_segment(4096)[0])
        assert stale.exists()
    finally:
        for p in made:
            seg.unlink(p)
    assert not any(os.path.exists(p) for p in made)


def test_a_failing_sweep_does_not_fail_the_segment(shm_dir, monkeypatch):
    monkeypatch.setattr(seg, "_swept", False)

    def broken():
        raise RuntimeError("listing failed")
    monkeypatch.setattr(seg, "sweep_stale_segments", broken)
    path, mapped = seg.create_segment(1024)
    try:
        assert os.path.exists(path) and mapped.numel() == 1024
    finally:
        seg.unlink(path)
