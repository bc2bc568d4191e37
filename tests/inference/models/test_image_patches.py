"""The torch patchify fast path equals Qwen2VLImageProcessor (fp32, atol
1e-6) on images the processor keeps at their size, and `keeps_size` agrees
with the processor's own resize rule."""
import numpy as np
import pytest
import torch
from PIL import Image
from transformers import Qwen2VLImageProcessor
try:  # transformers >= 5.2x keeps a torchvision-free copy
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize
except ImportError:
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

from inference.models.image_patches import PatchRule, rgb_pixels
from inference.models.presets import get_preset
from inference.processor import Processor


def _image(w: int, h: int, seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


@pytest.mark.parametrize("w,h", [(56, 56), (476, 476), (896, 140), (560, 56), (1036, 1036), (28 * 3, 28 * 40)])
def test_fast_patches_equal_the_processor(w, h):
    proc = Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=1036 * 1036)
    rule = PatchRule.from_processor(proc)
    assert rule is not None and rule.keeps_size(h, w)
    img = _image(w, h, seed=w * 7 + h)
    ref = proc(images=[img], return_tensors="pt")
    for pixels in (np.asarray(img), rgb_pixels(img), rgb_pixels(img.crop((0, 0, w, h)))):
        got, grid = rule.patchify(pixels, torch.device("cpu"))
        assert grid == tuple(ref["image_grid_thw"][0].tolist())
        assert got.dtype == torch.float32 and got.shape == ref["pixel_values"].shape
        torch.testing.assert_close(got, ref["pixel_values"].float(), atol=1e-6, rtol=0)


def test_rgb_pixels_is_the_image_and_outlives_it():
    img = _image(84, 56, seed=3)
    expected = np.asarray(img).copy()
    pixels = rgb_pixels(img)
    assert pixels.dtype == np.uint8 and pixels.shape[:2] == (56, 84) and pixels.shape[2] in (3, 4)
    del img  # the view keeps Pillow's memory alive
    np.testing.assert_array_equal(pixels[:, :, :3], expected)


@pytest.mark.parametrize("w,h", [(56, 56), (500, 476), (1036, 1036), (1064, 1064), (28, 28), (84, 28 * 250), (57, 56)])
def test_keeps_size_matches_smart_resize(w, h):
    rule = PatchRule.from_processor(Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=1036 * 1036))
    try:
        unchanged = smart_resize(h, w, factor=28, min_pixels=56 * 56, max_pixels=1036 * 1036) == (h, w)
    except ValueError:  # aspect ratio over 200: the processor refuses it, the fast path must not take it
        unchanged = False
    assert rule.keeps_size(h, w) == unchanged


def test_processor_mixes_fast_and_resized_images_in_order():
    cfg = get_preset("tiny")
    proc = Processor(cfg, None, fast_patches=True)
    images = [_image(112, 84, 1), _image(100, 90, 2), _image(56, 56, 3)]  # the middle one is resized
    assert [proc.patch_rule.keeps_size(im.height, im.width) for im in images] == [True, False, True]
    pad = [cfg.vision_start_token_id, cfg.image_token_id, cfg.vision_end_token_id]
    got = proc({"prompt_token_ids": pad * 3, "images": images})
    ref = proc.image_processor(images=images, return_tensors="pt")
    assert got.image_grid_thw == [tuple(g) for g in ref["image_grid_thw"].tolist()]
    torch.testing.assert_close(got.pixel_values, ref["pixel_values"].float(), atol=1e-6, rtol=0)


def test_rgb_pixels_without_pyarrow_copies(monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_pyarrow(name, *args, **kwargs):
        if name == "pyarrow":
            raise ImportError("no pyarrow here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pyarrow)
    img = _image(56, 28, seed=5)
    np.testing.assert_array_equal(rgb_pixels(img), np.asarray(img))
