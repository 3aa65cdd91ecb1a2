"""Stage-1 batches: layout, coord indexing, packing plans, and packed == unpacked forwards."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from coordexp_train.data.batch import Batch, collate_rows, collate_samples
from coordexp_train.data.dataset import DetectionDataset
from coordexp_train.data.encode import IGNORE_INDEX, EncodedSample, SampleEncoder
from coordexp_train.data.packing import PackedDataset, epoch_order, plan_packs
from coordexp_train.data.prompts import PromptSpec
from coordexp_train.data.synthetic import write_synthetic_dataset
from coordexp_train.data.synthetic_scene import SceneSpec
from coordexp_train.model import LoadedModel


@pytest.fixture(scope="module")
def loaded(loaded: LoadedModel) -> LoadedModel:
    """The shared tiny model, in eval mode."""
    loaded.model.eval()
    return loaded


@pytest.fixture(scope="module")
def dataset(loaded: LoadedModel, tmp_path_factory: pytest.TempPathFactory) -> DetectionDataset:
    spec = SceneSpec(width=96, height=64, min_shapes=0, max_shapes=3)
    data = write_synthetic_dataset(tmp_path_factory.mktemp("syn"), spec, num_train=8, num_val=0)
    encoder = SampleEncoder(
        loaded.processor, prompt=PromptSpec(variant="short"), max_pixels=96 * 64, max_length=512
    )
    return DetectionDataset(data.train_jsonl, encoder)


def _pad(loaded: LoadedModel) -> int:
    pad = loaded.processor.tokenizer.pad_token_id
    assert isinstance(pad, int)
    return pad


def _logits(loaded: LoadedModel, batch: Batch) -> torch.Tensor:
    with torch.no_grad():
        logits: torch.Tensor = loaded.model(**batch.model_inputs()).logits
    return logits


def test_packed_forward_equals_unpacked_forwards(
    loaded: LoadedModel, dataset: DetectionDataset
) -> None:
    samples = [dataset[i] for i in range(5)]
    pad = _pad(loaded)
    packed = collate_rows([samples[:3], samples[3:]], pad_token_id=pad)
    assert packed.pixel_values.shape[0] == sum(s.pixel_values.shape[0] for s in samples)
    packed_logits = _logits(loaded, packed)
    for span in packed.samples:
        alone = _logits(loaded, collate_samples([samples[span.index]], pad_token_id=pad))[0]
        got = packed_logits[span.row, span.start : span.start + span.length]
        torch.testing.assert_close(got, alone, rtol=1e-4, atol=1e-4)


def test_positions_recomputed_over_the_pack_would_break_the_equality(
    loaded: LoadedModel, dataset: DetectionDataset
) -> None:
    """The control for the test above: the trap packing must avoid is visible here."""
    samples = [dataset[i] for i in range(2)]
    pad = _pad(loaded)
    packed = collate_rows([samples], pad_token_id=pad)
    width = packed.input_ids.shape[1]
    with torch.no_grad():
        wrong = loaded.model(
            input_ids=packed.input_ids,
            position_ids=torch.arange(width).expand(4, 1, width),
            pixel_values=packed.pixel_values,
            image_grid_thw=packed.image_grid_thw,
            use_cache=False,
        ).logits
    second = packed.samples[1]
    alone = _logits(loaded, collate_samples([samples[1]], pad_token_id=pad))[0]
    got = wrong[0, second.start : second.start + second.length]
    assert (got - alone).abs().max() > 1e-2


def test_batch_layout_padding_and_labels(loaded: LoadedModel, dataset: DetectionDataset) -> None:
    samples = [dataset[i] for i in range(3)]
    batch = collate_rows([samples[:2], samples[2:]], pad_token_id=_pad(loaded))
    lengths = [s.length for s in samples]
    assert batch.input_ids.shape == (2, lengths[0] + lengths[1])
    assert batch.padding_mask.sum().item() == sum(lengths)
    assert (batch.labels[~batch.padding_mask] == IGNORE_INDEX).all()
    assert (batch.input_ids[~batch.padding_mask] == _pad(loaded)).all()
    assert [(s.row, s.start) for s in batch.samples] == [(0, 0), (0, lengths[0]), (1, 0)]
    second = batch.samples[1]
    text_pos = batch.position_ids[0, 0, second.start : second.start + second.length]
    assert torch.equal(text_pos, torch.arange(second.length))
    tail = batch.position_ids[:, 1, lengths[2] :]
    assert torch.equal(tail[0], torch.arange(tail.shape[1]))
    assert batch.model_inputs()["use_cache"] is False


def test_coord_targets_point_at_the_logits_that_predict_them(
    loaded: LoadedModel, dataset: DetectionDataset
) -> None:
    samples = [dataset[i] for i in range(4)]
    batch = collate_rows([samples[:2], samples[2:]], pad_token_id=_pad(loaded))
    n = sum(s.coord_bins.numel() for s in samples)
    assert batch.coord_target_bins.numel() == n > 0
    next_tokens = batch.input_ids[batch.coord_batch_index, batch.coord_logit_position + 1]
    assert torch.equal(next_tokens - loaded.coord_vocab.first_id, batch.coord_target_bins)
    assert torch.equal(
        batch.labels[batch.coord_batch_index, batch.coord_logit_position + 1], next_tokens
    )
    boxes = batch.box_coord_index
    assert boxes.shape[1] == 4
    objs = batch.coord_object_index[boxes]
    assert (objs == objs[:, :1]).all()  # the 4 coords of a box belong to one object
    assert batch.coord_object_index.max().item() + 1 == sum(s.num_objects for s in samples)
    spans = batch.samples
    for i in range(n):
        span = spans[int(batch.coord_sample_index[i])]
        assert span.row == batch.coord_batch_index[i]
        assert span.start <= batch.coord_logit_position[i] < span.start + span.length


def test_collate_refuses_empty_rows(dataset: DetectionDataset) -> None:
    with pytest.raises(ValueError, match="every batch row needs at least one sample"):
        collate_rows([[dataset[0]], []], pad_token_id=0)


def test_pack_plan_covers_every_sample_within_capacity(dataset: DetectionDataset) -> None:
    order = epoch_order(len(dataset), seed=1, epoch=0)
    sources = [r.record.source for r in dataset.refs]
    capacity = 2 * max(dataset.lengths)
    plan = plan_packs(dataset.lengths, sources, order, capacity=capacity)
    members = sorted(i for p in plan.packs for i in p)
    assert members == list(range(len(dataset)))
    assert all(sum(dataset.lengths[i] for i in p) <= capacity for p in plan.packs)
    assert len(plan.packs) < len(dataset)
    packed = PackedDataset(dataset, plan)
    assert [s.index for s in packed[0]] == list(plan.packs[0])


def test_oversize_sample_names_its_record_or_gets_its_own_row(dataset: DetectionDataset) -> None:
    sources = [r.record.source for r in dataset.refs]
    longest = max(range(len(dataset)), key=dataset.lengths.__getitem__)
    capacity = dataset.lengths[longest] - 1
    order = list(range(len(dataset)))
    with pytest.raises(
        ValueError, match=rf"{sources[longest]} \(sample {longest}\).*packing_length"
    ):
        plan_packs(dataset.lengths, sources, order, capacity=capacity)
    plan = plan_packs(dataset.lengths, sources, order, capacity=capacity, oversize="own_pack")
    assert (longest,) in plan.packs


def test_under_filled_packs_are_dropped_and_listed_under_drop_last() -> None:
    plan = plan_packs([6, 6, 3], ["a", "b", "c"], [0, 1, 2], capacity=10, min_fill_ratio=0.5)
    assert plan.packs == ((0, 2), (1,))
    plan = plan_packs(
        [6, 6, 3], ["a", "b", "c"], [0, 1, 2], capacity=10, min_fill_ratio=0.7, drop_last=True
    )
    assert plan.packs == ((0, 2),)
    assert plan.dropped == (1,)


def test_under_filled_packs_are_the_epochs_last_packs_without_drop_last() -> None:
    # sample 0 fills half a pack: carried to the end of the epoch, then trained
    plan = plan_packs([5, 9], ["a", "b"], [0, 1], capacity=10, min_fill_ratio=0.8)
    assert plan.packs == ((1,), (0,))
    assert plan.dropped == ()
    plan = plan_packs([6, 6, 3], list("abc"), [0, 1, 2], capacity=10, min_fill_ratio=0.7)
    assert plan.packs == ((0, 2), (1,))
    assert plan.dropped == ()


@settings(max_examples=30, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 50), min_size=1, max_size=40),
    seed=st.integers(0, 1000),
    epoch=st.integers(0, 5),
)
def test_pack_plans_are_deterministic_partitions(lengths: list[int], seed: int, epoch: int) -> None:
    sources = [f"f:{i}" for i in range(len(lengths))]
    order = epoch_order(len(lengths), seed=seed, epoch=epoch)
    assert order == epoch_order(len(lengths), seed=seed, epoch=epoch)
    a = plan_packs(lengths, sources, order, capacity=60)
    assert a == plan_packs(lengths, sources, order, capacity=60)
    assert sorted(i for p in a.packs for i in p) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in p) <= 60 for p in a.packs)


def test_encoded_samples_survive_collation_unchanged(dataset: DetectionDataset) -> None:
    sample: EncodedSample = dataset[2]
    batch = collate_samples([sample], pad_token_id=0)
    assert torch.equal(batch.input_ids[0], sample.input_ids)
    assert torch.equal(batch.position_ids[:, 0], sample.position_ids)
    assert torch.equal(batch.pixel_values, sample.pixel_values)
    assert Path(sample.source.rsplit(":", 1)[0]).name == "train.jsonl"


def test_batch_to_moves_every_tensor_and_keeps_the_spans(dataset: DetectionDataset) -> None:
    batch = collate_samples([dataset[0], dataset[1]], pad_token_id=0)
    moved = batch.to(torch.device("meta"))
    assert moved.input_ids.device.type == "meta"
    assert moved.box_coord_index.device.type == "meta"
    assert moved.samples == batch.samples
    assert batch.input_ids.device.type == "cpu"
