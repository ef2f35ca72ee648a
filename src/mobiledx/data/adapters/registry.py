"""The adapter registry and the helpers every adapter shares."""

from __future__ import annotations

import codecs
import csv
import filecmp
import io
import os
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from mobiledx.data.images import image_suffixes
from mobiledx.data.manifest import IGNORED_COLUMNS, QUARANTINE_COLUMNS, RECORD_COLUMNS, ScanOptions, ScanResult
from mobiledx.errors import MobiledxError

IMAGE_SUFFIXES = image_suffixes()  # .jpg .png .bmp .tif .webp .gif ...: what this Pillow decodes

Adapter = Callable[[Path, ScanOptions], ScanResult]
_REGISTRY: dict[str, Adapter] = {}


class DatasetLayoutError(MobiledxError):
    """The raw folder is not what its ``kind`` expects (missing metadata, unknown kind, a link outside it)."""


def register(kind: str, *, label_policy: bool = False, arrays: bool = False) -> Callable[[Adapter], Adapter]:
    """Decorator registering an adapter function under ``kind`` (the value used in params.yaml);
    ``label_policy``: it applies ``datasets.<name>.labels`` (the others take their classes from the layout);
    ``arrays``: it returns the pixels themselves (``ScanResult.pixels``), so it runs in the ingesting process."""

    def decorate(function: Adapter) -> Adapter:
        function.label_policy = label_policy
        function.arrays = arrays
        _REGISTRY[kind] = function
        return function

    return decorate


def get_adapter(kind: str) -> Adapter:
    """The adapter registered for ``kind``; a clear error listing the known kinds otherwise."""
    if kind not in _REGISTRY:
        raise DatasetLayoutError(f"unknown dataset kind {kind!r}. Fix: set datasets.<name>.kind in params.yaml to one "
                                 f"of {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[kind]


def known_kinds() -> list[str]:
    return sorted(_REGISTRY)


class MetadataFileError(DatasetLayoutError):
    """A metadata table that cannot be read as text (a workbook, an unknown encoding, binary content)."""


class Quarantine:
    """What an adapter finds besides its records: refused inputs with their reason, files it ignores
    (companions, metadata tables, identical copies) with why, notes for the user, and normalisations counted."""

    def __init__(self) -> None:
        self.rows: list[dict] = []
        self.ignored: list[dict] = []
        self.notes: list[str] = []
        self.normalised: Counter = Counter()

    def add(self, image_id: str, path: str, reason: str) -> None:
        self.rows.append({"image_id": image_id, "path": path, "reason": reason})

    def ignore(self, path: str, reason: str) -> None:
        self.ignored.append({"path": path, "reason": reason})

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=QUARANTINE_COLUMNS)

    def ignored_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.ignored, columns=IGNORED_COLUMNS)

    def result(self, records: list[dict] | pd.DataFrame, classes: list[str], notes: Iterable[str] = (),
               normalised: dict[str, int] | None = None, pixels=None) -> ScanResult:
        """The adapter's :class:`ScanResult`: ``records`` and ``classes`` with everything collected here."""
        counts = Counter(self.normalised)
        counts.update({key: value for key, value in (normalised or {}).items() if value})
        return ScanResult(records=records_frame(records), quarantine=self.frame(), classes=classes, pixels=pixels,
                          notes=[*self.notes, *notes], normalised=dict(sorted(counts.items())),
                          ignored=self.ignored_frame())


# ---------------------------------------------------------------------------------------------------------------
# Names as a person reads them


def nfc(text: str) -> str:
    """``text`` in Unicode normal form C: a name typed on Windows and the same name in a macOS file name
    (decomposed accents) become the same string."""
    return text if text.isascii() else unicodedata.normalize("NFC", text)


# Cyrillic and Greek letters drawn like a Latin letter (their prototypes in Unicode TR39's confusables.txt):
# "ВСС" typed on a Russian keyboard layout reads as "BCC". Digits and Latin-only lookalikes (0/O, l/1) stay
# apart: class names such as "grade 1" and "grade l" are rare, and folding them would merge real names.
_LATIN_LOOKALIKES = str.maketrans({
    **dict(zip("АВЕЅІЈКМНОРСТХУԁеһіјӏорԛсѕԝхуаԌԜ", "ABESIJKMHOPCTXYdehijlopqcswxyaGW")),
    **dict(zip("ΑΒΕΖΗΙΚΜΝΟΡΤΥΧοιν", "ABEZHIKMNOPTYXoiv")),
})


def name_key(text: str) -> str:
    """What a person sees of a name: compatibility forms folded (full-width letters, ligatures), invisible
    characters (zero-width spaces, soft hyphens) dropped, Cyrillic and Greek letters that look Latin read as
    Latin, letter case and runs of spaces ignored. Two names with one key are names a reader would take for
    the same."""
    folded = unicodedata.normalize("NFKC", text)
    visible = "".join(ch for ch in folded if unicodedata.category(ch) != "Cf")
    return " ".join(visible.translate(_LATIN_LOOKALIKES).casefold().split())


