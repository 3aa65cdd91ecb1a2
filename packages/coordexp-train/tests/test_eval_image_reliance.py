"""Real vs shuffled images: the rotation is exact and the measurement sees a changed image."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from coordexp_train.data import DetectionDataset, PromptSpec, SampleEncoder, collate_samples
from coordexp_train.data.synthetic import write_synthetic_dataset
from coordexp_train.data.synthetic_scene import SceneSpec
from coordexp_train.evaluation.image_reliance import (
    RELIANCE_PARTS,
    image_reliance,
    rotate_images,
)
from coordexp_train.losses import Stage1LossWeights
from coordexp_train.model import LoadedModel


@pytest.fixture(scope="module")
def val(tmp_path_factory: pytest.TempPathFactory, loaded: LoadedModel) -> DetectionDataset:
    root = tmp_path_factory.mktemp("reliance") / "ds"
    ds = write_synthetic_dataset(root, SceneSpec(width=64, height=64), num_train=0, num_val=3)
    encoder = SampleEncoder(
        loaded.processor, prompt=PromptSpec(variant="short"), max_pixels=4096, max_length=1024
    )
    return DetectionDataset(ds.val_jsonl, encoder)


def test_rotation_moves_each_image_to_the_previous_sample(
    val: DetectionDataset, loaded: LoadedModel
) -> None:
    samples = [val[i] for i in range(3)]
    batch = collate_samples(samples, pad_token_id=0)
    rotated = rotate_images(batch)
    for i in range(3):
        assert torch.equal(
            rotated.pixel_values[i * 16 : (i + 1) * 16], samples[(i + 1) % 3].pixel_values
        )
    assert torch.equal(rotated.input_ids, batch.input_ids)
    assert torch.equal(rotated.labels, batch.labels)


def test_rotation_refuses_one_image_or_mixed_sizes(val: DetectionDataset) -> None:
    one = collate_samples([val[0]], pad_token_id=0)
    with pytest.raises(ValueError, match="at least two images of one size"):
        rotate_images(one)
    two = collate_samples([val[0], val[1]], pad_token_id=0)
    mixed = replace(two, image_grid_thw=torch.tensor([[1, 4, 4], [1, 2, 8]]))
    with pytest.raises(ValueError, match=r"got grids \[\[1, 4, 4\], \[1, 2, 8\]\]"):
        rotate_images(mixed)


def test_measurement_reports_both_runs_and_restores_the_mode(
    val: DetectionDataset, loaded: LoadedModel
) -> None:
    loaded.model.train()
    r = image_reliance(
        loaded.model,
        [val[i] for i in range(3)],
        coord_token_ids=torch.tensor(loaded.coord_vocab.ids),
        weights=Stage1LossWeights(),
        pad_token_id=int(loaded.processor.tokenizer.pad_token_id),
    )
    assert loaded.model.training
    assert set(r.real) == set(r.shuffled) == set(RELIANCE_PARTS)
    # even the random model's loss moves a little when the images are swapped
    assert any(r.real[p] != r.shuffled[p] for p in RELIANCE_PARTS)


def test_builtin_vision_position_table_starts_at_the_recipe_scale(loaded: LoadedModel) -> None:
    table = loaded.model.model.visual.pos_embed.weight
    assert float(table.detach().std()) == pytest.approx(0.5, rel=0.05)
