"""Graph-captured LM forward of prefill and mixed steps (mode="graph" on CUDA).

Decode steps replay graphs (cuda_graph.py); a step with prompt tokens ran the
LM eagerly: ~12 kernels a layer launched from Python, 12-27 ms of host time a
prefill step on the H200 for far less device time (session 6 step timeline).
Here the LM of such a step replays a CUDA graph captured per token bucket
(the step's tokens rounded up: steps of 256 up to 2k, 512 up to 8k, 1024
beyond), over static buffers: input embeddings (images already merged in,
eagerly), positions, KV slots, and the attention metadata at full size
(cu_seqlens_q, context lengths, block tables [max_num_seqs, max blocks]) with
the attention's tile list, so the prefill kernel's grid depends on the bucket
alone (Ops.prefill_attention with `tiles`). Padding rows have slot -1 (no KV
write), belong to no sequence and no tile, and are dropped; every other op is
row-wise. Logits and sampling stay outside the graph.

On by default: on the H200 the 128-page pipeline ran 8.97 / 9.03 pages/s
with them against 7.63 / 7.71 without (session 7, one machine, alternating);
DOCPIPE_PREFILL_GRAPHS=0 keeps the LM of such steps eager. Graphs, one per
bucket in one memory pool, are captured at engine start by capture_all()
(largest first; graph_capture.precapture), after the KV pool exists: the
capture calls write no KV (every slot -1) and attend nothing (every tile -1).
DOCPIPE_GRAPH_PRECAPTURE=0 leaves each graph to its bucket's first step, which
also captures any bucket still missing. A capture that fails turns them off
for the process. With capture=False the same static-buffer
path runs eagerly, which is how CPU tests check padding.
"""
from __future__ import annotations

import logging

import torch

from inference.env import env_flag
from inference.h2d import to_device
from inference.layers.attention import AttentionMetadata
from inference.ops.tiles import flash_tiles, tile_slots
from inference.worker.graph_capture import capture_buckets, capture_into, run_bucket, stepped_sizes
from inference.worker.input_batch import InputBatch

log = logging.getLogger(__name__)
ENV = "DOCPIPE_PREFILL_GRAPHS"


def requested() -> bool:
    return env_flag(ENV, default=True)


def token_buckets(max_tokens: int) -> list[int]:
    return stepped_sizes(max_tokens, [(2048, 256), (8192, 512), (max_tokens, 1024)])


class PrefillGraphs:
    def __init__(self, runner, capture: bool = True):
        self.runner = runner
        cfg, dev = runner.model_config, runner.device
        self.block_m = runner.ops.prefill_tiles_block(runner.dtype)
        self.enabled = self.block_m is not None
        self.capture = capture and dev.type == "cuda" and getattr(runner.ops, "graph_capturable", False)
        self.buckets = token_buckets(runner.config.max_num_batched_tokens)
        self.max_seqs = runner.config.max_num_seqs
        self.max_blocks = -(-runner.config.max_model_len // runner.block_size)
        top = self.buckets[-1]
        self.embeds = torch.zeros(top, cfg.hidden_size, dtype=runner.dtype, device=dev)
        self.positions = torch.zeros(3, top, dtype=torch.long, device=dev)
        self.slot_mapping = torch.full((top,), -1, dtype=torch.long, device=dev)
        self.cu_q = torch.zeros(self.max_seqs + 1, dtype=torch.int32, device=dev)
        self.seq_lens = torch.zeros(self.max_seqs, dtype=torch.int32, device=dev)
        self.block_tables = torch.zeros(self.max_seqs, self.max_blocks, dtype=torch.int32, device=dev)
        self.tiles = torch.full((self._slots(top),), -1, dtype=torch.int32, device=dev)
        self.hidden = torch.zeros(top, cfg.hidden_size, dtype=runner.dtype, device=dev)
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.pool = None

    def _slots(self, bucket: int) -> int:
        return tile_slots(bucket, self.block_m, min(self.max_seqs, bucket)) if self.block_m else 0

    def bucket(self, batch: InputBatch) -> int | None:
        """The bucket this step's LM replays, or None (eager)."""
        if (not self.enabled or batch.meta.is_decode or not batch.q_lens or len(batch.q_lens) > self.max_seqs
                or batch.meta.block_tables.shape[1] > self.max_blocks):
            return None
        return self.bucket_of(batch.num_tokens)

    def bucket_of(self, num_tokens: int) -> int | None:
        return next((b for b in self.buckets if b >= num_tokens), None)

    def run(self, embeds: torch.Tensor, batch: InputBatch) -> torch.Tensor | None:
        """Hidden states [T, hidden] of the step's rows (a view of a static buffer, valid until the
        next replay), or None: run eagerly."""
        bucket = self.bucket(batch)
        if bucket is None:
            return None
        num, seqs, meta = batch.num_tokens, len(batch.q_lens), batch.meta
        self.embeds[:num].copy_(embeds)
        self.positions[:, :num].copy_(batch.positions)
        self.slot_mapping[:num].copy_(meta.slot_mapping)
        self.slot_mapping[num:bucket].fill_(-1)
        self.cu_q[:seqs + 1].copy_(meta.cu_seqlens_q)
        self.seq_lens[:seqs].copy_(meta.seq_lens_k)
        self.block_tables[:seqs, :meta.block_tables.shape[1]].copy_(meta.block_tables)
        slots = self._slots(bucket)
        self.tiles[:slots].copy_(to_device(flash_tiles(batch.q_lens, self.block_m, slots), self.runner.device,
                                           torch.int32))
        if not run_bucket(self, bucket, lambda: self._forward(bucket, seqs), self._capture):
            return None
        return self.hidden[:num]

    def _forward(self, bucket: int, num_seqs: int | None = None) -> None:
        # captured: the kernel reads the metadata only at the sequences the tiles name, so the
        # full-size buffers serve every batch; eager (CPU reference): the step's sequences
        n = self.max_seqs if num_seqs is None else num_seqs
        meta = AttentionMetadata(is_decode=False, slot_mapping=self.slot_mapping[:bucket],
                                 block_tables=self.block_tables[:n], seq_lens_k=self.seq_lens[:n],
                                 cu_seqlens_q=self.cu_q[:n + 1], max_seqlen_q=bucket,
                                 max_seqlen_k=self.max_blocks * self.runner.block_size,
                                 tiles=self.tiles[:self._slots(bucket)])
        self.hidden[:bucket].copy_(self.runner.model(self.embeds[:bucket], self.positions[:, :bucket], meta))

    def capture_all(self) -> int:
        """Capture every bucket's graph now (engine start), largest first; returns how many.
        The capture calls run over no sequence: every KV slot -1 (no write into the pool), every
        tile slot -1 (the attention reads no block table and writes nothing); embeddings and
        positions as they are (row-wise ops, in range)."""
        if not (self.enabled and self.capture):
            return 0
        self.slot_mapping.fill_(-1)
        self.tiles.fill_(-1)
        return capture_buckets(self, self.buckets, self._capture)

    def _capture(self, bucket: int) -> bool:
        return capture_into(self, bucket, lambda: self._forward(bucket), self.runner.device,
                            f"LM prefill of {bucket} tokens", log)