def lookalike_names(names: Iterable[str]) -> list[list[str]]:
    """Groups of two or more distinct names (after NFC) that :func:`name_key` cannot tell apart."""
    groups: dict[str, set[str]] = {}
    for name in names:
        groups.setdefault(name_key(name), set()).add(nfc(name))
    return [sorted(group) for group in groups.values() if len(group) > 1]


def lookalikes_described(clashes: list[list[str]], detail: Callable[[str], str]) -> str:
    """``clashes`` (from :func:`lookalike_names`) for a message: each name shown (:func:`shown_name`) with its
    ``detail`` (e.g. where it occurs, how many images), names of one group joined by "and", groups by ";"."""
    return "; ".join(" and ".join(f"{shown_name(name)} ({detail(name)})" for name in group) for group in clashes)


def shown_name(name: str) -> str:
    """A name with its invisible or lookalike characters visible (``repr`` escapes what is not printable)."""
    escaped = "".join(ch if ch.isprintable() and unicodedata.category(ch) != "Cf" and ch.isascii()
                      else f"\\u{ord(ch):04x}" for ch in name)
    return repr(name) if escaped == name else f"{name!r} ({escaped})"


# ---------------------------------------------------------------------------------------------------------------
# Files a download ships besides its images

LICENCE_NAMES = ("license", "licence", "licenses", "licences", "attribution", "readme", "citation", "copying",
                 "copyright", "notice")
TEXT_SUFFIXES = {"", ".txt", ".md", ".rst", ".html", ".htm", ".pdf"}
SYSTEM_FILES = {"thumbs.db": "Windows thumbnail cache (Thumbs.db)", "ehthumbs.db": "Windows thumbnail cache",
                "desktop.ini": "Windows folder settings (desktop.ini)", "icon\r": "macOS folder icon"}
HMNIST_TABLE = re.compile(r"hmnist_\d+_\d+_(l|rgb)\.csv")


def companion_reason(relative: str) -> str | None:
    """Why the file at ``relative`` (dataset-relative, ``/``-separated) is a companion file, not data: hidden
    and system files, macOS archive leftovers, licence / attribution / readme texts, Kaggle's ``hmnist_*.csv``;
    ``None`` for anything else."""
    parts = relative.split("/")
    name, folders = parts[-1], parts[:-1]
    if "__MACOSX" in folders:
        return "macOS archive metadata (__MACOSX/), not data"
    if name.startswith("._"):
        return "macOS resource fork (._*), not an image"
    hidden = next((folder for folder in folders if folder.startswith(".")), None)
    if hidden is not None:
        return f"inside the hidden folder {hidden}/"
    if name.startswith("."):
        return "hidden file"
    lower = name.lower()
    if lower in SYSTEM_FILES:
        return SYSTEM_FILES[lower]
    stem, suffix = os.path.splitext(lower)
    if suffix in TEXT_SUFFIXES and (stem.startswith(LICENCE_NAMES)
                                    or any(folder.lower() in ("licenses", "licences") for folder in folders)):
        return "licence, attribution or readme text shipped with the data"
    if HMNIST_TABLE.fullmatch(lower):
        return "Kaggle's hmnist_*.csv (the images again as small pixel tables; not read)"
    return None


def dataset_files(raw_dir: Path) -> list[str]:
    """Every file below ``raw_dir``, as a path relative to it (``/``-separated), following symbolic links
    that stay inside it; sorted as paths (folder by folder).

    Big datasets often live on another disk and are linked in. Linking the whole dataset folder
    works (the registered path is resolved first); a link to a folder OUTSIDE the registered folder,
    or a link loop, is a :class:`DatasetLayoutError` that names the link and the fix. Plain strings,
    not ``Path`` objects: a few dozen bytes per file, for datasets of hundreds of thousands of files.
    """
    raw_dir = Path(raw_dir)
    root = raw_dir.resolve()
    files: list[str] = []
    for current, folders, names in os.walk(raw_dir, followlinks=True):
        here = Path(current)
        for name in list(folders):
            folder = here / name
            if not folder.is_symlink():
                continue
            target = folder.resolve()
            shown = folder.relative_to(raw_dir).as_posix()
            if not target.is_relative_to(root):
                raise DatasetLayoutError(
                    f"{raw_dir}/{shown} is a symbolic link to {target}, outside the registered dataset folder "
                    f"{raw_dir}. Fix: copy those files into the dataset folder, or register the folder that holds "
                    f"everything as datasets.<name>.path")
            if here.resolve().is_relative_to(target):
                raise DatasetLayoutError(f"{raw_dir}/{shown} is a symbolic link to {target}, a folder that contains "
                                         f"it: a link loop. Fix: remove the link")
        prefix = here.relative_to(raw_dir).as_posix()
        files.extend(name if prefix == "." else f"{prefix}/{name}" for name in names)
    return sorted(files, key=lambda relative: relative.replace("/", "\0"))  # "\0" sorts first: folder by folder


