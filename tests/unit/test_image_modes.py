"""Pixels keep their meaning: every mode Pillow opens becomes 8-bit RGB by its FORMAT's range, never by the
image's own content (issue 25, item 1). Pixel values are checked, not only shapes."""

import io

import numpy as np
import pytest
from PIL import Image, features

from mobiledx.data.images import (
    CONVERSIONS,
    TRANSPARENCY,
    UnreadableImageError,
    decode_frame,
    image_suffixes,
    read_frame,
    resize_array,
)


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def gray16(values, fmt="PNG") -> bytes:
    """A one-row 16-bit grey image (mode I;16) with exactly ``values``."""
    array = np.array([values], dtype=np.uint16)
    return encode(Image.frombytes("I;16", (array.shape[1], 1), array.astype("<u2").tobytes()), fmt)


def grey_row(frame) -> list[int]:
    pixels = frame.pixels if hasattr(frame, "pixels") else frame
    assert (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all()
    return pixels[0, :, 0].tolist()


# --- beyond 8 bits: the format's range, not the image's ------------------------------------------------------

@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16_bit_grey_is_divided_by_257(fmt):
    frame = read_frame(gray16([0, 257, 1000, 32768, 65535], fmt))
    assert frame.mode.startswith("I;16")
    assert grey_row(frame) == [0, 1, 4, 128, 255]  # 1000 / 257 = 3.89 -> 4; 32768 / 257 = 127.5 -> 128


def test_a_dark_16_bit_image_stays_dark():
    """The old conversion divided by the image's own maximum: this image came out white."""
    assert grey_row(read_frame(gray16([0, 500, 1000, 2570]))) == [0, 2, 4, 10]


def test_16_bit_big_endian_tiff_too():
    array = np.array([[0, 514, 65535]], dtype=">u2")
    data = encode(Image.frombytes("I;16B", (3, 1), array.tobytes()), "TIFF")
    frame = read_frame(data)
    assert frame.mode == "I;16B" and grey_row(frame) == [0, 2, 255]


def test_pgm_with_a_16_bit_maxval_keeps_its_declared_range():
    """Pillow opens a PGM whose maxval is over 255 as mode I, stretched to 0-65535: half of maxval is mid-grey."""
    data = b"P5\n4 1\n1000\n" + np.array([0, 250, 500, 1000], ">u2").tobytes()
    frame = read_frame(data)
    assert frame.mode == "I" and grey_row(frame) == [0, 64, 128, 255]


def test_32_bit_unsigned_tiff_is_scaled_by_its_bit_depth():
    array = np.array([[0, 2**31 - 1, -2**31, -1]], np.int32)  # negative: the bits of 2**31 and 2**32 - 1
    data = encode(Image.fromarray(array), "TIFF")
    signed, unsigned = b"\x53\x01\x03\x00\x01\x00\x00\x00\x02\x00", b"\x53\x01\x03\x00\x01\x00\x00\x00\x01\x00"
    assert data.count(signed) == 1  # Pillow writes SampleFormat 2 (signed); the same file, declared unsigned:
    frame = read_frame(data.replace(signed, unsigned))
    assert frame.mode == "I" and grey_row(frame) == [0, 127, 128, 255]  # x * 255 / (2**32 - 1), rounded


def test_signed_integer_tiff_is_refused_with_the_fix():
    data = encode(Image.fromarray(np.array([[-5, 300]], np.int32)), "TIFF")
    with pytest.raises(UnreadableImageError, match="signed integer pixels .* Fix: save the image as 8- or 16-bit"):
        read_frame(data)


def test_float_in_0_1_is_scaled_to_0_255():
    data = encode(Image.fromarray(np.array([[0.0, 0.25, 0.5, 1.0]], np.float32)), "TIFF")
    frame = read_frame(data)
    assert frame.mode == "F" and grey_row(frame) == [0, 64, 128, 255]


def test_float_with_a_declared_sample_range_uses_it():
    from PIL import TiffImagePlugin

    declared = TiffImagePlugin.ImageFileDirectory_v2()
    declared[340], declared[341] = 0.0, 4095.0  # SMinSampleValue, SMaxSampleValue
    data = encode(Image.fromarray(np.array([[0.0, 2047.5, 4095.0]], np.float32)), "TIFF", tiffinfo=declared)
    assert grey_row(read_frame(data)) == [0, 128, 255]


@pytest.mark.parametrize("values,shown", [([0.0, 2.0], "values 0 to 2"), ([0.0, -0.5], "values -0.5 to 0"),
                                          ([0.0, np.nan], "NaN or infinity")])
def test_float_outside_its_range_is_refused_not_clipped(values, shown):
    data = encode(Image.fromarray(np.array([values], np.float32)), "TIFF")
    with pytest.raises(UnreadableImageError, match=f"outside their range \\[0, 1\\].*{shown}.*Fix:"):
        read_frame(data)


def test_integer_pixels_with_no_declared_range_are_refused():
    from mobiledx.data.images import to_rgb

    with pytest.raises(UnreadableImageError, match="no declared range"):
        to_rgb(Image.fromarray(np.array([[0, 1000]], np.int32)))  # an array: no format says what 1000 means


# --- 8-bit modes ----------------------------------------------------------------------------------------------

def test_rgb_is_kept_exactly():
    array = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 200, 30]]], np.uint8)
    frame = read_frame(encode(Image.fromarray(array), "PNG"))
    assert frame.mode == "RGB" and not frame.converted and np.array_equal(frame.pixels, array)


