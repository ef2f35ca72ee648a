"""Synthetic demo datasets in the native on-disk layouts of HAM10000, an ISIC Archive download and C-NMC 2019.

THE DATA WRITTEN HERE IS SYNTHETIC AND MEANS NOTHING CLINICALLY. The images are procedurally drawn
blobs (skin "lesions") and discs (blood "cells") whose class-dependent colour, size, shape and texture
were invented so that a small CNN has something to learn; they are not derived from, and must never be
mistaken for, real patient data. Metadata (ages, sexes, sites, diagnosis types) are random draws that
only follow the *format* and rough marginal frequencies of the real files.

The point of the demo is that the very adapters which read the real datasets read the demo unchanged:

* :func:`generate_ham10000_demo` writes ``HAM10000_metadata.csv`` (real columns, real value conventions)
  and ``HAM10000_images_part_1/<image_id>.jpg`` (image ids beyond the 5,000th go to
  ``HAM10000_images_part_2`` as in the real release; demo sizes below 5,000 only use part 1).
* :func:`generate_clinic_demo` writes "another clinic" as an ``isic image download`` folder (``metadata.csv``,
  ``attribution.txt``, ``licenses/``, flat ``ISIC_*.jpg``): new lesions through another camera (colour cast,
  vignette, JPEG quality), plus some demo-skin images under their own ids, as the ISIC Archive re-ships HAM10000.
* :func:`generate_cnmc_demo` writes ``training_data/fold_{0,1,2}/{all,hem}/UID_*.bmp`` with the real
  file-name grammar (``UID_11_10_1_all.bmp``, ``UID_H10_43_1_hem.bmp``).

The generators are deterministic: everything is drawn from ``numpy.random.default_rng(seed)`` in a
fixed order, so the same arguments give byte-identical files, on every CPU. Pixels are computed in
float64 with IEEE-exact operations, ``math``/libm scalars and :mod:`mobiledx.data.exactmath` (never
NumPy's SIMD-dispatched ``exp``/``log``/``power``, or float32, whose last bit depends on the CPU), and
rounded to uint8 once, in :func:`_to_bytes`. Pillow's 8-bit resize and the JPEG and BMP encoders are integer
code (libjpeg-turbo's SIMD paths give the same bytes as its C paths). ``tests/data/test_demo_data.py`` checks this under
several ``NPY_DISABLE_CPU_FEATURES`` settings and against the hashes recorded in ``dvc.lock``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from mobiledx.data.exactmath import exact_exp, exact_power
from mobiledx.data.formats import (
    CNMC_CLASSES,
    HAM10000_CLASSES,
    HAM10000_COLUMNS,
    HAM10000_FIRST_IMAGE,
    HAM10000_IMAGES_PER_PART,
    HAM10000_METADATA_FILE,
    HAM10000_PART_FOLDER,
    cnmc_file_name,
)

__all__ = [
    "HAM10000_CLASSES",
    "HAM10000_COLUMNS",
    "HAM10000_REAL_COUNTS",
    "HAM10000_LOCALIZATIONS",
    "CNMC_CLASSES",
    "ISIC_ARCHIVE_COLUMNS",
    "generate_ham10000_demo",
    "generate_clinic_demo",
    "generate_cnmc_demo",
]

# --------------------------------------------------------------------------------------------------
# HAM10000 constants (format of the real release)
# --------------------------------------------------------------------------------------------------

HAM10000_REAL_COUNTS = {
    "akiec": 327,
    "bcc": 514,
    "bkl": 1099,
    "df": 115,
    "mel": 1113,
    "nv": 6705,
    "vasc": 142,
}
assert list(HAM10000_REAL_COUNTS) == HAM10000_CLASSES  # the adapter's vocabulary, in the same order
HAM10000_LOCALIZATIONS = [
    "abdomen",
    "acral",
    "back",
    "chest",
    "ear",
    "face",
    "foot",
    "genital",
    "hand",
    "lower extremity",
    "neck",
    "scalp",
    "trunk",
    "unknown",
    "upper extremity",
]
_HAM_MIN_PER_CLASS = 15
_HAM_MIN_SHARE = 17  # ... or 1/17 of the images if more: a few test images per class would make every figure noisy

# Known (non-"unknown") sites with roughly the real frequencies.
_SITE_WEIGHTS = {
    "back": 2192,
    "lower extremity": 2077,
    "trunk": 1404,
    "upper extremity": 1118,
    "abdomen": 1022,
    "face": 745,
    "chest": 407,
    "foot": 319,
    "neck": 168,
    "scalp": 128,
    "hand": 90,
    "ear": 56,
    "genital": 48,
    "acral": 7,
}
# dx_type given dx, roughly as in the real metadata (mel/bcc/akiec are all histopathology-confirmed).
_DX_TYPE_WEIGHTS = {
    "akiec": {"histo": 1.0},
    "bcc": {"histo": 1.0},
    "bkl": {"histo": 0.50, "consensus": 0.40, "confocal": 0.07, "follow_up": 0.03},
    "df": {"histo": 0.50, "consensus": 0.50},
    "mel": {"histo": 1.0},
    "nv": {"follow_up": 0.55, "histo": 0.37, "consensus": 0.08},
    "vasc": {"histo": 0.45, "consensus": 0.55},
}
# Mean age by diagnosis (years); ages are rounded to 5-year steps and clipped to 0..85 like the real file.
_AGE_MEAN = {"akiec": 67, "bcc": 66, "bkl": 59, "df": 52, "mel": 61, "nv": 45, "vasc": 50}
# Number of images per lesion: most lesions have one image (real: 10,015 images of 7,470 lesions).
_IMAGES_PER_LESION_P = np.array([0.76, 0.16, 0.06, 0.02])

# --------------------------------------------------------------------------------------------------
# C-NMC 2019 constants
# --------------------------------------------------------------------------------------------------

_CNMC_FOLDS = 3


# ==================================================================================================
# Shared helpers
# ==================================================================================================


def _prepare_out_dir(out_dir: Path) -> Path:
    out_dir = Path(out_dir)
    if out_dir.exists():
        if not out_dir.is_dir():
            raise FileExistsError(f"{out_dir} exists and is not a directory")
        if any(out_dir.iterdir()):
            raise FileExistsError(f"{out_dir} is not empty; refusing to write demo data into it")
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


def _smooth_field(rng: np.random.Generator, cells: int, size: int = 64) -> np.ndarray:
    """A ``size``x``size`` smooth random field, zero mean and unit-ish std (bicubic-upscaled noise).

    Pillow resamples float images in plain C (no SIMD dispatch); the mean and sd are exactly rounded
    sums (``math.fsum``), so the field is the same bytes on every CPU.
    """
    coarse = rng.standard_normal((cells, cells)).astype(np.float32)  # Pillow's float mode "F" is float32
    field = np.asarray(Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC), dtype=np.float64)
    field = field - math.fsum(field.ravel()) / field.size
    return field / (math.sqrt(math.fsum((field * field).ravel()) / field.size) + 1e-6)


def _sample_field(field: np.ndarray, u: np.ndarray, v: np.ndarray, extent: float) -> np.ndarray:
    """Bilinear lookup of ``field`` (covering ``[-extent, extent]^2``) at coordinates ``(u, v)``."""
    n = field.shape[0]
    fx = np.clip((u + extent) / (2 * extent) * (n - 1), 0, n - 1.001)
    fy = np.clip((v + extent) / (2 * extent) * (n - 1), 0, n - 1.001)
    x0 = fx.astype(np.intp)
    y0 = fy.astype(np.intp)
    tx = fx - x0
    ty = fy - y0
    top = field[y0, x0] * (1 - tx) + field[y0, x0 + 1] * tx
    bottom = field[y0 + 1, x0] * (1 - tx) + field[y0 + 1, x0 + 1] * tx
    return top * (1 - ty) + bottom * ty


def _to_bytes(image: np.ndarray) -> np.ndarray:
    """The one rounding step: float64 intensities in [0, 1] -> uint8, round half up (``floor(255 x + 0.5)``)."""
    return np.floor(np.clip(image * 255.0 + 0.5, 0.0, 255.0)).astype(np.uint8)


def _blend(image: np.ndarray, colour, weight: np.ndarray) -> np.ndarray:
    """Alpha-blend a flat ``colour`` into ``image`` (H, W, 3) with per-pixel ``weight`` (H, W)."""
    w = np.clip(weight, 0.0, 1.0)[..., None]
    return image * (1.0 - w) + np.asarray(colour, dtype=np.float64) * w


def _blobs(u: np.ndarray, v: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Maximum over Gaussian blobs at ``centres`` (k, 2) with ``radii`` (k,), evaluated at ``(u, v)``."""
    if len(centres) == 0:
        return np.zeros_like(u)
    du = u[None] - centres[:, 0, None, None]
    dv = v[None] - centres[:, 1, None, None]
    r2 = (2.0 * radii * radii)[:, None, None]
    return exact_exp(-(du * du + dv * dv) / r2).max(axis=0)