def index_images(raw_dir: Path, quarantine: Quarantine, metadata: tuple[Path, ...] = (), *,
                 ignore: Callable[[str], str | None] | None = None, collapse_copies: bool = False) -> pd.DataFrame:
    """The image files under ``raw_dir`` (see :func:`dataset_files` for links): a frame of ``stem``
    (file name without extension, Unicode NFC) and ``path`` (relative to ``raw_dir``), sorted by path.

    Every other file is accounted for: the dataset's ``metadata`` files, companion files
    (:func:`companion_reason`) and what the adapter's ``ignore(relative)`` names are listed as ignored
    (with why); linked files that resolve outside the dataset root and other non-images are quarantined.
    ``collapse_copies`` (layouts whose image id is the file name): several byte-identical files of one
    name are read once, the first by path; the copies are listed as ignored, with one note per pair of
    folders (e.g. the Kaggle mirror's duplicated ``HAM10000_images_part_1/``).
    """
    root = raw_dir.resolve()
    expected = {m.resolve() for m in metadata}
    stems, paths = [], []
    for relative in dataset_files(raw_dir):
        full = os.path.join(raw_dir, relative)
        name = relative.rsplit("/", 1)[-1]
        if not os.path.isfile(full):
            continue
        stem, suffix = os.path.splitext(name)
        companion = companion_reason(relative) or (ignore(relative) if ignore else None)
        if os.path.islink(full) and not Path(full).resolve().is_relative_to(root):
            quarantine.add(stem, relative, "path resolves outside the dataset root")
        elif Path(full).resolve() in expected:
            quarantine.ignore(relative, "read as the dataset's metadata")
        elif companion is not None:
            quarantine.ignore(relative, companion)
        elif suffix.lower() in IMAGE_SUFFIXES:
            stems.append(nfc(stem))
            paths.append(relative)
        else:
            quarantine.add(stem, relative, f"not an image file ({suffix or 'no extension'})")
    images = pd.DataFrame({"stem": pd.Series(stems, dtype="str"), "path": pd.Series(paths, dtype="str")})
    return read_copies_once(raw_dir, images, quarantine) if collapse_copies else images


def _folder(relative: str) -> str:
    parent = PurePosixPath(relative).parent.as_posix()
    return "the dataset folder" if parent == "." else f"{parent}/"


def read_copies_once(raw_dir: Path, images: pd.DataFrame, quarantine: Quarantine) -> pd.DataFrame:
    """Drop byte-identical copies among the files of one stem (see :func:`index_images`)."""
    repeated = images[images["stem"].duplicated(keep=False)]
    if repeated.empty:
        return images
    copies: list[str] = []
    pairs: Counter = Counter()  # (kept folder, copy folder) -> identical copies
    differing: Counter = Counter()  # (folder, folder) -> names whose files differ
    for _, paths in repeated.groupby("stem", sort=False)["path"]:
        first, *others = list(paths)
        for other in others:
            if filecmp.cmp(raw_dir / first, raw_dir / other, shallow=False):
                copies.append(other)
                pairs[_folder(first), _folder(other)] += 1
                quarantine.ignore(other, f"identical copy of {first}")
            else:
                differing[_folder(first), _folder(other)] += 1
    for (kept, copy), count in sorted(pairs.items()):
        if kept == copy:
            quarantine.notes.append(f"{kept} holds {count:,} image(s) twice, as identical files under one name with "
                                    f"another extension: each is read once; the copies are listed as ignored")
            continue
        quarantine.notes.append(f"{copy} holds identical copies of {count:,} image(s) of {kept} (a duplicated "
                                f"folder, as in Kaggle's HAM10000 mirror): each is read once, from {kept}; the "
                                f"copies are listed as ignored")
    for (one, other), count in sorted(differing.items()):
        quarantine.notes.append(f"{one} and {other} hold {count:,} different file(s) under the same image names: "
                                f"which is right is unknown, so those images are quarantined. Fix: keep one of the "
                                f"two folders")
    return images[~images["path"].isin(copies)].reset_index(drop=True)


def records_frame(records: list[dict] | pd.DataFrame) -> pd.DataFrame:
    """Adapter records (dicts, or a frame of some record columns) as a frame with every record column;
    metadata stays raw text (see ``fields``)."""
    frame = pd.DataFrame(records, columns=RECORD_COLUMNS)
    for column in ("lesion_id", "patient_id", "source_split", "license", "attribution", "sex", "site"):
        frame[column] = frame[column].fillna("").astype(str)
    return frame


