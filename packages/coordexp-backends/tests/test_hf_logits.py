"""The HF repeat-terminate logits processor: incremental, and equal to the pure detector."""

from __future__ import annotations

from typing import Any

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.overrides import TorchFunctionMode

from coordexp_backends import RepeatTerminate, RepeatTerminateParams
from coordexp_backends.hf import RepeatTerminateLogits

EOS = 0
VOCAB = 6
PIECES = ['"object_1"', "x", '"obj', 'ect_2"', ":", " "]
RULES = st.builds(
    RepeatTerminateParams,
    min_new_tokens=st.integers(0, 4),
    max_consecutive_token_repeats=st.one_of(st.none(), st.integers(1, 4)),
    ngram_size=st.just(2),
    ngram_repeats=st.integers(2, 3),
    max_object_keys=st.one_of(st.none(), st.integers(1, 3)),
)


def run_like_generate(
    proc: RepeatTerminateLogits, sequences: torch.Tensor, prompt_len: int
) -> list[list[bool]]:
    """Call ``proc`` as ``generate`` does (one more column per step); rows forced to eos."""
    forced = []
    for end in range(prompt_len, sequences.shape[1] + 1):
        scores = proc(sequences[:, :end], torch.zeros(sequences.shape[0], VOCAB))
        forced.append([bool(torch.isinf(row).sum() == VOCAB - 1) for row in scores])
    return forced


@settings(max_examples=60, deadline=None)
@given(
    rules=RULES,
    prompt_len=st.integers(1, 5),
    rows=st.lists(st.lists(st.integers(0, VOCAB - 1), min_size=12, max_size=12), min_size=1,
                  max_size=4),
)  # fmt: skip
def test_the_processor_forces_eos_exactly_where_the_pure_detector_fires(
    rules: RepeatTerminateParams, prompt_len: int, rows: list[list[int]]
) -> None:
    detector = RepeatTerminate(rules, PIECES.__getitem__)
    prompt = torch.full((len(rows), prompt_len), 5)
    sequences = torch.cat([prompt, torch.tensor(rows)], dim=1)
    proc = RepeatTerminateLogits(
        [RepeatTerminate(rules, PIECES.__getitem__) for _ in rows], prompt_len, EOS
    )
    forced = run_like_generate(proc, sequences, prompt_len)
    for step, flags in enumerate(forced):
        assert flags == [detector.check(row[:step]) is not None for row in rows]


class _ToListSizes(TorchFunctionMode):
    """Records how many elements every ``Tensor.tolist`` call copies to Python."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if func is torch.Tensor.tolist:
            self.sizes.append(int(args[0].numel()))
        return func(*args, **(kwargs or {}))


def test_each_step_reads_only_the_newly_generated_column() -> None:
    rules = RepeatTerminateParams(max_consecutive_token_repeats=50)
    batch, prompt_len, steps = 3, 4, 40
    sequences = torch.randint(1, VOCAB, (batch, prompt_len + steps))
    proc = RepeatTerminateLogits([RepeatTerminate(rules) for _ in range(batch)], prompt_len, EOS)
    with _ToListSizes() as mode:
        run_like_generate(proc, sequences, prompt_len)
    assert len(mode.sizes) == steps + 1
    assert max(mode.sizes) == batch  # O(T) in all, not O(T^2)
