"""The embedded engine as a VLM client: `EngineClient` (batch `generate`, the
`VLMClient` contract) and `EngineRunner` (request-level, for the page
scheduler: submit requests at any time, one engine step per `poll`).

Prompts: the family's chat template (`family.chat_prompt`). With a
tokenizer in the checkpoint `PromptCodec` encodes that text to the ids the
processor would (once per distinct prompt text: a run has a handful), and
the engine gets `prompt_token_ids`. Without one (`dummy:<preset>` random
weights) `PromptCodec` stands in: the template's text becomes deterministic
ids (one per `<|...|>` marker and per 4 other characters, below every
special id) around the real image placeholder ids, so prompt lengths and
image tokens are as a real run's; answers of such models are garbage anyway
and decode to `<|tok_N|>` markers.

Decoding: the engine's `processor.decode` skips special tokens, but the
layout grammar IS special tokens (`<|box_start|>`, `<|ref_start|>`, ...),
so we decode ourselves with the tokenizer, special tokens kept, and cut at
the first end-of-turn token (`<|im_end|>`, `<|endoftext|>`) only; requests
carry `detokenize=False` so the engine does not decode them a second time.

Engines (`make_llm(model, layout)`): no layout -> `inference.LLM`; an
embedded layout -> `inference.LLM` with its worker settings; a
disaggregated layout -> `DisaggLLM` (starts its workers and router here);
`router://host:port` -> `RouterLLM` on a router someone else runs (`docpipe
serve`, the Ray job's PD pools), shared token from $DOCPIPE_TOKEN. The last
two have no local engine: prompts are tokenized and sized here (the
checkpoint's config and tokenizer, no weights), against `max_model_len`
from the engine settings, which should be the workers'.

Sampling: `SamplingParams(**request.sampling)` (the family's per-type
settings and max_tokens caps), end-of-turn ids as stop tokens, max_tokens
clamped to what the engine's max_model_len leaves after the prompt.

Runners: `EngineRunner` (engine_runner.py) prepares requests off the
step thread and stops runaway loops; `Finished` is what runners hand back.
"""
from __future__ import annotations

import atexit
import re
import threading
import zlib

from docpipe.models.base import ModelFamily, VLMRequest, get_family
from docpipe.models.mineru25.prompts import IMAGE_PLACEHOLDER
from docpipe.models.engine_runner import LOOP_CHECK_TOKENS, EngineRunner, Finished  # noqa: F401 - re-exported

END_OF_TURN = ("<|im_end|>", "<|endoftext|>")
_CHARS_PER_TOKEN = 4  # stand-in tokenizer: English averages ~4 characters a token
_SPECIAL_RE = re.compile(r"(<\|[a-z_]+\|>)")
ROUTER_PREFIX = "router://"  # layout argument naming a running router instead of a layout file


def make_llm(model: str, layout: str | None = None, **engine_kwargs):
    """An engine for a checkpoint dir, hub id or `dummy:<preset>`: `inference.LLM`
    (embedded; an embedded layout's worker settings apply), for a disaggregated
    layout `inference.disagg.DisaggLLM` (starts prefill/decode workers), or for
    `router://host:port` a `RouterLLM` on that running router (token from
    $DOCPIPE_TOKEN; engine_kwargs are the workers' business there, ignored)."""
    import inference

    if layout is None:
        return inference.LLM(model=model, **engine_kwargs)
    if layout.startswith(ROUTER_PREFIX):
        from inference.disagg.remote import RouterLLM

        llm = RouterLLM(router_address(layout))
        atexit.register(llm.close)
        return llm
    from inference.layouts import load_layout

    spec = load_layout(layout)
    if spec.is_disaggregated:
        from inference.disagg.llm import DisaggLLM  # imported only when chosen: it spawns worker processes

        llm = DisaggLLM(model, spec, **engine_kwargs)
        atexit.register(llm.close)
        return llm
    w = spec.role("embedded")
    settings = dict(device=w.device, dtype=w.dtype, mode=w.mode, ops_backend=w.ops_backend,
                    kv_block_size=w.kv_block_size, max_num_seqs=w.max_num_seqs,
                    max_num_batched_tokens=w.max_num_batched_tokens)
    return inference.LLM(model=model, **{**settings, **engine_kwargs})


