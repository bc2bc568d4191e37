from PIL import Image

from docpipe.models.mineru25.images import block_image, layout_image, pad_to_aspect, upscale_small


def test_layout_image_is_exactly_1036_square():
    page = Image.new("RGBA", (1700, 2200), (0, 0, 0, 0))
    img = layout_image(page)
    assert img.size == (1036, 1036) and img.mode == "RGB"
    assert img.getpixel((500, 500)) == (255, 255, 255)  # transparent -> white


def _marked_page():
    page = Image.new("RGB", (1000, 1000), "white")
    for x in range(100, 300):
        for y in range(100, 150):
            page.putpixel((x, y), (200, 200, 200))
    page.putpixel((100, 100), (255, 0, 0))  # top-left corner of the block
    return page


def test_crop_is_rotated_counter_clockwise_with_expand():
    page, bbox = _marked_page(), (0.1, 0.1, 0.3, 0.15)
    up = block_image(page, bbox, 0)
    assert up.size == (200, 50) and up.getpixel((0, 0)) == (255, 0, 0)
    left = block_image(page, bbox, 90)  # counter-clockwise: top-left goes to bottom-left
    assert left.size == (50, 200) and left.getpixel((0, 199)) == (255, 0, 0)
    down = block_image(page, bbox, 180)
    assert down.size == (200, 50) and down.getpixel((199, 49)) == (255, 0, 0)
    right = block_image(page, bbox, 270)
    assert right.size == (50, 200) and right.getpixel((49, 0)) == (255, 0, 0)


def test_long_crops_are_padded_to_fifty_to_one():
    strip = Image.new("RGB", (3000, 30), "black")
    padded = pad_to_aspect(strip)
    assert padded.size == (3000, 60)
    assert padded.getpixel((0, 0)) == (255, 255, 255) and padded.getpixel((1500, 30)) == (0, 0, 0)
    tall = pad_to_aspect(Image.new("RGB", (40, 2500), "black"))
    assert tall.size == (50, 2500)
    ok = Image.new("RGB", (500, 10))
    assert pad_to_aspect(ok) is ok  # exactly 50:1 is allowed


def test_small_crops_are_upscaled_to_28_px():
    tiny = upscale_small(Image.new("RGB", (100, 14)))
    assert tiny.size == (200, 28)
    assert upscale_small(Image.new("RGB", (28, 28))).size == (28, 28)
    page = Image.new("RGB", (2000, 2000), "white")
    img = block_image(page, (0.0, 0.0, 0.9, 0.005), 0)  # 1800x10: pad to 36 high, no upscale needed
    assert img.size == (1800, 36)
    img = block_image(page, (0.0, 0.0, 0.01, 0.005), 0)  # 20x10 -> upscale x2.8
    assert img.size == (56, 28)
