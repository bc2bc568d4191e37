"""Seeded noise images for the synthetic benchmark pages: the pixels of
`inference.bench.synthetic.noise_image` with a generator seeded by a key,
built faster (a full-range uint8 draw is the generator's raw 64-bit words in
little-endian byte order, so the words are taken as they are; a check on
first use falls back to noise_image if numpy ever changes that)."""
from __future__ import annotations

import functools
import zlib


def seeded_noise(width: int, height: int, key: tuple):
    """`inference.bench.synthetic.noise_image` of a generator seeded by `key`, same pixels, cheaper:
    a full-range uint8 draw is the generator's raw 64-bit words in little-endian byte order, so
    the words are taken as they are (`_raw_noise_ok` checks that this numpy still does that)."""
    import numpy as np
    from PIL import Image

    seed = key_seed(key)
    if not _raw_noise_ok():
        from inference.bench.synthetic import noise_image
        return noise_image(width, height, np.random.default_rng(seed))
    return Image.frombuffer("RGB", (width, height), _raw_bytes(seed, width * height * 3), "raw", "RGB", 0, 1)


def key_seed(key: tuple) -> int:
    """A 32-bit seed of a workload key, the same in every process (hash() is salted per process)."""
    return zlib.crc32(repr(key).encode())


def _raw_bytes(seed: int, num_bytes: int):
    import numpy as np
    words = np.random.default_rng(seed).bit_generator.random_raw(-(-num_bytes // 8))
    return words.astype("<u8", copy=False).view(np.uint8)[:num_bytes]


@functools.cache
def _raw_noise_ok() -> bool:
    import numpy as np
    ref = np.random.default_rng(12345).integers(0, 256, size=(7, 5, 3), dtype="uint8")
    return bool((ref.reshape(-1) == _raw_bytes(12345, ref.size)).all())