def router_address(layout: str) -> str:
    """"host:port" of a `router://host:port` layout argument."""
    address = layout[len(ROUTER_PREFIX):].rstrip("/")
    host, sep, port = address.rpartition(":")
    if not (host and sep and port.isdigit()):
        raise ValueError(f"layout {layout!r}: a router address is router://host:port")
    return address


class PromptCodec:
    """Prompt ids and answer text for one model (config + its tokenizer, if any; see module doc)."""

    def __init__(self, cfg, tokenizer=None):
        self.tokenizer = tokenizer
        self.image_ids = (cfg.vision_start_token_id, cfg.image_token_id, cfg.vision_end_token_id)
        special = [*self.image_ids, *cfg.eos_token_ids]
        self.text_id_limit = max(1, min([cfg.vocab_size, *special]))  # stand-in ids stay below these
        self.stop_ids: list[int] = []
        self._ids_memo: dict[str, list[int]] = {}  # stand-in ids of prompt text parts (read-only lists)
        self._token_memo: dict[str, list[int]] = {}  # tokenizer ids of whole prompt texts (read-only lists)
        # a fast tokenizer must not encode on one thread while it decodes on another ("Already borrowed")
        self._tokenizer_lock = threading.Lock()
        if self.tokenizer is not None:
            vocab = self.tokenizer.get_vocab()
            self.stop_ids = [vocab[t] for t in END_OF_TURN if t in vocab]
        else:
            self.stop_ids = list(cfg.eos_token_ids)

    def request(self, prompt: str, image) -> dict:
        """Engine request dict for the chat-templated prompt text with one image."""
        if self.tokenizer is not None:  # the ids the processor would encode the prompt text into
            return {"prompt_token_ids": list(self._tokens(prompt)), "images": [image]}
        before, sep, after = prompt.partition(IMAGE_PLACEHOLDER)
        if not sep:
            raise ValueError(f"prompt has no image placeholder {IMAGE_PLACEHOLDER!r}")
        return {"prompt_token_ids": [*self._ids(before), *self.image_ids, *self._ids(after)], "images": [image]}

    def _ids(self, text: str) -> list[int]:
        ids = self._ids_memo.get(text)
        if ids is None:  # a few prompt parts in a run: each coded once
            self._ids_memo[text] = ids = self._ids_uncached(text)
        return ids

    def _tokens(self, text: str) -> list[int]:
        ids = self._token_memo.get(text)
        if ids is None:  # a few prompt texts in a run (one per request kind): each encoded once
            with self._tokenizer_lock:
                ids = self.tokenizer.encode(text, add_special_tokens=False)
            self._token_memo[text] = ids
        return ids

    def _ids_uncached(self, text: str) -> list[int]:
        ids = []
        for part in _SPECIAL_RE.split(text):  # a `<|...|>` marker is one token, other text ~4 characters a token
            step = len(part) if _SPECIAL_RE.fullmatch(part) else _CHARS_PER_TOKEN
            ids += [zlib.crc32(part[i:i + step].encode()) % self.text_id_limit for i in range(0, len(part), step)]
        return ids

    def decode(self, token_ids: list[int]) -> str:
        """Answer text: cut at the first end-of-turn id, special tokens kept."""
        for i, tok in enumerate(token_ids):
            if tok in self.stop_ids:
                token_ids = token_ids[:i]
                break
        if self.tokenizer is None:
            return "".join(f"<|tok_{t}|>" for t in token_ids)
        with self._tokenizer_lock:
            return self.tokenizer.decode(token_ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)


