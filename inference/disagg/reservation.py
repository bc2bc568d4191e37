"""Pre-allocated decode blocks (the reservation fast path, see protocol.py).

A reservation is made before the prefill has run, so its size is an upper
bound (the router's estimate of the expanded prompt) and the first token and
rope delta are not known yet. Contract:
- decode side, at DecodeRequest(is_reservation): engine.add_prefilled_request
  allocates blocks for the bound as a request waiting for KV (placeholder
  first token);
- prefill side, when the KV is there: `fit_destination` keeps the first
  blocks that hold num_tokens (None: the reservation is too small, nothing
  is sent and the router falls back to a fresh allocation);
- decode side, when the TransferMeta lands: `landing_error` checks the meta
  against the reservation, then engine.adopt_reservation rebuilds the waiting
  request from the meta (length, first token, rope delta, and the expanded
  prompt when the sampling reads it) on the blocks that were written and
  frees the rest, which no sender was ever told about.
Sampling that reads the prompt tokens (repetition penalty, n-gram bans:
`SamplingParams.reads_prompt`) needs the prompt ids in the meta (the prefill worker puts
them there when it pushes to a reservation); a meta without them is refused
at landing, since decoding on a placeholder prompt would sample differently
from the monolithic engine.
"""
from __future__ import annotations

from inference.transfer.blockids import BlockIds


def fit_destination(dst_block_ids: BlockIds, dst_block_size: int, num_tokens: int) -> BlockIds | None:
    """The leading dst blocks that hold num_tokens tokens of KV (all when
    dst_block_size is 0: the ids were sized exactly), None when too few."""
    if dst_block_size <= 0:
        return dst_block_ids
    needed = -(-num_tokens // dst_block_size)
    if needed > len(dst_block_ids):
        return None
    return dst_block_ids.head(needed)


def too_small(request_id: str, dest) -> str:
    """TransferDone error for a destination (TransferRequest) too small for the KV: the router falls back on it."""
    return f"dst_too_small: {request_id}: {len(dest.dst_block_ids)} blocks of {dest.dst_block_size} tokens"


def landing_error(reserved: list[int], meta, sampling: dict, reads_prompt: bool, max_prompt_tokens: int,
                  block_size: int, vocab_size: int) -> str:
    """Why a landed meta does not fit its reservation ("" when it does). Token ids off the wire are
    range-checked here: the first token feeds the embedding and prompt ids index the logits in the
    penalties, where an id out of the vocabulary is a device-side assert that ends the worker."""
    if meta.sampling_state != sampling:
        return "sampling differs from the reservation's"
    if not 0 <= meta.first_token_id < vocab_size:
        return f"first token {meta.first_token_id} is outside the vocabulary of {vocab_size}"
    ids = meta.prompt_token_ids
    if ids and not (0 <= min(ids) and max(ids) < vocab_size):
        return f"prompt token ids outside the vocabulary of {vocab_size}"
    if meta.prompt_token_ids is None and reads_prompt:
        return "the sampling reads the prompt, and the meta has no prompt_token_ids"
    if meta.num_tokens > max_prompt_tokens:
        return f"{meta.num_tokens} tokens exceed the reservation's {max_prompt_tokens}"
    needed = -(-meta.num_tokens // block_size)
    if meta.dst_block_ids != reserved[:needed]:
        return "written blocks are not the leading blocks of the reservation"
    return ""