def _random_points_in_disc(rng: np.random.Generator, n: int, radius: float) -> np.ndarray:
    angle = rng.uniform(0, 2 * np.pi, n)
    r = radius * np.sqrt(rng.uniform(0, 1, n))
    return np.stack([r * np.cos(angle), r * np.sin(angle)], axis=1)


def _polar_radius(phi: np.ndarray, amps: np.ndarray, phases: np.ndarray) -> np.ndarray:
    """Boundary radius ``1 + sum_k a_k cos(k phi + p_k)`` for harmonics k = 2, 3, ..."""
    radius = np.ones_like(phi)
    for k, (amp, phase) in enumerate(zip(amps, phases), start=2):
        radius = radius + amp * np.cos(k * phi + phase)
    return radius


# ==================================================================================================
# HAM10000
# ==================================================================================================


@dataclass
class _LesionLook:
    """Numeric appearance parameters of one skin-lesion class (all numeric so classes can be mixed)."""

    centre_rgb: tuple  # colour at the lesion centre
    edge_rgb: tuple  # colour at the border
    profile: float  # exponent of the centre->edge colour ramp
    size: float  # semi-major axis as a fraction of min(H, W)
    aspect: float  # minor / major axis ratio
    irregular: float  # amplitude of border harmonics
    softness: float  # border blur (in normalised radius units)
    texture: float  # amplitude of mottled texture
    texture_cells: float  # coarseness of the texture field (more cells = finer)
    spot_rgb: tuple  # colour of dots / globules / milia / lacunae
    spots: float  # number of spots
    spot_size: float  # spot radius in normalised lesion units
    veil_rgb: tuple  # colour of a patchy veil / second colour zone
    veil: float  # strength of the veil
    lines_rgb: tuple  # colour of lines drawn inside the lesion (vessels)
    lines: float  # number of lines


_LOOKS: dict[str, _LesionLook] = {
    # melanocytic nevus: medium brown, regular, round, fairly uniform.
    "nv": _LesionLook(
        centre_rgb=(0.40, 0.24, 0.15), edge_rgb=(0.56, 0.39, 0.28), profile=1.6, size=0.30, aspect=0.85,
        irregular=0.03, softness=0.06, texture=0.03, texture_cells=5, spot_rgb=(0.30, 0.18, 0.11), spots=0,
        spot_size=0.10, veil_rgb=(0.45, 0.33, 0.28), veil=0.0, lines_rgb=(0.5, 0.2, 0.2), lines=0,
    ),
    # melanoma: large, asymmetric, irregular border, very dark with blue-grey veil and black dots.
    "mel": _LesionLook(
        centre_rgb=(0.14, 0.09, 0.09), edge_rgb=(0.36, 0.24, 0.20), profile=1.0, size=0.38, aspect=0.72,
        irregular=0.13, softness=0.05, texture=0.08, texture_cells=6, spot_rgb=(0.05, 0.04, 0.05), spots=5,
        spot_size=0.09, veil_rgb=(0.35, 0.42, 0.58), veil=0.5, lines_rgb=(0.5, 0.2, 0.2), lines=0,
    ),
    # benign keratosis: ochre / yellow-brown, waxy mottled texture, milia-like pale cysts.
    "bkl": _LesionLook(
        centre_rgb=(0.70, 0.54, 0.25), edge_rgb=(0.75, 0.61, 0.35), profile=1.2, size=0.34, aspect=0.75,
        irregular=0.07, softness=0.05, texture=0.14, texture_cells=10, spot_rgb=(0.96, 0.94, 0.78), spots=4,
        spot_size=0.08, veil_rgb=(0.48, 0.36, 0.20), veil=0.15, lines_rgb=(0.5, 0.2, 0.2), lines=0,
    ),
    # basal cell carcinoma: pearly pink-white, blue-grey ovoid nests, red branching vessels.
    "bcc": _LesionLook(
        centre_rgb=(0.94, 0.74, 0.80), edge_rgb=(0.89, 0.67, 0.68), profile=1.0, size=0.30, aspect=0.8,
        irregular=0.05, softness=0.09, texture=0.03, texture_cells=6, spot_rgb=(0.28, 0.34, 0.56), spots=4,
        spot_size=0.12, veil_rgb=(0.96, 0.86, 0.88), veil=0.15, lines_rgb=(0.72, 0.06, 0.12), lines=3,
    ),
    # actinic keratosis / intraepithelial carcinoma: red, ill-defined border, white scale.
    "akiec": _LesionLook(
        centre_rgb=(0.80, 0.32, 0.28), edge_rgb=(0.84, 0.45, 0.40), profile=1.0, size=0.34, aspect=0.75,
        irregular=0.08, softness=0.18, texture=0.18, texture_cells=12, spot_rgb=(0.97, 0.95, 0.92), spots=5,
        spot_size=0.08, veil_rgb=(0.88, 0.62, 0.58), veil=0.15, lines_rgb=(0.75, 0.25, 0.25), lines=0,
    ),
    # dermatofibroma: small, white central patch inside a brown peripheral ring.
    "df": _LesionLook(
        centre_rgb=(0.95, 0.90, 0.86), edge_rgb=(0.48, 0.30, 0.20), profile=2.0, size=0.22, aspect=0.85,
        irregular=0.03, softness=0.12, texture=0.03, texture_cells=5, spot_rgb=(0.50, 0.33, 0.24), spots=0,
        spot_size=0.10, veil_rgb=(0.6, 0.45, 0.35), veil=0.0, lines_rgb=(0.5, 0.2, 0.2), lines=0,
    ),
    # vascular lesion: red / purple, sharply demarcated, dark red lacunae.
    "vasc": _LesionLook(
        centre_rgb=(0.74, 0.14, 0.26), edge_rgb=(0.82, 0.28, 0.36), profile=1.2, size=0.24, aspect=0.85,
        irregular=0.04, softness=0.03, texture=0.04, texture_cells=6, spot_rgb=(0.30, 0.04, 0.24), spots=8,
        spot_size=0.14, veil_rgb=(0.45, 0.10, 0.35), veil=0.0, lines_rgb=(0.5, 0.2, 0.2), lines=0,
    ),
}
# Look-alike class used to make some lesions atypical (class distributions overlap a little).
_CONFUSABLE = {"nv": "mel", "mel": "nv", "bkl": "mel", "bcc": "akiec", "akiec": "bcc", "df": "nv", "vasc": "bcc"}
_ATYPICAL_P = 0.12


