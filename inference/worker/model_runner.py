"""Model runner: owns the weights, the KV pool and the encoder cache of one
worker, and turns a SchedulerOutput into sampled tokens.

launch(): build the flattened batch -> run the vision encoder once for all
requests whose chunk first reaches their images (batched across requests) ->
embed tokens and scatter image embeddings into their rows -> LM forward over
the paged pool -> logits of the rows that sample -> sampler. One host sync per
step (the sampled token ids).

KV pool: ONE tensor kv_pool[num_blocks, num_layers, 2, block_size,
num_kv_heads, head_dim] (inference.ops.base); each attention layer gets the
strided views kv_pool[:, layer, 0/1]. Transfer engines register `kv_pool`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from operator import attrgetter

import torch
import torch.nn.functional as F

from inference.config import EngineConfig, resolve_dtype
from inference.engine.request import Request
from inference.engine.scheduler import SchedulerOutput
from inference.models.loader import load_config, load_model
from inference.ops import get_ops
from inference.h2d import to_device
from inference.worker.input_batch import InputBatch, InputBatchBuilder
from inference.worker.sampler import Sampler

CPU_KV_POOL_BYTES = 1 << 30        # default pool cap on the CPU
HISTORY_RESERVE_TOKENS = 2048  # sampler history width reserved at start (graph mode)
ACTIVATION_RESERVE_BYTES = 2 << 30  # GPU headroom kept for activations, logits and graphs
ENCODER_PATCHES_PER_CALL = 65536    # vision batch cap (activation memory); images never split


@dataclass
class ModelRunnerOutput:
    sampled: dict[str, int]          # request id -> token sampled this step


_request_id, _return_logits = attrgetter("request_id"), attrgetter("sampling.return_logits")


@dataclass
class SampledRows:
    """The sampling rows of the last launched step: the source of the next step's pending
    input tokens, and what the next step reuses when it samples the same requests."""
    requests: list[Request]          # in token order
    request_ids: list[str]           # their ids, same order
    tokens: torch.Tensor             # [S] int64 sampled ids, on the device
    any_return_logits: bool          # some request keeps its raw logits rows


@dataclass
class LaunchedStep:
    """A step whose device work is queued; collect() waits for its tokens."""
    request_ids: list[str]           # sampling requests, in token order
    tokens: torch.Tensor | None      # [S] sampled ids, on the host (pinned on CUDA) once `ready`
    ready: torch.cuda.Event | None   # recorded after all of the step's device work (CUDA only)


class ModelRunner:
    def __init__(self, config: EngineConfig):
        self.config = config
        self.device = config.torch_device
        self.model_config = load_config(config.model)
        self.dtype = resolve_dtype(config.dtype, self.model_config.torch_dtype, self.device)
        self.ops = get_ops(self.device, config.ops_backend)
        self.model = load_model(config.model, self.dtype, self.device, self.ops, config.seed)
        self.block_size = config.kv_block_size
        self.num_kv_blocks = config.num_kv_blocks or self._auto_num_blocks()
        cfg = self.model_config
        self.kv_pool = torch.zeros(self.num_kv_blocks, cfg.num_hidden_layers, 2, self.block_size,
                                   cfg.num_key_value_heads, cfg.head_dim, dtype=self.dtype, device=self.device)
        for layer, attn in enumerate(self.model.attention_layers()):
            attn.k_cache, attn.v_cache = self.kv_pool[:, layer, 0], self.kv_pool[:, layer, 1]
        self.sampler = Sampler(self.device, config.seed, config.max_model_len)
        if config.use_cuda_graph and self.device.type == "cuda":
            from inference.worker import sampler_graph
            if sampler_graph.requested():  # on unless DOCPIPE_SAMPLER_GRAPHS=0 (sampler_graph.py)
                self.sampler.graphs = sampler_graph.SamplerGraphs(
                    self.sampler, config.max_num_seqs, logits=(self.model.lm_head.out_features, self.dtype))
        self.batch_builder = InputBatchBuilder(self.block_size, self.device)
        self.encoder_cache: dict[str, torch.Tensor] = {}   # request id -> its image embeddings [N, hidden]
        self._previous = SampledRows([], [], torch.empty(0, dtype=torch.long), False)
        self.graphs = None
        self.vision_graphs = None
        self.prefill_graphs = None
        if config.use_cuda_graph:
            from inference.worker.cuda_graph import DecodeGraphs
            self.graphs = DecodeGraphs(self)
            from inference.worker import prefill_graph
            capturable = self.device.type == "cuda" and getattr(self.ops, "graph_capturable", False)
            if capturable and prefill_graph.requested():
                self.prefill_graphs = prefill_graph.PrefillGraphs(self)
            from inference.worker import vision_graph
            visual = getattr(self.model, "visual", None)
            if visual is not None and capturable and vision_graph.requested():
                self.vision_graphs = vision_graph.VisionGraphs(visual, self.ops, self.dtype, self.device,
                                                               ENCODER_PATCHES_PER_CALL)
            sets = [self.vision_graphs, self.prefill_graphs] if config.precapture_graphs else []
            if config.precapture_decode:
                # slots for every running request and histories of layout pages (~1,400 prompt tokens
                # and their output) in one allocation: the sampler graphs captured now stay valid while
                # histories stay under 2,048 tokens (a longer one widens it: all captured again at once)
                self.sampler.history.reserve(config.max_num_seqs + 1, min(HISTORY_RESERVE_TOKENS,
                                                                          config.max_model_len + 1))
                sets += [self.graphs, self.sampler.graphs]
            from inference.worker.graph_capture import precapture, precapture_requested
            if precapture_requested():  # every bucket now, not inside a step (else on first use)
                precapture(sets)
                if config.precapture_graphs and visual is not None:
                    graph_patches = self.vision_graphs.buckets[-1] if self.vision_graphs is not None else 0
                    self.ops.warm_vision_attention(visual.cfg.num_heads, visual.cfg.head_dim, self.dtype,
                                                   self.device, graph_patches)

    @property
    def bytes_per_block(self) -> int:
        cfg = self.model_config
        return (cfg.num_hidden_layers * 2 * self.block_size * cfg.num_key_value_heads * cfg.head_dim
                * torch.empty((), dtype=self.dtype).element_size())

    def _auto_num_blocks(self) -> int:
        if self.device.type == "cuda":
            free, total = torch.cuda.mem_get_info(self.device)
            # The share is of the whole device but counts only this process's own use,
            # so several engines can split one GPU (gpu-1p1d); never more than is free.
            own = torch.cuda.memory_reserved(self.device)
            budget = min(int(total * self.config.gpu_memory_utilization) - own, free) - ACTIVATION_RESERVE_BYTES
            if budget < self.bytes_per_block:
                raise RuntimeError(f"no device memory left for the KV pool on {self.device}: free {free >> 20} MiB "
                                   f"of {total >> 20}, this process holds {own >> 20} MiB, share "
                                   f"{self.config.gpu_memory_utilization} (gpu_memory_fraction in a layout)")
            return budget // self.bytes_per_block
        wanted = self.config.max_num_seqs * -(-self.config.max_model_len // self.block_size)
        return max(1, min(wanted, CPU_KV_POOL_BYTES // self.bytes_per_block))

    def _image_embeddings(self, batch: InputBatch) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Image embeddings of this step's chunks and the batch rows they fill;
        encodes (in one call) the images of requests not yet in the cache."""
        if not batch.image_chunks:
            return None, None
        todo = [c.request for c in batch.image_chunks if c.request.request_id not in self.encoder_cache]
        group: list = []
        for req in todo:
            group.append(req)
            if sum(r.prompt.pixel_values.shape[0] for r in group) >= ENCODER_PATCHES_PER_CALL or req is todo[-1]:
                self._encode(group)
                group = []
        rows, chunks = [], []
        for c in batch.image_chunks:
            index = c.request.prompt.image_token_index
            lo, hi = torch.searchsorted(index, torch.tensor([c.start, c.end])).tolist()
            rows.append(index[lo:hi] - c.start + c.row_offset)
            chunks.append(self.encoder_cache[c.request.request_id][lo:hi])
            if hi == index.numel():  # last image token consumed: embeddings no longer needed
                del self.encoder_cache[c.request.request_id]
        return torch.cat(chunks), to_device(torch.cat(rows), self.device)

    def _encode(self, reqs: list) -> None:
        """One vision encoder call for all images of `reqs`; results cached per request."""
        pixels = to_device(torch.cat([r.prompt.pixel_values for r in reqs]), self.device)
        grids = [g for r in reqs for g in r.prompt.image_grid_thw]
        # a graph's input copy converts to the model's dtype itself: no converted copy made first
        embeds = self.vision_graphs.run(pixels, grids) if self.vision_graphs is not None else None
        if embeds is None:  # no graphs, or a call no bucket takes
            embeds = self.model.encode_images(pixels.to(self.dtype), grids)
        sizes = [int(r.prompt.image_token_index.numel()) for r in reqs]
        for req, emb in zip(reqs, embeds.split(sizes)):
            self.encoder_cache[req.request_id] = emb

    def execute(self, sched: SchedulerOutput) -> ModelRunnerOutput:
        return self.collect(self.launch(sched))

    def _record(self) -> torch.cuda.Event | None:
        if self.device.type != "cuda":
            return None
        event = torch.cuda.Event()
        event.record()
        return event

    def collect(self, step: LaunchedStep | None) -> ModelRunnerOutput:
        if step is None or step.tokens is None:
            return ModelRunnerOutput({})
        if step.ready is not None:
            step.ready.synchronize()
        return ModelRunnerOutput(dict(zip(step.request_ids, step.tokens.tolist())))

    def _eager_forward(self, embeds: torch.Tensor, batch: InputBatch) -> torch.Tensor:
        """The LM over the step's rows, padded to a multiple of config.prefill_pad_tokens: padding
        rows have slot -1 (no KV write), belong to no sequence (attention skips them) and are
        dropped; every other op is row-wise, so the real rows are what they would be unpadded."""
        if self.prefill_graphs is not None:
            hidden = self.prefill_graphs.run(embeds, batch)
            if hidden is not None:
                return hidden
        num, step = embeds.shape[0], self.config.prefill_pad_tokens
        # decode-shaped batches (one token a sequence) go to decode attention, which sizes its grid
        # from the query rows: padded rows would read past the batch's lengths and block tables
        pad = -num % step if step and not batch.meta.is_decode else 0
        if not pad:
            return self.model(embeds, batch.positions, batch.meta)
        meta = dataclasses.replace(batch.meta, slot_mapping=F.pad(batch.meta.slot_mapping, (0, pad), value=-1))
        return self.model(F.pad(embeds, (0, 0, 0, pad)), F.pad(batch.positions, (0, pad)), meta)[:num]

    def _fill_pending(self, batch: InputBatch) -> None:
        """Input tokens sampled by the previous step, still on the device."""
        rows = batch.pending_rows
        if not rows:
            return
        prev = self._previous
        # Steady decode: the previous step's requests, in order, feed consecutive rows (rows ascend),
        # so a slice copy does it with no per-request lookup and no index upload. List equality of
        # Requests is identity (no __eq__): one C-level pass that stops at the first difference.
        if batch.pending_requests == prev.requests and rows[-1] - rows[0] == len(rows) - 1:
            batch.input_ids[rows[0]:rows[-1] + 1].copy_(prev.tokens)
            return
        row_of = dict(zip(prev.request_ids, range(len(prev.request_ids))))
        try:
            src = [row_of[req.request_id] for req in batch.pending_requests]
        except KeyError as exc:
            raise RuntimeError(f"request {exc.args[0]}: its input token was not sampled by the previous step") from None
        index = to_device([rows, src], self.device, torch.long)
        batch.input_ids.index_copy_(0, index[0], prev.tokens.index_select(0, index[1]))

    @torch.inference_mode()
    def launch(self, sched: SchedulerOutput) -> LaunchedStep | None:
        """Queue the step's device work; tokens come back through collect().
        Nothing here waits for the device, so the host can schedule and launch
        the next step while this one runs."""
        for request_id in sched.freed_request_ids:
            self.encoder_cache.pop(request_id, None)
        self.sampler.release(sched.freed_request_ids)
        # an empty step still reports frees (a request that preempted itself): the carried block
        # table must drop their rows now, or a re-admission on recycled blocks could reuse one
        self.batch_builder.release(sched.freed_request_ids)
        if not sched.scheduled:
            return None
        batch = self.batch_builder.build(sched)
        self._fill_pending(batch)
        image_embeds, image_rows = self._image_embeddings(batch)
        if self.graphs is not None and self.graphs.can_run(batch):
            hidden = self.graphs.run(batch)
        else:
            embeds = self.model.embed(batch.input_ids, image_embeds, image_rows)
            hidden = self._eager_forward(embeds, batch)
        if not batch.sample_requests:
            return LaunchedStep([], None, self._record())
        logits = self.model.compute_logits(hidden if batch.all_rows_sample else hidden[batch.logits_indices])
        reqs, prev = batch.sample_requests, self._previous
        # the last step's requests in its order (steady decode): its per-request passes are reused
        same = reqs == prev.requests  # list equality of Requests is identity (Request defines no __eq__)
        any_return_logits = prev.any_return_logits if same else any(map(_return_logits, reqs))
        if any_return_logits:
            for row, req in enumerate(reqs):
                if req.sampling.return_logits:
                    req.logits.append(logits[row].float().cpu())
        tokens = self.sampler(logits, reqs)
        ids = prev.request_ids if same else list(map(_request_id, reqs))
        self._previous = SampledRows(reqs, ids, tokens, any_return_logits)
        if self.device.type != "cuda":
            return LaunchedStep(ids, tokens, None)
        host = torch.empty(tokens.shape, dtype=tokens.dtype, pin_memory=True)
        host.copy_(tokens, non_blocking=True)  # the step's one device -> host copy
        return LaunchedStep(ids, host, self._record())
