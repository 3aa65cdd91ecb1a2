"""Stage-2 training items: the encoded sample plus what a rollout of it needs.

Channel A trains on the encoded ground-truth sample (collated like Stage 1); Channel B
rolls the image out with the training prompt and matches the rollout against the
ground-truth objects. One dataset item carries all three, so both channels read the same
data order (the Trainer's sampler) and a step's channel is decided after loading.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image
from torch.utils.data import Dataset

from coordexp_parse import DetObject, parse_text
from coordexp_train.data import EncodedSample
from coordexp_train.data.dataset import DetectionDataset
from coordexp_train.data.samples import open_image
from coordexp_train.stage1_data import RowCollator

#: The batch mapping key holding the step's :class:`RolloutItem` list.
ROLLOUT_ITEMS = "rollout_items"


@dataclass(frozen=True, slots=True)
class RolloutItem:
    """One training sample as Channel B sees it.

    Attributes:
        sample: the encoded ground-truth sample (its prompt is the rollout's prompt).
        image: the decoded RGB image.
        gts: the ground-truth objects in answer order (norm1000 bins).
    """

    sample: EncodedSample
    image: Image.Image
    gts: tuple[DetObject, ...]

    @property
    def request_id(self) -> str:
        """``<file:line>#<index>``: unique in a run, named in rollout errors."""
        return f"{self.sample.source}#{self.sample.index}"


class RolloutDataset(Dataset[RolloutItem]):
    """The items of a :class:`~coordexp_train.data.dataset.DetectionDataset`, with images.

    Raises (on access):
        SampleError: the image cannot be decoded.
    """

    def __init__(self, dataset: DetectionDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> RolloutItem:
        ref = self.dataset.refs[index]
        image = open_image(ref)
        encoder = self.dataset.encoder
        sample = encoder.encode(ref.record, image, index)
        text, _, _ = encoder.answer(ref.record, index)
        gts = tuple(DetObject(o.desc, o.kind, o.coords) for o in parse_text(text).objects)
        return RolloutItem(sample, image, gts)


class RolloutCollator(RowCollator):
    """Items → the Stage-1 batch mapping of their samples (one per row) + the items.

    Plain samples or packs (evaluation) collate to the Stage-1 mapping alone.
    """

    def __call__(
        self, items: Sequence[RolloutItem | EncodedSample | list[EncodedSample]]
    ) -> dict[str, Any]:
        """Collate ``items`` (all of one kind)."""
        rollout = [i for i in items if isinstance(i, RolloutItem)]
        if not rollout:
            return super().__call__([i for i in items if not isinstance(i, RolloutItem)])
        mapping = super().__call__([i.sample for i in rollout])
        mapping[ROLLOUT_ITEMS] = rollout
        return mapping