def find_one(raw_dir: Path, name: str) -> Path:
    matches = [raw_dir / relative for relative in dataset_files(raw_dir)
               if relative.rsplit("/", 1)[-1].lower() == name.lower()]
    matches = sorted(path for path in matches if path.is_file())
    if not matches:
        raise DatasetLayoutError(f"{raw_dir}: no {name} found. Fix: check that this is the dataset's folder and that "
                                 f"its kind in params.yaml is right")
    if len(matches) > 1:
        listed = ", ".join(str(p) for p in matches)
        raise DatasetLayoutError(f"{raw_dir}: several {name} files ({listed}). Fix: keep exactly one")
    return matches[0]


# ---------------------------------------------------------------------------------------------------------------
# Metadata tables as people really have them

DELIMITERS = (",", ";", "\t", "|")
_DELIMITER_NAMES = {",": "commas", ";": "semicolons", "\t": "tabs", "|": "vertical bars"}
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32", "UTF-32"), (codecs.BOM_UTF32_BE, "utf-32", "UTF-32"),
         (codecs.BOM_UTF8, "utf-8-sig", "UTF-8 with a byte-order mark"),
         (codecs.BOM_UTF16_LE, "utf-16", "UTF-16 (Excel's 'Unicode Text')"),
         (codecs.BOM_UTF16_BE, "utf-16", "UTF-16 (Excel's 'Unicode Text')"))
SAVE_AS_CSV = "open it in Excel (or any spreadsheet) and save it as 'CSV UTF-8 (Comma delimited)'"


def _decode(path: Path, raw: bytes, quarantine: Quarantine) -> str:
    """The text of a metadata file: UTF-8 (with or without BOM), UTF-16/32 (with a BOM, or UTF-16 without),
    else Windows-1252 (Excel's 'CSV' on Windows; said in a note). Anything else is a :class:`MetadataFileError`."""
    if raw.startswith(b"PK\x03\x04"):
        raise MetadataFileError(f"{path} is a zip archive (an Excel .xlsx workbook?), not a CSV text file. Fix: "
                                f"{SAVE_AS_CSV}, keeping the file name")
    if raw.startswith(b"\xd0\xcf\x11\xe0"):
        raise MetadataFileError(f"{path} is an old Excel .xls workbook, not a CSV text file. Fix: {SAVE_AS_CSV}, "
                                f"keeping the file name")
    encoding, described = next(((name, shown) for bom, name, shown in _BOMS if raw.startswith(bom)), (None, ""))
    head = raw[:4096]
    if encoding is None and b"\x00" in head:
        if head[1::2].count(0) >= len(head) // 4 and not head[0::2].count(0):
            encoding, described = "utf-16-le", "UTF-16 without a byte-order mark"
        elif head[0::2].count(0) >= len(head) // 4 and not head[1::2].count(0):
            encoding, described = "utf-16-be", "UTF-16 without a byte-order mark"
        else:
            raise MetadataFileError(f"{path} holds binary data (NUL bytes), not CSV text. Fix: replace it with the "
                                    f"metadata file as distributed")
    try:
        text = raw.decode(encoding or "utf-8")
    except UnicodeDecodeError as error:
        line = raw[:error.start].count(b"\n") + 1
        byte = raw[error.start:error.start + 1].hex()
        if encoding is not None:
            raise MetadataFileError(f"{path} starts as {described}, but byte 0x{byte} on line {line} does not decode "
                                    f"as such: the file is damaged or mixes encodings. Fix: {SAVE_AS_CSV}") from None
        try:
            text = raw.decode("cp1252")
        except UnicodeDecodeError:
            raise MetadataFileError(f"{path} is not UTF-8 (byte 0x{byte} on line {line}) nor Windows-1252 text: its "
                                    f"encoding is unknown. Fix: {SAVE_AS_CSV}") from None
        quarantine.notes.append(f"{path.name} is not UTF-8 (byte 0x{byte} on line {line}): it was read as "
                                f"Windows-1252, the encoding of Excel's 'CSV (Comma delimited)'. Check its accented "
                                f"values in the manifest; to be sure, {SAVE_AS_CSV}")
        described = "Windows-1252"
    if "\x00" in text:
        raise MetadataFileError(f"{path} holds NUL characters, not CSV text. Fix: {SAVE_AS_CSV}")
    if described and described != "Windows-1252":
        quarantine.normalised[f"metadata: {path.name} read as {described}"] += 1
    return text


def _clean_name(name: str) -> str:
    return nfc(name.replace("\ufeff", "").strip())


def _choose_delimiter(text: str, required: list[str]) -> str:
    """The delimiter whose header holds the ``required`` columns (by what a reader sees), else the one
    giving most columns; commas on a tie."""
    head = text[:65536]
    keys = {name_key(column) for column in required}
    scores = []
    for rank, delimiter in enumerate(DELIMITERS):
        names = {name_key(name) for name in _first_row(head, delimiter)}
        scores.append((len(keys & names), len(names), -rank, delimiter))
    return max(scores)[-1]