class EngineClient:
    """VLMClient over an engine (one per process; thread-unsafe like the engine).

    Embedded `inference.LLM`: `runner()` gives request-level control.
    `DisaggLLM` / `RouterLLM` (no local engine): batch `generate()` only;
    prompts are processed locally too, to size them against max_model_len."""

    def __init__(self, llm, family: ModelFamily | None = None, model: str | None = None,
                 max_model_len: int | None = None):
        self.llm = llm
        self.engine = getattr(llm, "engine", None)  # None for a disaggregated engine
        self.family = family or get_family("mineru25")
        if self.engine is not None:
            self.processor, self.max_model_len = self.engine.processor, self.engine.config.max_model_len
        else:
            from inference.config import EngineConfig
            from inference.models.loader import DUMMY_PREFIX, load_config
            from inference.processor import Processor

            assert model is not None, "a disaggregated engine needs the model name for local prompt processing"
            self.processor = Processor(load_config(model), None if model.startswith(DUMMY_PREFIX) else model)
            self.max_model_len = max_model_len or EngineConfig.max_model_len
        self.codec = PromptCodec(self.processor.cfg, self.processor.tokenizer)

    @classmethod
    def open(cls, model: str, layout: str | None = None, family: ModelFamily | None = None,
             **engine_kwargs) -> "EngineClient":
        return cls(make_llm(model, layout, **engine_kwargs), family, model, engine_kwargs.get("max_model_len"))

    @property
    def is_step_level(self) -> bool:
        return self.engine is not None

    def engine_request(self, request: VLMRequest) -> dict:
        return self.codec.request(self.family.chat_prompt(request.prompt), request.image)

    def prepare(self, request: VLMRequest):
        """(processed prompt, SamplingParams) for the engine; raises ValueError when it cannot fit."""
        host, params = self.prepare_host(request)
        return self.processor.finish(host), params

    def prepare_host(self, request: VLMRequest):
        """`prepare` up to the device upload: (HostPrompt, SamplingParams), no device call
        (any thread); `processor.finish` makes the processed prompt (the step thread)."""
        from inference import SamplingParams

        processed = self.processor.host(self.engine_request(request))
        fields = dict(request.sampling)
        room = self.max_model_len - len(processed.token_ids)
        if room < 1:
            raise ValueError(f"{request.kind} request: prompt of {len(processed.token_ids)} tokens leaves no "
                             f"room under max_model_len {self.max_model_len}")
        fields["max_tokens"] = min(int(fields.get("max_tokens", room)), room)
        fields["stop_token_ids"] = sorted(set(fields.get("stop_token_ids", [])) | set(self.codec.stop_ids))
        fields["detokenize"] = False  # answers are decoded here, special tokens kept (codec.decode)
        return processed, SamplingParams(**fields)

    def generate(self, requests: list[VLMRequest]) -> list[str]:
        if not self.is_step_level:
            params = [self.prepare(r)[1] for r in requests]
            outputs = self.llm.generate([self.engine_request(r) for r in requests], params)
            for r, out in zip(requests, outputs):
                if out.finish_reason == "abort" and not out.token_ids:
                    raise RuntimeError(f"{r.kind} request: the engine rejected it ({out.text})")
            return [self.codec.decode(out.token_ids) for out in outputs]
        runner = EngineRunner(self, stop_loops=False)  # generate() has no early stop: same as LLM.generate
        try:
            for i, request in enumerate(requests):
                runner.submit(i, request)
            answers: dict[int, str] = {}
            while runner.has_pending():
                for done in runner.poll():
                    if done.error:  # the batch call fails, as the engine's generate() does
                        raise RuntimeError(f"{requests[done.tag].kind} request {done.tag}: {done.error}")
                    answers[done.tag] = done.answer
        finally:
            runner.close()  # a failed call leaves nothing in flight; the stage's threads end
        return [answers[i] for i in range(len(requests))]

    def runner(self, record_dir: str | None = None, stop_loops: bool = True,
               prep_threads: int | None = None, upload_thread: bool | None = None) -> "EngineRunner":
        """A step-level runner; `prep_threads` None: $DOCPIPE_PREP_THREADS or the device's default (prep.py);
        `upload_thread` None: on a GPU unless $DOCPIPE_UPLOAD_THREAD=0 (engine_runner.py)."""
        assert self.is_step_level, "a disaggregated engine has no step-level API: wrap the client in a WaveRunner"
        return EngineRunner(self, record_dir=record_dir, stop_loops=stop_loops, prep_threads=prep_threads,
                            upload_thread=upload_thread)
