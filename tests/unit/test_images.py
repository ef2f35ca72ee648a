import io

import numpy as np
import pytest
from PIL import Image

from mobiledx.data.images import UnreadableImageError, decode_image, load_image


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


@pytest.mark.parametrize("mode,fmt", [("RGB", "PNG"), ("L", "PNG"), ("P", "PNG"), ("RGB", "BMP"),
                                      ("CMYK", "JPEG"), ("RGB", "TIFF"), ("RGBA", "PNG")])
def test_every_mode_becomes_8bit_rgb(mode, fmt):
    pixels = decode_image(encode(Image.new("RGB", (20, 10), (200, 40, 40)).convert(mode), fmt), size=8)
    assert pixels.shape == (8, 8, 3) and pixels.dtype == np.uint8
    if mode in ("RGB", "RGBA", "P", "CMYK"):
        assert pixels[4, 4, 0] > 150 and pixels[4, 4, 1] < 100


def test_16bit_grayscale_is_scaled_not_clipped():
    ramp = (np.linspace(0, 65535, 16 * 16).reshape(16, 16)).astype(np.uint16)
    pixels = decode_image(encode(Image.fromarray(ramp), "PNG"), size=16)
    assert pixels.max() == 255 and pixels.min() == 0
    assert int(pixels[8, 8, 0]) == pytest.approx(8 * 16 + 8, abs=2)  # ramp position, on the 0-255 scale


def test_transparent_pixels_composite_on_black():
    image = Image.new("RGBA", (4, 4), (255, 255, 255, 0))
    assert decode_image(encode(image, "PNG"), size=4).max() == 0


def test_exif_orientation_is_applied():
    # a wide image tagged "rotate 90°": after orientation it is tall, left half red becomes top half
    array = np.zeros((20, 40, 3), np.uint8)
    array[:, :20] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display
    data = encode(Image.fromarray(array), "JPEG", exif=exif.tobytes(), quality=95)
    pixels = decode_image(data, size=20)
    assert pixels[2, 10, 0] > 200  # top is red
    assert pixels[17, 10, 0] < 60  # bottom is black


def test_unreadable_inputs_raise_a_clear_error(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(UnreadableImageError, match="empty"):
        load_image(tmp_path / "empty.jpg", 8)
    with pytest.raises(UnreadableImageError, match="cannot decode"):
        decode_image(b"this is a text file, not an image", 8)
    truncated = encode(Image.new("RGB", (64, 64), (1, 2, 3)), "JPEG")[:200]
    with pytest.raises(UnreadableImageError):
        decode_image(truncated, 8)


def test_a_jpeg_can_be_decoded_at_half_size_in_the_dct_domain_as_android_does():
    from mobiledx.data.images import read_frame

    yy, xx = np.mgrid[0:450, 0:600]
    photo = np.stack([xx * 255 // 600, yy * 255 // 450, (xx + yy) % 256], axis=-1).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, format="JPEG", quality=92)
    full, half = read_frame(buffer.getvalue()).pixels, read_frame(buffer.getvalue(), jpeg_reduction=2).pixels
    assert full.shape == (450, 600, 3) and half.shape == (225, 300, 3)
    box = full.reshape(225, 2, 300, 2, 3).astype(float).mean(axis=(1, 3))  # what a 2x2 average would give
    assert 0 < np.abs(half - box).mean() < 4  # the same picture, through another decoder path
    png = io.BytesIO()
    Image.fromarray(photo).save(png, format="PNG")
    assert read_frame(png.getvalue(), jpeg_reduction=2).pixels.shape == (450, 600, 3)  # only JPEGs are reduced
