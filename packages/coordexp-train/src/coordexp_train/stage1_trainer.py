"""The Stage-1 trainer: transformers' ``Trainer`` with the CoordExp objective.

What it adds to ``Trainer`` (everything else — accumulation, mixed precision, gradient
checkpointing, DDP/DeepSpeed through accelerate, schedulers, checkpoints and resume — is
the library's own code path):

* :meth:`compute_loss` runs the model **without** labels and applies
  :func:`coordexp_train.losses.stage1_loss` to its logits;
* the loss parts (``token_ce``, ``soft_ce``, ``w1``, ``gate``, …) are averaged over the
  micro-batches since the last log, averaged across processes, and logged with the loss;
* evaluation logs add coord diagnostics from
  :func:`coordexp_train.coord_metrics.coord_token_metrics` (``eval_coord_mass``,
  ``eval_coord_gate``, ``eval_coord_mae``, ``eval_coord_accuracy``; weighted by coord
  positions) — the same gate helper as the loss;
* with a :class:`~coordexp_train.evaluation.periodic.DetectionEval`, every evaluation
  also answers the validation images greedily and logs ``eval_mAP50``, ``eval_recall``, …
  (see :mod:`coordexp_train.evaluation.periodic`) as one more log event of that step;
* :meth:`create_optimizer` builds AdamW with one learning rate per parameter group
  (vision tower / aligner / LLM), see :mod:`coordexp_train.param_groups`.

The returned loss is a per-micro-batch mean; the Trainer divides it by the number of
accumulation steps, so an optimizer step sees the mean over its micro-batches.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn
from transformers import Trainer

from coordexp_train.coord_metrics import coord_token_metrics
from coordexp_train.data.batch import Batch
from coordexp_train.evaluation.periodic import DetectionEval
from coordexp_train.losses import Stage1LossWeights, stage1_loss
from coordexp_train.param_groups import GroupSettings, optimizer_groups

# Evaluation diagnostics (logged as eval_<name>), weighted by coord positions.
EVAL_COORD_NAMES = ("coord_mass", "coord_gate", "coord_mae", "coord_accuracy")
LOSS_PART_NAMES = (
    "token_ce",
    "soft_ce",
    "w1",
    "gate",
    "text_gate",
    "bbox_smoothl1",
    "bbox_ciou",
    "coord_mass",
)


def box_label_positions(batch: Batch) -> torch.Tensor:
    """Flat positions in ``batch.labels`` of each bbox's x1, y1, x2, y2 coord labels, ``[M, 4]``.

    A coord target's label sits one position after the logits that predict it.
    """
    width = batch.labels.shape[1]
    flat = batch.coord_batch_index * width + batch.coord_logit_position + 1
    return flat[batch.box_coord_index]


class MeanMeter:
    """Weighted running means of named values between two log events.

    Tensor values stay on their device (no host synchronisation per micro-batch); the
    means are read only when :meth:`pop` is called at a log event.
    """

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self._sums: dict[str, torch.Tensor | float] = {}
        self._weights: dict[str, float] = {}

    def add(self, values: Mapping[str, float | torch.Tensor], weight: float = 1.0) -> None:
        """Record one observation of each value present (unknown names are ignored)."""
        for name in self.names:
            if name in values:
                value = values[name]
                if isinstance(value, torch.Tensor):
                    value = value.detach().double()
                self._sums[name] = self._sums.get(name, 0.0) + value * weight
                self._weights[name] = self._weights.get(name, 0.0) + weight

    def pop(self, reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> dict[str, float]:
        """Means since the last call (``reduce`` sums tensors across processes); resets."""
        device = next((v.device for v in self._sums.values() if isinstance(v, torch.Tensor)), None)
        stacked = torch.stack(
            [
                torch.stack(
                    [
                        torch.as_tensor(self._sums.get(n, 0.0), dtype=torch.float64, device=device)
                        for n in self.names
                    ]
                ),
                torch.tensor(
                    [self._weights.get(n, 0.0) for n in self.names],
                    dtype=torch.float64,
                    device=device,
                ),
            ]
        )
        if reduce is not None:
            stacked = reduce(stacked)
        self._sums.clear()
        self._weights.clear()
        values = stacked.cpu()
        return {
            name: float(values[0, i] / values[1, i])
            for i, name in enumerate(self.names)
            if values[1, i] > 0
        }


class Stage1Trainer(Trainer):
    """``Trainer`` whose loss is the Stage-1 CoordExp objective.

    Args:
        coord_token_ids: ``[1000]`` token id of each coord bin.
        loss_weights: the objective's weights.
        group_settings: per-group learning rates and weight decay for the optimizer.
        detection_eval: detection metrics to add to every evaluation; None: loss only.
        **kwargs: passed to ``transformers.Trainer``.
    """

    def __init__(
        self,
        *,
        coord_token_ids: torch.Tensor,
        loss_weights: Stage1LossWeights,
        group_settings: GroupSettings,
        detection_eval: DetectionEval | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.detection_eval = detection_eval
        self.coord_token_ids = coord_token_ids
        self.loss_weights = loss_weights
        self.group_settings = group_settings
        self.loss_parts = MeanMeter(LOSS_PART_NAMES)
        self.eval_coords = MeanMeter(EVAL_COORD_NAMES)
        # our loss is a per-micro-batch mean: let the Trainer divide by accumulation steps
        self.loss_is_scaled_for_ga = False

    def compute_loss(
        self,
        model: nn.Module,
        inputs: Mapping[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        """Forward without labels, then the Stage-1 objective on the logits.

        ``inputs`` is a :class:`~coordexp_train.data.batch.Batch` as a mapping (see
        :mod:`coordexp_train.stage1_data`).
        """
        batch = Batch(**inputs)
        outputs = model(**batch.model_inputs())
        result = stage1_loss(
            outputs.logits,
            batch.labels,
            self.coord_token_ids.to(batch.labels.device),
            self.loss_weights,
            box_label_positions(batch),
        )
        if model.training:
            self.loss_parts.add(result.parts)
        else:
            self._measure_coords(outputs.logits, batch.labels)
        return (result.total, outputs) if return_outputs else result.total

    def evaluate(self, *args: Any, **kwargs: Any) -> dict[str, float]:
        """``Trainer.evaluate``, then the detection figures (main process; logged too)."""
        metrics: dict[str, float] = super().evaluate(*args, **kwargs)
        if self.detection_eval is not None and self.is_world_process_zero():
            figures = self.detection_eval(self.model)
            self.log(figures)
            metrics.update(figures)
        return metrics

    def _measure_coords(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        m = coord_token_metrics(
            logits,
            labels,
            self.coord_token_ids.to(labels.device),
            gate_temperature=self.loss_weights.gate_temperature,
            coord_temperature=self.loss_weights.coord_temperature,
        )
        if m.coord_positions:
            values = {
                "coord_mass": m.coord_mass,
                "coord_gate": float(m.gate_per_position.mean()),
                "coord_mae": m.expected_coord_mae,
                "coord_accuracy": m.coord_argmax_accuracy,
            }
            self.eval_coords.add(values, weight=float(m.coord_positions))

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add averaged loss parts to training logs and coord diagnostics to eval logs."""
        if "loss" in logs:
            logs.update(self.loss_parts.pop(self._sum_across_processes))
        elif "eval_loss" in logs:
            means = self.eval_coords.pop(self._sum_across_processes)
            logs.update({f"eval_{k}": v for k, v in means.items()})
        super().log(logs, start_time)

    def _sum_across_processes(self, t: torch.Tensor) -> torch.Tensor:
        if self.accelerator.num_processes == 1:
            return t
        summed: torch.Tensor = self.accelerator.reduce(
            t.to(self.accelerator.device), reduction="sum"
        )
        return summed

    def create_optimizer(self, model: nn.Module | None = None) -> torch.optim.Optimizer:
        """AdamW over the trainable parameters, one learning rate per parameter group."""
        if self.optimizer is None:
            target = self.model if model is None else model
            if target is None:
                raise RuntimeError("create_optimizer needs a model")
            groups = optimizer_groups(target, self.group_settings)
            self.optimizer = torch.optim.AdamW(
                groups,
                betas=(self.args.adam_beta1, self.args.adam_beta2),
                eps=self.args.adam_epsilon,
            )
        return self.optimizer
