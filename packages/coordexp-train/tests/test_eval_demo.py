"""The demo script in quick mode, and the report page it writes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from PIL import Image

from coordexp_train.evaluation.curves import PANEL_SIZE
from coordexp_train.evaluation.demo_report import (
    FIGURE_COLUMNS,
    Evaluation,
    StageTiming,
    render_demo_report,
)

ROOT = Path(__file__).resolve().parents[3]


def _report(map50: float) -> dict[str, dict[str, float | None]]:
    return {
        "coco": {"mAP": 0.25, "mAP50": map50, "mAP75": 0.125, "AR100": 0.5},
        "set": {"precision": 0.75, "recall": 0.5, "f1": 0.6},
        "parse_health": {"valid_object_rate": None, "truncation_rate": 0.0},
    }


def test_report_page_holds_every_figure_and_time() -> None:
    kwargs = {
        "title": "Demo",
        "summary": "What ran.",
        "evaluations": [
            Evaluation("Stage 1, before", "builtin:x", _report(0.0)),
            Evaluation("Stage 1, after", "ckpt", _report(0.875)),
        ],
        "timings": [StageTiming("Stage 1", 120, 61.25, 58.5)],
        "machine": {"CPU cores visible": "2"},
        "commands": ["uv run python scripts/demo.py"],
        "images": {"Curves": "demo/curves.png"},
        "notes": ["Stage 2 AB was skipped."],
    }
    page = render_demo_report(**kwargs)  # type: ignore[arg-type]
    assert page == render_demo_report(**kwargs)  # type: ignore[arg-type]
    header = "| evaluation | " + " | ".join(FIGURE_COLUMNS) + " |"
    assert header in page
    assert (
        "| Stage 1, after | 0.250 | 0.875 | 0.125 | 0.500 | 0.750 | 0.500 | 0.600 | – | 0.000 |"
        in page
    )
    assert "| Stage 1 | 120 | 61.2 | 58.5 |" in page
    assert "![Curves](demo/curves.png)" in page
    assert "Stage 2 AB was skipped." in page
    assert "- CPU cores visible: 2" in page


def test_quick_demo_writes_the_page_and_every_picture(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "COORDEXP_CACHE_DIR": str(tmp_path / "cache"),
        "OMP_NUM_THREADS": "1",
    }
    report = tmp_path / "demo.md"
    out = tmp_path / "pictures"
    cmd = [sys.executable, str(ROOT / "scripts" / "demo.py"), "--quick"]
    cmd += ["--out", str(out), "--report", str(report), "--work", str(tmp_path / "work")]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    page = report.read_text()
    for row in ("Stage 1, before", "Stage 1, after", "Stage 2 AB, after"):
        assert re.search(rf"^\| {row} \| [0-9.]+ \| [0-9.]+ \|", page, re.M), row
    assert re.search(r"^\| Stage 1 \| 2 \| [0-9.]+ \| [0-9.]+ \|$", page, re.M)
    assert re.search(r"^\| Stage 2 AB \| 2 \| [0-9.]+ \| [0-9.]+ \|$", page, re.M)
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", page)
    assert len(links) == 2
    for link in links:
        assert (report.parent / link).is_file(), link
    with Image.open(out / "stage1_curves.png") as curves:
        # loss, eval_mAP50 and eval_recall: one panel each
        assert curves.size == (PANEL_SIZE[0], 3 * PANEL_SIZE[1])
    with Image.open(out / "stage1_overlays.png") as grid:
        assert grid.width > 0
    assert "uv run python scripts/demo.py --quick" in page
    for row in ("untrained", "after Stage 1"):  # real vs shuffled images, both measured
        assert re.search(rf"^\| {row} \| [0-9.]+ / [0-9.]+ \|", page, re.M), row
    assert "## Choices and why" in page
