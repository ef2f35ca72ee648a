"""Decoding one image file into the RGB array every stage (ingest, predict) uses.

One decoding path for training, evaluation and prediction: the whole file decoded at full
resolution, EXIF orientation applied once, any mode converted to 8-bit RGB (see below), then
resized to a square by :func:`device_resize`: exactly what MediaPipe Tasks' ``ImageClassifier``
does on the phone to the whole camera frame it is given. Training, evaluation and the app
therefore see the same pixels, and the pipeline's test figures are the shipped model's.

Pixels keep their meaning: every mode is converted by the range its FORMAT declares, never by the
image's own content (a dark 16-bit photo stays dark). :data:`CONVERSIONS` states the rule for each
mode Pillow opens; a mode without a rule, or pixels outside their declared range, are refused with
:class:`UnreadableImageError` (ingest quarantines the file with that reason).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps


class UnreadableImageError(ValueError):
    """The file is not an image PIL can fully decode, or its pixels have no known meaning on the 0-255 scale."""


# How each mode Pillow opens becomes 8-bit RGB (docs/sources/bad-inputs.md repeats it).
CONVERSIONS = {
    "RGB": "kept as is (16-bit-per-channel PNG/TIFF colour: Pillow keeps the high byte, i.e. value // 256)",
    "L": "grey level copied to R, G and B",
    "1": "black and white: 0 and 255",
    "P": "palette colours looked up",
    "RGBA": "composited on black (transparent pixels become black)",
    "LA": "grey level composited on black, then copied to R, G and B",
    "La": "premultiplied grey + alpha: un-premultiplied, composited on black",
    "PA": "palette colours looked up, composited on black",
    "RGBa": "premultiplied RGBA: un-premultiplied, composited on black",
    "RGBX": "padding byte dropped",
    "CMYK": "Pillow's CMYK to RGB (R = (255 - C)(255 - K) / 255 ...; no colour profile, as on the phone)",
    "YCbCr": "Pillow's YCbCr to RGB (ITU-R BT.601)",
    "LAB": "Pillow's CIELAB to RGB",
    "HSV": "Pillow's HSV to RGB",
    "I;16": "16-bit grey: value / 257 (0 -> 0, 65535 -> 255), rounded half up",
    "I": ("32-bit integer grey, scaled by the range its format declares: 16-bit PNG and PGM/PPM (which Pillow "
          "stretches to 16 bits) 0-65535, an unsigned TIFF 0-(2^bits - 1); signed TIFFs and other formats refused"),
    "F": ("32-bit float grey, scaled from [0, 1] (or the TIFF's SMinSampleValue-SMaxSampleValue) to 0-255; "
          "values outside that range, NaN or infinity refused"),
}
for _variant in ("I;16L", "I;16B", "I;16N"):
    CONVERSIONS[_variant] = CONVERSIONS["I;16"]
TRANSPARENCY = "+transparency"  # suffix of a mode whose file declares a transparent colour (PNG tRNS, GIF)
_ALPHA_MODES = {"RGBA", "LA", "La", "PA", "RGBa"}
_RANGE_TOLERANCE = 1e-6  # of the declared span: float rounding at the ends of [0, 1] is not "outside"


@dataclass(frozen=True)
class Frame:
    """A decoded frame: ``(H, W, 3)`` uint8 RGB pixels and the mode they were converted from.

    ``mode`` is Pillow's mode of the file (``"RGB"``: nothing converted), with :data:`TRANSPARENCY`
    appended when the file declares a transparent colour (then composited on black).
    """

    pixels: np.ndarray
    mode: str

    @property
    def converted(self) -> bool:
        return self.mode != "RGB"


def device_resize(rgb: np.ndarray, size: int) -> np.ndarray:
    """Stretch a whole ``(H, W, 3)`` uint8 frame to ``(size, size, 3)`` as MediaPipe's ImageClassifier does.

    MediaPipe (``ImageToTensorCalculator``, OpenCV CPU path) maps the whole frame (no crop, no
    letterbox: the aspect ratio is not kept) onto the model input with ``warpPerspective``,
    ``INTER_LINEAR``, replicated borders and no antialiasing: output pixel ``(x, y)`` samples the
    frame at ``(x·W/size, y·H/size)``, a position OpenCV rounds to 1/32 pixel, with integer
    bilinear weights, and the result is rounded to uint8 before the model's normalisation. This
    reproduces it bit for bit (checked against mediapipe 1.2.3 in tests/integration/test_on_device.py).
    Only the ``size × size × 4`` source pixels it needs are read, so large frames cost little.
    """
    height, width = rgb.shape[:2]
    xs = np.rint(np.arange(size, dtype=np.float64) * (width / size) * 32).astype(np.int64)
    ys = np.rint(np.arange(size, dtype=np.float64) * (height / size) * 32).astype(np.int64)
    x0, fx = np.minimum(xs >> 5, width - 1), (xs & 31)[None, :, None]
    y0, fy = np.minimum(ys >> 5, height - 1), (ys & 31)[:, None, None]
    x1, y1 = np.minimum(x0 + 1, width - 1), np.minimum(y0 + 1, height - 1)
    top, bottom = rgb[y0], rgb[y1]
    weighted = ((32 - fy) * ((32 - fx) * top[:, x0].astype(np.int32) + fx * top[:, x1])
                + fy * ((32 - fx) * bottom[:, x0].astype(np.int32) + fx * bottom[:, x1]))  # weights sum to 1024
    return ((weighted + 512) >> 10).astype(np.uint8)


def read_frame(data: bytes, jpeg_reduction: int = 1) -> Frame:
    """Decode image bytes at full resolution, EXIF orientation applied, into a :class:`Frame`.

    ``jpeg_reduction`` 2, 4 or 8 decodes a JPEG at that fraction of its size in the DCT domain, as
    Android's ``BitmapFactory`` does with ``inSampleSize`` (both use libjpeg-turbo's scaled IDCT);
    other formats are decoded at full size."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            if jpeg_reduction > 1 and image.format == "JPEG":
                image.draft(image.mode, (image.width // jpeg_reduction, image.height // jpeg_reduction))
            image.load()
            mode = image.mode + (TRANSPARENCY if _declares_transparency(image) else "")
            value_range = _declared_range(image)  # before exif_transpose: its copy no longer knows the format
            image = ImageOps.exif_transpose(image)
            return Frame(np.asarray(_to_rgb(image, value_range), dtype=np.uint8), mode)
    except Image.UnidentifiedImageError:  # its text names the buffer's address: a new one every run
        raise UnreadableImageError("cannot decode image: not an image format PIL can identify") from None
    except UnreadableImageError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise UnreadableImageError(f"cannot decode image: {error}") from error


def decode_frame(data: bytes) -> np.ndarray:
    """Decode image bytes at full resolution, EXIF orientation applied, into an ``(H, W, 3)`` uint8 RGB frame."""
    return read_frame(data).pixels


def decode_image(data: bytes, size: int) -> np.ndarray:
    """Decode image bytes (the whole frame, as the phone does) into a ``(size, size, 3)`` uint8 RGB array."""
    return device_resize(decode_frame(data), size)


def to_rgb(image: Image.Image) -> np.ndarray:
    """An opened Pillow image as ``(H, W, 3)`` uint8 RGB, by the rule :data:`CONVERSIONS` states for its
    mode (the range its format declares; EXIF orientation is not applied here)."""
    return np.asarray(_to_rgb(image, _declared_range(image)), dtype=np.uint8)


def array_mode(pixels: np.ndarray) -> str:
    """The Pillow mode of an image shipped as a uint8 array (H×W or H×W×1 gray ``L``, ``RGB``, ``RGBA``)."""
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    return {1: "L", 3: "RGB", 4: "RGBA"}.get(channels, f"{channels} channels")


def resize_array(pixels: np.ndarray, size: int) -> np.ndarray:
    """An image already decoded to an array (H×W gray, H×W×3 RGB, H×W×4 RGBA) → ``(size, size, 3)`` uint8."""
    if pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[2] not in (1, 3, 4)):
        raise UnreadableImageError(f"array of shape {pixels.shape} is not an image")
    if pixels.dtype != np.uint8:
        raise UnreadableImageError(f"expected uint8 pixels, got {pixels.dtype}")
    image = Image.fromarray(pixels[..., 0] if pixels.ndim == 3 and pixels.shape[2] == 1 else pixels)
    return device_resize(np.asarray(_to_rgb(image, None), dtype=np.uint8), size)


def load_image(path: str | Path, size: int) -> np.ndarray:
    """Read and decode an image file (see :func:`decode_image`)."""
    data = Path(path).read_bytes()
    if not data:
        raise UnreadableImageError("empty file (0 bytes)")
    return decode_image(data, size)


# Raster formats photos and scans come in, and the Pillow feature each needs beyond Pillow itself (not
# Pillow's stubs and vector formats: HDF5, GRIB, BUFR, WMF, EPS ...).
PHOTO_FORMATS = {"JPEG": "jpg", "PNG": None, "BMP": None, "DIB": None, "TIFF": None, "WEBP": "webp", "GIF": None,
                 "PPM": None, "TGA": None, "JPEG2000": "jpg_2000", "QOI": None, "SGI": None, "PCX": None, "ICO": None,
                 "AVIF": "avif"}


def image_suffixes() -> set[str]:
    """File name suffixes (lower case, with the dot) of the :data:`PHOTO_FORMATS` this Pillow decodes:
    ``.jpg .png .bmp .tif .webp .gif .ppm .jp2 ...``; what a layout may index as images."""
    from PIL import features

    usable = {name for name, feature in PHOTO_FORMATS.items() if feature is None or features.check(feature)}
    return {suffix.lower() for suffix, name in Image.registered_extensions().items()
            if name in usable and name in Image.OPEN}


def _declares_transparency(image: Image.Image) -> bool:
    return image.mode not in _ALPHA_MODES and "transparency" in image.info


def _declared_range(image: Image.Image) -> tuple[float, float] | None:
    """The value range the file's format declares for modes beyond 8 bits (``None``: an 8-bit mode)."""
    mode, kind = image.mode, image.format or "an array"
    if mode.startswith("I;16"):
        return 0.0, 65535.0
    tags = getattr(image, "tag_v2", None) if kind == "TIFF" else None
    if mode == "I":
        if kind in ("PNG", "PPM"):  # PNG: at most 16 bits; Pillow stretches a PGM/PPM maxval to 65535
            return 0.0, 65535.0
        if tags is not None:
            bits = _first(tags.get(258), 32)
            if _first(tags.get(339), 1) != 1:  # SampleFormat 2: signed integers
                raise UnreadableImageError(f"{bits}-bit signed integer pixels (TIFF) have no standard range on the "
                                           f"0-255 scale. Fix: save the image as 8- or 16-bit unsigned")
            return 0.0, float(2 ** int(bits) - 1)
        raise UnreadableImageError(f"32-bit integer pixels ({kind}, mode I) with no declared range. Fix: save "
                                   f"the image as 8- or 16-bit")
    if mode == "F":
        if tags is not None and 340 in tags and 341 in tags:  # SMinSampleValue, SMaxSampleValue
            return float(_first(tags[340], 0.0)), float(_first(tags[341], 1.0))
        return 0.0, 1.0
    return None


def _first(value, default):
    if value is None:
        return default
    return value[0] if isinstance(value, (tuple, list)) else value


def _scaled(image: Image.Image, value_range: tuple[float, float]) -> Image.Image:
    """A grey image beyond 8 bits as ``L``: ``value_range`` mapped linearly onto 0-255, rounded half up.
    Float pixels outside the range (or not finite) are refused: their meaning is unknown."""
    low, high = value_range
    values = np.asarray(image)
    if image.mode == "I" and high > np.iinfo(np.int32).max:  # unsigned 32-bit TIFF: Pillow holds it as int32 bits
        values = values.astype(np.int32).view(np.uint32)
    values = values.astype(np.float64)
    if image.mode == "F":
        span = (high - low) * _RANGE_TOLERANCE
        finite = np.isfinite(values)
        if not finite.all() or values.size and (values.min() < low - span or values.max() > high + span):
            shown = values[finite]
            extent = f"{shown.min():g} to {shown.max():g}" if shown.size else "none finite"
            raise UnreadableImageError(
                f"32-bit float pixels outside their range [{low:g}, {high:g}] (values {extent}"
                f"{', NaN or infinity' if not finite.all() else ''}): their meaning on the 0-255 scale is "
                f"unknown. Fix: save the image as 8- or 16-bit, or as floats in [0, 1]")
    eight_bit = np.floor((values - low) * (255.0 / (high - low)) + 0.5)
    scaled = Image.fromarray(np.clip(eight_bit, 0, 255).astype(np.uint8))
    if "transparency" in image.info:  # a 16-bit PNG's transparent grey level
        transparent = np.asarray(image) == image.info["transparency"]
        scaled = Image.fromarray(np.where(transparent, 0, np.asarray(scaled)).astype(np.uint8))
    return scaled


def _to_rgb(image: Image.Image, value_range: tuple[float, float] | None) -> Image.Image:
    """``image`` as 8-bit RGB by the rule :data:`CONVERSIONS` states for its mode."""
    if image.mode not in CONVERSIONS:
        raise UnreadableImageError(f"image mode {image.mode} has no conversion to 8-bit RGB")
    if value_range is not None:
        return _scaled(image, value_range).convert("RGB")
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):  # never by Pillow's clipping convert()
        raise UnreadableImageError(f"image mode {image.mode} needs its declared range to become 8-bit RGB")
    if image.mode == "La":  # Pillow converts premultiplied grey only to LA
        image = image.convert("LA")
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")
