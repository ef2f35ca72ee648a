"""Helpers shared by the tests: tiny datasets in the real layouts, a learnable colour task, training shortcuts.

Fixtures live in the ``conftest.py`` files and use these; tests import helpers from here, never
from another test module. Project-level helpers (a throwaway DVC repository, an MLflow server) are
in :mod:`tests.support.project`; TCP ports held for as long as a test needs them in :mod:`tests.support.ports`.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from PIL import Image

from mobiledx.params import TrainConfig

REPO_ROOT = Path(__file__).resolve().parents[2]


def ham_project(root: Path, **sections) -> Path:
    """``root`` with the repository's params.yaml for one dataset, ``ham`` (kind ham10000, at data/raw/ham), the
    demo-only entries dropped and ``sections`` merged in (a dict into its section, anything else replaces it)."""
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    params["datasets"] = {"ham": {"kind": "ham10000", "path": "data/raw/ham"}}
    for demo_only in ("external_datasets", "external"):  # they name the demo datasets replaced here
        params.pop(demo_only, None)
    for section, values in sections.items():
        params[section] = {**params.get(section, {}), **values} if isinstance(values, dict) else values
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root


def solid_image(colour: tuple[int, int, int], size=(40, 30), mode="RGB") -> Image.Image:
    """A plain image whose colour identifies it after decoding."""
    return Image.new("RGB", size, colour).convert(mode)


def write_ham10000(root: Path, rows: list[dict], folders=("HAM10000_images_part_1", "HAM10000_images_part_2")) -> Path:
    """A miniature HAM10000: metadata CSV + JPEGs split over the distributed part folders."""
    root.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(rows)
    columns = ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization"]
    frame = frame.reindex(columns=columns + [c for c in frame.columns if c not in columns])
    frame.to_csv(root / "HAM10000_metadata.csv", index=False)
    for i, row in enumerate(rows):
        folder = root / folders[i % len(folders)]
        folder.mkdir(exist_ok=True)
        solid_image((i * 5 % 256, 255 - i * 3 % 256, 90)).save(folder / f"{row['image_id']}.jpg", quality=95)
    return root


def ham_rows(n_lesions_per_class: int = 3, classes=("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")) -> list[dict]:
    """Metadata rows: each lesion has two images; ages as floats, one empty, one 'unknown' sex."""
    rows, image = [], 24306
    for c, dx in enumerate(classes):
        for lesion in range(n_lesions_per_class):
            lesion_id = f"HAM_{c * 100 + lesion:07d}"
            for _ in range(2):
                rows.append({"lesion_id": lesion_id, "image_id": f"ISIC_{image:07d}", "dx": dx, "dx_type": "histo",
                             "age": f"{40 + 5 * lesion}.0", "sex": "female" if lesion % 2 else "male",
                             "localization": "back"})
                image += 1
    rows[0]["age"] = ""
    rows[2]["sex"] = "unknown"
    return rows


def write_cnmc(root: Path, subjects: dict[str, str], cells: int = 3) -> Path:
    """A miniature C-NMC 2019 training set: fold_k/{all,hem}/UID_<subject>_<image>_<cell>_<label>.bmp."""
    for i, (subject, label) in enumerate(sorted(subjects.items())):
        folder = root / "training_data" / f"fold_{i % 3}" / label
        folder.mkdir(parents=True, exist_ok=True)
        for cell in range(cells):
            shade = (i * 7 + cell) % 40  # every file distinct: identical files would be de-duplicated
            colour = (150 + shade, 60, 200) if label == "all" else (90, 40 + shade, 120)
            solid_image(colour, (32, 32)).save(folder / f"UID_{subject}_{cell + 1}_1_{label}.bmp")
    return root


CLASSES = ["red", "blue"]


def colour_task(n: int = 96, size: int = 32, seed: int = 0):
    """Noisy red-ish vs blue-ish squares: trivially learnable, so eval-mode accuracy must be high."""
    rng = np.random.default_rng(seed)
    labels = np.array(["red", "blue"] * (n // 2))
    images = rng.integers(0, 80, (n, size, size, 3)).astype(np.uint8)
    images[labels == "red", ..., 0] += 150
    images[labels == "blue", ..., 2] += 150
    return images, pd.Series(labels)


# Paper 003's small CNN (with BatchNorm and dropout) where a test is about training mechanics, not
# MobileNetV2: its graph traces ~4x faster. The pipeline tests train MobileNetV2 end to end.
SMALL = "cnn15"


def training_config(**overrides) -> TrainConfig:
    values = dict(lr=1e-3, seed=1, epochs=4, batch_size=16, alpha=0.35, weights="none", bn_momentum=0.9,
                  dense_units=32, dropout=0.0, augmentation="none", patience=10, monitor="val_loss",
                  bn_calibration_images=64)
    return TrainConfig(**{**values, **overrides})


def fit_on(config: TrainConfig, images, classes, train_rows, train_labels, train_weights, val_rows, val_labels,
           callbacks=None, train_metadata=None, val_metadata=None, backup=None):
    """``mobiledx.training.loop.fit`` on arrays, positionally, as the tests use it."""
    from mobiledx.training.loop import TrainingData, fit

    data = TrainingData(images, classes, train_rows, train_labels, train_weights, val_rows, val_labels,
                        train_metadata, val_metadata)
    return fit(config, data, callbacks=callbacks, backup=backup)


ARCHIVE_COLUMNS = ["isic_id", "attribution", "copyright_license", "age_approx", "anatom_site_1", "diagnosis_1",
                   "diagnosis_2", "diagnosis_3", "lesion_id", "patient_id", "pixels_x", "pixels_y", "sex"]


def write_isic_archive(root: Path, rows: list[dict], image_size=(40, 30), old_columns: bool = False) -> Path:
    """An ``isic image download`` folder: flat ``ISIC_*.jpg``, ``metadata.csv`` (fixed first columns, then the rest
    sorted, empty for missing values), ``attribution.txt`` and ``licenses/``. ``old_columns``: a 2025 download,
    with ``anatom_site_general`` and ``benign_malignant`` instead of ``anatom_site_1``."""
    root.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(rows).fillna("")
    fixed = ["isic_id", "attribution", "copyright_license"]
    frame = frame[fixed + sorted(c for c in frame.columns if c not in fixed)]
    frame.to_csv(root / "metadata.csv", index=False)
    (root / "attribution.txt").write_text("\n\n".join(sorted(set(frame["attribution"]))))
    (root / "licenses").mkdir(exist_ok=True)
    for license_name in set(frame["copyright_license"]):
        (root / "licenses" / f"{license_name}.txt").write_text(f"{license_name} licence text")
    for i, image_id in enumerate(frame["isic_id"]):
        solid_image((i * 9 % 256, 200 - i * 7 % 200, 60), image_size).save(root / f"{image_id}.jpg", quality=95)
    return root


def archive_rows(patients: int = 3, lesions_per_patient: int = 2, images_per_lesion: int = 2) -> list[dict]:
    """Archive metadata rows: Benign / Malignant / one Indeterminate, lesions nested in patients, licences mixed."""
    rows, number = [], 0
    diagnoses = [("Benign", "Benign melanocytic proliferations", "Nevus"),
                 ("Malignant", "Malignant melanocytic proliferations (Melanoma)", "Melanoma, NOS")]
    for patient in range(patients):
        for lesion in range(lesions_per_patient):
            d1, d2, d3 = diagnoses[(patient + lesion) % 2]
            for _ in range(images_per_lesion):
                rows.append({"isic_id": f"ISIC_{number:07d}", "attribution": ["ViDIR Group", "Anonymous"][number % 2],
                             "copyright_license": ["CC-BY-NC", "CC-0"][number % 2], "age_approx": str(40 + 5 * lesion),
                             "anatom_site_1": "Trunk", "diagnosis_1": d1, "diagnosis_2": d2, "diagnosis_3": d3,
                             "lesion_id": f"IL_{patient * 10 + lesion:07d}", "patient_id": f"IP_{patient:07d}",
                             "pixels_x": "40", "pixels_y": "30", "sex": ["male", "female"][patient % 2]})
                number += 1
    rows[-1].update(diagnosis_1="Indeterminate", diagnosis_2="Indeterminate epidermal proliferations",
                    diagnosis_3="Solar or actinic keratosis")
    return rows


def write_isic2019(root: Path, rows: list[tuple[str, str, str, str, str]], one_hot_format: str = "{:.1f}") -> Path:
    """ISIC 2019 training data: ``(image, class, lesion_id, age_approx, sex)`` rows; ``class`` one of
    MEL NV BCC AK BKL DF VASC SCC UNK, or ``"MEL+NV"`` for a broken one-hot row."""
    images = root / "ISIC_2019_Training_Input"
    images.mkdir(parents=True, exist_ok=True)
    classes = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"]
    truth, metadata = [], []
    for i, (image, label, lesion, age, sex) in enumerate(rows):
        marked = label.split("+")
        truth.append({"image": image, **{c: one_hot_format.format(1 if c in marked else 0) for c in classes}})
        metadata.append({"image": image, "age_approx": age, "anatom_site_general": "anterior torso",
                         "lesion_id": lesion, "sex": sex})
        solid_image((i * 11 % 256, 90, 200 - i * 5 % 200)).save(images / f"{image}.jpg", quality=95)
    pd.DataFrame(truth).to_csv(root / "ISIC_2019_Training_GroundTruth.csv", index=False)
    pd.DataFrame(metadata).to_csv(root / "ISIC_2019_Training_Metadata.csv", index=False)
    return root


def write_isic2020(root: Path, rows: list[tuple[str, str, str, str]], duplicates=(), kaggle: bool = True) -> Path:
    """ISIC 2020 training data: ``(image_name, patient_id, diagnosis, target)`` rows, images in ``jpeg/train/``
    (Kaggle) or ``train/`` (official), ``ISIC_2020_Training_Duplicates.csv`` with ``duplicates`` pairs."""
    images = root / ("jpeg/train" if kaggle else "train")
    images.mkdir(parents=True, exist_ok=True)
    table = []
    for i, (image, patient, diagnosis, target) in enumerate(rows):
        table.append({"image_name": image, "patient_id": patient, "sex": ["male", "female", ""][i % 3],
                      "age_approx": ["45.0", "", "70.0"][i % 3], "anatom_site_general_challenge": "torso",
                      "diagnosis": diagnosis, "benign_malignant": "malignant" if target == "1" else "benign",
                      "target": target})
        solid_image((60, i * 13 % 256, 120)).save(images / f"{image}.jpg", quality=95)
    pd.DataFrame(table).to_csv(root / ("train.csv" if kaggle else "ISIC_2020_Training_GroundTruth.csv"), index=False)
    if duplicates:
        pd.DataFrame(duplicates, columns=["image_name_1", "image_name_2"]).to_csv(
            root / "ISIC_2020_Training_Duplicates.csv", index=False)
    return root


def dvc_dir_md5(root: Path) -> str:
    """The hash DVC 3 records in dvc.lock for the output folder ``root`` (``<md5>.dir``): the md5 of the
    JSON list of its files' md5 and relative path, sorted by path."""
    entries = [{"md5": hashlib.md5(path.read_bytes()).hexdigest(), "relpath": path.relative_to(root).as_posix()}
               for path in sorted(root.rglob("*")) if path.is_file()]
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode()).hexdigest() + ".dir"