def _first_row(text: str, delimiter: str) -> list[str]:
    for row in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter):
        if any(cell.strip() for cell in row):
            return [_clean_name(cell) for cell in row]
    return []


EXTRA_FIELDS = 1  # a row with a value beyond the header's shows there; with more, the fast parse gives up


def _parse_fast(text: str, delimiter: str, width: int) -> pd.DataFrame | None:
    """Every non-blank row (header first) as ``width`` text columns, by pandas' C parser (Arrow strings, not a
    Python object per value: memory stays that of the table); ``None`` when a row holds more values than the
    header (then :func:`_parse_rows` says which, by line). Missing trailing values read as empty."""
    try:
        frame = pd.read_csv(io.BytesIO(text.encode("utf-8")), sep=delimiter, header=None, encoding="utf-8",
                            names=range(width + EXTRA_FIELDS), dtype=str, keep_default_na=False, na_values=[],
                            skip_blank_lines=True, index_col=False, engine="c")
    except (pd.errors.ParserError, ValueError):
        return None
    blank = np.ones(len(frame), dtype=bool)
    for column in frame.columns:
        filled = (frame[column] != "").to_numpy().copy()
        if filled.any():
            filled[filled] = (frame[column][filled].str.strip() != "").to_numpy()
        if column >= width and filled.any():
            return None
        blank &= ~filled
    return frame.loc[~blank, list(range(width))].reset_index(drop=True)


def _parse_rows(path: Path, text: str, delimiter: str, width: int, id_position: int | None
                ) -> tuple[list[list[str]], dict[str, list[str]]]:
    """The data rows (header excluded) by the csv module, and the rows that cannot be read by their id
    (more values than the header), with their line."""
    rows = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    data, refused, header_seen = [], {}, False
    for row in rows:
        if not any(cell.strip() for cell in row):
            continue  # blank lines (and rows of empty cells) hold no listing
        if not header_seen:
            header_seen = True
            continue
        if len(row) > width and any(cell.strip() for cell in row[width:]):
            key = nfc(row[id_position].strip()) if id_position is not None else ""
            refused.setdefault(key or f"line {rows.line_num}", []).append(
                f"{path.name} line {rows.line_num} has {len(row)} values where its header has {width} (a value "
                f"holding an unquoted {_DELIMITER_NAMES[delimiter][:-1]}?): the row cannot be read")
            continue
        data.append((row + [""] * width)[:width])
    return data, refused


def read_table(path: Path, required: list[str], what: str, quarantine: Quarantine, *, id_column: str | None = None,
               fix: str = "use the file as distributed, or check datasets.<name>.kind",
               label_columns: Iterable[str] = (),
               known: Iterable[str] = ()) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """A metadata table as people really have it: every value as text (NFC), whatever its encoding
    (:func:`_decode`), delimiter (``,`` ``;`` tab ``|``), byte-order mark or line endings.

    Returns the table and the rows that cannot be read: ``{id: [reasons]}`` (a row with more values
    than the header, keyed by its ``id_column`` value, or ``line <n>``); the adapter quarantines them,
    with their files (:func:`match_listed_images`). Blank rows are skipped; missing trailing values
    are empty. A header that differs from a ``required``, ``label_columns`` or ``known`` column name
    only as a reader cannot see (case, spaces, width) is renamed (counted); a missing required column,
    or a required or ``label_columns`` column named twice, is a :class:`DatasetLayoutError`.
    """
    text = _decode(path, path.read_bytes(), quarantine)
    delimiter = _choose_delimiter(text, required)
    if delimiter != ",":
        quarantine.normalised[f"metadata: {path.name} read with {_DELIMITER_NAMES[delimiter]} as delimiter"] += 1
    header = _first_row(text, delimiter)
    label_columns = list(label_columns)
    by_key = {name_key(name): name for name in header}
    for wanted in dict.fromkeys([*required, *label_columns, *known]):
        if wanted not in header and name_key(wanted) in by_key:
            found = by_key[name_key(wanted)]
            header[header.index(found)] = wanted
            quarantine.normalised[f"metadata: column {found!r} read as {wanted!r}"] += 1
    missing = [column for column in required if column not in header]
    if missing:
        shown = "" if delimiter == "," else f" (read with {_DELIMITER_NAMES[delimiter]} as delimiter)"
        raise DatasetLayoutError(f"{path}: missing required column(s) {missing} of {what}; found {header}{shown}. "
                                 f"Fix: {fix}")
    counts = Counter(header)
    twice = [name for name in dict.fromkeys([*required, *label_columns]) if counts[name] > 1]
    if twice:
        raise DatasetLayoutError(f"{path}: {counts[twice[0]]} columns are named {twice[0]!r}: which one holds the "
                                 f"data is unknown. Fix: remove or rename the extra column")
    seen: Counter = Counter()
    for position, name in enumerate(header):  # other repeated names: kept, as <name>.1, <name>.2 ...
        if seen[name]:
            header[position] = f"{name}.{seen[name]}"
        seen[name] += 1
    width = len(header)
    frame = _parse_fast(text, delimiter, width)
    if frame is not None:
        table = frame.iloc[1:].reset_index(drop=True)
        table.columns = header
        refused: dict[str, list[str]] = {}
    else:
        id_position = header.index(id_column) if id_column in header else None
        data, refused = _parse_rows(path, text, delimiter, width, id_position)
        table = pd.DataFrame(data, columns=header, dtype=object).astype(str) if data else pd.DataFrame(
            {name: pd.Series(dtype=str) for name in header})
    del text
    if len(table) and not all(table[name].str.isascii().all() for name in header):
        changed = 0
        for name in header:
            normal = table[name].str.normalize("NFC")
            differs = int((normal != table[name]).sum())
            if differs:
                table[name] = normal
                changed += differs
        if changed:
            quarantine.normalised["metadata: values Unicode-normalised (NFC)"] += changed
    return table, refused