def _mix_looks(a: _LesionLook, b: _LesionLook, t: float) -> _LesionLook:
    values = {}
    for f in fields(_LesionLook):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, tuple):
            values[f.name] = tuple((1 - t) * xi + t * yi for xi, yi in zip(x, y))
        else:
            values[f.name] = (1 - t) * x + t * y
    return _LesionLook(**values)


@dataclass
class _Lesion:
    """Everything shared by all images of one lesion."""

    dx: str
    look: _LesionLook
    centre_rgb: np.ndarray
    edge_rgb: np.ndarray
    spot_rgb: np.ndarray
    veil_rgb: np.ndarray
    lines_rgb: np.ndarray
    size: float
    aspect: float
    angle: float
    harm_amps: np.ndarray
    harm_phases: np.ndarray
    texture: np.ndarray  # smooth field in lesion coordinates
    veil_field: np.ndarray
    spot_centres: np.ndarray
    spot_radii: np.ndarray
    vessel_paths: list  # polylines in lesion coordinates
    skin_rgb: np.ndarray
    hairiness: int


_LESION_SCALE = 1.6  # global multiplier of the class sizes below
_FIELD_EXTENT = 1.6  # lesion-coordinate fields cover [-1.6, 1.6]^2 (normalised radius units)


def _colour_jitter(rng: np.random.Generator, rgb, sd: float) -> np.ndarray:
    """Jitter mostly the brightness of ``rgb`` (``sd``) and a little its hue (``sd / 3`` per channel)."""
    factor = rng.normal(1.0, sd) * rng.normal(1.0, sd / 3.0, 3)
    return np.clip(np.asarray(rgb, dtype=np.float64) * factor, 0.0, 1.0)


def _sample_skin(rng: np.random.Generator) -> np.ndarray:
    light = np.array([0.94, 0.80, 0.72], dtype=np.float64)
    tan = np.array([0.74, 0.54, 0.42], dtype=np.float64)
    t = 0.6 * rng.beta(2.0, 4.0)
    skin = light * (1 - t) + tan * t
    return np.clip(skin * rng.normal(1.0, 0.025, 3), 0, 1)


def _make_lesion(rng: np.random.Generator, dx: str) -> _Lesion:
    look = _LOOKS[dx]
    if rng.uniform() < _ATYPICAL_P:
        look = _mix_looks(look, _LOOKS[_CONFUSABLE[dx]], rng.uniform(0.25, 0.6))
    n_harm = 6
    amps = rng.uniform(0.3, 1.0, n_harm) * look.irregular / np.sqrt(np.arange(1, n_harm + 1))
    n_spots = int(rng.poisson(look.spots)) if look.spots > 0 else 0
    spot_centres = _random_points_in_disc(rng, n_spots, 0.8)
    spot_radii = look.spot_size * rng.uniform(0.6, 1.4, n_spots)
    vessels = []
    for _ in range(int(rng.poisson(look.lines)) if look.lines > 0 else 0):
        start = _random_points_in_disc(rng, 1, 0.7)[0]
        steps = rng.integers(4, 9)
        heading = rng.uniform(0, 2 * np.pi)
        headings = heading + np.cumsum(rng.normal(0, 0.6, steps))
        pts = start + np.cumsum(0.12 * np.stack([np.cos(headings), np.sin(headings)], axis=1), axis=0)
        vessels.append(np.vstack([start, pts]))
    return _Lesion(
        dx=dx,
        look=look,
        centre_rgb=_colour_jitter(rng, look.centre_rgb, 0.07),
        edge_rgb=_colour_jitter(rng, look.edge_rgb, 0.06),
        spot_rgb=_colour_jitter(rng, look.spot_rgb, 0.08),
        veil_rgb=_colour_jitter(rng, look.veil_rgb, 0.08),
        lines_rgb=_colour_jitter(rng, look.lines_rgb, 0.08),
        size=float(_LESION_SCALE * look.size * rng.lognormal(0.0, 0.12)),
        aspect=float(np.clip(look.aspect * rng.normal(1.0, 0.1), 0.45, 1.0)),
        angle=float(rng.uniform(0, np.pi)),
        harm_amps=amps,
        harm_phases=rng.uniform(0, 2 * np.pi, n_harm),
        texture=_smooth_field(rng, max(3, int(round(look.texture_cells)))),
        veil_field=_smooth_field(rng, 4),
        spot_centres=spot_centres,
        spot_radii=spot_radii,
        vessel_paths=vessels,
        skin_rgb=_sample_skin(rng),
        hairiness=int(rng.choice([0, 0, 0, 0, 1, 3])),
    )


