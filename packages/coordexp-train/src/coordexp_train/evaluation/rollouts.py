"""Predictions from a model: roll out every ground-truth image through a backend, parse.

Any ``coordexp_backends.RolloutBackend`` works (HF, vLLM colocate, vLLM server). Each
image becomes one ``RolloutRequest`` whose id is the image id, with the training prompt
(``coordexp_train.data.chat.prompt_messages``) and the image as stored (RGB); image
sizing is the backend processor's, so set it to the training ``template.min_pixels`` /
``template.max_pixels`` with ``coordexp_train.model.set_image_size``. Each answer is parsed with
``coordexp_parse.parse_text``.
"""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image
from tqdm import tqdm

from coordexp_backends import DecodeParams, RolloutBackend, RolloutRequest
from coordexp_train.data.chat import prompt_messages
from coordexp_train.data.prompts import PromptSpec
from coordexp_train.evaluation.ground_truth import GroundTruthImage
from coordexp_train.evaluation.predictions import ImagePrediction, prediction_from_text


def _request(image: GroundTruthImage, prompt: PromptSpec) -> RolloutRequest:
    with Image.open(image.image_path) as im:
        rgb = im.convert("RGB")
    return RolloutRequest(image.image_id, prompt_messages(prompt), (rgb,))


def rollout_predictions(
    backend: RolloutBackend,
    ground_truth: Sequence[GroundTruthImage],
    params: DecodeParams,
    *,
    prompt: PromptSpec | None = None,
    chunk_size: int = 16,
    progress: bool = False,
) -> list[ImagePrediction]:
    """Answer every image with ``backend`` and parse the answers, in ground-truth order.

    Images are loaded and sent ``chunk_size`` at a time (the backend batches further as
    it is configured). With ``progress`` a tqdm bar on stderr shows images and images/s.
    Greedy decoding (``params.temperature == 0``) gives the same predictions on every
    run with the same backend and weights.

    Raises:
        ValueError: ``chunk_size`` < 1.
        OSError: an image cannot be read.
        coordexp_backends.RolloutError: the backend failed (names the request ids).
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    spec = prompt if prompt is not None else PromptSpec()
    out: list[ImagePrediction] = []
    with tqdm(total=len(ground_truth), unit="img", disable=not progress) as bar:
        for start in range(0, len(ground_truth), chunk_size):
            chunk = ground_truth[start : start + chunk_size]
            rollouts = backend.generate([_request(g, spec) for g in chunk], params)
            for g, r in zip(chunk, rollouts, strict=True):
                if r.request_id != g.image_id:
                    raise ValueError(
                        f"backend answered request {r.request_id!r} where {g.image_id!r} "
                        "was expected; backends must keep request order"
                    )
                out.append(prediction_from_text(g.image_id, r.response_text))
            bar.update(len(chunk))
    return out
