"""A tiny random Qwen3 causal LM and byte-level BPE tokenizer, built offline and deterministically.

Test and benchmark helper (not part of the package): the tokenizer has Qwen's chat and
vision special tokens and the 1000 coord tokens; the model is float32 with head_dim 64
(what vLLM's CPU attention kernels accept).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

from coordexp_parse import all_coord_tokens, coord_token

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "<|im_start|>{{ message['role'] }}{{ '\\n' }}"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'text' -%}{{ part['text'] }}"
    "{%- elif part['type'] == 'image' -%}<|vision_start|><|image_pad|><|vision_end|>"
    "{%- endif -%}{%- endfor -%}{%- endif -%}"
    "<|im_end|>{{ '\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|im_start|>assistant{{ '\\n' }}{%- endif -%}"
)

WORDS = ["cat", "dog", "person", "car", "tree", "black", "small", "red", "left", "bowl"]


def _corpus(n: int = 300) -> list[str]:
    rng = random.Random(0)
    lines = []
    for _ in range(n):
        objs = []
        for k in range(rng.randint(0, 3)):
            desc = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 2)))
            box = ", ".join(f'"{coord_token(rng.randint(0, 999))}"' for _ in range(4))
            objs.append(f'"object_{k + 1}": {{"desc": "{desc}", "bbox_2d": [{box}]}}')
        lines.append("{" + ", ".join(objs) + "}")
        lines.append("Detect every object in the image. Answer with one JSON object.")
    return lines


def build_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (~400 merges) with the chat, vision and coord tokens."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=700,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=SPECIAL_TOKENS,
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS[1:],
    )
    fast.add_tokens(all_coord_tokens(), special_tokens=True)
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_model(
    tokenizer: PreTrainedTokenizerFast, hidden_size: int = 128, seed: int = 0
) -> Qwen3ForCausalLM:
    """A random 2-layer Qwen3 (head_dim 64, float32), eos = ``<|im_end|>``."""
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=64,
        max_position_embeddings=1024,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.pad_token_id,
        eos_token_id=im_end,
        pad_token_id=tokenizer.pad_token_id,
        torch_dtype="float32",
    )
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(config).float().eval()
    model.generation_config.eos_token_id = im_end
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = tokenizer.pad_token_id
    return model


def save(model: Any, tokenizer: Any, path: Path) -> Path:
    """Save model, generation config and tokenizer to ``path`` (a vLLM-loadable folder)."""
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def requests(n: int, seed: int = 0) -> list[Any]:
    """``n`` text-only chat requests of varied lengths, ids ``r0``… ."""
    from coordexp_backends import RolloutRequest

    rng = random.Random(seed)
    out = []
    for i in range(n):
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 12)))
        messages = [{"role": "user", "content": f"Detect: {words}"}]
        out.append(RolloutRequest(request_id=f"r{i}", messages=messages))
    return out