def _draw_polylines(size_wh: tuple[int, int], polylines: list, widths: list) -> np.ndarray:
    """Rasterise polylines (pixel coordinates) into a float mask in [0, 1]."""
    canvas = Image.new("L", size_wh, 0)
    draw = ImageDraw.Draw(canvas)
    for pts, width in zip(polylines, widths):
        draw.line([(float(x), float(y)) for x, y in pts], fill=255, width=int(width), joint="curve")
    return np.asarray(canvas, dtype=np.float64) / 255.0


def _lesion_pixels(rng: np.random.Generator, lesion: _Lesion, width: int, height: int) -> np.ndarray:
    """Draw one photograph of ``lesion`` (float64 RGB in ~[0, 1]): per-image pose jitter and acquisition nuisance."""
    look = lesion.look
    short = float(min(width, height))
    # Pose: small shift / rotation / rescale per image; lesions of one id share everything else.
    cx = width / 2 + rng.normal(0, 0.08) * width
    cy = height / 2 + rng.normal(0, 0.08) * height
    theta = lesion.angle + rng.normal(0, 0.15)
    scale = lesion.size * rng.lognormal(0, 0.06) * short
    a, b = scale, scale * lesion.aspect

    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    dx, dy = xs - cx, ys - cy
    cos_t, sin_t = math.cos(theta), math.sin(theta)
    u = (dx * cos_t + dy * sin_t) / a
    v = (-dx * sin_t + dy * cos_t) / b
    rho = np.sqrt(u * u + v * v)
    phi = np.arctan2(v, u)
    d = rho / _polar_radius(phi, lesion.harm_amps, lesion.harm_phases)

    # Background skin: tone, subtle texture.
    skin_tex = _sample_field(_smooth_field(rng, 8), (xs / width - 0.5) * 2, (ys / height - 0.5) * 2, 1.0)
    image = lesion.skin_rgb[None, None, :] * (1.0 + 0.035 * skin_tex[..., None])

    # Lesion body: centre->edge ramp, mottled texture, patchy veil, spots.
    ramp = exact_power(np.clip(d, 0.0, 1.0), look.profile)
    body = lesion.centre_rgb * (1 - ramp[..., None]) + lesion.edge_rgb * ramp[..., None]
    tex = _sample_field(lesion.texture, u, v, _FIELD_EXTENT)
    body = body * (1.0 + look.texture * tex[..., None])
    if look.veil > 0.01:
        veil = _sample_field(lesion.veil_field, u, v, _FIELD_EXTENT)
        body = _blend(body, lesion.veil_rgb, look.veil * np.clip(veil * 1.2, 0, 1))
    if len(lesion.spot_centres):
        body = _blend(body, lesion.spot_rgb, 0.7 * _blobs(u, v, lesion.spot_centres, lesion.spot_radii))
    mask = 1.0 / (1.0 + exact_exp(np.clip((d - 1.0) / max(look.softness, 0.01), -30.0, 30.0)))
    image = image * (1 - mask[..., None]) + body * mask[..., None]

    # Vessels inside the lesion (drawn in pixel space from lesion-space polylines).
    if lesion.vessel_paths:
        polys = []
        for path in lesion.vessel_paths:
            pu, pv = path[:, 0] * a, path[:, 1] * b
            polys.append(np.stack([cx + pu * math.cos(theta) - pv * math.sin(theta),
                                   cy + pu * math.sin(theta) + pv * math.cos(theta)], axis=1))
        vessel = _draw_polylines((width, height), polys, [max(1, round(short / 50))] * len(polys))
        image = _blend(image, lesion.lines_rgb, 0.85 * vessel * mask)

    # Hair: dark thin curves across the image.
    n_hair = int(rng.poisson(lesion.hairiness)) if lesion.hairiness else 0
    if n_hair:
        polys = []
        for _ in range(n_hair):
            p0 = rng.uniform([0, 0], [width, height])
            heading = rng.uniform(0, 2 * np.pi)
            length = rng.uniform(0.3, 0.9) * (width + height) / 2
            bend = rng.normal(0, 0.8)
            t = np.linspace(0, 1, 12)
            ang = heading + bend * t
            step = length / 11
            pts = p0 + np.cumsum(np.stack([np.cos(ang), np.sin(ang)], axis=1) * step, axis=0)
            polys.append(np.vstack([p0, pts]))
        hair = _draw_polylines((width, height), polys, [max(1, round(short / rng.uniform(90, 160)))] * n_hair)
        image = _blend(image, (0.10, 0.07, 0.05), 0.8 * hair)

    # Acquisition: exposure, colour cast, illumination gradient, dermoscope vignette, sensor noise.
    gain = rng.lognormal(0, 0.04)
    cast = rng.normal(1.0, 0.015, 3)
    gx, gy = rng.normal(0, 0.05, 2)
    xn, yn = xs / width - 0.5, ys / height - 0.5
    illum = gain * (1.0 + gx * xn + gy * yn)
    vignette = 1.0 - rng.uniform(0.0, 0.2) * np.clip((xn * xn + yn * yn) * 2.2 - 0.25, 0, None)
    image = image * (illum * vignette)[..., None] * cast
    return image + rng.normal(0, rng.uniform(0.005, 0.02), image.shape)


