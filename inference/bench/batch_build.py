"""Host cost of InputBatchBuilder.build on decode steps, block table carried
across steps (block_table.py) vs rebuilt from every request's list each step
(the flattening the builder did before), same process, alternating.

    python -m inference.bench.batch_build --rows 512 --prompt 1500 --out build.json

Requests are stand-ins with the fields the builder reads (no model): each
step every row decodes one token; a row gets a new block every block_size
steps, as in the engine.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time
import types
from itertools import chain

import numpy as np
import torch

from inference.bench.machine import finish
from inference.engine.scheduler import ScheduledRequest, SchedulerOutput
from inference.worker import input_batch
from inference.worker.block_table import BlockTable


class RebuiltTable(BlockTable):
    """The table built from scratch each step: one flattening pass over every block id."""

    def build(self, request_ids, block_lists, lengths, freed_ids=()):
        width = max(int(lengths.max()) if len(request_ids) else 0, 1)
        table = np.zeros((len(request_ids), width), dtype=np.int32)
        flat = np.fromiter(chain.from_iterable(block_lists), np.int32, int(lengths.sum()))
        rows = np.repeat(np.arange(len(request_ids)), lengths)
        cols = np.arange(flat.size) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        table[rows, cols] = flat
        return table


def _requests(rows: int, prompt: int, block_size: int, steps: int) -> list:
    reqs = []
    for i in range(rows):
        r = types.SimpleNamespace(request_id=str(i), num_prompt_tokens=prompt, num_pending=0)
        r.num_tokens = prompt + 1 + i % 37
        r.num_computed_tokens = r.num_tokens - 1
        r.block_ids = list(range(i * 1000, i * 1000 + -(-r.num_tokens // block_size)))
        r.token_buffer = np.arange(r.num_tokens + steps + 1, dtype=np.int64)
        r.prompt = types.SimpleNamespace(rope_delta=0, positions=None, image_token_index=None)
        reqs.append(r)
    return reqs


def _advance(reqs: list, block_size: int) -> None:
    for r in reqs:
        r.num_computed_tokens += 1
        r.num_tokens += 1
        if r.num_tokens > len(r.block_ids) * block_size:
            r.block_ids.append(r.block_ids[-1] + 1)


def run(rows: int, prompt: int, block_size: int, steps: int) -> dict:
    torch.set_num_threads(1)
    out = {}
    for name, table in (("rebuilt", RebuiltTable), ("carried", BlockTable)) * 2:
        reqs = _requests(rows, prompt, block_size, steps)
        builder = input_batch.InputBatchBuilder(block_size, torch.device("cpu"))
        builder.block_table = table()
        sched = SchedulerOutput(scheduled=[ScheduledRequest(r, 1) for r in reqs])
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            batch = builder.build(sched)
            times.append(time.perf_counter() - t0)
            _advance(reqs, block_size)
        out.setdefault(name, []).append(statistics.median(times) * 1e3)
        out.setdefault(f"{name}_last_tables", batch.meta.block_tables.clone())
    same = torch.equal(out.pop("rebuilt_last_tables"), out.pop("carried_last_tables"))
    return {"rows": rows, "prompt_tokens": prompt, "block_size": block_size, "steps": steps,
            "median_ms_rebuilt": out["rebuilt"], "median_ms_carried": out["carried"], "tables_equal": same,
            "host": platform.node(), "cpu": platform.processor() or platform.machine()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=512)
    ap.add_argument("--prompt", type=int, default=1500)
    ap.add_argument("--block-size", type=int, default=16)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    result = run(args.rows, args.prompt, args.block_size, args.steps)
    finish(result, "inference.bench.batch_build", args)
    print(f"build at {args.rows} decode rows: rebuilt {result['median_ms_rebuilt']} ms, "
          f"carried {result['median_ms_carried']} ms (medians of {args.steps} steps, two alternating rounds); "
          f"tables equal: {result['tables_equal']}")


if __name__ == "__main__":
    main()
