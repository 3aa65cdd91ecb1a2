r"""The Qwen-style chat template of the built-in tiny model, as a Jinja string.

Turns are ``<|im_start|>{role}\n{content}<|im_end|>\n``; an image part of a message
becomes ``<|vision_start|><|image_pad|><|vision_end|>`` (the processor expands the single
``<|image_pad|>`` to one pad per merged image patch), a video part the same with
``<|video_pad|>``. ``add_generation_prompt`` appends ``<|im_start|>assistant\n``. There is
no default system message: one appears only when the messages hold it.
"""

from __future__ import annotations

CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}"
    "{{- message['content'] -}}"
    "{%- else -%}"
    "{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' -%}"
    "{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}"
    "{%- elif part['type'] == 'video' -%}"
    "{{- '<|vision_start|><|video_pad|><|vision_end|>' -}}"
    "{%- elif part['type'] == 'text' -%}"
    "{{- part['text'] -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- endif -%}"
)
