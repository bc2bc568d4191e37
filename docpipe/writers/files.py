"""Per-document output folder, MinerU layout:

    {out}/{name}/{name}.md
    {out}/{name}/{name}_content_list.json
    {out}/{name}/images/<sha256>.png
    {out}/{name}/.docpipe.json          manifest: source, status, formats written

Lifecycle of one write: everything goes into a fresh hidden temp folder
`{out}/.tmp-{name}-*`, then one rename puts the folder in place. A previous
folder of the same name is first renamed aside (`.old-{name}-*`) and deleted
after. A killed run therefore leaves either the old complete folder, the new
complete folder, or no folder plus hidden leftovers that `clean_stale` removes;
never a half-written document. The presence of the folder (with its manifest)
is what "finished" means for resume.

Names: the input's stem, made filesystem-safe. When two inputs share a stem,
or the folder already belongs to another source (earlier run), the name gets a
short hash of the source path, so outputs never overwrite each other.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from docpipe.schema import DocumentResult

MANIFEST = ".docpipe.json"
_STALE_PREFIXES = (".tmp-", ".old-")


def source_key(source: str) -> str:
    """Stable identity of an input: absolute path, or the URI as given."""
    return source if "://" in source else os.path.abspath(source)


def safe_stem(source: str) -> str:
    stem = Path(source.rstrip("/")).name
    if stem.lower().endswith(".pdf"):
        stem = stem[:-4]
    stem = re.sub(r"[^\w.\-]+", "_", stem).strip("._") or "document"
    return stem[:150]  # leaves room for suffixes within the 255-byte name limit


def _short_hash(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def assign_names(sources: list[str], owner_of=None) -> dict[str, str]:
    """Unique output name per source. `owner_of(name)` returns the source key
    that already owns `name` in the output folder (or None)."""
    names: dict[str, str] = {}
    taken: set[str] = set()
    for src in sorted(sources, key=source_key):  # sorted: same names on every run
        key = source_key(src)
        name = safe_stem(src)
        owner = owner_of(name) if owner_of else None
        if name in taken or (owner is not None and owner != key):
            name = f"{name}-{_short_hash(key)}"
        taken.add(name)
        names[src] = name
    return names


def doc_dir(out: str | os.PathLike, name: str) -> Path:
    return Path(out) / name


def read_manifest(out: str | os.PathLike, name: str) -> dict | None:
    path = doc_dir(out, name) / MANIFEST
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write_text(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def _fill(tmp: Path, result: DocumentResult, formats: tuple[str, ...]) -> None:
    name = result.name
    if "md" in formats:
        _write_text(tmp / f"{name}.md", result.markdown)
    if "json" in formats:
        _write_text(tmp / f"{name}_content_list.json",
                    json.dumps(result.content_list, ensure_ascii=False, indent=1))
    images = [b for b in result.blocks if b.image and b.img_path]
    if images:
        (tmp / "images").mkdir()
    for block in images:
        target = tmp / block.img_path
        if target.parent != tmp / "images":  # names come from the pipeline; never write elsewhere
            raise ValueError(f"image path must be images/<name>, got {block.img_path!r}")
        if not target.exists():  # content-addressed: identical crops share a file
            target.write_bytes(block.image)
    manifest = {
        "source_path": source_key(result.source_path), "doc_id": result.doc_id,
        "status": getattr(result.status, "value", result.status), "error": result.error,
        "num_pages": result.num_pages, "formats": [f for f in formats if f in ("md", "json")],
        "backend": result.backend,
    }
    _write_text(tmp / MANIFEST, json.dumps(manifest, indent=1))


def write_document(result: DocumentResult, out: str | os.PathLike, formats: tuple[str, ...]) -> Path:
    """Atomically write (or replace) the document folder; returns its path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    final = doc_dir(out, result.name)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{result.name}-", dir=out))
    try:
        _fill(tmp, result, formats)
        if final.exists():
            aside = Path(tempfile.mkdtemp(prefix=f".old-{result.name}-", dir=out))
            os.rename(final, aside / "d")
            os.rename(tmp, final)
            shutil.rmtree(aside, ignore_errors=True)
        else:
            os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def clean_stale(out: str | os.PathLike) -> int:
    """Remove temp folders/files that a killed run left behind; returns how many."""
    count = 0
    for root in (Path(out), Path(out) / "dataset"):
        if not root.is_dir():
            continue
        for entry in root.iterdir():
            if _restore_replaced(root, entry):
                count += 1
                continue
            if entry.name.startswith(_STALE_PREFIXES):
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
                count += 1
    return count


def _restore_replaced(out: Path, entry: Path) -> bool:
    """A run killed between the two renames of write_document leaves the old
    complete folder aside (.old-<name>-<random>/d) and none in place: put it back."""
    if not (entry.name.startswith(".old-") and (entry / "d").is_dir()):
        return False
    name = entry.name[len(".old-"):].rsplit("-", 1)[0]  # mkdtemp's random part has no '-'
    final = doc_dir(out, name)
    if final.exists():
        return False
    os.rename(entry / "d", final)
    shutil.rmtree(entry, ignore_errors=True)
    return True
