"""The demo report: a Markdown page generated from measured demo results.

``scripts/demo.py`` trains and evaluates, then calls :func:`render_demo_report`; nothing in
the page is typed by hand. The page holds the figures table (every evaluation: COCO mAP,
mAP@50, mAP@75, AR@100, set-level precision / recall / F1 at IoU 0.5, parse health), the
time each training stage took (wall clock and process CPU time, since the machine may be
shared), the machine, the commands, and the pictures (paths relative to the page).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from coordexp_train.evaluation.image_reliance import RELIANCE_PARTS, ImageReliance

#: Columns of the figures table: header → (report section, key).
FIGURE_COLUMNS: dict[str, tuple[str, str]] = {
    "mAP": ("coco", "mAP"),
    "mAP@50": ("coco", "mAP50"),
    "mAP@75": ("coco", "mAP75"),
    "AR@100": ("coco", "AR100"),
    "precision": ("set", "precision"),
    "recall": ("set", "recall"),
    "F1": ("set", "f1"),
    "valid objects": ("parse_health", "valid_object_rate"),
    "truncated": ("parse_health", "truncation_rate"),
}


@dataclass(frozen=True, slots=True)
class Evaluation:
    """One evaluation of one model on the held-out split.

    Attributes:
        label: the table row name, e.g. ``"Stage 1, before"``.
        model: what was evaluated (``builtin:<name>`` or a checkpoint folder).
        report: the ``evaluation_report`` dict.
    """

    label: str
    model: str
    report: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class StageTiming:
    """How long one training stage took.

    Attributes:
        stage: e.g. ``"Stage 1"``.
        steps: optimizer steps run.
        wall_s: wall-clock seconds of training.
        cpu_s: process CPU seconds of training (all threads).
    """

    stage: str
    steps: int
    wall_s: float
    cpu_s: float


def _cell(value: Any) -> str:
    return "–" if value is None else f"{float(value):.3f}"


def figures_table(evaluations: Sequence[Evaluation]) -> list[str]:
    """The Markdown table of :data:`FIGURE_COLUMNS`, one row per evaluation."""
    header = ["evaluation", *FIGURE_COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for e in evaluations:
        cells = [_cell(e.report[section][key]) for section, key in FIGURE_COLUMNS.values()]
        lines.append("| " + " | ".join([e.label, *cells]) + " |")
    return lines


def reliance_table(rows: Sequence[tuple[str, ImageReliance]]) -> list[str]:
    """Markdown table: per model, each loss part with real and with shuffled images."""
    header = ["model", *(f"{p} real / shuffled" for p in RELIANCE_PARTS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, r in rows:
        cells = [
            f"{r.real[p]:.3f} / {r.shuffled[p]:.3f}" if p in r.real else "–" for p in RELIANCE_PARTS
        ]
        lines.append("| " + " | ".join([label, *cells]) + " |")
    return lines


def render_demo_report(
    *,
    title: str,
    summary: str,
    evaluations: Sequence[Evaluation],
    timings: Sequence[StageTiming],
    machine: Mapping[str, str],
    commands: Sequence[str],
    images: Mapping[str, str],
    notes: Sequence[str] = (),
    sections: Sequence[tuple[str, Sequence[str]]] = (),
) -> str:
    """The report page (Markdown, ends with a newline).

    Args:
        title: the page title.
        summary: one paragraph under the title (what was run, on what data).
        evaluations: rows of the figures table, in order.
        timings: one row per training stage.
        machine: name → value lines (CPU, threads, library versions, load).
        commands: the commands that reproduce the page, one per line.
        images: caption → image path relative to the page.
        notes: extra paragraphs (e.g. a skipped stage), after the figures.
        sections: (heading, Markdown lines) pairs placed after the figures and notes.

    Deterministic: the same inputs give the same text.
    """
    out = [f"# {title}", "", summary, "", "## Figures", ""]
    out += figures_table(evaluations)
    out += [
        "",
        "COCO figures come from pycocotools on the held-out split (categories: exact `desc` "
        "match); precision / recall / F1 count one-to-one matches at IoU ≥ 0.5 "
        "(coordexp-match); see docs/evaluation.md.",
        "",
    ]
    for note in notes:
        out += [note, ""]
    for heading, lines in sections:
        out += [f"## {heading}", "", *lines, ""]
    out += ["## Time", "", "| stage | steps | wall s | CPU s |", "|---|---|---|---|"]
    out += [f"| {t.stage} | {t.steps} | {t.wall_s:.1f} | {t.cpu_s:.1f} |" for t in timings]
    out += ["", "## Machine", ""]
    out += [f"- {name}: {value}" for name, value in machine.items()]
    out += ["", "## Reproduce", "", "```bash", *commands, "```", ""]
    for caption, path in images.items():
        out += [f"### {caption}", "", f"![{caption}]({path})", ""]
    return "\n".join(out).rstrip("\n") + "\n"
