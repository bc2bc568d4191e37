"""Where the job reads PDFs and writes results: local paths, or any
filesystem pyarrow opens from a URI (`s3://`, `gs://`, `hdfs://`, ...; see
`pyarrow.fs.FileSystem.from_uri`).

Inputs: local files, folders and globs go through `ingest.sources.discover`
(the same list, order and errors as the single-process run); a URI names one
object or a prefix that is listed recursively for `*.pdf` (hidden names
skipped). Workers read bytes themselves (`read_bytes`), so PDF bytes never
travel through the driver.

Outputs (`OutputStore`): on a local folder, exactly what `docpipe convert`
writes (`batch.write_outputs`: the per-document folder with its
`.docpipe.json` manifest, and `dataset/{name}.parquet`). On a URI, only the
Parquet dataset `{out}/dataset/{name}.parquet`: the part is written under a
hidden temp name and moved into place (object stores: one PUT), so a part is
either whole or absent. Both are keyed by name, so a retried or resumed
document replaces its own part and never adds a second row.
"""
from __future__ import annotations

import os
import posixpath
import uuid
from dataclasses import dataclass, field

from docpipe.config import ConvertOptions
from docpipe.schema import DocumentResult, Status
from docpipe.writers import files


def is_uri(path: str) -> bool:
    return "://" in path


def filesystem(uri: str):
    """(pyarrow FileSystem, path inside it) for a URI."""
    from pyarrow import fs as pafs

    return pafs.FileSystem.from_uri(uri)


def _join_uri(uri: str, path: str) -> str:
    scheme = uri.split("://", 1)[0]
    return f"{scheme}://{path}"


def list_uri(uri: str) -> tuple[list[str], str]:
    """PDF URIs under `uri` (sorted), or an error message."""
    from pyarrow import fs as pafs

    fsys, root = filesystem(uri)
    info = fsys.get_file_info(root)
    if info.type == pafs.FileType.File:
        return [uri], ""
    if info.type != pafs.FileType.Directory:
        return [], "file or folder not found"
    found = []
    for entry in fsys.get_file_info(pafs.FileSelector(root, recursive=True)):
        rel = posixpath.relpath(entry.path, root)
        hidden = any(part.startswith(".") for part in rel.split("/"))
        if entry.type == pafs.FileType.File and entry.path.lower().endswith(".pdf") and not hidden:
            found.append(_join_uri(uri, entry.path))
    return sorted(found), "" if found else "folder contains no .pdf files"


def list_sources(inputs: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """(sources, [(input, why it named no file)]) for local paths and URIs."""
    from docpipe.ingest.sources import discover

    local = [i for i in inputs if not is_uri(i)]
    sources, errors = [], []
    for src in discover(local) if local else []:
        (errors.append((src.path, src.error)) if src.error else sources.append(src.path))
    for uri in (i for i in inputs if is_uri(i)):
        found, error = list_uri(uri)
        sources += found
        if error:
            errors.append((uri, error))
    return sources, errors


def read_bytes(source: str) -> bytes:
    if not is_uri(source):
        with open(source, "rb") as f:
            return f.read()
    fsys, path = filesystem(source)
    with fsys.open_input_stream(path) as f:
        return f.read()


@dataclass
class OutputStore:
    """The job's output location (see module doc). Picklable: workers get a copy."""

    root: str  # local folder or URI
    formats: tuple[str, ...] = ("md", "json", "parquet")  # what a finished document has
    table_format: str = "auto"
    _fs: object = field(default=None, repr=False, compare=False)  # pyarrow fs, opened lazily per process

    @property
    def is_local(self) -> bool:
        return not is_uri(self.root)

    def _filesystem(self):
        if self._fs is None:
            self._fs, self._path = filesystem(self.root)
        return self._fs, self._path

    def __getstate__(self):  # filesystems reconnect in each worker
        return {"root": self.root, "formats": self.formats, "table_format": self.table_format, "_fs": None}

    def part_path(self, name: str) -> str:
        fsys, path = self._filesystem()
        return posixpath.join(path, "dataset", f"{name}.parquet")

    def read_part_meta(self, name: str) -> dict | None:
        """source_path and status of a finished part (remote), or None."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        fsys, _ = self._filesystem()
        try:
            rows = pq.read_table(self.part_path(name), columns=["source_path", "status"], filesystem=fsys).to_pylist()
        except (OSError, pa.ArrowException):
            return None
        return rows[0] if rows else None

    def owner_of(self, name: str) -> str | None:
        meta = self.read_part_meta(name)
        return meta["source_path"] if meta else None

    def is_finished(self, name: str, source: str) -> bool:
        if self.is_local:
            from docpipe.batch import is_finished
            return is_finished(self.root, name, source, self.formats)
        meta = self.read_part_meta(name)
        return bool(meta) and meta["source_path"] == files.source_key(source) and meta["status"] != "failure"

    def done_doc_ids(self) -> dict[str, str]:
        """doc_id -> name of every non-failed row already in the dataset."""
        import pyarrow as pa
        import pyarrow.dataset as pds

        if self.is_local:
            where, fsys = os.path.join(self.root, "dataset"), None
            if not os.path.isdir(where):
                return {}
        else:
            fsys, path = self._filesystem()
            where = posixpath.join(path, "dataset")
        try:
            table = pds.dataset(where, format="parquet", filesystem=fsys).to_table(columns=["doc_id", "name", "status"])
        except (OSError, pa.ArrowException, FileNotFoundError):
            return {}
        return {r["doc_id"]: r["name"] for r in table.to_pylist() if r["doc_id"] and r["status"] != "failure"}

    def write(self, result: DocumentResult, opts: ConvertOptions) -> None:
        """Write one document; a write error becomes the document's failure."""
        if self.is_local:
            from docpipe.batch import write_outputs
            write_outputs(result, self.root, opts)
            return
        if "parquet" not in opts.formats:
            return
        try:
            self._write_remote_part(result)
        except Exception as e:  # noqa: BLE001 - a bad row (pyarrow errors are ValueError/TypeError) fails its document only
            result.status = Status.FAILURE
            result.error = (f"{files.safe_stem(result.source_path)}: cannot write outputs to {self.root}: "
                            f"{type(e).__name__}: {e}")

    def _write_remote_part(self, result: DocumentResult) -> None:
        import pyarrow.parquet as pq

        from docpipe.writers import parquet

        fsys, path = self._filesystem()
        final = self.part_path(result.name)
        fsys.create_dir(posixpath.dirname(final), recursive=True)
        tmp = posixpath.join(posixpath.dirname(final), f".tmp-{result.name}-{uuid.uuid4().hex[:8]}.parquet")
        try:
            pq.write_table(parquet.to_table([result], self.table_format), tmp, filesystem=fsys)
            fsys.move(tmp, final)
        except BaseException:
            try:
                fsys.delete_file(tmp)
            except OSError:
                pass
            raise
