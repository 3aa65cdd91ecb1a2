"""The examples in docs/data-contract.md are what the code does."""

from __future__ import annotations

import json
import re
from pathlib import Path

from coordexp_parse import (
    canonical_object,
    canonical_order,
    parse_text,
    render_objects,
    validate_record,
)

DOC = Path(__file__).resolve().parents[3] / "docs" / "data-contract.md"


def test_the_documented_record_renders_to_the_documented_answer() -> None:
    text = DOC.read_text()
    record_block = re.search(r"```json\n(.*?)```", text, re.DOTALL)
    answer_block = re.search(r"```text\n(\{.*?)<\|im_end\|>\n```", text, re.DOTALL)
    assert record_block is not None
    assert answer_block is not None
    record = validate_record(json.loads(record_block.group(1)))
    objects = canonical_order([canonical_object(o) for o in record.det_objects()])
    assert render_objects(objects) == answer_block.group(1)
    assert [o.to_det_object() for o in parse_text(answer_block.group(1)).objects] == objects
