"""Images MinerU2.5 is shown: the layout image and the block crops.

Both come from the page render at 200 dpi (long side capped at 3500 px by
the renderer). Block boxes are fractions 0..1 of the page, so they map onto
the render whatever its size.
"""
from __future__ import annotations

import io
import math

from PIL import Image

LAYOUT_SIZE_PX = (1036, 1036)  # 37x37 merged patches = 1369 image tokens
MAX_ASPECT = 50.0  # crops longer than 50:1 are padded with white (the vision tower rejects more)
MIN_SIDE_PX = 28  # one merged patch; smaller crops are upscaled
_WHITE = (255, 255, 255)
# Lossless transposes for the right angles; PIL's rotate() is counter-clockwise, so are these.
_TRANSPOSE = {90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180,
              270: Image.Transpose.ROTATE_270}


def rgb(image: Image.Image) -> Image.Image:
    """RGB view of an image; transparent areas become white, not black."""
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "P"):
        rgba = image.convert("RGBA")
        base = Image.new("RGB", rgba.size, _WHITE)
        base.paste(rgba, mask=rgba.getchannel("A"))
        return base
    return image.convert("RGB")


def layout_image(render: Image.Image) -> Image.Image:
    """The whole page resized to exactly 1036x1036, bicubic, aspect ratio ignored.
    A render of that size already is the image (PIL's resize would only copy it)."""
    image = rgb(render)
    return image if image.size == LAYOUT_SIZE_PX else image.resize(LAYOUT_SIZE_PX, Image.Resampling.BICUBIC)


def crop_box_px(bbox: tuple[float, float, float, float], width_px: int, height_px: int) -> tuple[int, int, int, int]:
    """Pixel box of a 0..1 bbox; partial pixels are included (floor/ceil)."""
    x0, y0, x1, y1 = bbox
    return (max(0, math.floor(x0 * width_px)), max(0, math.floor(y0 * height_px)),
            min(width_px, math.ceil(x1 * width_px)), min(height_px, math.ceil(y1 * height_px)))


def page_crop(render: Image.Image, bbox: tuple[float, float, float, float]) -> Image.Image:
    """The block's region of the render, as it lies on the page (not rotated)."""
    image = rgb(render)
    box = crop_box_px(bbox, image.width, image.height)
    if box[2] <= box[0] or box[3] <= box[1]:
        raise ValueError(f"empty crop {box} for bbox {bbox} on a {image.width}x{image.height} render")
    return image.crop(box)


def pad_to_aspect(image: Image.Image, max_aspect: float = MAX_ASPECT) -> Image.Image:
    """Centre on white so that long side / short side <= max_aspect."""
    w, h = image.size
    if max(w, h) / min(w, h) <= max_aspect:
        return image
    new_w, new_h = (w, math.ceil(w / max_aspect)) if w > h else (math.ceil(h / max_aspect), h)
    canvas = Image.new("RGB", (new_w, new_h), _WHITE)
    canvas.paste(image, ((new_w - w) // 2, (new_h - h) // 2))
    return canvas


def upscale_small(image: Image.Image, min_side_px: int = MIN_SIDE_PX) -> Image.Image:
    """Bicubic upscale so the short side is at least min_side_px."""
    short = min(image.size)
    if short >= min_side_px:
        return image
    scale = min_side_px / short
    size = (math.ceil(image.width * scale), math.ceil(image.height * scale))
    return image.resize(size, Image.Resampling.BICUBIC)


def block_image(render: Image.Image, bbox: tuple[float, float, float, float], angle: int) -> Image.Image:
    """What step 2 sees: crop, rotate by the block's angle, pad to 50:1, upscale to 28 px."""
    image = page_crop(render, bbox)
    if angle in _TRANSPOSE:
        image = image.transpose(_TRANSPOSE[angle])
    return upscale_small(pad_to_aspect(image))


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()
