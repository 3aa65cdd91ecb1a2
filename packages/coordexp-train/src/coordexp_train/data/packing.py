"""Stage-1 packing: several samples per row, planned with coordexp-pack.

:func:`plan_packs` groups dataset indices into packs of at most ``capacity`` tokens
(``training.packing_length``, default ``global_max_length``) with coordexp-pack's
deterministic best-fit-decreasing packer; :class:`PackedDataset` serves one pack per
item and :func:`~coordexp_train.data.batch.collate_rows` lays each pack out as one batch
row (per-sample positions concatenated, never recomputed; see
:mod:`coordexp_train.data.batch`).

Policies:

* ``oversize="error"`` — a sample longer than ``capacity`` stops the plan, naming its
  record; ``"own_pack"`` — it gets a row of its own, longer than ``capacity`` (samples are
  never truncated; every sample already fits ``global_max_length``).
* ``min_fill_ratio`` and ``drop_last`` — the epoch is one call of coordexp-pack's
  :class:`~coordexp_pack.CarryPacker`: packs filled below the ratio are carried to the
  end of the epoch and packed together again; what is still below the ratio then is
  dropped (listed in :attr:`PackPlan.dropped`) under ``drop_last``, else trained as the
  epoch's last packs. Lone oversize packs are never carried.

The plan is a pure function of its inputs; :func:`epoch_order` gives the seeded sample
order of an epoch.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from torch.utils.data import Dataset

from coordexp_pack import CarryPacker, OversizePolicy, Segment
from coordexp_train.data.dataset import DetectionDataset
from coordexp_train.data.encode import EncodedSample


@dataclass(frozen=True, slots=True)
class PackPlan:
    """Dataset indices grouped into packs.

    Attributes:
        packs: each pack's dataset indices in layout order; packs ordered by their first
            sample's position in the input order.
        dropped: indices left out because their pack was under-filled.
        capacity: the token capacity the plan was made for.
    """

    packs: tuple[tuple[int, ...], ...]
    dropped: tuple[int, ...]
    capacity: int


def epoch_order(num_samples: int, *, seed: int, epoch: int) -> list[int]:
    """The shuffled sample order of ``epoch`` (the same for the same seed and epoch)."""
    order = list(range(num_samples))
    random.Random(f"coordexp-epoch:{seed}:{epoch}").shuffle(order)
    return order


def plan_packs(
    lengths: Sequence[int],
    sources: Sequence[str],
    order: Sequence[int],
    *,
    capacity: int,
    oversize: OversizePolicy = "error",
    min_fill_ratio: float = 0.0,
    drop_last: bool = False,
) -> PackPlan:
    """Pack the samples ``order`` lists (dataset indices) into packs of ``capacity`` tokens.

    Args:
        lengths: token length of every dataset sample.
        sources: every sample's record (``file:line``), used in errors.
        order: the dataset indices to pack, in input order.
        capacity: tokens per pack.
        oversize: ``error`` or ``own_pack`` (see the module docstring).
        min_fill_ratio: carry packs filled below this fraction to the end of the epoch.
        drop_last: drop the packs still below ``min_fill_ratio`` at the end of the epoch
            (else they are the epoch's last packs).

    Raises:
        ValueError: under ``error``, a sample longer than ``capacity``: the message names
            the record, its length, the capacity and the settings to change.
    """
    segments = [Segment(f"{sources[i]} (sample {i})", lengths[i]) for i in order]
    position = {segment.id: order[k] for k, segment in enumerate(segments)}
    packer = CarryPacker(
        capacity, min_fill_ratio=min_fill_ratio, drop_last=drop_last, oversize=oversize
    )
    epoch = packer.add(segments)
    end = packer.flush()
    kept = tuple(tuple(position[s.id] for s in p.segments) for p in (*epoch.packs, *end.packs))
    dropped = tuple(position[s.id] for s in end.dropped)
    return PackPlan(packs=kept, dropped=dropped, capacity=capacity)


class PackedDataset(Dataset[list[EncodedSample]]):
    """One item per pack of ``plan``: the pack's encoded samples in layout order."""

    def __init__(self, dataset: DetectionDataset, plan: PackPlan) -> None:
        self.dataset = dataset
        self.plan = plan

    def __len__(self) -> int:
        return len(self.plan.packs)

    def __getitem__(self, index: int) -> list[EncodedSample]:
        return [self.dataset[i] for i in self.plan.packs[index]]
