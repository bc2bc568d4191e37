"""Recorded VLM answers: replay them as a model, or record a real model's.

Store layout: one JSON file per request, `<dir>/<key>.json`, where key is
`VLMRequest.key` (sha256 of the image pixels and the prompt):
    {"key": ..., "kind": "text", "prompt": "\\nText Recognition:",
     "image_size": [w, h], "answer": "..."}
Only "answer" is read back; the rest lets a person see what a file is for
(and write one by hand). `--model replay:DIR` answers from such a folder;
`--record DIR` wraps the real client in a `RecordingClient`.

Lifecycle: `RecordingClient.generate` asks the inner client, then writes
each answer atomically (temp file in the same folder, then rename), so a
killed run leaves whole files only and a reader never sees half an answer.
`ReplayClient.generate` reads the files for a batch; if any is missing it
raises `ReplayMissError` naming every missing key (kind, image size, prompt)
and the folder, before answering anything.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from docpipe.models.base import VLMClient, VLMRequest


class ReplayMissError(LookupError):
    """Requests with no recorded answer in the replay folder."""

    def __init__(self, directory: Path, missing: list[VLMRequest]):
        self.directory = directory
        self.missing_keys = [r.key for r in missing]
        lines = [f"  {r.key}  kind={r.kind} image={r.image.width}x{r.image.height} prompt={r.prompt!r}"
                 for r in missing]
        super().__init__(
            f"replay folder {directory} has no recorded answer for {len(missing)} request(s):\n"
            + "\n".join(lines)
            + "\nrecord them with a real model (--record DIR) or add <key>.json files by hand")


def record_path(directory: Path, key: str) -> Path:
    return directory / f"{key}.json"


def write_record(directory: Path, request: VLMRequest, answer: str) -> Path:
    """Atomically write one recorded answer; returns its path."""
    directory.mkdir(parents=True, exist_ok=True)
    record = {"key": request.key, "kind": request.kind, "prompt": request.prompt,
              "image_size": [request.image.width, request.image.height], "answer": answer}
    target = record_path(directory, request.key)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(record, f, ensure_ascii=False, indent=1)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


class ReplayClient:
    """A VLMClient answering from a folder of recorded answers."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise FileNotFoundError(f"replay folder {self.directory} does not exist")

    def generate(self, requests: list[VLMRequest]) -> list[str]:
        paths = [record_path(self.directory, r.key) for r in requests]
        missing = [r for r, p in zip(requests, paths) if not p.is_file()]
        if missing:
            raise ReplayMissError(self.directory, missing)
        answers = []
        for path in paths:
            try:
                answers.append(json.loads(path.read_text(encoding="utf-8"))["answer"])
            except (ValueError, KeyError) as e:
                raise ValueError(f"replay record {path} is not valid ({e})") from e
        return answers


class RecordingClient:
    """Wraps a real client and saves each of its answers for later replay."""

    def __init__(self, inner: VLMClient, directory: str | os.PathLike):
        self.inner = inner
        self.directory = Path(directory)

    def generate(self, requests: list[VLMRequest]) -> list[str]:
        answers = self.inner.generate(requests)
        if len(answers) != len(requests):
            raise RuntimeError(f"client returned {len(answers)} answers for {len(requests)} requests")
        for request, answer in zip(requests, answers):
            write_record(self.directory, request, answer)
        return answers
