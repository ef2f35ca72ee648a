"""Decoding one image file into the RGB array every stage (ingest, predict) uses.

One decoding path for training, evaluation and prediction: EXIF orientation applied once,
any mode (grayscale, palette, RGBA, CMYK, 16-bit) converted to 8-bit RGB, resized to a square.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps


class UnreadableImageError(ValueError):
    """The file is not an image PIL can fully decode."""


def decode_image(data: bytes, size: int) -> np.ndarray:
    """Decode image bytes into a ``(size, size, 3)`` uint8 RGB array."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.draft("RGB", (size, size))  # JPEG: decode at a reduced scale when much larger
            image.load()
            image = ImageOps.exif_transpose(image)
            rgb = _to_rgb(image)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise UnreadableImageError(f"cannot decode image: {error}") from error
    return np.asarray(rgb.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)


def resize_array(pixels: np.ndarray, size: int) -> np.ndarray:
    """An image already decoded to an array (H×W gray, H×W×3 RGB, H×W×4 RGBA) → ``(size, size, 3)`` uint8."""
    if pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[2] not in (1, 3, 4)):
        raise UnreadableImageError(f"array of shape {pixels.shape} is not an image")
    if pixels.dtype != np.uint8:
        raise UnreadableImageError(f"expected uint8 pixels, got {pixels.dtype}")
    image = Image.fromarray(pixels[..., 0] if pixels.ndim == 3 and pixels.shape[2] == 1 else pixels)
    return np.asarray(_to_rgb(image).resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)


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
