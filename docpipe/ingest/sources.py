"""Input discovery: files, folders (recursive) and glob patterns to the list
of PDF sources a batch converts.

- A file named explicitly is taken whatever its extension (validation then
  says whether it is a PDF); folders and globs contribute *.pdf files only
  (any case), hidden files and folders skipped.
- The result is sorted by path and de-duplicated by real path (the first
  spelling is kept), so reruns visit documents in the same order.
- An input that matches nothing (missing path, empty folder, glob without a
  match) becomes a Source with `error` set rather than an exception: the
  pipeline reports it as a failed document and the batch goes on.
"""
from __future__ import annotations

import glob
import os
from dataclasses import dataclass

GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class Source:
    path: str  # the file as found (relative inputs stay relative); for errors, the input as given
    error: str = ""  # non-empty when the input yielded no file

    @property
    def ok(self) -> bool:
        return not self.error


def discover(inputs: str | os.PathLike | list[str | os.PathLike]) -> list[Source]:
    """Every PDF the inputs name, sorted and de-duplicated, plus one error entry per dud input."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    found: dict[str, Source] = {}  # real path -> first source seen for it
    errors: list[Source] = []
    for item in map(os.fspath, inputs):
        paths, error = _expand(item)
        if error:
            errors.append(Source(item, error))
        for path in paths:
            found.setdefault(os.path.realpath(path), Source(path))
    return sorted([*found.values(), *errors], key=lambda s: s.path)


def _expand(item: str) -> tuple[list[str], str]:
    """The files one input names, or an error message."""
    if os.path.isfile(item):
        return [item], ""
    if os.path.isdir(item):
        paths = _pdfs_under(item)
        return paths, "" if paths else "folder contains no .pdf files"
    if GLOB_CHARS & set(item):
        paths = []
        for match in glob.glob(item, recursive=True):
            if os.path.isdir(match):
                paths += _pdfs_under(match)
            elif os.path.isfile(match) and _is_pdf_name(match):
                paths.append(match)
        return paths, "" if paths else "no .pdf file matches this pattern"
    return [], "file or folder not found"


def _pdfs_under(folder: str) -> list[str]:
    paths = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        paths += [os.path.join(root, f) for f in files if _is_pdf_name(f)]
    return paths


def _is_pdf_name(path: str) -> bool:
    name = os.path.basename(path)
    return name.lower().endswith(".pdf") and not name.startswith(".")