def match_listed_images(listed_ids: pd.Series, images: pd.DataFrame, quarantine: Quarantine,
                        metadata_name: str, refused: dict[str, list[str]] | None = None) -> pd.Series:
    """Pair the ids a metadata table lists with image files (:func:`index_images`): a Series of paths
    (relative to the dataset root) indexed by id.

    An id listed more than once (which row is right is unknown: every listing is quarantined, and
    its file with it), listed without a file, or with several files, and a file no row lists, are
    quarantined with the reason. ``refused``: rows of the table that could not be read
    (:func:`read_table`), ``{id: [reasons]}``: each is quarantined with its reason and its file, which
    is listed, not "not listed". Column-wise: memory stays a few dozen bytes per image.
    """
    refused = refused or {}
    extra = [image_id for image_id, reasons in refused.items() for _ in reasons]
    why_refused = [reason for reasons in refused.values() for reason in reasons]
    listed_ids = pd.concat([pd.Series(listed_ids, dtype="str"), pd.Series(extra, dtype="str")], ignore_index=True)
    unreadable = pd.Series([None] * (len(listed_ids) - len(extra)) + why_refused, dtype="object")
    listings = listed_ids.map(listed_ids.value_counts())
    file_count = listed_ids.map(images["stem"].value_counts()).fillna(0).astype(int)
    problems = (listings > 1) | (file_count != 1) | unreadable.notna()
    if problems.any():
        joined = images[images["stem"].isin(listed_ids[problems])].groupby("stem")["path"].agg(", ".join)
        for image_id, times, count, why in zip(listed_ids[problems], listings[problems], file_count[problems],
                                               unreadable[problems], strict=True):
            if why is not None:
                quarantine.add(image_id, joined.get(image_id, ""), why)
            elif times > 1:
                reason = f"image id listed {times} times in {metadata_name}: which row describes it is unknown"
                quarantine.add(image_id, joined.get(image_id, ""), reason)
            elif not image_id:
                quarantine.add(image_id, "", f"a row of {metadata_name} without an image id")
            elif count == 0:
                quarantine.add(image_id, "", f"image listed in {metadata_name} but no file found")
            else:
                quarantine.add(image_id, joined[image_id], "several different files for one image id")
    unlisted = images[~images["stem"].isin(listed_ids)]
    for stem, path in zip(unlisted["stem"], unlisted["path"], strict=True):
        quarantine.add(stem, path, f"image file not listed in {metadata_name}")
    matched = listed_ids[~problems].to_numpy()
    single = images[images["stem"].isin(matched)]
    return pd.Series(single["path"].to_numpy(), index=pd.Index(single["stem"].to_numpy(), name="image_id"),
                     dtype="str").reindex(matched)


def missing_files_note(listed: int, missing: list[str], metadata_name: str, hint: str = "") -> list[str]:
    """A note for a partial download: when at least a tenth of the listed images have no file, say how many
    and which (first and last id), with the source-specific ``hint`` on what is likely absent."""
    if not listed or len(missing) < max(1, 0.1 * listed):
        return []
    ids = sorted(missing)
    return [f"{len(missing):,} of the {listed:,} images listed in {metadata_name} have no file "
            f"({ids[0]} … {ids[-1]}): the download looks partial.{' ' + hint if hint else ''}"]


_MAPS: dict[int, tuple[dict, dict[str, str], list[tuple[str, str, str]], dict[str, list[str]]]] = {}


