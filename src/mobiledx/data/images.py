"""Decoding one image file into the RGB array every stage (ingest, predict) uses.

One decoding path for training, evaluation and prediction: the whole file decoded at full
resolution, EXIF orientation applied once, any mode (grayscale, palette, RGBA, CMYK, 16-bit)
converted to 8-bit RGB, then resized to a square by :func:`device_resize`: exactly what MediaPipe
Tasks' ``ImageClassifier`` does on the phone to the whole camera frame it is given. Training,
evaluation and the app therefore see the same pixels, and the pipeline's test figures are the
shipped model's.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps


class UnreadableImageError(ValueError):
    """The file is not an image PIL can fully decode."""


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


def decode_frame(data: bytes) -> np.ndarray:
    """Decode image bytes at full resolution, EXIF orientation applied, into an ``(H, W, 3)`` uint8 RGB frame."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            image = ImageOps.exif_transpose(image)
            return np.asarray(_to_rgb(image), dtype=np.uint8)
    except Image.UnidentifiedImageError as error:  # its text names the buffer's address: a new one every run
        raise UnreadableImageError("cannot decode image: not an image format PIL can identify") from error
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise UnreadableImageError(f"cannot decode image: {error}") from error


def decode_image(data: bytes, size: int) -> np.ndarray:
    """Decode image bytes (the whole frame, as the phone does) into a ``(size, size, 3)`` uint8 RGB array."""
    return device_resize(decode_frame(data), size)


def resize_array(pixels: np.ndarray, size: int) -> np.ndarray:
    """An image already decoded to an array (H×W gray, H×W×3 RGB, H×W×4 RGBA) → ``(size, size, 3)`` uint8."""
    if pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[2] not in (1, 3, 4)):
        raise UnreadableImageError(f"array of shape {pixels.shape} is not an image")
    if pixels.dtype != np.uint8:
        raise UnreadableImageError(f"expected uint8 pixels, got {pixels.dtype}")
    image = Image.fromarray(pixels[..., 0] if pixels.ndim == 3 and pixels.shape[2] == 1 else pixels)
    return device_resize(np.asarray(_to_rgb(image), dtype=np.uint8), size)


def load_image(path: str | Path, size: int) -> np.ndarray:
    """Read and decode an image file (see :func:`decode_image`)."""
    data = Path(path).read_bytes()
    if not data:
        raise UnreadableImageError("empty file (0 bytes)")
    return decode_image(data, size)


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        pixels = np.asarray(image, dtype=np.float64)
        peak = pixels.max() if pixels.size and pixels.max() > 0 else 1.0
        image = Image.fromarray(np.round(pixels / peak * 255.0).astype(np.uint8), mode="L")
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")
