"""``rollout_matching.monitor_dump``: the rollouts of a Channel-B step, as JSONL and PNGs.

The first Channel-B step at or after every ``every_steps``-th optimizer step (step 0
included) writes, on the main process, its first ``max_samples`` rollouts of the rank:

* ``<out_dir>/step_<step>.jsonl`` — one JSON object per rollout: ``step``,
  ``request_id``, ``source``, ``finish_reason``, ``rollout_tokens``, ``response_text``
  (cut to ``max_text_chars``), ``truncated``, ``dropped`` (reason → count), the parsed
  ``predicted`` and ground-truth ``gt`` objects (``{desc, kind, coords}``), the matched
  ``pairs`` (prediction, truth indices), ``fp`` and ``fn`` indices;
* ``<out_dir>/step_<step>_<k>.png`` — prediction (magenta) over ground truth (cyan),
  drawn by :func:`coordexp_train.evaluation.overlays.draw_overlay`.

At most ``max_events`` steps are dumped per run (process).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from coordexp_backends import Rollout
from coordexp_parse import DetObject
from coordexp_schema import MonitorDumpConfig
from coordexp_train.evaluation.overlays import draw_overlay
from coordexp_train.stage2.channel_b_sample import ChannelBSample
from coordexp_train.stage2.rollout_data import RolloutItem

MONITOR_DIR = "monitor_dump"
OVERLAY_SCALE = 2


def _object_json(o: DetObject) -> dict[str, Any]:
    return {"desc": o.desc, "kind": o.kind, "coords": list(o.coords)}


class MonitorDump:
    """Writes monitor dumps (see the module docstring).

    Args:
        cfg: ``rollout_matching.monitor_dump`` (must be enabled).
        out_dir: ``cfg.out_dir``, else ``<training.output_dir>/monitor_dump``.
    """

    def __init__(self, cfg: MonitorDumpConfig, out_dir: Path) -> None:
        self.cfg = cfg
        self.out_dir = out_dir
        self.events = 0
        self._next_step = 0

    def maybe_write(
        self,
        step: int,
        pairs: Sequence[tuple[RolloutItem, Rollout]],
        built: Sequence[ChannelBSample],
    ) -> list[Path]:
        """Dump this Channel-B step's rollouts when one is due; return the written files.

        ``pairs`` are (item, rollout) in step order and ``built`` their Channel-B samples.
        """
        if step < self._next_step or self.events >= self.cfg.max_events:
            return []
        self._next_step = (step // self.cfg.every_steps + 1) * self.cfg.every_steps
        self.events += 1
        self.out_dir.mkdir(parents=True, exist_ok=True)
        lines: list[str] = []
        written: list[Path] = []
        chosen = list(zip(pairs, built, strict=True))[: self.cfg.max_samples]
        for k, ((item, rollout), sample) in enumerate(chosen):
            predicted = [DetObject(o.desc, o.kind, o.coords) for o in sample.parse.objects]
            record = {
                "step": step,
                "request_id": item.request_id,
                "source": item.sample.source,
                "finish_reason": rollout.finish_reason,
                "rollout_tokens": sample.rollout_tokens,
                "response_text": rollout.response_text[: self.cfg.max_text_chars],
                "truncated": sample.parse.truncated,
                "dropped": dict(sample.parse.dropped),
                "predicted": [_object_json(o) for o in predicted],
                "gt": [_object_json(o) for o in item.gts],
                "pairs": [list(p) for p in sample.result.pairs],
                "fp": list(sample.result.fp),
                "fn": list(sample.result.fn),
            }
            lines.append(json.dumps(record, sort_keys=True))
            png = self.out_dir / f"step_{step:06d}_{k}.png"
            draw_overlay(item.image, item.gts, predicted, scale=OVERLAY_SCALE).save(png)
            written.append(png)
        jsonl = self.out_dir / f"step_{step:06d}.jsonl"
        jsonl.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
        return [jsonl, *written]