def _policy_map(policy) -> tuple[dict[str, str], list[tuple[str, str, str]], dict[str, list[str]]]:
    """``labels.map`` as compared: plain keys and ``<column>=<value>`` keys (in order), both NFC and trimmed,
    and the plain keys by :func:`name_key` (to say when a value misses a key only by letter case, width or
    lookalike letters)."""
    cached = _MAPS.get(id(policy.map))
    if cached is not None and cached[0] is policy.map:
        return cached[1:]
    plain: dict[str, str] = {}
    qualified: list[tuple[str, str, str]] = []
    for key, target in policy.map.items():
        if "=" in key:
            column, wanted = key.split("=", 1)
            qualified.append((nfc(column.strip()), nfc(wanted.strip()), nfc(str(target).strip())))
        else:
            key = nfc(key.strip())
            if key in plain and plain[key] != nfc(str(target).strip()):
                raise DatasetLayoutError(f"datasets.<name>.labels.map has two keys that read {key!r}, one sent to "
                                         f"{plain[key]!r}, the other to {target!r} (they differ in Unicode form or "
                                         f"surrounding spaces). Fix: keep one of them")
            plain[key] = nfc(str(target).strip())
    near: dict[str, list[str]] = {}
    for key in plain:
        near.setdefault(name_key(key), []).append(key)
    _MAPS[id(policy.map)] = (policy.map, plain, qualified, near)
    return plain, qualified, near


def apply_label_policy(values: dict[str, str], policy, default_field: str) -> tuple[str | None, str | None]:
    """The class of one image from its raw metadata ``values`` (column -> text) under ``policy``
    (a :class:`mobiledx.data.manifest.LabelPolicy`): ``(class, None)``, or ``(None, reason)`` to refuse it.

    Values and keys are compared as a person reads them: trimmed and Unicode-normalised (NFC). A value
    that matches a key only when letter case, width or lookalike letters are ignored is refused, naming
    the key, even when ``unmapped`` names a class: it is a typo in the map, not another diagnosis.
    """
    column = policy.column or default_field
    plain, qualified, near = _policy_map(policy)
    for other, wanted, target in qualified:  # "<column>=<value>" keys first, in the order given
        if nfc(str(values.get(other, "")).strip()) == wanted:
            return target, None
    raw = nfc(str(values.get(column, "")).strip())
    if not raw:
        if policy.missing != "quarantine":
            return nfc(policy.missing), None
        return None, f"no {column} value (datasets.<name>.labels.missing: quarantine)"
    if not policy.map:
        return raw, None
    if raw in plain:
        return plain[raw], None
    lookalikes = near.get(name_key(raw))
    if lookalikes:
        return None, (f"{column} {raw!r} is not in datasets.<name>.labels.map: its key {lookalikes[0]!r} differs "
                      f"only in letter case, width or lookalike letters (write the key as {raw!r})")
    if policy.unmapped != "quarantine":
        return nfc(policy.unmapped), None
    return None, f"{column} {raw!r} is not in datasets.<name>.labels.map"


def policy_columns(policy, default_field: str) -> list[str]:
    """The metadata columns :func:`apply_label_policy` reads under ``policy``."""
    others = [nfc(key.split("=", 1)[0].strip()) for key in policy.map if "=" in key]
    return list(dict.fromkeys([nfc(policy.column) or default_field, *others]))


def policy_classes(policy, native: list[str]) -> list[str]:
    """The classes a dataset ends up with: the source's own (``native``), or the targets of
    ``labels.map``; plus the classes that unmapped or missing values are sent to, if any (all NFC)."""
    classes = list(dict.fromkeys(nfc(str(t).strip()) for t in policy.map.values())) if policy.map else list(native)
    for fallback in (policy.unmapped, policy.missing):
        fallback = nfc(fallback)
        if fallback != "quarantine" and fallback not in classes:
            classes.append(fallback)
    return sorted(classes) if policy.map else classes


def listed_without_file(listed_ids: pd.Series, images: pd.DataFrame) -> list[str]:
    """The listed ids with no image file at all (for :func:`missing_files_note`)."""
    listed_ids = pd.Series(listed_ids, dtype="str")
    return list(pd.unique(listed_ids[~listed_ids.isin(images["stem"])]))


# ---------------------------------------------------------------------------------------------------------------
# One label, two sources


def label_disagreement(values: dict[str, str], readers: dict[str, Callable[[str], str | None]],
                       where: str) -> str | None:
    """Why a row's columns contradict each other on one question (e.g. benign or malignant), or ``None``.

    ``readers``: column -> function giving the column's answer for a value (``None``: the value says
    nothing, e.g. ``unknown``). Two columns with different answers refuse the row, naming both values:
    a melanoma is never trained as benign because one column said so.
    """
    answers = {}
    for column, read in readers.items():
        raw = nfc(str(values.get(column, "")).strip())
        answer = read(raw) if raw else None
        if answer is not None:
            answers[column] = (raw, answer)
    if len({answer for _, answer in answers.values()}) < 2:
        return None
    said = ", ".join(f"{column} {raw!r} ({answer})" for column, (raw, answer) in answers.items())
    return f"{where} contradicts itself: {said}. Which is right is unknown"


