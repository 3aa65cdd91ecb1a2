"""Records → sample references: contract validation, image checks, invalid-sample report.

Every record goes through coordexp-parse's record contract, then its image is checked
before training starts:

* ``record_contract`` — the record breaks the contract (file, line, object index named);
* ``multi_image`` — more than one image (Stage-1 samples hold exactly one);
* ``missing_image`` — the image file does not exist;
* ``undecodable_image`` — PIL cannot identify or verify it (truncated or corrupt);
* ``size_mismatch`` — the file's pixel size differs from the record's width/height (the
  coordinates would be wrong);
* ``too_long`` — the tokenised sample exceeds ``global_max_length`` (checked by the
  encoder; samples are never truncated).

With ``data.on_invalid: error`` the first problem raises :class:`SampleError` naming the
record (``file:line``), the reason and the fix. With ``skip`` the sample is left out and
counted in an :class:`InvalidReport`. Records with zero objects are valid (answer ``{}``).

The image check opens the header and runs PIL's ``verify()`` (a CRC/structure check that
does not decode pixels); a file that passes it but fails to decode later still stops the
run with a :class:`SampleError` naming the record.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeAlias

from PIL import Image, UnidentifiedImageError

from coordexp_parse import JsonlRecords, Record, RecordError

OnInvalid: TypeAlias = Literal["error", "skip"]
INVALID_REASONS = (
    "record_contract",
    "multi_image",
    "missing_image",
    "undecodable_image",
    "size_mismatch",
    "too_long",
)


class SampleError(ValueError):
    """A sample cannot be used; ``reason`` is one of :data:`INVALID_REASONS`."""

    def __init__(self, source: str, reason: str, problem: str) -> None:
        super().__init__(f"{source}: {problem}")
        self.source = source
        self.reason = reason


@dataclass
class InvalidReport:
    """Samples left out under ``on_invalid: skip``: counts by reason, first messages.

    Attributes:
        counts: reason → number of samples left out.
        examples: the first ``max_examples`` error messages, in encounter order.
        max_examples: how many messages to keep.
    """

    counts: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    max_examples: int = 5

    def add(self, error: SampleError) -> None:
        """Count one skipped sample."""
        self.counts[error.reason] += 1
        if len(self.examples) < self.max_examples:
            self.examples.append(str(error))

    @property
    def total(self) -> int:
        """Samples left out."""
        return sum(self.counts.values())

    def summary(self) -> str:
        """One line per reason plus the first messages, for the run log."""
        if not self.total:
            return "no invalid samples"
        parts = ", ".join(f"{r}: {n}" for r, n in sorted(self.counts.items()))
        lines = [f"skipped {self.total} invalid samples ({parts}); first ones:"]
        lines += [f"  {m}" for m in self.examples]
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class SampleRef:
    """A record whose image was found and checked.

    Attributes:
        record: the validated record (``record.source`` is ``"file:line"``).
        image_path: the resolved image file.
    """

    record: Record
    image_path: Path


def iter_sample_refs(
    jsonl: Path,
    report: InvalidReport,
    *,
    image_root: Path | None = None,
    on_invalid: OnInvalid = "error",
) -> Iterator[SampleRef]:
    """Read, validate and image-check the records of ``jsonl``, yielding them in file order.

    Lazy: a record is read only when the caller asks for the next sample, so a caller that
    stops early (a sample limit) never sees problems in the records after it.

    Args:
        jsonl: the records file.
        report: where skipped samples are counted (under ``skip``).
        image_root: folder that relative image paths resolve against; default: the
            JSONL file's folder.
        on_invalid: ``error`` raises on the first problem, ``skip`` counts it in ``report``.

    Raises:
        FileNotFoundError: ``jsonl`` does not exist.
        SampleError: with ``on_invalid="error"``, the first invalid sample.
    """
    if not jsonl.is_file():
        raise FileNotFoundError(
            f"records file {jsonl} does not exist (data.train_jsonl / data.val_jsonl)"
        )
    root = image_root if image_root is not None else jsonl.parent
    reader = JsonlRecords(jsonl, on_invalid)
    records = iter(reader)
    reported = 0
    while True:
        try:
            record = next(records, None)
        except RecordError as e:
            raise _contract_error(e) from e
        for err in reader.skipped[reported:]:
            report.add(_contract_error(err))
        reported = len(reader.skipped)
        if record is None:
            return
        try:
            path = check_image(record, root)
        except SampleError as e:
            if on_invalid == "error":
                raise
            report.add(e)
            continue
        yield SampleRef(record, path)


def _contract_error(error: RecordError) -> SampleError:
    where = "" if error.object_index is None else f"object {error.object_index}: "
    return SampleError(f"{error.source}:{error.line}", "record_contract", where + error.problem)


def check_image(record: Record, root: Path) -> Path:
    """Resolve the record's one image and check it (see the module docstring).

    Raises:
        SampleError: ``multi_image``, ``missing_image``, ``undecodable_image`` or
            ``size_mismatch``.
    """
    if len(record.images) != 1:
        raise SampleError(
            record.source,
            "multi_image",
            f"has {len(record.images)} images; a detection sample holds exactly one",
        )
    path = root / record.images[0]
    if not path.is_file():
        raise SampleError(
            record.source,
            "missing_image",
            f"image {path} does not exist (relative paths resolve against {root}; "
            "set data.image_root if they are relative to another folder)",
        )
    try:
        with Image.open(path) as im:
            size = im.size
            im.verify()
    except (
        UnidentifiedImageError,
        Image.DecompressionBombError,
        OSError,
        SyntaxError,
        ValueError,
    ) as e:
        raise SampleError(
            record.source, "undecodable_image", f"image {path} cannot be read ({e})"
        ) from e
    if size != (record.width, record.height):
        raise SampleError(
            record.source,
            "size_mismatch",
            f"image {path} is {size[0]}x{size[1]} pixels but the record says "
            f"{record.width}x{record.height}; fix width/height (coordinates are pixels of "
            "the stored image)",
        )
    return path


def open_image(ref: SampleRef) -> Image.Image:
    """Decode the sample's image as RGB.

    Raises:
        SampleError: ``undecodable_image`` when decoding fails.
    """
    try:
        with Image.open(ref.image_path) as im:
            return im.convert("RGB")
    except (OSError, SyntaxError, ValueError) as e:
        raise SampleError(
            ref.record.source,
            "undecodable_image",
            f"image {ref.image_path} cannot be decoded ({e})",
        ) from e
