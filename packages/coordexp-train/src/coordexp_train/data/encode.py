r"""Tokenising one chat sample: input ids, labels, positions, image patches, coord targets.

Layout of a sample of length L::

    [prompt: chat template up to "<|im_start|>assistant\n", the image expanded to its
     <|image_pad|> tokens] [answer tokens] [<|im_end|>]

* ``labels`` are aligned with ``input_ids`` (the Hugging Face convention): ``labels[t]``
  is ``input_ids[t]`` where supervised and -100 elsewhere; the logits at position
  ``t - 1`` are scored against it. Only the answer and its ``<|im_end|>`` are supervised.
* ``coord_positions`` are the token positions t of the answer's coord tokens, in answer
  order, with their bins in ``coord_bins`` (so their logits are at ``t - 1``);
  ``coord_object`` gives each one's object index (answer order) and ``box_slots`` lists,
  for every ``bbox_2d`` object, the indices of its 4 coords (x1, y1, x2, y2) into those
  arrays. Polygons have coord targets but no box slots.
* The answer is tokenised on its own, exactly as the model generates it after the
  prompt; the prompt (with the image) goes through the checkpoint's processor, which
  resizes the image so its pixel count lies within ``[min_pixels, max_pixels]`` with
  both sides multiples of ``patch_size × merge_size`` (Qwen-VL's ``smart_resize``).
  Coordinates are norm1000 fractions of the image, so resizing never changes a target.

The token length of a sample is known before its image is decoded
(:meth:`SampleEncoder.measure`: image size → patch count → pad tokens), which is what
length checks and packing use; :meth:`SampleEncoder.encode` checks it got the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias

import torch
from PIL import Image

from coordexp_parse import NUM_BINS, Record, coord_value
from coordexp_train.data.chat import ObjectOrder, answer_objects, answer_text, prompt_messages
from coordexp_train.data.prompts import PromptSpec
from coordexp_train.data.rope import sample_position_ids
from coordexp_train.data.samples import SampleError

IGNORE_INDEX = -100
#: An answer object's geometry kind and flat norm1000 coords.
Geometry: TypeAlias = tuple[str, tuple[int, ...]]
END_OF_TURN = "<|im_end|>"


@dataclass(frozen=True, slots=True)
class EncodedSample:
    """One tokenised sample (see the module docstring for the conventions).

    Attributes:
        input_ids: ``(L,)`` token ids.
        labels: ``(L,)`` ids at supervised positions, -100 elsewhere.
        position_ids: ``(4, L)``: text positions ``0..L-1``, then the 3 mRoPE rows.
        pixel_values: ``(patches, channels × temporal × patch²)`` image patches.
        image_grid_thw: ``(1, 3)`` the image's patch grid.
        coord_positions: ``(N,)`` positions of the answer's coord tokens.
        coord_bins: ``(N,)`` their bins in 0..999.
        coord_object: ``(N,)`` their object index in answer order.
        box_slots: ``(M, 4)`` indices into the coord arrays of each bbox's x1, y1, x2, y2.
        source: the record, ``"file:line"``.
        index: the sample's index in its dataset.
        num_objects: objects in the answer.
    """

    input_ids: torch.Tensor
    labels: torch.Tensor
    position_ids: torch.Tensor
    pixel_values: torch.Tensor
    image_grid_thw: torch.Tensor
    coord_positions: torch.Tensor
    coord_bins: torch.Tensor
    coord_object: torch.Tensor
    box_slots: torch.Tensor
    source: str
    index: int
    num_objects: int

    @property
    def length(self) -> int:
        """Tokens in the sample."""
        return int(self.input_ids.shape[0])


class SampleEncoder:
    """Turns records into :class:`EncodedSample` for one processor and template.

    Args:
        processor: a Qwen-VL processor (``tokenizer``, ``image_processor``,
            ``image_token``, ``apply_chat_template``).
        prompt: the prompt wording and answer field order.
        max_pixels: upper bound on the resized image's pixel count.
        min_pixels: lower bound; None means no upscaling beyond one merged patch.
        object_order: ``sorted`` or ``random`` (see :mod:`coordexp_train.data.chat`).
        seed: seeds the ``random`` object order.
        max_length: ``global_max_length``; longer samples raise ``too_long``.
    """

    def __init__(
        self,
        processor: Any,
        *,
        prompt: PromptSpec,
        max_pixels: int,
        min_pixels: int | None = None,
        object_order: ObjectOrder = "sorted",
        seed: int = 0,
        max_length: int,
    ) -> None:
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.prompt = prompt
        self.object_order = object_order
        self.seed = seed
        self.max_length = max_length
        image_processor = processor.image_processor
        self.merge_size = int(image_processor.merge_size)
        factor = int(image_processor.patch_size) * self.merge_size
        self.min_pixels = min_pixels if min_pixels is not None else factor * factor
        self.max_pixels = max_pixels
        if self.max_pixels < factor * factor:
            raise ValueError(
                f"template.max_pixels must be at least {factor * factor} (one merged patch of "
                f"{factor}x{factor} pixels), got {max_pixels}"
            )
        self.image_token = processor.image_token
        self.image_token_id = int(self.tokenizer.convert_tokens_to_ids(self.image_token))
        self.end_id = int(self.tokenizer.convert_tokens_to_ids(END_OF_TURN))
        self.prompt_text: str = processor.apply_chat_template(
            prompt_messages(prompt), add_generation_prompt=True, tokenize=False
        )
        before, sep, after = self.prompt_text.partition(self.image_token)
        if not sep or self.image_token in after:
            raise ValueError(
                f"the chat template must place exactly one {self.image_token} for the image"
            )
        self._prompt_text_ids = len(self._ids(before)) + len(self._ids(after))

    def _ids(self, text: str) -> list[int]:
        ids: list[int] = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return ids

    def image_tokens(self, width: int, height: int) -> int:
        """Pad tokens an image of ``width × height`` pixels becomes after resizing."""
        patches = self.processor.image_processor.get_number_of_image_patches(
            height, width, {"min_pixels": self.min_pixels, "max_pixels": self.max_pixels}
        )
        return int(patches) // (self.merge_size * self.merge_size)

    def answer(self, record: Record, index: int) -> tuple[str, list[int], list[Geometry]]:
        """The answer text, its token ids (with ``<|im_end|>``) and its (kind, coords) list."""
        objects = answer_objects(record, order=self.object_order, seed=self.seed, index=index)
        text = answer_text(objects, self.prompt)
        return text, [*self._ids(text), self.end_id], [(o.kind, o.coords) for o in objects]

    def measure(self, record: Record, index: int) -> int:
        """The token length of the sample, without decoding its image.

        Raises:
            SampleError: ``too_long`` when it exceeds ``max_length``.
        """
        _, answer_ids, _ = self.answer(record, index)
        return self._checked_length(record, len(answer_ids))

    def _checked_length(self, record: Record, answer_length: int) -> int:
        image = self.image_tokens(record.width, record.height)
        length = self._prompt_text_ids + image + answer_length
        if length > self.max_length:
            raise SampleError(
                record.source,
                "too_long",
                f"the sample is {length} tokens, longer than global_max_length "
                f"{self.max_length}; samples are never truncated: raise global_max_length, "
                "lower template.max_pixels, or set data.on_invalid: skip to leave it out",
            )
        return length

    def encode(self, record: Record, image: Image.Image, index: int) -> EncodedSample:
        """Tokenise one sample (see the module docstring).

        Raises:
            SampleError: ``too_long`` (see :meth:`measure`).
            RuntimeError: the tokenizer does not keep coord tokens whole, or the processor
                made a different number of image tokens than :meth:`measure` predicted.
        """
        _, answer_ids, geometries = self.answer(record, index)
        expected = self._checked_length(record, len(answer_ids))
        enc = self.processor(
            text=[self.prompt_text],
            images=[image],
            return_tensors="pt",
            size={"shortest_edge": self.min_pixels, "longest_edge": self.max_pixels},
        )
        prompt_ids = enc["input_ids"][0]
        input_ids = torch.cat([prompt_ids, torch.tensor(answer_ids, dtype=torch.long)])
        if input_ids.shape[0] != expected:
            raise RuntimeError(
                f"{record.source}: the processor produced {input_ids.shape[0]} tokens but "
                f"{expected} were predicted from the image size; the image processor's "
                "resize rule differs from get_number_of_image_patches"
            )
        labels = torch.full_like(input_ids, IGNORE_INDEX)
        labels[prompt_ids.shape[0] :] = input_ids[prompt_ids.shape[0] :]
        coords = self._coord_targets(answer_ids, geometries, record.source)
        offset = prompt_ids.shape[0]
        grid = enc["image_grid_thw"]
        return EncodedSample(
            input_ids=input_ids,
            labels=labels,
            position_ids=sample_position_ids(
                input_ids,
                grid,
                image_token_id=self.image_token_id,
                spatial_merge_size=self.merge_size,
            ),
            pixel_values=enc["pixel_values"],
            image_grid_thw=grid,
            coord_positions=coords[0] + offset,
            coord_bins=coords[1],
            coord_object=coords[2],
            box_slots=coords[3],
            source=record.source,
            index=index,
            num_objects=len(geometries),
        )

    def _coord_targets(
        self,
        answer_ids: list[int],
        geometries: list[Geometry],
        source: str,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        pieces = self.tokenizer.convert_ids_to_tokens(answer_ids)
        found = [(t, v) for t, p in enumerate(pieces) if (v := coord_value(p)) is not None]
        expected = [v for _, coords in geometries for v in coords]
        if [v for _, v in found] != expected:
            raise RuntimeError(
                f"{source}: the answer's coord tokens did not tokenise to single coord ids "
                f"({len(found)} found, {len(expected)} expected); the tokenizer must hold "
                f"all {NUM_BINS} <|coord_k|> tokens"
            )
        objects: list[int] = []
        boxes: list[list[int]] = []
        for obj, (kind, coords) in enumerate(geometries):
            if kind == "bbox_2d":
                boxes.append(list(range(len(objects), len(objects) + 4)))
            objects.extend([obj] * len(coords))
        return (
            torch.tensor([t for t, _ in found], dtype=torch.long),
            torch.tensor(expected, dtype=torch.long),
            torch.tensor(objects, dtype=torch.long),
            torch.tensor(boxes, dtype=torch.long).reshape(-1, 4),
        )
