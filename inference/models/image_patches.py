"""Fast patchify for images the checkpoint's image processor would not resize.

Qwen2VLImageProcessor resizes each image to multiples of patch*merge pixels
within [min_pixels, max_pixels] (smart_resize), rescales, normalises and
flattens it into rows of C * temporal_patch * patch * patch values, patches
ordered (h/merge, w/merge, merge, merge) and each image repeated over the
temporal patch. When the image already satisfies the resize rule (MinerU's
layout pages and its 28-px-multiple crops do), the resize is the identity and
the rest is a rescale + a reshape: done here with torch, on the engine's
device if it has one, instead of the processor's single-threaded numpy/PIL.
Same arithmetic order (x * rescale_factor, then (x - mean) / std, in fp32),
so results match the processor to fp32 rounding (tests/inference/models).

`PatchRule.from_processor` returns None for processors whose settings this
path does not model (the caller then falls back to the processor).

`rgb_pixels(image)`: the pixels of a PIL RGB image as a uint8 array without
copying them where Pillow exports its memory through the Arrow C interface
(Pillow >= 11.2: [H, W, 4], Pillow's own padded layout, read-only; the
fourth channel is dropped on the device). `np.array(image)` costs ~7 ms for
a 1036x1036 page on the H200's host (Pillow packs 4-byte pixels into 3),
all of it on the engine's step thread; the view costs microseconds and the
one copy left is the one into pinned memory. Elsewhere: np.array.
"""
from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from inference.h2d import to_device


def rgb_pixels(image) -> np.ndarray:
    """uint8 [H, W, 3] or [H, W, 4] (channels after the third are padding) of an RGB PIL image."""
    try:
        import pyarrow as pa
    except ImportError:
        pa = None
    if pa is not None and hasattr(image, "__arrow_c_array__"):
        try:
            flat = pa.array(image).flatten().to_numpy(zero_copy_only=True)
            if flat.size == image.height * image.width * 4:
                return flat.reshape(image.height, image.width, 4)
        except (ValueError, TypeError, NotImplementedError, pa.ArrowException):
            pass  # an image Pillow cannot export in one piece: copy it
    return np.array(image)


def _size_limits(proc) -> tuple[int, int] | None:
    size = getattr(proc, "size", None)
    get = (lambda k: size.get(k)) if isinstance(size, dict) else (lambda k: getattr(size, k, None))
    lo = getattr(proc, "min_pixels", None) or (get("shortest_edge") if size is not None else None)
    hi = getattr(proc, "max_pixels", None) or (get("longest_edge") if size is not None else None)
    return (int(lo), int(hi)) if lo and hi else None


@functools.lru_cache(maxsize=16)
def _channel_stats(mean: tuple[float, ...], std: tuple[float, ...], device: torch.device):
    """Per-channel mean and std [C, 1, 1] on `device`, made once: a fresh small upload per
    image would synchronise the stream (the host would wait for the engine's queued step)."""
    stats = to_device(torch.tensor([mean, std], dtype=torch.float32), device)
    return stats[0][:, None, None], stats[1][:, None, None]


@dataclass(frozen=True)
class PatchRule:
    patch_px: int                  # patch side in pixels
    merge: int                     # spatial merge (tokens = patches / merge^2)
    temporal_patch: int            # frames per patch (a still image is repeated)
    min_pixels: int                # resize rule bounds on height * width
    max_pixels: int
    rescale_factor: float | None   # None: no rescale
    mean: tuple[float, ...] | None  # None: no normalisation
    std: tuple[float, ...] | None

    @classmethod
    def from_processor(cls, proc) -> "PatchRule | None":
        try:
            limits = _size_limits(proc)
            if limits is None:
                return None
            mean = tuple(float(x) for x in proc.image_mean) if proc.do_normalize else None
            std = tuple(float(x) for x in proc.image_std) if proc.do_normalize else None
            return cls(int(proc.patch_size), int(proc.merge_size), int(proc.temporal_patch_size), *limits,
                       float(proc.rescale_factor) if proc.do_rescale else None, mean, std)
        except (AttributeError, TypeError):
            return None

    def keeps_size(self, height_px: int, width_px: int) -> bool:
        """True when smart_resize would return (height, width) unchanged."""
        factor = self.patch_px * self.merge
        return (height_px % factor == 0 and width_px % factor == 0
                and self.min_pixels <= height_px * width_px <= self.max_pixels
                and max(height_px, width_px) / min(height_px, width_px) <= 200)

    def patchify(self, rgb: np.ndarray, device: torch.device) -> tuple[torch.Tensor, tuple[int, int, int]]:
        """rgb [H, W, 3] uint8 (or [H, W, 4] from rgb_pixels: the fourth channel is padding)
        -> (pixel_values [gh*gw, 3*tp*p*p] float32 on `device`, grid (1, gh, gw))."""
        height, width, _ = rgb.shape
        channels = 3
        p, m = self.patch_px, self.merge
        if not rgb.flags.c_contiguous:
            rgb = np.ascontiguousarray(rgb)
        with warnings.catch_warnings():  # a read-only view (rgb_pixels): nothing below writes into it
            warnings.filterwarnings("ignore", message=".*not writable.*")
            host = torch.from_numpy(rgb)
        x = to_device(host, torch.device(device))[:, :, :channels]  # the pinned copy is the only host copy
        x = x.permute(2, 0, 1).float()
        if self.rescale_factor is not None:
            x = x * self.rescale_factor
        if self.mean is not None:
            mean, std = _channel_stats(self.mean, self.std, x.device)
            x = (x - mean) / std
        gh, gw = height // p, width // p
        x = x.reshape(channels, gh // m, m, p, gw // m, m, p).permute(1, 4, 2, 5, 0, 3, 6)
        x = x.unsqueeze(5).expand(gh // m, gw // m, m, m, channels, self.temporal_patch, p, p)
        return x.reshape(gh * gw, channels * self.temporal_patch * p * p), (1, gh, gw)
