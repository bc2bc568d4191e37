"""Graph-captured vision encoder calls (mode="graph" on CUDA).

An eager encoder call launches ~13 kernels a layer from Python (32 layers in
MinerU2.5): on the H200 a prefill step's encoder call took 20-47 ms of host
time against far less device time, so the device waited for the host (session
6 step timeline). Here a call replays a CUDA graph instead.

A graph is captured per patch bucket (the call's patches rounded up: steps of
1024 up to 16k, 2048 up to MAX_PATCHES = 32k; larger calls, e.g. six layout
pages, are device-bound and stay eager), over static buffers: patches,
rotary tables, image bounds (cu_seqlens) and the attention's tile list. The
attention is launched over the tile list (Ops.vision_attention with `tiles`),
so its grid depends on the bucket alone, whatever the images are. Padding
rows (bucket - patches) belong to no image and no tile: attention leaves them
unwritten (and the kernel zeroes K/V rows read past an image, so whatever
they hold never reaches a real row); every other op is row-wise; their
merged outputs are dropped. Image bounds past the call's images are set to
its total (empty images), so no stale bound is ever in the buffer. A call with more images than the bucket's
tile slots allow (more than bucket / 32: images averaging < 32 patches) moves
up a bucket, or runs eagerly past the largest.

Graphs, one per bucket in one memory pool, are captured at engine start by
capture_all() (largest first; graph_capture.precapture), which allocates the
buffers first; DOCPIPE_GRAPH_PRECAPTURE=0 leaves the buffers to the first call
and each graph to its bucket's first call, which also captures any bucket
still missing. A capture that fails turns the graphs off for the process
(eager from then on). DOCPIPE_VISION_GRAPHS=0 keeps the encoder eager (A/B
runs). With capture=False the same static-buffer path runs eagerly, which is
how CPU tests check the padding.
"""
from __future__ import annotations

import logging

import torch

from inference.env import env_flag
from inference.h2d import to_device
from inference.ops.tiles import flash_tiles, tile_slots
from inference.worker.graph_capture import capture_buckets, capture_into, run_bucket, stepped_sizes

log = logging.getLogger(__name__)
ENV = "DOCPIPE_VISION_GRAPHS"
MIN_AVG_PATCHES = 32  # tile slots a bucket reserves for images: bucket // MIN_AVG_PATCHES
MAX_PATCHES = 32768  # largest bucket: the graph pool holds the activations of the largest one for good


def requested() -> bool:
    return env_flag(ENV, default=True)


def patch_buckets(max_patches: int) -> list[int]:
    return stepped_sizes(max_patches, [(16384, 1024), (32768, 2048), (max_patches, 4096)])


class VisionGraphs:
    def __init__(self, visual, ops, dtype: torch.dtype, device: torch.device, max_patches: int,
                 capture: bool = True):
        self.visual, self.dtype, self.device = visual, dtype, device
        self.merge = visual.cfg.spatial_merge_size ** 2
        self.block_m = ops.vision_tiles_block(visual.cfg.head_dim, dtype)
        self.enabled = self.block_m is not None
        self.capture = capture and device.type == "cuda" and getattr(ops, "graph_capturable", False)
        self.buckets = [b for b in patch_buckets(min(max_patches, MAX_PATCHES)) if b % self.merge == 0]
        self.max_images = self.buckets[-1] // MIN_AVG_PATCHES
        self.pixels = None  # static buffers, made by capture_all() or the first call (_alloc)
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.pool = None

    def _alloc(self) -> None:
        cfg, top, dev = self.visual.cfg, self.buckets[-1], self.device
        in_dim = self.visual.patch_embed.proj.weight[0].numel()
        self.pixels = torch.zeros(top, in_dim, dtype=self.dtype, device=dev)
        self.cos = torch.zeros(top, cfg.head_dim, dtype=torch.float32, device=dev)
        self.sin = torch.zeros(top, cfg.head_dim, dtype=torch.float32, device=dev)
        self.cu = torch.zeros(self.max_images + 1, dtype=torch.int32, device=dev)
        self.tiles = torch.full((self._slots(top),), -1, dtype=torch.int32, device=dev)
        self.out = torch.zeros(top // self.merge, cfg.hidden_size, dtype=self.dtype, device=dev)

    def _slots(self, bucket: int) -> int:
        """Tile slots of a bucket: every query tile of `bucket` patches, plus one partial tile
        per image for up to bucket // MIN_AVG_PATCHES images."""
        return tile_slots(bucket, self.block_m, bucket // MIN_AVG_PATCHES) if self.block_m else 0

    def bucket(self, sizes: list[int]) -> int | None:
        """The bucket a call of images of `sizes` patches replays, or None (eager)."""
        if not self.enabled or not sizes or any(n % self.merge for n in sizes):
            return None  # (a patch count the merger cannot group: the eager call raises)
        total, tiles = sum(sizes), sum(-(-n // self.block_m) for n in sizes)
        return next((b for b in self.buckets if b >= total and tiles <= self._slots(b)
                     and len(sizes) <= b // MIN_AVG_PATCHES), None)

    def run(self, pixels: torch.Tensor, grid_thw: list[tuple[int, int, int]]) -> torch.Tensor | None:
        """Merged embeddings [patches / merge^2, hidden] (a new tensor), or None: run eagerly."""
        sizes = [t * h * w for t, h, w in grid_thw]
        bucket = self.bucket(sizes)
        if bucket is None:
            return None
        num = sum(sizes)
        if self.pixels is None:
            self._alloc()
        cos, sin = self.visual.rotary(grid_thw, self.device)
        self.pixels[:num].copy_(pixels)
        self.cos[:num].copy_(cos)
        self.sin[:num].copy_(sin)
        bounds = [0]
        for n in sizes:
            bounds.append(bounds[-1] + n)
        bounds += [num] * (self.max_images + 1 - len(bounds))  # empty images: no stale bound stays
        slots = self._slots(bucket)
        ints = to_device(bounds + flash_tiles(sizes, self.block_m, slots), self.device, torch.int32)
        self.cu.copy_(ints[:len(bounds)])
        self.tiles[:slots].copy_(ints[len(bounds):])
        if not run_bucket(self, bucket, lambda: self._forward(bucket, len(sizes)), self._capture):
            return None
        return self.out[:num // self.merge].clone()

    def _forward(self, bucket: int, num_images: int | None = None) -> None:
        # captured: the kernels read cu_seqlens only at the images the tiles name, so the view's
        # length (all slots) does not matter; eager (CPU reference): the real images' bounds
        cu = self.cu if num_images is None else self.cu[:num_images + 1]
        out = self.visual.run(self.pixels[:bucket], cu, bucket, self.cos[:bucket], self.sin[:bucket],
                              tiles=self.tiles[:self._slots(bucket)])
        self.out[:bucket // self.merge].copy_(out)

    def capture_all(self) -> int:
        """Capture every bucket's graph now (engine start), largest first; returns how many.
        The capture calls run over no image: every tile slot -1 (the attention reads and writes
        nothing), bounds 0; patches and rotary tables as they are (row-wise ops, in range)."""
        if not (self.enabled and self.capture):
            return 0
        if self.pixels is None:
            self._alloc()
        # a past call's tiles name rows of its own bucket, past a smaller bucket's views
        self.tiles.fill_(-1)
        self.cu.zero_()
        return capture_buckets(self, self.buckets, self._capture)

    def _capture(self, bucket: int) -> bool:
        return capture_into(self, bucket, lambda: self._forward(bucket), self.device,
                            f"vision encoder call of {bucket} patches", log)
