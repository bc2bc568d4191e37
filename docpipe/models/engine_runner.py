"""`EngineRunner`: requests in, one engine step per `poll()`, `Finished`
answers out, for the page scheduler (scheduler.py), over an `EngineClient`
(engine_client.py) whose engine is embedded.

Preparation (EngineRunner): a request is prepared (`prepare_host`: prompt
ids, image arrays, expansion, positions, sampling; no device call) on the
runner's `PrepStage` threads (prep.py; $DOCPIPE_PREP_THREADS, default 0 =
inline: a thread measured slower on the H200, see prep.prep_threads), so
`submit` only queues it. The image upload and patchify (`Processor.finish`)
run on one upload thread when the engine is on a GPU (its device work on the
upload stream, see inference/processor.py; $DOCPIPE_UPLOAD_THREAD=0 runs it
on the step thread): the host copy into pinned memory (~1 GB/s on the H200's
host, ~13 ms a page with its crops) and the patchify launches leave the step
thread, and the copy releases the GIL. `poll` takes what is uploaded, in
submit order, and adds it to the engine on the step thread (the engine is
not thread-safe), then runs one step. A request that fails to
prepare or to be added comes back from `poll` as a `Finished` with the error
(`"ValueError: layout request: ..."`), as the other requests go on. The
tokenizer is shared by preparation (prompt ids, memoised per prompt text)
and decoding: `PromptCodec` serialises its use.

Loops (EngineRunner): every `LOOP_CHECK_TOKENS` generated tokens a
running request's output ids go through `loops.find_loop`; a runaway
request is aborted at once (its KV and batch seat freed) and answered with
what it generated, so the family's `fill_block` flags and truncates it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from docpipe.models.base import VLMRequest
from docpipe.models.loops import MIN_SPAN, find_loop
from docpipe.models.prep import prep_threads as prep_threads_for
from inference.env import env_flag
from inference.prep_stage import PrepStage

LOOP_CHECK_TOKENS = 32  # check a running request for a loop every this many tokens
LOOP_WALK_POLLS = 8  # walk the live requests for loop checks every this many polls (not every engine step)
UPLOAD_THREAD_ENV = "DOCPIPE_UPLOAD_THREAD"  # 0: upload images on the step thread (A/B, debugging)


@dataclass
class Finished:
    """One answered (or failed) request, as runners hand it back."""

    tag: object  # what the submitter attached to the request
    answer: str = ""  # decoded answer ("" when failed)
    error: str = ""  # why it failed; non-empty means no answer
    num_output_tokens: int = 0  # tokens generated (0 when unknown)
    is_loop: bool = False  # stopped early at a repetition loop


class EngineRunner:
    """Requests in, one engine step per `poll()`, finished answers out.

    Lifecycle: submit(tag, request) -> preparation (the stage's threads, or
    inline) -> engine waiting queue (at the next poll, in submit order) ->
    running -> finished (EOS / stop / max_tokens), or aborted at a detected
    loop -> `Finished` from poll(); with `record_dir`, each answer is also
    saved as a replay record. `close()` drops what is still being prepared,
    joins the preparation threads and aborts what is in the engine; the
    runner can be used again afterwards."""

    def __init__(self, client, record_dir: str | None = None, stop_loops: bool = True,
                 prep_threads: int | None = None, upload_thread: bool | None = None):
        self.client = client
        self.engine = client.engine
        self.record_dir = Path(record_dir) if record_dir else None
        self.stop_loops = stop_loops
        self._live: dict[str, tuple[object, VLMRequest, object]] = {}  # id -> (tag, request, engine Request)
        self._loop_checked: dict[str, int] = {}  # id -> output tokens // LOOP_CHECK_TOKENS at its last loop check
        self._polls = 0
        self._next_id = 0
        self._prep = PrepStage(client.prepare_host, prep_threads_for(prep_threads))
        if upload_thread is None:
            device = getattr(client.processor, "device", None)
            upload_thread = getattr(device, "type", "cpu") == "cuda" and env_flag(UPLOAD_THREAD_ENV, default=True)
        self._upload = PrepStage(self._upload_one, int(upload_thread), name="docpipe-upload")

    @property
    def prep_threads(self) -> int:
        """Threads preparing requests (0: inline); the page scheduler builds block requests likewise."""
        return self._prep.threads

    def submit(self, tag: object, request: VLMRequest) -> None:
        self._prep.submit((tag, request), request)

    def has_pending(self) -> bool:
        return bool(self._live) or self._prep.pending() > 0 or self._upload.pending() > 0

    def poll(self) -> list[Finished]:
        # with nothing in the engine, wait for the oldest request's preparation instead of spinning
        finished = self._add_prepared(wait=not self._live)
        if not self._live:
            return finished
        # outputs of requests this runner does not hold (left by an aborted earlier run) are dropped
        finished += [self._finish(out.request_id, out.token_ids) for out in self.engine.step()
                     if out.request_id in self._live]
        if self.stop_loops:
            self._polls += 1
            if self._polls % LOOP_WALK_POLLS == 0:  # a walk costs a touch of every live request
                finished += self._stop_loops()
        return finished

    def close(self) -> None:
        """Drop what is being prepared and abort what is in flight (the consumer stopped
        early or a step failed), so a reused engine starts the next document empty."""
        self._prep.close()
        self._upload.close()
        for request_id in list(self._live):
            self.engine.abort(request_id)
        self._live.clear()
        self._loop_checked.clear()

    def _add_prepared(self, wait: bool) -> list[Finished]:
        """Prepared requests on to the upload stage, uploaded ones into the engine, in
        submit order; failures as Finished. `wait`: block until one is added or failed."""
        failed = []
        for item in self._prep.take(wait and not self._upload.pending()):
            if item.error is not None:
                failed.append(Finished(item.key[0], error=f"{type(item.error).__name__}: {item.error}"))
            else:
                self._upload.submit(item.key, item.value)
        for item in self._upload.take(wait and not failed):
            tag, request = item.key
            try:
                if item.error is not None:
                    raise item.error
                processed, params = item.value
                request_id = f"vlm-{self._next_id}"
                self._next_id += 1
                self._live[request_id] = (tag, request, self.engine.add_request(request_id, processed, params))
            except Exception as e:  # noqa: BLE001 - this request fails (its page), the others go on
                failed.append(Finished(tag, error=f"{type(e).__name__}: {e}"))
        return failed

    def _upload_one(self, prepared: tuple) -> tuple:
        """(host prompt, params) -> (processed prompt, params): on the upload thread, or inline."""
        host, params = prepared
        finish = self.client.processor.finish
        return (finish(host, off_thread=True) if self._upload.threads else finish(host)), params

    def _stop_loops(self) -> list[Finished]:
        """Abort live requests whose output ends in a loop; each is checked once per
        LOOP_CHECK_TOKENS new tokens (walks run every few polls, so a check may come late
        by up to LOOP_WALK_POLLS tokens)."""
        out = []
        for request_id, (_, _, req) in list(self._live.items()):
            n = req.num_output_tokens
            period = n // LOOP_CHECK_TOKENS
            if req.status.is_finished or n < MIN_SPAN or period <= self._loop_checked.get(request_id, 0):
                continue
            self._loop_checked[request_id] = period
            tokens = req.output_token_ids
            if find_loop(tokens) is not None:
                self.engine.abort(request_id)
                out.append(self._finish(request_id, tokens, is_loop=True))
        return out

    def _finish(self, request_id: str, token_ids: list[int], is_loop: bool = False) -> Finished:
        tag, request, _ = self._live.pop(request_id)
        self._loop_checked.pop(request_id, None)
        answer = self.client.codec.decode(token_ids)
        if self.record_dir is not None:
            from docpipe.models.replay import write_record
            write_record(self.record_dir, request, answer)
        return Finished(tag, answer, num_output_tokens=len(token_ids), is_loop=is_loop)
