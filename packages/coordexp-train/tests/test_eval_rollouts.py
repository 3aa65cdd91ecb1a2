"""Predictions from a model: the built-in tiny model through the HF backend, parsed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from coordexp_backends import DecodeParams, HFBackend, Rollout, RolloutRequest
from coordexp_parse import parse_text
from coordexp_train.data.chat import prompt_messages
from coordexp_train.data.prompts import PromptSpec
from coordexp_train.data.synthetic import write_synthetic_dataset
from coordexp_train.data.synthetic_scene import SceneSpec
from coordexp_train.evaluation.ground_truth import GroundTruthImage, load_ground_truth
from coordexp_train.evaluation.rollouts import rollout_predictions
from coordexp_train.model.loading import load_model_and_processor
from coordexp_train.model.processor import set_image_size

GREEDY = DecodeParams(max_new_tokens=12)


def _rgb(path: Path) -> Image.Image:
    with Image.open(path) as im:
        return im.convert("RGB")


@dataclass(frozen=True)
class _Model:
    model: str = "builtin:tiny-qwen3-vl"
    dtype: str = "float32"
    attn_implementation: str = "eager"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[HFBackend, list[GroundTruthImage]]:
    base = tmp_path_factory.mktemp("rollouts")
    spec = SceneSpec(width=64, height=64)
    ds = write_synthetic_dataset(base / "ds", spec, num_train=1, num_val=3, seed=7)
    loaded = load_model_and_processor(_Model(), cache_dir=base / "cache")
    return HFBackend(loaded.model, loaded.processor, 2), load_ground_truth(ds.val_jsonl)


def test_one_parsed_prediction_per_image_in_order(
    setup: tuple[HFBackend, list[GroundTruthImage]],
) -> None:
    backend, gt = setup
    preds = rollout_predictions(backend, gt, GREEDY, chunk_size=2)
    assert [p.image_id for p in preds] == [g.image_id for g in gt]
    direct = backend.generate(
        [
            RolloutRequest(g.image_id, prompt_messages(PromptSpec()), (_rgb(g.image_path),))
            for g in gt
        ],
        GREEDY,
    )
    assert [p.raw_text for p in preds] == [r.response_text for r in direct]
    for p in preds:
        parsed = parse_text(p.raw_text)
        assert p.objects == tuple(o.to_det_object() for o in parsed.objects)
        assert p.ending == parsed.ending


def test_chunking_and_reruns_give_the_same_predictions(
    setup: tuple[HFBackend, list[GroundTruthImage]],
) -> None:
    backend, gt = setup
    assert rollout_predictions(backend, gt, GREEDY, chunk_size=1) == rollout_predictions(
        backend, gt, GREEDY, chunk_size=3, progress=True
    )


class _Reversed:
    """The real backend with its answers put in the wrong order (a broken backend)."""

    name = "reversed"

    def __init__(self, inner: HFBackend) -> None:
        self.inner = inner

    def generate(self, requests: Sequence[RolloutRequest], params: DecodeParams) -> list[Rollout]:
        return self.inner.generate(requests, params)[::-1]


def test_out_of_order_backend_is_refused(
    setup: tuple[HFBackend, list[GroundTruthImage]],
) -> None:
    backend, gt = setup
    with pytest.raises(ValueError, match="backends must keep request order"):
        rollout_predictions(_Reversed(backend), gt, GREEDY)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="chunk_size must be >= 1, got 0"):
        rollout_predictions(backend, gt, GREEDY, chunk_size=0)


def test_image_size_follows_max_pixels(
    setup: tuple[HFBackend, list[GroundTruthImage]],
) -> None:
    backend, gt = setup
    request = [RolloutRequest("a", prompt_messages(PromptSpec()), (_rgb(gt[0].image_path),))]
    lengths = []
    for max_pixels in (32 * 32, 64 * 64):
        set_image_size(backend.processor, max_pixels)
        lengths.append(len(backend.generate(request, GREEDY)[0].prompt_token_ids))
    assert lengths[1] > lengths[0]
    with pytest.raises(ValueError, match="max_pixels must be >= min_pixels"):
        set_image_size(backend.processor, 10)