# ---------------------------------------------------------------------------------------------------------------
# When nothing survives: why, and the fix

REFUSAL_FIXES: list[tuple[re.Pattern, str]] = [
    (re.compile(r"but no file found"), "put the images in the dataset folder (extract the image archives there), or "
                                       "set datasets.<name>.path to the folder that holds the images and metadata"),
    (re.compile(r"differs only in letter case, width or lookalike letters"),
     "write the keys of datasets.<name>.labels.map exactly as the values are written in the metadata, letter case "
     "included"),
    (re.compile(r"is not in datasets\.<name>\.labels\.map"), "add those values to datasets.<name>.labels.map, or "
                                                              "send them to a class with labels.unmapped"),
    (re.compile(r"labels\.missing"), "fill in the label column, choose another with datasets.<name>.labels.column, "
                                     "or send empty values to a class with labels.missing"),
    (re.compile(r"not an image file \(\.dcm\)"), "DICOM files are not read: use the JPEG release of the data, or "
                                                  "convert the DICOM files to PNG or JPEG"),
    (re.compile(r"not an image file \(\.(zip|tar|gz|tgz|7z|rar)\)"), "extract the archive(s) into the dataset "
                                                                      "folder"),
    (re.compile(r"not an image file"), f"images must be {', '.join(sorted(IMAGE_SUFFIXES))} files: convert or remove "
                                       f"the others"),
    (re.compile(r"image file not listed in"), "check that the metadata file belongs to these images and that "
                                              "datasets.<name>.kind is right"),
    (re.compile(r"several different files"), "keep one copy of each image: remove the duplicated folder"),
    (re.compile(r"listed \d+ times"), "remove the repeated rows from the metadata file"),
    (re.compile(r"the row cannot be read"), "quote the values that hold the delimiter, or re-export the file from "
                                            "its spreadsheet as 'CSV UTF-8'"),
    (re.compile(r"contradicts itself|labelled .* across its images"), "correct the contradicting labels in the "
                                                                      "metadata"),
    (re.compile(r"not inside a class folder|class folder .* not in the vocabulary"),
     "put each image in a folder named after its class"),
    (re.compile(r"file name does not follow|file name says"), "keep the C-NMC files with their distributed names, "
                                                              "in fold_k/all and fold_k/hem"),
    (re.compile(r"^unreadable"), "replace the unreadable files with complete copies from the source"),
    (re.compile(r"image too (small|elongated)"), "check ingest.min_image_side and ingest.max_aspect_ratio, or set "
                                                 "ingest.unfit_images: keep"),
    (re.compile(r"outside the dataset root"), "copy the images into the dataset folder instead of linking them"),
]


def _reason_kind(reason: str) -> str:
    """A reason with its values and ids blanked, so that per-image reasons group by kind."""
    kind = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", reason)
    kind = re.sub(r"\b[A-Z]{2,}_\w+|\b\w*\d\w*\b", "#", kind)
    return kind


def refusal_summary(quarantine: pd.DataFrame, listed: str, notes: Iterable[str] = (), top: int = 3) -> str:
    """One message for a dataset of which nothing survives: how many inputs were refused, the ``top``
    reasons with their counts and an example each, the adapter's ``notes``, and the fix for each reason."""
    if quarantine.empty:
        return (f"{listed}: no image found, and no metadata row or file was refused. Fix: check that "
                f"datasets.<name>.path is the dataset's folder and that datasets.<name>.kind is right")
    reasons = quarantine["reason"].astype(str)
    kinds = reasons.map(_reason_kind)
    counts = kinds.value_counts(sort=True)
    order = sorted(counts.index, key=lambda kind: (-counts[kind], kind))
    parts, fixes = [], []
    for kind in order[:top]:
        first = quarantine[kinds == kind].iloc[0]
        example = first["path"] or first["image_id"]
        parts.append(f"{counts[kind]:,} × {first['reason']} (e.g. {example})")
        fix = next((fix for pattern, fix in REFUSAL_FIXES if pattern.search(first["reason"])), None)
        if fix and fix not in fixes:
            fixes.append(fix)
    if len(order) > top:
        parts.append(f"{sum(counts[kind] for kind in order[top:]):,} for {len(order) - top} other reason(s)")
    message = f"{listed}: all {len(quarantine):,} inputs were refused, so nothing is left to ingest. " \
              f"Most common reasons: {'; '.join(parts)}."
    for note in notes:
        message += f" Note: {note}"
    fixes = fixes or ["correct the inputs named above, or check datasets.<name>.kind and datasets.<name>.path"]
    return message + f" Fix: {'; '.join(fixes)}."
