"""Handoff, the queue ahead() and the document feed share: poll never waits and clears `ready` before its
second look; an ended thread's last entry is still handed over, and only then is its absence an error."""
import threading

import pytest

from docpipe.ingest.ahead import Handoff


def test_poll_clears_ready_when_empty_and_a_put_sets_it():
    thread = threading.Thread(target=threading.Event().wait, args=(5,), daemon=True)
    thread.start()
    h = Handoff(2, thread, "lost")
    h.ready.set()
    assert h.poll() is Handoff.EMPTY and not h.ready.is_set()
    assert h.put("a") and h.ready.is_set()
    assert h.poll() == "a"


def test_an_ended_threads_last_entry_comes_before_the_lost_error():
    h = Handoff(2, threading.Thread(target=lambda: h.put("last"), daemon=True), "thread t ended without its end")
    h.thread.start()
    h.thread.join(5)
    assert h.poll() == "last"
    with pytest.raises(RuntimeError, match="thread t ended without its end"):
        h.poll()
    with pytest.raises(RuntimeError, match="thread t ended without its end"):
        h.get()


def test_put_gives_up_once_stopped():
    h = Handoff(1, threading.Thread(target=lambda: None), "lost")
    assert h.put(1)
    h.stop.set()
    assert not h.put(2)  # the queue is full and the consumer went away: the producer returns