def emulated_cpus() -> dict[str, dict[str, str]]:
    """Environments under which this machine computes as older x86-64 CPUs would, by name.

    NumPy's SIMD dispatch targets above the CPU level are switched off (``NPY_DISABLE_CPU_FEATURES``,
    read at import), and so are libjpeg-turbo's SIMD paths (``JSIMD_FORCENONE``); oneDNN is capped at
    AVX2 and TensorFlow, OpenMP and BLAS run one thread (another core count). Only targets NumPy
    dispatches to are named. ``avx2``: an AVX2 machine without AVX-512; ``x86-64-v2``: neither.
    """
    import numpy as np

    targets = list(np._core._multiarray_umath.__cpu_dispatch__)
    others = {"JSIMD_FORCENONE": "1", "ONEDNN_MAX_CPU_ISA": "AVX2", "TF_NUM_INTRAOP_THREADS": "1",
              "TF_NUM_INTEROP_THREADS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    above_avx2 = [t for t in targets if t.startswith(("X86_V4", "AVX512"))]
    return {"avx2": {"NPY_DISABLE_CPU_FEATURES": " ".join(above_avx2), **others},
            "x86-64-v2": {"NPY_DISABLE_CPU_FEATURES": " ".join(targets), **others}}


def tiny_png(shade: int, size: int = 16) -> bytes:
    """The bytes of a small PNG whose colour depends on ``shade`` (distinct shades: distinct files)."""
    import io

    buffer = io.BytesIO()
    solid_image((shade * 23 % 256, 90, 255 - shade * 7 % 256), (size, size)).save(buffer, format="PNG")
    return buffer.getvalue()


MAX_CROP = 0.02  # per side: what near_duplicates.DEFAULT_MAX_DISTANCE still finds every time (its docstring)


def altered_copy(data: bytes, rng: np.random.Generator) -> bytes:
    """Another file of the same photo: cropped by up to MAX_CROP per side, per-channel gain 0.93-1.07,
    brightness ±12, resized to 40-100 %, re-encoded as JPEG at quality 60-95."""
    from mobiledx.data.images import decode_frame

    frame = decode_frame(data)
    height, width = frame.shape[:2]
    left, right, top, bottom = np.rint(rng.uniform(0, MAX_CROP, 4) * [width, width, height, height]).astype(int)
    pixels = frame[top:height - bottom, left:width - right] * rng.uniform(0.93, 1.07, 3) + rng.uniform(-12, 12)
    image = Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))
    scale = rng.uniform(0.4, 1.0)
    image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=int(rng.integers(60, 96)))
    return buffer.getvalue()