def _ham_class_counts(n_images: int) -> dict[str, int]:
    """Real HAM10000 class proportions scaled to ``n_images`` (largest remainder), minority classes
    raised to ``min(max(15, n_images // 17), n_images // 7)`` images by taking from ``nv``."""
    total = sum(HAM10000_REAL_COUNTS.values())
    exact = {c: n_images * k / total for c, k in HAM10000_REAL_COUNTS.items()}
    counts = {c: int(math.floor(x)) for c, x in exact.items()}
    leftover = n_images - sum(counts.values())
    for c in sorted(exact, key=lambda c: (-(exact[c] - counts[c]), c))[:leftover]:
        counts[c] += 1
    floor = min(max(_HAM_MIN_PER_CLASS, n_images // _HAM_MIN_SHARE), n_images // len(counts))
    for c in counts:
        if c != "nv" and counts[c] < floor:
            counts["nv"] -= floor - counts[c]
            counts[c] = floor
    assert sum(counts.values()) == n_images and counts["nv"] >= floor
    return counts


def _partition_into_lesions(rng: np.random.Generator, n: int) -> list[int]:
    sizes: list[int] = []
    remaining = n
    while remaining > 0:
        k = min(int(rng.choice(4, p=_IMAGES_PER_LESION_P)) + 1, remaining)
        sizes.append(k)
        remaining -= k
    return sizes


def _pick(rng: np.random.Generator, weights: dict[str, float]) -> str:
    keys = list(weights)
    p = np.array([weights[k] for k in keys], dtype=float)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def _checked_size(n_images: int, image_size: tuple[int, int]) -> tuple[int, int]:
    """``(width, height)`` of the demo's images, refusing too few images or images under 16x16."""
    if n_images < len(HAM10000_CLASSES):
        raise ValueError(f"n_images must be >= {len(HAM10000_CLASSES)}, got {n_images}")
    width, height = (int(s) for s in image_size)
    if width < 16 or height < 16:
        raise ValueError(f"image_size must be at least 16x16, got {image_size}")
    return width, height


def _draw_lesions(rng: np.random.Generator, n_images: int,
                  at_least_one_multi_image: bool) -> tuple[list[str], list[int], np.ndarray]:
    """HAM10000's class shares of ``n_images`` split into lesions of 1-4 images, shuffled: each lesion's
    diagnosis, image count and distinct number. ``at_least_one_multi_image`` merges two single-image ``nv``
    lesions when every lesion drew one image."""
    lesion_dx: list[str] = []
    lesion_sizes: list[int] = []
    for dx, count in _ham_class_counts(n_images).items():
        sizes = _partition_into_lesions(rng, count)
        lesion_dx += [dx] * len(sizes)
        lesion_sizes += sizes
    if at_least_one_multi_image and n_images >= 2 and max(lesion_sizes) == 1:
        idx = [i for i, dx in enumerate(lesion_dx) if dx == "nv"][:2]
        lesion_sizes[idx[0]] = 2
        del lesion_sizes[idx[1]], lesion_dx[idx[1]]
    order = rng.permutation(len(lesion_sizes))
    lesion_dx = [lesion_dx[i] for i in order]
    lesion_sizes = [lesion_sizes[i] for i in order]
    lesion_numbers = rng.choice(max(10_000, 2 * len(lesion_sizes)), size=len(lesion_sizes), replace=False)
    return lesion_dx, lesion_sizes, lesion_numbers


def generate_ham10000_demo(
    out_dir: Path,
    n_images: int,
    seed: int,
    image_size: tuple[int, int] = (200, 150),
) -> pd.DataFrame:
    """Write a synthetic HAM10000-layout dataset into ``out_dir`` and return its metadata.

    Layout (as in the real release)::

        out_dir/HAM10000_metadata.csv          lesion_id,image_id,dx,dx_type,age,sex,localization
        out_dir/HAM10000_images_part_1/ISIC_0024306.jpg ...
        (out_dir/HAM10000_images_part_2/ ... only when n_images > 5000)

    Class counts follow the real proportions (nv ~67 %) scaled to ``n_images``; every class gets at least
    ``min(max(15, n_images // 17), n_images // 7)`` images (41 of 700), taken from ``nv``. Lesions have
    1-4 images (mostly 1); images of one lesion share its appearance (with small pose jitter) and its
    age / sex / localization / dx_type.
    Metadata follow the real conventions: ages in 5-year steps written like ``80.0``, ~2 % empty (missing),
    a few ``0.0``; ``sex`` and ``localization`` contain some ``unknown``.

    Args:
        out_dir: target folder; created if needed, must be empty (else ``FileExistsError``).
        n_images: total number of images (>= 7).
        seed: seed of ``numpy.random.default_rng``; same arguments give byte-identical files.
        image_size: ``(width, height)`` of the JPEGs; default 200x150 is the real 600x450 scaled by 1/3.

    Returns:
        The metadata DataFrame written to ``HAM10000_metadata.csv`` (``age`` float with NaN if missing).

    The images are synthetic and mean nothing clinically.
    """
    width, height = _checked_size(n_images, image_size)
    out_dir = _prepare_out_dir(out_dir)
    rng = np.random.default_rng(seed)
    lesion_dx, lesion_sizes, lesion_numbers = _draw_lesions(rng, n_images, at_least_one_multi_image=True)
    n_lesions = len(lesion_sizes)

    # Per-lesion metadata, with guaranteed (small) quotas of missing / special values.
    def quota(fraction: float) -> np.ndarray:
        chosen = np.zeros(n_lesions, dtype=bool)
        chosen[rng.choice(n_lesions, size=max(1, round(fraction * n_lesions)), replace=False)] = True
        return chosen

    age_missing = quota(0.02)
    age_zero = quota(0.01) & ~age_missing
    sex_unknown = quota(0.012)
    site_unknown = quota(0.025)
    lesion_meta = []
    site_weights = {k: float(v) for k, v in _SITE_WEIGHTS.items()}
    for i, dx in enumerate(lesion_dx):
        age = float(np.clip(round(rng.normal(_AGE_MEAN[dx], 15) / 5) * 5, 5, 85))
        if age_zero[i]:
            age = 0.0
        if age_missing[i]:
            age = float("nan")
        sex = "unknown" if sex_unknown[i] else ("male" if rng.uniform() < 0.54 else "female")
        site = "unknown" if site_unknown[i] else _pick(rng, site_weights)
        lesion_meta.append((_pick(rng, _DX_TYPE_WEIGHTS[dx]), age, sex, site))

    # Image ids: consecutive ISIC numbers from the real first id, assigned in shuffled order.
    image_numbers = HAM10000_FIRST_IMAGE + rng.permutation(n_images)
    rows = []
    k = 0
    for i, (dx, n_img) in enumerate(zip(lesion_dx, lesion_sizes)):
        lesion = _make_lesion(rng, dx)
        dx_type, age, sex, site = lesion_meta[i]
        for _ in range(n_img):
            number = int(image_numbers[k])
            k += 1
            image_id = f"ISIC_{number:07d}"
            part = 1 if number - HAM10000_FIRST_IMAGE < HAM10000_IMAGES_PER_PART else 2
            folder = out_dir / HAM10000_PART_FOLDER.format(part=part)
            folder.mkdir(exist_ok=True)
            image = Image.fromarray(_to_bytes(_lesion_pixels(rng, lesion, width, height)))
            image.save(folder / f"{image_id}.jpg", quality=90)
            rows.append((f"HAM_{int(lesion_numbers[i]):07d}", image_id, dx, dx_type, age, sex, site))

    metadata = pd.DataFrame(rows, columns=HAM10000_COLUMNS)
    metadata["age"] = metadata["age"].astype(float)
    metadata.to_csv(out_dir / HAM10000_METADATA_FILE, index=False, lineterminator="\n", float_format="%.1f")
    return metadata


# ==================================================================================================
# Another clinic: an ISIC Archive download
# ==================================================================================================

ISIC_ARCHIVE_COLUMNS = ["isic_id", "attribution", "copyright_license", "age_approx", "anatom_site_1", "diagnosis_1",
                        "diagnosis_2", "diagnosis_3", "lesion_id", "patient_id", "pixels_x", "pixels_y", "sex"]
_CLINIC_FIRST_IMAGE = 100_000  # the clinic's own images are ISIC_01xxxxx, above demo-skin's ISIC_0024306...
_SHARED_LESION_OFFSET = 1_000_000  # HAM_0001234 -> IL_1001234; the clinic's own lesions are IL_00xxxxx
# diagnosis_1..3 in the ISIC Archive's hierarchy for each HAM10000 class (akiec as SCC in situ, i.e. malignant).
_ARCHIVE_DIAGNOSES = {
    "akiec": ("Malignant", "Malignant epidermal proliferations", "Squamous cell carcinoma in situ"),
    "bcc": ("Malignant", "Malignant adnexal epithelial proliferations - Follicular", "Basal cell carcinoma"),
    "bkl": ("Benign", "Benign epidermal proliferations", "Seborrheic keratosis"),
    "df": ("Benign", "Benign soft tissue proliferations - Fibro-histiocytic", "Dermatofibroma"),
    "mel": ("Malignant", "Malignant melanocytic proliferations (Melanoma)", "Melanoma, NOS"),
    "nv": ("Benign", "Benign melanocytic proliferations", "Nevus"),
    "vasc": ("Benign", "Benign soft tissue proliferations - Vascular", "Hemangioma"),
}
assert list(_ARCHIVE_DIAGNOSES) == HAM10000_CLASSES
# HAM10000 localization -> the Archive's anatom_site_1 ("unknown" is left empty).
_ARCHIVE_SITES = {
    "abdomen": "Anterior torso", "acral": "Palms/soles", "back": "Posterior torso", "chest": "Anterior torso",
    "ear": "Head & Neck", "face": "Head & Neck", "foot": "Lower extremity", "genital": "Oral/genital",
    "hand": "Upper extremity", "lower extremity": "Lower extremity", "neck": "Head & Neck", "scalp": "Head & Neck",
    "trunk": "Trunk", "unknown": "", "upper extremity": "Upper extremity",
}
_CLINIC_ATTRIBUTION = ("Department of Dermatology, Another Clinic (synthetic demo)", "CC-BY")
_ANONYMOUS_ATTRIBUTION = ("Anonymous", "CC-0")  # ~30 % of the clinic's patients
_HAM_ATTRIBUTION = ("ViDIR Group, Department of Dermatology, Medical University of Vienna", "CC-BY-NC")
_LICENCE_TEXTS = {
    "CC-0": "CC0 1.0 Universal (CC0 1.0) Public Domain Dedication\nhttps://creativecommons.org/publicdomain/zero/1.0/",
    "CC-BY": "Attribution 4.0 International (CC BY 4.0)\nhttps://creativecommons.org/licenses/by/4.0/",
    "CC-BY-NC": "Attribution-NonCommercial 4.0 International (CC BY-NC 4.0)\n"
                "https://creativecommons.org/licenses/by-nc/4.0/",
}
_LESIONS_PER_PATIENT_P = np.array([0.7, 0.2, 0.1])
# The clinic's camera: warmer white balance (per-channel gain and offset on [0, 1] intensities), a vignette
# darkening the corners by a further 30 %, and JPEG quality 75 (demo-skin: 90).
_CAMERA_GAIN = np.array([1.06, 1.0, 0.86])
_CAMERA_OFFSET = np.array([0.02, 0.0, -0.02])
_CAMERA_VIGNETTE = 0.30
_CAMERA_QUALITY = 75
_ARCHIVE_COPY_SCALE = 0.75  # shared images: the Archive's copy at 3/4 of demo-skin's size, re-encoded
_ARCHIVE_COPY_QUALITY = 85


def _camera_shift(image: np.ndarray) -> np.ndarray:
    """The clinic's camera applied to float64 RGB ``image`` (H, W, 3): vignette, then white balance."""
    height, width = image.shape[:2]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    xn, yn = xs / width - 0.5, ys / height - 0.5
    falloff = 1.0 - _CAMERA_VIGNETTE * 2.0 * (xn * xn + yn * yn)  # 1 at the centre, 0.7 in the corners
    return image * falloff[..., None] * _CAMERA_GAIN + _CAMERA_OFFSET


def _archive_row(isic_id: str, source: tuple[str, str], age, site: str, dx: str, lesion_id: str, patient_id: str,
                 size: tuple[int, int], sex: str) -> tuple:
    return (isic_id, *source, age, site, *_ARCHIVE_DIAGNOSES[dx], lesion_id, patient_id, *size, sex)


def generate_clinic_demo(
    out_dir: Path,
    skin_dir: Path,
    n_images: int,
    shared_images: int,
    seed: int,
    image_size: tuple[int, int] = (200, 150),
) -> pd.DataFrame:
    """Write a synthetic ``isic image download`` folder from "another clinic" and return its metadata.

    Layout (as ``isic-cli`` writes it)::

        out_dir/metadata.csv         isic_id,attribution,copyright_license,age_approx,anatom_site_1,diagnosis_1,...
        out_dir/attribution.txt      out_dir/licenses/<licence>.txt      out_dir/ISIC_*.jpg (flat)

    ``n_images`` new images (ids ``ISIC_01xxxxx``) of new lesions, drawn like :func:`generate_ham10000_demo`'s
    (same classes and counts, 1-4 images per lesion, 1-3 lesions per patient) and taken with this clinic's
    camera: warmer white balance (red x1.06 +0.02, blue x0.86 -0.02), a vignette (corners x0.7) and JPEG
    quality 75. Plus ``shared_images`` images of demo-skin (``skin_dir``, a :func:`generate_ham10000_demo`
    folder), chosen by ``seed``, under their own ids and lesions (``HAM_0001234`` -> ``IL_1001234``), as the
    Archive re-ships HAM10000: resized to 3/4 and re-encoded, without the camera shift.
    ``diagnosis_1`` is ``Malignant`` for mel / bcc / akiec and ``Benign`` for nv / bkl / df / vasc;
    ``diagnosis_2`` and ``diagnosis_3`` follow the Archive's hierarchy (e.g. ``Melanoma, NOS``).

    Args:
        out_dir: target folder; created if needed, must be empty (else ``FileExistsError``).
        skin_dir: the demo-skin folder the shared images are copied from.
        n_images: number of new images (>= 7).
        shared_images: number of demo-skin images re-shipped (0 to all of them).
        seed: seed of ``numpy.random.default_rng``; same arguments give byte-identical files, on every CPU.
        image_size: ``(width, height)`` of the new images.

    Returns:
        The metadata written to ``metadata.csv``, sorted by ``isic_id`` (``age_approx`` an Int64 with
        ``<NA>`` when missing, written empty).

    The images are synthetic and mean nothing clinically.
    """
    width, height = _checked_size(n_images, image_size)
    skin_dir = Path(skin_dir)
    skin = pd.read_csv(skin_dir / HAM10000_METADATA_FILE)
    if not 0 <= shared_images <= len(skin):
        raise ValueError(f"shared_images must be 0..{len(skin)} (the images of {skin_dir}), got {shared_images}")
    out_dir = _prepare_out_dir(out_dir)
    rng = np.random.default_rng(seed)

    # The clinic's lesions, grouped into patients.
    lesion_dx, lesion_sizes, lesion_numbers = _draw_lesions(rng, n_images, at_least_one_multi_image=False)
    patient_of: list[int] = []
    while len(patient_of) < len(lesion_dx):
        patient_of += [len(set(patient_of))] * (int(rng.choice(3, p=_LESIONS_PER_PATIENT_P)) + 1)
    n_patients = patient_of[-1] + 1
    patient_numbers = rng.choice(max(10_000, 2 * n_patients), size=n_patients, replace=False)
    patients = []  # sex, age, source of each patient (age from the diagnosis of their first lesion)
    for first_dx in (lesion_dx[patient_of.index(p)] for p in range(n_patients)):
        sex = "male" if rng.uniform() < 0.54 else "female"
        age = int(np.clip(round(rng.normal(_AGE_MEAN[first_dx], 15) / 5) * 5, 5, 85))
        patients.append((sex, age, _ANONYMOUS_ATTRIBUTION if rng.uniform() < 0.3 else _CLINIC_ATTRIBUTION))
    image_numbers = _CLINIC_FIRST_IMAGE + rng.choice(max(10_000, 2 * n_images), size=n_images, replace=False)

    rows = []
    site_weights = {k: float(v) for k, v in _SITE_WEIGHTS.items()}
    k = 0
    for i, (dx, n_img) in enumerate(zip(lesion_dx, lesion_sizes)):
        sex, age, source = patients[patient_of[i]]
        site = _ARCHIVE_SITES[_pick(rng, site_weights)]
        lesion = _make_lesion(rng, dx)
        for _ in range(n_img):
            isic_id = f"ISIC_{int(image_numbers[k]):07d}"
            k += 1
            pixels = _camera_shift(_lesion_pixels(rng, lesion, width, height))
            Image.fromarray(_to_bytes(pixels)).save(out_dir / f"{isic_id}.jpg", quality=_CAMERA_QUALITY)
            rows.append(_archive_row(isic_id, source, age, site, dx, f"IL_{int(lesion_numbers[i]):07d}",
                                     f"IP_{int(patient_numbers[patient_of[i]]):07d}", (width, height), sex))

    # demo-skin's images as the Archive re-ships them.
    for row in skin.iloc[np.sort(rng.choice(len(skin), size=shared_images, replace=False))].itertuples():
        part = 1 if int(row.image_id.removeprefix("ISIC_")) - HAM10000_FIRST_IMAGE < HAM10000_IMAGES_PER_PART else 2
        with Image.open(skin_dir / HAM10000_PART_FOLDER.format(part=part) / f"{row.image_id}.jpg") as original:
            size = (round(original.width * _ARCHIVE_COPY_SCALE), round(original.height * _ARCHIVE_COPY_SCALE))
            copy = original.convert("RGB").resize(size, Image.Resampling.BICUBIC)
        copy.save(out_dir / f"{row.image_id}.jpg", quality=_ARCHIVE_COPY_QUALITY)
        age = pd.NA if pd.isna(row.age) else int(row.age)
        rows.append(_archive_row(row.image_id, _HAM_ATTRIBUTION, age, _ARCHIVE_SITES[row.localization], row.dx,
                                 f"IL_{_SHARED_LESION_OFFSET + int(row.lesion_id.removeprefix('HAM_')):07d}", "",
                                 size, "" if row.sex == "unknown" else row.sex))

    metadata = pd.DataFrame(rows, columns=ISIC_ARCHIVE_COLUMNS).sort_values("isic_id", ignore_index=True)
    metadata["age_approx"] = metadata["age_approx"].astype("Int64")
    metadata.to_csv(out_dir / "metadata.csv", index=False, lineterminator="\n")
    (out_dir / "attribution.txt").write_text("\n\n".join(sorted(set(metadata["attribution"]))) + "\n")
    (out_dir / "licenses").mkdir()
    for licence in sorted(set(metadata["copyright_license"])):
        (out_dir / "licenses" / f"{licence}.txt").write_text(_LICENCE_TEXTS[licence] + "\n")
    return metadata


# ==================================================================================================
# C-NMC 2019
# ==================================================================================================


@dataclass
class _CellLook:
    cell_radius: float  # cell radius as a fraction of image_px
    nc_ratio: float  # nucleus radius / cell radius
    nucleus_irregular: float  # border harmonics amplitude of the nucleus
    chromatin_cells: int  # texture coarseness (more = finer)
    chromatin: float  # texture amplitude
    nucleus_darkness: float  # stain density of the nucleus (higher = darker)
    nucleoli: float  # expected number of pale nucleoli


_CELL_LOOKS = {
    # lymphoblast: big cell, thin cytoplasm rim, irregular lighter nucleus, fine chromatin, nucleoli.
    "all": _CellLook(0.36, 0.86, 0.07, 18, 0.22, 0.80, 1.6),
    # normal lymphocyte: smaller, round dense dark nucleus, coarse clumped chromatin, visible rim.
    "hem": _CellLook(0.30, 0.72, 0.025, 7, 0.30, 1.00, 0.2),
}


def _render_cell(
    rng: np.random.Generator, label: str, stain: dict, image_px: int, ys: np.ndarray, xs: np.ndarray
) -> Image.Image:
    look = _CELL_LOOKS[label]
    n = float(image_px)
    # Per-cell variation around the class look; class distributions overlap.
    radius = look.cell_radius * rng.normal(1.0, 0.10) * n
    ratio = float(np.clip(look.nc_ratio + rng.normal(0, 0.06), 0.5, 0.95))
    cx = n / 2 + rng.normal(0, 0.05) * n
    cy = n / 2 + rng.normal(0, 0.05) * n
    theta = rng.uniform(0, 2 * np.pi)
    elong = rng.uniform(0.85, 1.0)
    dx, dy = xs - cx, ys - cy
    c, s = math.cos(theta), math.sin(theta)
    u = (dx * c + dy * s) / radius
    v = (-dx * s + dy * c) / (radius * elong)
    rho = np.sqrt(u * u + v * v)
    phi = np.arctan2(v, u)
    cell_d = rho / _polar_radius(phi, rng.uniform(-0.03, 0.03, 3), rng.uniform(0, 2 * np.pi, 3))
    # Nucleus: offset a little inside the cell, irregular border.
    off = _random_points_in_disc(rng, 1, (1 - ratio) * 0.8)[0]
    nu, nv = (u - off[0]) / ratio, (v - off[1]) / ratio
    amps = rng.uniform(0.3, 1.0, 5) * look.nucleus_irregular * rng.uniform(0.5, 1.5)
    nuc_d = np.sqrt(nu * nu + nv * nv) / _polar_radius(np.arctan2(nv, nu), amps, rng.uniform(0, 2 * np.pi, 5))

    cell_mask = cell_d < 1.0
    nuc_w = np.clip((1.0 - nuc_d) / 0.06, 0.0, 1.0)  # soft nucleus edge

    # Optical densities (Beer-Lambert-like): pixel = exp(-density * stain_od).
    chrom = _sample_field(_smooth_field(rng, look.chromatin_cells), nu, nv, 1.2)
    dens_nuc = stain["nucleus"] * look.nucleus_darkness * rng.normal(1.0, 0.08) * (1.0 + look.chromatin * chrom)
    n_nucleoli = int(rng.poisson(look.nucleoli))
    if n_nucleoli:
        pale = _blobs(nu, nv, _random_points_in_disc(rng, n_nucleoli, 0.5), rng.uniform(0.08, 0.14, n_nucleoli))
        dens_nuc = dens_nuc * (1.0 - 0.45 * pale)
    cyto_tex = _sample_field(_smooth_field(rng, 5), u, v, 1.2)
    dens_cyto = stain["cytoplasm"] * rng.normal(1.0, 0.1) * (1.0 + 0.15 * cyto_tex)
    density = dens_cyto * (1 - nuc_w) + dens_nuc * nuc_w
    od = density[..., None] * stain["od"][None, None, :]
    image = stain["bright"] * exact_exp(-od)
    image = image + rng.normal(0, 0.015, image.shape)
    image = np.where(cell_mask[..., None], np.clip(image, 1.0 / 255, 1.0), 0.0)  # segmented: pure black outside
    return Image.fromarray(_to_bytes(image))


def generate_cnmc_demo(
    out_dir: Path,
    n_subjects: int,
    cells_per_subject: int,
    seed: int,
    image_px: int = 96,
) -> pd.DataFrame:
    """Write a synthetic C-NMC 2019-layout dataset into ``out_dir`` and return its file table.

    Layout (as in the real release)::

        out_dir/training_data/fold_{0,1,2}/all/UID_<subject>_<image>_<cell>_all.bmp   e.g. UID_11_10_1_all.bmp
        out_dir/training_data/fold_{0,1,2}/hem/UID_H<subject>_<image>_<cell>_hem.bmp  e.g. UID_H10_43_1_hem.bmp

    Each subject is either an ALL patient (label ``all``) or a healthy subject (``hem``, subject token
    prefixed with ``H``); about one third of the subjects (at least 3) are healthy. All images of a subject
    sit in one fold; subjects are dealt to the 3 folds per class, so every fold holds both classes. Each
    subject has ``cells_per_subject`` images +-30 % (deterministic per subject). Images are RGB
    ``image_px`` x ``image_px`` BMPs of one segmented cell on a pure black background.

    Args:
        out_dir: target folder; created if needed, must be empty (else ``FileExistsError``).
        n_subjects: number of subjects (>= 6, so that each fold holds both classes).
        cells_per_subject: mean number of cell images per subject (>= 1).
        seed: seed of ``numpy.random.default_rng``; same arguments give byte-identical files.
        image_px: side of the square images (real: 450).

    Returns:
        DataFrame with columns ``path`` (POSIX, relative to ``out_dir``), ``subject`` (file-name token,
        e.g. ``11`` or ``H10``), ``label`` (``all``/``hem``) and ``fold`` (int 0-2), sorted by ``path``.

    The images are synthetic and mean nothing clinically.
    """
    if n_subjects < 2 * _CNMC_FOLDS:
        raise ValueError(f"n_subjects must be >= {2 * _CNMC_FOLDS} (both classes in every fold), got {n_subjects}")
    if cells_per_subject < 1:
        raise ValueError(f"cells_per_subject must be >= 1, got {cells_per_subject}")
    if image_px < 16:
        raise ValueError(f"image_px must be >= 16, got {image_px}")
    out_dir = _prepare_out_dir(out_dir)
    rng = np.random.default_rng(seed)

    n_hem = max(_CNMC_FOLDS, round(n_subjects / 3))
    n_all = n_subjects - n_hem
    id_pool = max(100, 2 * n_subjects)
    all_ids = [str(int(i)) for i in rng.choice(np.arange(1, id_pool + 1), size=n_all, replace=False)]
    hem_ids = [f"H{int(i)}" for i in rng.choice(np.arange(1, id_pool + 1), size=n_hem, replace=False)]
    subjects = []
    for label, ids in (("all", all_ids), ("hem", hem_ids)):
        folds = rng.permutation(np.arange(len(ids)) % _CNMC_FOLDS)  # dealt evenly, so every fold has both
        subjects += [(token, label, int(f)) for token, f in zip(ids, folds)]

    ys, xs = np.mgrid[0:image_px, 0:image_px].astype(np.float64)
    base_od = np.array([0.55, 0.85, 0.35], dtype=np.float64)  # haematoxylin/eosin-like: purple
    rows = []
    for token, label, fold in subjects:
        n_cells = max(1, int(round(cells_per_subject * rng.uniform(0.7, 1.3))))
        # Stain of this subject's slides (a nuisance shared by all its cells).
        stain = {
            "od": np.clip(base_od * rng.normal(1.0, 0.08, 3), 0.05, None),
            "nucleus": float(rng.uniform(1.6, 2.4)),
            "cytoplasm": float(rng.uniform(0.35, 0.65)),
            "bright": np.clip(rng.normal(0.95, 0.03, 3), 0.8, 1.0),
        }
        # Microscope images of 1-3 cells each: UID_<subject>_<image>_<cell>_<label>.bmp
        per_image = []
        left = n_cells
        while left > 0:
            k = min(int(rng.integers(1, 4)), left)
            per_image.append(k)
            left -= k
        image_numbers = np.sort(rng.choice(np.arange(1, 3 * n_cells + 11), size=len(per_image), replace=False))
        folder = out_dir / "training_data" / f"fold_{fold}" / label
        folder.mkdir(parents=True, exist_ok=True)
        for number, k in zip(image_numbers, per_image):
            for cell in range(1, k + 1):
                name = cnmc_file_name(token, number, cell, label)
                _render_cell(rng, label, stain, image_px, ys, xs).save(folder / name, format="BMP")
                rows.append((f"training_data/fold_{fold}/{label}/{name}", token, label, fold))

    table = pd.DataFrame(rows, columns=["path", "subject", "label", "fold"])
    return table.sort_values("path", ignore_index=True)
