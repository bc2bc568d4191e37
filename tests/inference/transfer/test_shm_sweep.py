"""Segment files of processes killed before their exit handlers ran are swept by the next process
that makes a segment: only this pid namespace's, this user's, of a pid that no longer runs."""
import multiprocessing as mp
import os

import torch

from inference.transfer import shm


def _dead_pid() -> int:
    proc = mp.get_context("fork").Process(target=os._exit, args=(0,))
    proc.start()
    proc.join(10)
    return proc.pid


def test_sweep_removes_only_files_of_processes_that_are_gone(tmp_path, monkeypatch):
    monkeypatch.setattr(shm, "SHM_DIR", str(tmp_path))
    dead, ns = _dead_pid(), shm._NAMESPACE
    files = {
        "stale": f"docpipe-kv-{ns}-{dead}-aa", "stale_ring": f"docpipe-kv-{ns}-{dead}-bb",
        "live_parent": f"docpipe-kv-{ns}-{os.getppid()}-cc", "mine": f"docpipe-kv-{ns}-{os.getpid()}-dd",
        "other_namespace": f"docpipe-kv-{int(ns) + 1}-{dead}-ee", "old_form": f"docpipe-kv-{dead}-ff",
        "not_ours": f"other-{ns}-{dead}-gg", "malformed": f"docpipe-kv-{ns}-x{dead}-hh",
    }
    for name in files.values():
        (tmp_path / name).write_bytes(b"\0" * 64)
    removed = shm.sweep_stale_segments()
    assert sorted(removed) == sorted(str(tmp_path / files[k]) for k in ("stale", "stale_ring"))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(v for k, v in files.items() if k not in ("stale", "stale_ring"))


def test_a_process_sweeps_once_when_it_makes_its_first_segment(tmp_path, monkeypatch):
    monkeypatch.setattr(shm, "SHM_DIR", str(tmp_path))
    monkeypatch.setattr(shm, "_swept", False)
    stale = tmp_path / f"docpipe-kv-{shm._NAMESPACE}-{_dead_pid()}-aa"
    stale.write_bytes(b"\0" * 64)
    path, mapped = shm._create_segment(4096)
    path2 = None
    try:
        assert not stale.exists() and os.path.basename(path).startswith(f"docpipe-kv-{shm._NAMESPACE}-{os.getpid()}-")
        assert mapped.numel() == 4096 and torch.count_nonzero(mapped) == 0
        stale.write_bytes(b"\0" * 64)  # another one appears later: not this process's job any more
        path2, _ = shm._create_segment(4096)
        assert stale.exists()
    finally:
        for p in (path, path2):
            if p is not None:
                shm._unlink(p)
