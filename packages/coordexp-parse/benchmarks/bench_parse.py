"""Parse speed against json.loads of the same answer, side by side in one run.

    uv run python packages/coordexp-parse/benchmarks/bench_parse.py

Answers of 1, 20, 60 and 200 objects (bboxes, or 8-point polygons), clean (closed and
ended by <|im_end|>) or truncated in the middle of the last object, tokenized by a real
byte-level BPE fast tokenizer (the tests' tokenizer: trained on answers, so structure
merges like Qwen's). For a truncated answer json.loads is timed on its retained prefix
closed with "}" (the full text is not JSON). "+ token spans" is parse_rollout followed by
reading the prefix token spans (summed on first read). Times are minimums over many short
repeats.
"""

from __future__ import annotations

import importlib.util
import json
import random
import sys
import timeit
from pathlib import Path
from typing import Any

from coordexp_parse import (
    DetObject,
    build_injection,
    parse_rollout,
    parse_text,
    parser_for,
    render_objects,
)
from coordexp_parse.scanner import scan_text, stop_index
from coordexp_parse.tokens import _id_text

DESCS = ["black cat", "red square", "person", "traffic light", "dog", "blue circle"]


def load_tokenizer() -> Any:
    path = Path(__file__).parents[1] / "tests" / "parse_testing.py"
    spec = importlib.util.spec_from_file_location("coordexp_parse_testing", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.hf_tokenizer()


def answer(n: int, kind: str, rng: random.Random) -> str:
    objects = []
    for _ in range(n):
        if kind == "bbox":
            x1, x2 = sorted(rng.randrange(1000) for _ in range(2))
            y1, y2 = sorted(rng.randrange(1000) for _ in range(2))
            objects.append(DetObject(rng.choice(DESCS), "bbox_2d", (x1, y1, x2, y2)))
        else:
            coords = tuple(rng.randrange(1000) for _ in range(16))
            objects.append(DetObject(rng.choice(DESCS), "poly", coords))
    return render_objects(objects)


def best(fn: Any) -> float:
    """Seconds per call: the minimum over repeats of about 2 ms (at least 60, ~0.8 s)."""
    start = timeit.default_timer()
    fn()
    once = max(timeit.default_timer() - start, 1e-7)
    number = max(1, int(2e-3 / once))
    repeat = max(60, int(0.8 / (number * once)))
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number


def main() -> None:
    tok = load_tokenizer()
    parser_for(tok)  # build the parser (coord-token checks) outside the timings
    rng = random.Random(0)
    print(
        f"{'objects':>7} {'kind':>4} {'state':>9} {'tokens':>6} {'chars':>6} "
        f"{'json.loads':>11} {'parse_text':>16} {'parse_rollout':>17} {'+ token spans':>17}"
    )
    rollout_us: dict[tuple[str, str, int], float] = {}
    for kind in ("bbox", "poly"):
        for state in ("clean", "truncated"):
            for n in (1, 20, 60, 200):
                text = answer(n, kind, rng)
                if state == "clean":
                    ids = tok.encode(text + "<|im_end|>", add_special_tokens=False)
                    ref = text
                else:
                    ids = tok.encode(text, add_special_tokens=False)
                    ids = ids[: len(ids) - 12]
                    ref = parse_rollout(ids, tok).prefix_text + "}"
                rtext = tok.decode(ids)
                parse_rollout(ids, tok)  # warm the per-token piece cache
                t_json = best(lambda ref=ref: json.loads(ref))
                t_text = best(lambda rtext=rtext: parse_text(rtext))
                t_roll = best(lambda ids=ids: parse_rollout(ids, tok))
                t_spans = best(lambda ids=ids: parse_rollout(ids, tok).prefix_token_ends)
                rollout_us[(kind, state, n)] = t_roll
                print(
                    f"{n:>7} {kind:>4} {state:>9} {len(ids):>6} {len(rtext):>6} "
                    f"{t_json * 1e6:>9.1f}us {t_text * 1e6:>8.1f}us {t_text / t_json:>5.1f}x "
                    f"{t_roll * 1e6:>9.1f}us {t_roll / t_json:>5.1f}x "
                    f"{t_spans * 1e6:>9.1f}us {t_spans / t_json:>5.1f}x"
                )
    print("\nbuild_injection (bbox rollout truncated in its last object, every other object")
    print("matched, 5 FN bboxes injected), against parse_rollout of the same rollout:")
    fn = [DetObject("dog", "bbox_2d", (10 * i, 10, 10 * i + 50, 90)) for i in range(5)]
    for n in (1, 20, 60, 200):
        ids = tok.encode(answer(n, "bbox", rng), add_special_tokens=False)[:-12]
        parse = parse_rollout(ids, tok)
        matched = list(range(0, len(parse.objects), 2))
        t_inj = best(
            lambda parse=parse, matched=matched: build_injection(parse, fn, tok, matched=matched)
        )
        t_roll = best(lambda ids=ids: parse_rollout(ids, tok))
        print(f"{n:>7} objects: {t_inj * 1e6:>9.1f}us  ({t_inj / t_roll:.1f}x parse_rollout)")
    breakdown(tok, rng)
    print("\nlinearity, parse_rollout time of 200 objects / 60 objects (3.3 = linear):")
    for kind in ("bbox", "poly"):
        for state in ("clean", "truncated"):
            ratio = rollout_us[(kind, state, 200)] / rollout_us[(kind, state, 60)]
            print(f"  {kind:>4} {state:>9}: {ratio:.2f}")


def breakdown(tok: Any, rng: random.Random) -> None:
    """Each stage of parse_rollout alone, on one clean 60-bbox rollout (internals).

    Stages that are differences of two timings are sensitive to load; each timing is the
    best of three ``best`` runs.
    """

    def best3(fn: Any) -> float:
        return min(best(fn) for _ in range(3))

    parser = parser_for(tok)
    text = answer(60, "bbox", rng)
    ids = tok.encode(text + "<|im_end|>", add_special_tokens=False)
    id_text = _id_text(ids)
    t_json = best3(lambda: json.loads(text))
    t_ids = best3(lambda: _id_text(ids))
    t_text = best3(lambda: stop_index(parser._tile(ids, True)[1]))  # type: ignore[index]
    t_spelling = best3(lambda: parser._occurrence_locator(id_text, text))
    t_scan = best3(lambda: scan_text(text))
    t_located = best3(lambda: scan_text(text, parser._occurrence_locator(id_text, text)))
    t_parse = best3(lambda: parse_rollout(ids, tok))
    t_spans = best3(lambda: parse_rollout(ids, tok).prefix_token_ends)
    rows = [
        ("json.loads of the answer", t_json),
        ("ids as a string (array, UTF-32)", t_ids),
        ("text (piece table, join, stop)", t_text),
        ("spelling check", t_spelling),
        ("scan of the text (entries, objects)", t_scan),
        ("locating the coord tokens", t_located - t_scan - t_spelling),
        ("prefix ids and result", t_parse - t_located - t_ids - t_text),
        ("parse_rollout", t_parse),
        ("prefix token spans when read", t_spans - t_parse),
    ]
    print(f"\nwhere parse_rollout's time goes ({len(ids)} tokens, 60 bboxes, clean):")
    for name, t in rows:
        print(f"  {name:<36} {t * 1e6:>7.1f}us {t / t_json:>5.1f}x")


if __name__ == "__main__":
    main()
