"""Position ids of one sample for Qwen-VL's multimodal RoPE (images only).

The model takes ``position_ids`` of shape ``(4, batch, length)``: row 0 holds the plain
text positions ``0..L-1`` (transformers uses it to find where packed samples start: a
position that is not the previous one plus 1 opens a new sample, and attention never
crosses that boundary), rows 1–3 the temporal / height / width mRoPE positions.

mRoPE rule (as in transformers' ``get_rope_index`` of Qwen2.5-VL and Qwen3-VL for
images): text tokens advance all three rows together by 1; an image of ``t × h × w``
merged tokens (``h = grid_h / merge``, ``w = grid_w / merge``) starting at position ``p``
gets ``(p, p + i, p + j)`` for the token in merged row i, column j, and the text after
it resumes at ``p + max(h, w)``.

Positions are computed per sample, so a packed sequence is the concatenation of its
samples' positions, never a recomputation over the pack.
"""

from __future__ import annotations

import torch


def sample_position_ids(
    input_ids: torch.Tensor,
    image_grid_thw: torch.Tensor,
    *,
    image_token_id: int,
    spatial_merge_size: int,
) -> torch.Tensor:
    """The ``(4, L)`` position ids of one sample.

    Args:
        input_ids: ``(L,)`` token ids; each image is one run of ``image_token_id``.
        image_grid_thw: ``(num_images, 3)`` patch grids in image order.
        image_token_id: the id of ``<|image_pad|>``.
        spatial_merge_size: patches merged per side into one token (2 for Qwen-VL).

    Raises:
        ValueError: the image-token runs do not match the grids (count or length).
    """
    ids = input_ids.tolist()
    grids = [tuple(int(v) for v in g) for g in image_grid_thw.tolist()]
    rows: list[torch.Tensor] = []
    pos = 0
    i = 0
    image = 0
    while i < len(ids):
        if ids[i] != image_token_id:
            j = i
            while j < len(ids) and ids[j] != image_token_id:
                j += 1
            rows.append(torch.arange(pos, pos + j - i).expand(3, -1))
            pos += j - i
            i = j
            continue
        if image >= len(grids):
            raise ValueError(f"more image-token runs than image grids ({len(grids)})")
        t, gh, gw = grids[image]
        h, w = gh // spatial_merge_size, gw // spatial_merge_size
        n = t * h * w
        if ids[i : i + n] != [image_token_id] * n or (
            i + n < len(ids) and ids[i + n] == image_token_id
        ):
            raise ValueError(
                f"image {image}: expected a run of {n} image tokens for grid {grids[image]}"
            )
        tt, hh, ww = torch.meshgrid(
            torch.zeros(t, dtype=torch.long), torch.arange(h), torch.arange(w), indexing="ij"
        )
        rows.append(torch.stack([tt, hh, ww]).reshape(3, -1) + pos)
        pos += max(h, w)
        i += n
        image += 1
    if image != len(grids):
        raise ValueError(f"{len(grids)} image grids but {image} image-token runs")
    mrope = torch.cat(rows, dim=1) if rows else torch.zeros(3, 0, dtype=torch.long)
    text = torch.arange(len(ids)).unsqueeze(0)
    return torch.cat([text, mrope.to(torch.long)], dim=0)


def append_text_positions(position_ids: torch.Tensor, count: int) -> torch.Tensor:
    """``position_ids`` of a sample followed by ``count`` more text tokens, ``(4, L + count)``.

    Text advances every row by 1 from the last position (the mRoPE rows from their
    largest last value), so this equals :func:`sample_position_ids` of the extended
    sample without rescanning it.

    Raises:
        ValueError: ``position_ids`` is not ``(4, L)`` with ``L >= 1``, or ``count < 0``.
    """
    if position_ids.dim() != 2 or position_ids.shape[0] != 4 or position_ids.shape[1] < 1:
        raise ValueError(
            f"position_ids must be (4, L) with L >= 1, got {tuple(position_ids.shape)}"
        )
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    last = position_ids[:, -1]
    start = torch.stack([last[0], last[1:].max()]) + 1
    steps = torch.arange(count, dtype=position_ids.dtype)
    tail = torch.cat([start[0] + steps[None], (start[1] + steps).expand(3, -1)], dim=0)
    return torch.cat([position_ids, tail], dim=1)
