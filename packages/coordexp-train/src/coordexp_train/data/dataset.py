"""The detection dataset: checked sample references with known token lengths.

Construction reads and checks every record and measures every sample's token length
(records and image headers only; no pixels are decoded), so bad input fails — or is
counted under ``on_invalid: skip`` — before training starts, and packing can plan with
exact lengths. Items are encoded lazily: ``dataset[i]`` decodes the image and returns an
:class:`~coordexp_train.data.encode.EncodedSample`.
"""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset

from coordexp_train.data.encode import EncodedSample, SampleEncoder
from coordexp_train.data.samples import (
    InvalidReport,
    OnInvalid,
    SampleError,
    SampleRef,
    iter_sample_refs,
    open_image,
)


class DetectionDataset(Dataset[EncodedSample]):
    """Samples of one JSONL file, encoded on access.

    Args:
        jsonl: the records file.
        encoder: the tokeniser for the run's processor and template.
        image_root: folder for relative image paths; default the JSONL file's folder.
        on_invalid: ``error`` (raise on the first invalid sample) or ``skip`` (leave it
            out and count it in :attr:`report`).
        limit: keep only the first ``limit`` valid samples (records after them are not
            read further).

    Attributes:
        refs: the kept samples, file order.
        lengths: token length of each kept sample.
        report: what was skipped (empty under ``error``).

    Raises:
        FileNotFoundError: ``jsonl`` is missing.
        SampleError: under ``error``, the first invalid sample (file:line, reason, fix).
    """

    def __init__(
        self,
        jsonl: Path,
        encoder: SampleEncoder,
        *,
        image_root: Path | None = None,
        on_invalid: OnInvalid = "error",
        limit: int | None = None,
    ) -> None:
        self.encoder = encoder
        self.report = InvalidReport()
        candidates = iter_sample_refs(
            jsonl, self.report, image_root=image_root, on_invalid=on_invalid
        )
        self.refs: list[SampleRef] = []
        self.lengths: list[int] = []
        for ref in candidates:
            try:
                length = encoder.measure(ref.record, len(self.refs))
            except SampleError as e:
                if on_invalid == "error":
                    raise
                self.report.add(e)
                continue
            self.refs.append(ref)
            self.lengths.append(length)
            if limit is not None and len(self.refs) >= limit:
                break  # the records after the limit are never read

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, index: int) -> EncodedSample:
        ref = self.refs[index]
        return self.encoder.encode(ref.record, open_image(ref), index)
