"""Fixtures for ingest tests; the PDF builders live in pdf_factory (a
uniquely named module, since several test folders have a conftest)."""
import pytest

from pdf_factory import write_pages  # noqa: F401  (used by fixtures)


@pytest.fixture
def good_pdf(tmp_path):
    return write_pages(tmp_path / "good.pdf", [(612, 792)] * 3)
