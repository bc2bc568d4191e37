"""Graph-captured decode steps (mode="graph" on CUDA).

Decode-only steps (one new token per sequence, no images) run from static
input buffers sized for the largest bucket; a batch of B sequences replays
the graph of the smallest bucket >= B, with the tail padded (slot -1 = no KV
write, context length 1 over block 0, rows discarded). The block-table width
is bucketed too (powers of two): decode attention sizes its split-K grid from
that width, so a graph captured for max_model_len would scan 16k-token tables
for 300-token contexts. Nothing inside a step syncs with the host: the
buffers are filled by device copies before replay and only the sampled ids
come back afterwards (in the sampler, outside the graph). One graph per (rows, width) bucket, all in
one memory pool: at engine start (capture_all, through graph_capture.precapture) for widths up to
PRECAPTURE_TOKENS of context, any other on first use. A capture inside a step stalled a decode worker
for up to 282 ms on the H200 (session 8: each new batch-size bucket of a run, the kernels' first
builds included), which for a 9-token title is 30 ms of its TPOT.

The op backend must be capture-safe (`Ops.graph_capturable`); otherwise, and
for prefill or mixed steps, the runner stays eager. With capture=False the
same static-buffer path runs eagerly, which is how CPU tests check padding.
"""
from __future__ import annotations

import logging

import torch

from inference.layers.attention import AttentionMetadata
from inference.worker.graph_capture import capture, capture_buckets
from inference.worker.input_batch import InputBatch

log = logging.getLogger(__name__)
MAX_BUCKET = 512
PRECAPTURE_TOKENS = 4096  # context a precaptured width covers (layout pages: ~1,400 prompt tokens)


def bucket_sizes(max_num_seqs: int) -> list[int]:
    sizes, size = [], 1
    while size < min(max_num_seqs, MAX_BUCKET):
        sizes.append(size)
        size *= 2
    return sizes + [min(max_num_seqs, MAX_BUCKET)]


class DecodeGraphs:
    def __init__(self, runner, capture: bool = True):
        self.runner = runner
        self.capture = capture and runner.device.type == "cuda" and getattr(runner.ops, "graph_capturable", False)
        self.buckets = bucket_sizes(runner.config.max_num_seqs)
        max_b, dev = self.buckets[-1], runner.device
        self.max_blocks = -(-runner.config.max_model_len // runner.block_size)
        self.input_ids = torch.zeros(max_b, dtype=torch.long, device=dev)
        self.positions = torch.zeros(3, max_b, dtype=torch.long, device=dev)
        self.slot_mapping = torch.full((max_b,), -1, dtype=torch.long, device=dev)
        self.block_tables = torch.zeros(max_b, self.max_blocks, dtype=torch.int32, device=dev)
        self.seq_lens = torch.ones(max_b, dtype=torch.int32, device=dev)
        self.hidden = torch.zeros(max_b, runner.model_config.hidden_size, dtype=runner.dtype, device=dev)
        self.widths = [w for w in (2 ** i for i in range(4, 20)) if w < self.max_blocks] + [self.max_blocks]
        self.graphs: dict[tuple[int, int], torch.cuda.CUDAGraph] = {}
        self.pool = None

    def capture_all(self) -> int:
        """Every rows bucket at each width up to PRECAPTURE_TOKENS of context, largest first (the
        first capture sizes the shared pool); returns how many were captured."""
        if not self.capture:
            return 0
        widths = [w for w in self.widths if w * self.runner.block_size <= PRECAPTURE_TOKENS] or self.widths[:1]

        def capture_one(key: tuple[int, int]) -> bool:
            try:
                self.graphs[key] = self._capture(*key)
            except Exception as e:  # left to first use, which raises as it always has
                log.warning("decode graph (%d rows, %d blocks) not captured at start: %s", *key, e)
                return False
            return True
        return capture_buckets(self, [(size, width) for size in self.buckets for width in widths], capture_one)

    def can_run(self, batch: InputBatch) -> bool:
        return (batch.meta.is_decode and not batch.image_chunks and batch.num_tokens <= self.buckets[-1]
                and batch.meta.block_tables.shape[1] <= self.max_blocks
                and (self.capture or self.runner.device.type != "cuda"))

    def _forward(self, size: int, width: int) -> None:
        meta = AttentionMetadata(is_decode=True, slot_mapping=self.slot_mapping[:size],
                                 block_tables=self.block_tables[:size, :width], seq_lens_k=self.seq_lens[:size],
                                 max_seqlen_q=1, max_seqlen_k=width * self.runner.block_size)
        model = self.runner.model
        embeds = model.embed(self.input_ids[:size], None, None)
        self.hidden[:size] = model(embeds, self.positions[:, :size], meta)

    def _capture(self, size: int, width: int) -> torch.cuda.CUDAGraph:
        graph = torch.cuda.CUDAGraph()
        # not torch.cuda.graph(): its synchronize + empty_cache would stall the run (graph_capture.py)
        self.pool = capture(graph, lambda: self._forward(size, width), self.runner.device, self.pool)
        return graph

    def run(self, batch: InputBatch) -> torch.Tensor:
        num = batch.num_tokens
        size = next(b for b in self.buckets if b >= num)
        width = batch.meta.block_tables.shape[1]
        padded = next(w for w in self.widths if w >= width)
        self.input_ids[:num].copy_(batch.input_ids)
        self.positions[:, :num].copy_(batch.positions)
        self.slot_mapping[:num].copy_(batch.meta.slot_mapping)
        self.slot_mapping[num:size].fill_(-1)
        self.block_tables[:num, :width].copy_(batch.meta.block_tables)
        self.block_tables[num:size].zero_()
        self.seq_lens[:num].copy_(batch.meta.seq_lens_k)
        self.seq_lens[num:size].fill_(1)
        if not self.capture:
            self._forward(size, padded)
        else:
            if (size, padded) not in self.graphs:
                self.graphs[size, padded] = self._capture(size, padded)
            self.graphs[size, padded].replay()
        return self.hidden[:num]