def test_grey_is_copied_to_each_channel():
    frame = read_frame(encode(Image.fromarray(np.array([[0, 77, 255]], np.uint8)), "PNG"))
    assert frame.mode == "L" and grey_row(frame) == [0, 77, 255]


def test_one_bit_is_black_and_white():
    image = Image.new("1", (3, 1), 0)
    image.putpixel((1, 0), 1)
    frame = read_frame(encode(image, "PNG"))
    assert frame.mode == "1" and grey_row(frame) == [0, 255, 0]


def palette_image() -> Image.Image:
    image = Image.new("P", (3, 1), 0)
    image.putpalette([200, 10, 10, 0, 0, 255, 9, 99, 199] + [0] * 759)
    image.putpixel((1, 0), 1)
    image.putpixel((2, 0), 2)
    return image


@pytest.mark.parametrize("fmt", ["PNG", "GIF", "BMP"])
def test_palette_colours_are_looked_up(fmt):
    frame = read_frame(encode(palette_image(), fmt))
    assert frame.mode == "P"
    assert frame.pixels[0].tolist() == [[200, 10, 10], [0, 0, 255], [9, 99, 199]]


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_a_palette_with_a_transparent_colour_is_composited_on_black(fmt):
    frame = read_frame(encode(palette_image(), fmt, transparency=1))
    assert frame.mode == "P" + TRANSPARENCY
    assert frame.pixels[0].tolist() == [[200, 10, 10], [0, 0, 0], [9, 99, 199]]


def test_a_transparent_grey_level_in_a_png_is_composited_on_black():
    frame = read_frame(encode(Image.fromarray(np.array([[50, 60]], np.uint8)), "PNG", transparency=50))
    assert frame.mode == "L" + TRANSPARENCY and grey_row(frame) == [0, 60]


def test_rgba_is_composited_on_black():
    array = np.array([[[200, 100, 50, 255], [200, 100, 50, 0], [200, 100, 50, 128]]], np.uint8)
    frame = read_frame(encode(Image.fromarray(array), "PNG"))
    assert frame.mode == "RGBA"
    assert frame.pixels[0].tolist() == [[200, 100, 50], [0, 0, 0], [100, 50, 25]]


def test_grey_with_alpha_is_composited_on_black():
    image = Image.new("LA", (2, 1), (200, 255))
    image.putpixel((1, 0), (200, 0))
    frame = read_frame(encode(image, "PNG"))
    assert frame.mode == "LA" and grey_row(frame) == [200, 0]


@pytest.mark.parametrize("fmt", ["TIFF", "JPEG"])
def test_cmyk_uses_pillows_conversion(fmt):
    image = Image.new("CMYK", (2, 1), (0, 255, 255, 0))  # pure red ...
    image.putpixel((1, 0), (0, 0, 0, 127))  # ... and K at half: mid grey
    frame = read_frame(encode(image, fmt, **({"quality": 100} if fmt == "JPEG" else {})))
    assert frame.mode == "CMYK"
    np.testing.assert_allclose(frame.pixels[0].astype(int), [[255, 0, 0], [128, 128, 128]], atol=2)


def test_lab_tiff_is_converted():
    frame = read_frame(encode(Image.new("RGB", (1, 1), (200, 100, 50)).convert("LAB"), "TIFF"))
    assert frame.mode == "LAB"
    np.testing.assert_allclose(frame.pixels[0, 0].astype(int), [200, 100, 50], atol=2)


@pytest.mark.parametrize("mode", ["PA", "La", "RGBa", "RGBX", "YCbCr", "HSV"])
def test_in_memory_modes_convert_by_their_rule(mode):
    from mobiledx.data.images import to_rgb

    rgba = Image.new("RGBA", (2, 1), (200, 100, 50, 255))
    rgba.putpixel((1, 0), (200, 100, 50, 0))
    if mode == "PA":
        source = Image.new("PA", (2, 1))
        source.putpalette([200, 100, 50] + [0] * 765)
        source.putpixel((0, 0), (0, 255))
        source.putpixel((1, 0), (0, 0))
    elif mode in ("La", "RGBa"):
        source = (rgba.convert("LA") if mode == "La" else rgba).convert(mode)
    else:
        source = rgba.convert("RGB").convert(mode)
    pixels = to_rgb(source)
    expected_first = [124, 124, 124] if mode == "La" else [200, 100, 50]
    np.testing.assert_allclose(pixels[0, 0].astype(int), expected_first, atol=2)
    if mode in ("PA", "La", "RGBa"):  # the transparent pixel
        assert pixels[0, 1].tolist() == [0, 0, 0]


