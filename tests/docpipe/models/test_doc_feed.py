"""DocumentFeed.get never waits: None while nothing is ready (then `ready` says when to look again),
the end marker after the last document, and an error when the thread ended without its end marker."""
import pytest

from docpipe.config import ConvertOptions
from docpipe.models.doc_feed import FEED_END, DocumentFeed


def _next(feed: DocumentFeed):
    for _ in range(100):
        item = feed.get()
        if item is not None:
            return item
        assert feed.ready.wait(5), "the feed never signalled readiness"
    raise AssertionError("no item after 100 polls")


def test_no_sources_gives_the_end_marker():
    with DocumentFeed([], ConvertOptions(), hybrid=False, window=2) as feed:
        assert _next(feed) is FEED_END


def test_a_thread_that_ends_without_its_end_marker_is_an_error(monkeypatch):
    monkeypatch.setattr(DocumentFeed, "_produce", lambda self: self.ready.set())
    with DocumentFeed([], ConvertOptions(), hybrid=False, window=2) as feed:
        feed._thread.join(5)
        with pytest.raises(RuntimeError, match="without its end marker"):
            feed.get()
