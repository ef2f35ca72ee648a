"""What a dataset's or an image's licence allows: non-commercial licences, and the limitation they put on a
model trained on the data (the model card's limitations and the ``.tflite`` metadata's licence field)."""

from __future__ import annotations

import re

# A licence that allows non-commercial use only: Creative Commons' "NC" element (CC BY-NC-SA 4.0, CC-BY-NC,
# by-nc-nd) or the words themselves.
NON_COMMERCIAL = re.compile(r"(?<![A-Za-z0-9])NC(?![A-Za-z0-9])|non[- ]?commercial", re.IGNORECASE)


def is_non_commercial(licence: str | None) -> bool:
    """Whether ``licence`` (a dataset's or an image's) allows non-commercial use only (:data:`NON_COMMERCIAL`)."""
    return bool(licence) and NON_COMMERCIAL.search(str(licence)) is not None


def non_commercial_note(license: str | None, image_licenses: dict[str, int] | None = None) -> str | None:
    """The limitation a non-commercial licence puts on the model, whether the dataset as a whole
    (``datasets.<name>.license``) or some of its images (per-image licences) carry it; ``None`` if neither.
    The model card lists it under its limitations and the ``.tflite`` metadata repeats it in its licence."""
    parts = []
    if is_non_commercial(license):
        parts.append(f"the dataset is licensed {license}, which allows NON-COMMERCIAL use only; a model trained "
                     f"on it may inherit that restriction.")
    shares = {name: n for name, n in (image_licenses or {}).items() if is_non_commercial(name)}
    if shares:
        listed = ", ".join(f"{n:,} {name}" for name, n in sorted(shares.items()))
        parts.append(f"{listed} image(s) of the dataset allow NON-COMMERCIAL use only; a model trained on them "
                     f"may inherit that restriction.")
    if not parts:
        return None
    return "Licences: " + " ".join(parts) + " Check the licences before any commercial use."


def licence_text(license: str, image_licenses: dict[str, int] | None = None) -> str:
    """The licence field of the ``.tflite`` metadata: ``license`` followed, when the data (the dataset as a
    whole or some of its images) allows non-commercial use only, by the limitation the model card states
    (:func:`non_commercial_note`), so that the file carries the restriction with it."""
    sources = ["the data's licence"] if is_non_commercial(license) else []
    shares = {name: n for name, n in (image_licenses or {}).items() if is_non_commercial(name)}
    if shares:
        sources.append(", ".join(f"{n:,} {name}" for name, n in sorted(shares.items())) + " image(s)")
    if not sources:
        return license
    return (f"{license.rstrip('. ')}. NON-COMMERCIAL use only ({'; '.join(sources)}): a model trained on such "
            f"data may inherit that restriction. Check the licences before any commercial use.")
