"""M-RoPE positions of a Qwen2-VL prompt.

Text tokens: one running position on all three axes. Image tokens of a grid
(t, h, w) merged tokens: (start + t_idx, start + h_idx, start + w_idx) with
start = the position after the preceding text; the text after the image
continues at start + max(t, h, w). Generated token j of a prompt of length L
sits at L + j + rope_delta on all axes, rope_delta = max(prompt pos) + 1 - L
(0 for text-only prompts), which is all decode needs.
"""
from __future__ import annotations

import torch


def prompt_positions(token_ids: list[int], grids: list[tuple[int, int, int]], image_token_id: int, merge: int) -> tuple[torch.Tensor, int]:
    """positions [3, L] int64 and rope_delta for a prompt whose image
    placeholders are already expanded (one run of tokens per image, in order)."""
    ids = torch.tensor(token_ids, dtype=torch.long)
    is_image = ids == image_token_id
    pieces, pos, cursor, num_images = [], 0, 0, 0
    # Runs of image tokens: starts where the mask rises.
    starts = torch.nonzero(is_image & ~torch.cat([torch.tensor([False]), is_image[:-1]])).flatten().tolist()
    for start in starts:
        if num_images >= len(grids):
            raise ValueError(f"prompt has more image token runs than images ({len(grids)})")
        t, h, w = grids[num_images]
        gt, gh, gw = t, h // merge, w // merge
        text_len = start - cursor
        pieces.append(torch.arange(text_len).expand(3, -1) + pos)
        pos += text_len
        tt, hh, ww = torch.meshgrid(torch.arange(gt), torch.arange(gh), torch.arange(gw), indexing="ij")
        pieces.append(torch.stack([tt.flatten(), hh.flatten(), ww.flatten()]) + pos)
        cursor = start + gt * gh * gw
        if not bool(is_image[start:cursor].all()) or (cursor < len(ids) and bool(is_image[cursor])):
            raise ValueError(f"image {num_images}: expected a run of {gt * gh * gw} image tokens at {start}")
        pos += max(gt, gh, gw)
        num_images += 1
    if num_images != len(grids):
        raise ValueError(f"prompt has {num_images} image token runs but {len(grids)} images")
    pieces.append(torch.arange(len(ids) - cursor).expand(3, -1) + pos)
    positions = torch.cat(pieces, dim=1)
    return positions, int(positions.max().item()) + 1 - len(ids) if len(ids) else 0