def test_every_pillow_mode_has_a_stated_rule():
    assert set(Image.MODES) <= set(CONVERSIONS)


# --- formats --------------------------------------------------------------------------------------------------

SAMPLE = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 200, 30]]] * 4, np.uint8)
LOSSLESS = [("PNG", {}), ("WEBP", {"lossless": True}), ("BMP", {}), ("TIFF", {}), ("PPM", {}), ("TGA", {}),
            ("QOI", {}), ("SGI", {}), ("PCX", {}), ("ICO", {}), ("JPEG2000", {})]


@pytest.mark.parametrize("fmt,options", LOSSLESS, ids=[fmt for fmt, _ in LOSSLESS])
def test_lossless_formats_decode_exactly(fmt, options):
    if fmt == "JPEG2000" and not features.check("jpg_2000"):
        pytest.skip("this Pillow has no OpenJPEG")
    assert np.array_equal(decode_frame(encode(Image.fromarray(SAMPLE), fmt, **options)), SAMPLE)


def test_webp_is_read_lossless_lossy_and_with_alpha():
    assert np.array_equal(decode_frame(encode(Image.fromarray(SAMPLE), "WEBP", lossless=True)), SAMPLE)
    lossy = decode_frame(encode(Image.new("RGB", (16, 16), (200, 100, 50)), "WEBP", quality=90))
    np.testing.assert_allclose(lossy.reshape(-1, 3).mean(axis=0), [200, 100, 50], atol=4)
    alpha = Image.new("RGBA", (2, 1), (200, 100, 50, 255))
    alpha.putpixel((1, 0), (200, 100, 50, 0))
    frame = read_frame(encode(alpha, "WEBP", lossless=True, exact=True))
    assert frame.mode == "RGBA" and frame.pixels[0].tolist() == [[200, 100, 50], [0, 0, 0]]


def test_avif_is_read():
    if not features.check("avif"):
        pytest.skip("this Pillow has no AVIF codec")
    pixels = decode_frame(encode(Image.new("RGB", (16, 16), (200, 100, 50)), "AVIF", quality=90))
    np.testing.assert_allclose(pixels.reshape(-1, 3).mean(axis=0), [200, 100, 50], atol=4)


def test_the_suffixes_pillow_opens_include_webp_and_no_stub_formats():
    suffixes = image_suffixes()
    assert {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm"} <= suffixes
    assert not {".h5", ".hdf", ".grib", ".bufr", ".wmf", ".eps", ".ps", ".csv", ".txt"} & suffixes


def test_arrays_keep_their_values():
    grey = np.array([[0, 77, 255]], np.uint8)
    assert resize_array(grey, 3)[0, :, 0].tolist() == [0, 77, 255]
    rgba = np.array([[[200, 100, 50, 0], [200, 100, 50, 255]]], np.uint8)
    assert resize_array(rgba, 2)[0].tolist() == [[0, 0, 0], [200, 100, 50]]


# --- counted by ingest ----------------------------------------------------------------------------------------

def test_ingest_counts_conversions_by_source_mode(tmp_path):
    from mobiledx.data.intake import ImageFitness, ingest
    from tests.support import ham_rows, write_ham10000

    rows = ham_rows(1)  # 14 images
    root = write_ham10000(tmp_path / "ham", rows, folders=("imgs",))
    sources = {0: ("png", gray16([1000] * 20)), 1: ("png", gray16([65535] * 20)),
               2: ("tif", encode(Image.new("CMYK", (20, 1), (0, 255, 255, 0)), "TIFF")),
               3: ("png", encode(palette_image().resize((20, 1)), "PNG", transparency=1)),
               4: ("png", encode(Image.new("L", (20, 1), 90), "PNG"))}
    for index, (suffix, data) in sources.items():
        (root / "imgs" / f"{rows[index]['image_id']}.jpg").unlink()
        (root / "imgs" / f"{rows[index]['image_id']}.{suffix}").write_bytes(data)
    result = ingest(root, "ham10000", image_size=4, images_path=tmp_path / "images.npy", workers=1,
                    fitness=ImageFitness(min_side=1, max_aspect=100))
    assert result.converted_modes == {"CMYK": 1, "I;16": 2, "L": 1, "P" + TRANSPARENCY: 1}
    row = dict(zip(result.manifest["image_id"], range(len(result.manifest))))
    assert (result.images[row[rows[0]["image_id"]]] == 4).all()  # 1000 / 257: dark stays dark
    assert (result.images[row[rows[1]["image_id"]]] == 255).all()
    assert (result.images[row[rows[2]["image_id"]]] == [255, 0, 0]).all()
    assert (result.images[row[rows[4]["image_id"]]] == 90).all()
