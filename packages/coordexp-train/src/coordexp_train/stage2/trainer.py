"""The Stage-2 trainer: rollout-matching SFT and the Stage-2 AB trainer in one class.

Why a ``transformers.Trainer`` subclass (of :class:`~coordexp_train.stage1_trainer.
Stage1Trainer`) and not a plain loop: every piece of plumbing a Stage-2 run needs besides
the step itself — the optimizer with per-group learning rates, the lr schedule, gradient
accumulation, clipping, DDP/DeepSpeed through accelerate under ``torchrun``, checkpoints in
the Stage-1 layout with exact resume, log events for the JSONL metrics and the progress
bar, evaluation on the ground truth — is the Trainer's own code path, already used and
tested by Stage 1. A Stage-2 step differs only inside one micro-batch, so the subclass
overrides :meth:`training_step` (and :meth:`log` for the step statistics), nothing else.

One micro-batch of optimizer step ``s`` (``Batch`` of ground-truth samples + their
:class:`~coordexp_train.stage2.rollout_data.RolloutItem`):

* the channel is :func:`~coordexp_train.stage2.schedule.channel_at_step` of ``s`` and
  ``b_ratio`` (1 for ``rollout_matching_sft``): the same on every rank and micro-batch;
* **Channel A**: :func:`~coordexp_train.stage2.channel_a.channel_a_logits` (soft
  self-context, ``stage2_ab.n_softctx_iter`` passes) on the ground-truth batch, the last
  pass supervised by the Stage-1 objective;
* **Channel B**: the engine is woken (it sleeps between rollouts when
  ``rollout_matching.vllm.sleep_level`` > 0; a no-op otherwise), a weight sync when it is stale
  (:func:`~coordexp_train.stage2.schedule.needs_weight_sync`; the server fleet is synced
  by rank 0 alone, then all ranks wait), this rank's rollouts through the backend (which
  microbatches by ``decode_batch_size``), :func:`build_channel_b_sample` per rollout,
  teacher-forced samples, post-rollout packing (too-long samples dropped and counted),
  then one forward/backward per pack with :func:`channel_b_loss`. Gradients are
  all-reduced once per micro-batch (every pack but the last runs under ``no_sync``), so
  ranks with different pack counts stay in step; a rank whose samples were all dropped
  runs one zero-weighted forward so the all-reduce still happens.

Loss scale: each pack's loss is divided by the number of packs and by the accumulation
steps, so an optimizer step sees the mean over its packs and micro-batches (as Stage 1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from coordexp_backends import Rollout, RolloutBackend, RolloutRequest, decode_params
from coordexp_parse import DROP_REASONS, TokenizerLike
from coordexp_schema import RolloutMatchingConfig
from coordexp_train.data.batch import Batch, collate_rows
from coordexp_train.data.chat import prompt_messages
from coordexp_train.data.prompts import PromptSpec
from coordexp_train.losses import stage1_loss
from coordexp_train.settings import Stage2Settings
from coordexp_train.stage1_trainer import (
    LOSS_PART_NAMES,
    MeanMeter,
    Stage1Trainer,
    box_label_positions,
)
from coordexp_train.stage2.channel_a import channel_a_logits
from coordexp_train.stage2.channel_b_loss import channel_b_loss
from coordexp_train.stage2.channel_b_sample import (
    ChannelBSample,
    build_channel_b_sample,
    step_stats,
)
from coordexp_train.stage2.monitor import MonitorDump
from coordexp_train.stage2.post_pack import PostRolloutPacker
from coordexp_train.stage2.rollout_data import ROLLOUT_ITEMS, RolloutItem
from coordexp_train.stage2.schedule import Channel, channel_at_step, needs_weight_sync
from coordexp_train.stage2.teacher_forced import (
    TeacherForcedSample,
    placements,
    teacher_forced_sample,
)
from coordexp_train.stage2.timing import PhaseTimes

STAGE2_PART_NAMES = (*LOSS_PART_NAMES, "coord_ce", "coord_el1", "coord_ehuber", "coord_entropy")
#: Phases of the time split, logged as ``time/<phase>`` (seconds per optimizer step).
PHASES = ("weight_sync", "rollout", "parse", "match", "targets", "packing", "forward_backward")
#: Phases of the CPU-side Channel-B work whose share of the step is ``time/cpu_share``.
CPU_PHASES = ("parse", "match", "targets", "packing")
_COUNTS = (
    "rollouts",
    "truncated",
    "matched",
    "fp",
    "fn",
    "dropped",
    *(f"dropped/{reason}" for reason in DROP_REASONS),
    "coord_unsupervised",
    "rollout_tokens",
    "answer_tokens",
    "packs",
    "dropped/too_long",
    "dropped/underfilled",
    "weight_sync",
)


@dataclass(frozen=True)
class Stage2Runtime:
    """Runtime facts of the Stage-2 trainer (not config: they come from the loaded model).

    Attributes:
        backend: the rollout backend (closed when training ends).
        tokenizer: the model's tokenizer (rollout parsing, FN rendering).
        prompt: the training prompt (rollout requests use it, as the encoder does).
        pad_token_id: the tokenizer's pad id.
        monitor: the monitor dump writer, or None when ``monitor_dump`` is off.
    """

    backend: RolloutBackend
    tokenizer: TokenizerLike
    prompt: PromptSpec
    pad_token_id: int
    monitor: MonitorDump | None = None


class Stage2Trainer(Stage1Trainer):
    """``Stage1Trainer`` whose micro-batches run Channel A or Channel B (module docstring).

    Args:
        settings: the Stage-2 settings (:func:`coordexp_train.settings.stage2_settings`).
        runtime: rollout backend, tokenizer, prompt, pad id and monitor dump.
        **kwargs: passed to :class:`Stage1Trainer` (``loss_weights`` are Channel A's).
    """

    def __init__(self, *, settings: Stage2Settings, runtime: Stage2Runtime, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.runtime = runtime
        self.loss_parts = MeanMeter(STAGE2_PART_NAMES)
        self._synced_step: int | None = None  # unknown engine weights: sync at the first B step
        self._engine_asleep = False
        self._packer = PostRolloutPacker(
            settings.pack_capacity,
            min_fill_ratio=settings.pack_min_fill_ratio,
            drop_last=settings.pack_drop_last,
        )
        self._window_channels: dict[int, Channel] = {}
        self._counts = dict.fromkeys(_COUNTS, 0.0)
        self._times = PhaseTimes()
        self._rollout_len_max = 0.0

    @property
    def rollout_matching_cfg(self) -> RolloutMatchingConfig:
        """The normalised ``rollout_matching`` section, as loaded (never re-validated)."""
        return self.settings.rollout

    # ---------------------------------------------------------------- step
    def training_step(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor:
        """Run one micro-batch of the step's channel; return its (scaled, detached) loss."""
        step = self.state.global_step
        channel = channel_at_step(step, self.settings.b_ratio)
        self._window_channels[step] = channel
        items: list[RolloutItem] = inputs.pop(ROLLOUT_ITEMS)
        model.train()
        if channel == "A":
            return self._channel_a(model, inputs)
        return self._channel_b(model, items, inputs)

    def _on_device(self, mapping: dict[str, Any]) -> Batch:
        prepared: dict[str, Any] = self._prepare_inputs(mapping)
        return Batch(**prepared)

    def _coord_ids(self, device: torch.device) -> torch.Tensor:
        return self.coord_token_ids.to(device)

    def _channel_a(self, model: nn.Module, inputs: dict[str, Any]) -> torch.Tensor:
        ab = self.settings.stage2_ab
        if ab is None:  # rollout_matching_sft has b_ratio 1: never here
            raise RuntimeError("Channel A needs the stage2_ab section")
        batch = self._on_device(inputs)
        with self._times.phase("forward_backward"):
            logits = channel_a_logits(
                self.accelerator.unwrap_model(model),
                batch.model_inputs(),
                batch.labels,
                self._coord_ids(batch.labels.device),
                n_softctx_iter=ab.n_softctx_iter,
                temperature=ab.softctx_temperature,
                mode=ab.softctx_mode,
                grad_mode=ab.softctx_grad_mode,
                last_forward=model,
            )
            result = stage1_loss(
                logits,
                batch.labels,
                self._coord_ids(batch.labels.device),
                self.loss_weights,
                box_label_positions(batch),
            )
            loss = result.total / self.current_gradient_accumulation_steps
            self.accelerator.backward(loss)
        self.loss_parts.add(result.parts)
        return loss.detach()

    def _sync_weights(self, model: nn.Module) -> None:
        step = self.state.global_step
        stale = self._synced_step is None or needs_weight_sync(
            step, self._synced_step, self.settings.weight_sync_every_steps
        )
        if not stale:
            return
        with self._times.phase("weight_sync"):
            backend = self.runtime.backend
            # one fleet: rank 0 pushes, everyone waits; a colocated engine (or the HF
            # backend, which shares the model) is per rank
            pushes = not self.settings.shared_engine or self.is_world_process_zero()
            if pushes:
                backend.sync_weights(self.accelerator.unwrap_model(model))
            if self.settings.shared_engine:
                self.accelerator.wait_for_everyone()
        self._synced_step = step
        self._counts["weight_sync"] += float(pushes)  # engine syncs, summed over ranks

    def _rollout(self, items: Sequence[RolloutItem]) -> list[tuple[RolloutItem, Rollout]]:
        s = self.settings
        params = replace(decode_params(s.rollout), seed=s.rollout_seed + self.state.global_step)
        messages = prompt_messages(self.runtime.prompt)
        requests = [RolloutRequest(i.request_id, messages, (i.image,)) for i in items]
        with self._times.phase("rollout"):
            rollouts = self.runtime.backend.generate(requests, params)
        return list(zip(items, rollouts, strict=True))

    def _teacher_forced(
        self, pairs: Sequence[tuple[RolloutItem, Rollout]]
    ) -> tuple[list[TeacherForcedSample], list[ChannelBSample]]:
        s, rt = self.settings, self.runtime
        forced: list[TeacherForcedSample] = []
        built: list[ChannelBSample] = []
        for item, rollout in pairs:
            sample = build_channel_b_sample(
                rollout.response_token_ids,
                item.gts,
                rt.tokenizer,
                s.rollout,
                s.channel_b,
                field_order=s.field_order,
                times=self._times,
            )
            with self._times.phase("targets"):
                forced.append(
                    teacher_forced_sample(
                        item.sample,
                        sample.targets,
                        self.coord_token_ids,
                        rollout_prompt_ids=rollout.prompt_token_ids,
                    )
                )
            built.append(sample)
        return forced, built

    def _channel_b(
        self, model: nn.Module, items: Sequence[RolloutItem], gt_inputs: dict[str, Any]
    ) -> torch.Tensor:
        backend = self.runtime.backend
        if self._engine_asleep:
            with self._times.phase("rollout"):
                backend.wake_up()
        self._sync_weights(model)
        pairs = self._rollout(items)
        with self._times.phase("rollout"):
            backend.sleep()  # frees a colocated engine's memory for training (sleep_level)
        self._engine_asleep = True
        forced, built = self._teacher_forced(pairs)
        with self._times.phase("packing"):
            # the Trainer marks the step's last micro-batch before calling training_step
            packed = self._packer.add(forced, end_of_step=self.accelerator.sync_gradients)
            batches = [
                collate_rows([[f.sample for f in p]], pad_token_id=self.runtime.pad_token_id)
                for p in packed.packs
            ]
        self._count_b(built, len(batches), len(packed.too_long), len(packed.underfilled))
        if self.runtime.monitor is not None and self.is_world_process_zero():
            self.runtime.monitor.maybe_write(self.state.global_step, pairs, built)
        scale = self.current_gradient_accumulation_steps * max(len(batches), 1)
        total = torch.zeros((), device=self.args.device)
        with self._times.phase("forward_backward"):
            if not batches:  # keep the all-reduce of this micro-batch on every rank
                batch = self._on_device(gt_inputs)
                logits = model(**batch.model_inputs()).logits
                self.accelerator.backward(logits.sum() * 0.0)
            for k, (pack, cpu_batch) in enumerate(zip(packed.packs, batches, strict=True)):
                last = k == len(batches) - 1
                with nullcontext() if last else self.accelerator.no_sync(model):
                    batch = cpu_batch.to(self.args.device)
                    logits = model(**batch.model_inputs()).logits
                    out = channel_b_loss(
                        logits.reshape(-1, logits.shape[-1]),
                        placements(batch, pack),
                        self._coord_ids(logits.device),
                        self.settings.weights,
                        self.settings.stage2_ab,
                    )
                    loss = out.total / scale
                    self.accelerator.backward(loss)
                self.loss_parts.add(out.parts)
                total = total + loss.detach()
        return total

    def _count_b(
        self, built: Sequence[ChannelBSample], packs: int, too_long: int, underfilled: int
    ) -> None:
        stats = step_stats(built)
        for name in _COUNTS:
            if name in stats:
                self._counts[name] += stats[name]
        self._counts["rollout_tokens"] += stats["rollout_len_mean"] * stats["rollouts"]
        self._counts["answer_tokens"] += stats["answer_len_mean"] * stats["rollouts"]
        self._counts["packs"] += packs
        self._counts["dropped/too_long"] += too_long
        self._counts["dropped/underfilled"] += underfilled
        self._rollout_len_max = max(self._rollout_len_max, stats["rollout_len_max"])

    # ---------------------------------------------------------------- logging
    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add the window's channel mix, Channel-B statistics and time split to train logs.

        Counts and times are per optimizer step of the window, summed over ranks; the
        channel of the window's last step is ``channel_b`` (1.0 = B, 0.0 = A) and the
        fraction of B steps is ``b_steps_fraction``.
        """
        if "loss" in logs:
            logs.update(self._window_log())
        super().log(logs, start_time)

    def _window_log(self) -> dict[str, float]:
        channels = self._window_channels
        steps = len(channels)
        b_steps = sum(c == "B" for c in channels.values())
        names = [*_COUNTS, *(f"time/{p}" for p in PHASES)]
        values = [self._counts[n] for n in _COUNTS]
        values += [self._times.seconds.get(p, 0.0) for p in PHASES]
        summed = self._sum_across_processes(torch.tensor(values, dtype=torch.float64)).tolist()
        # on the accelerator's device: NCCL reduces device tensors only
        length_max = torch.tensor(
            [self._rollout_len_max], dtype=torch.float64, device=self.accelerator.device
        )
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(length_max, op=dist.ReduceOp.MAX)
        out: dict[str, float] = {}
        if steps:
            out["channel_b"] = 1.0 if channels[max(channels)] == "B" else 0.0
            out["b_steps_fraction"] = b_steps / steps
        totals = dict(zip(names, summed, strict=True))
        if b_steps:
            for name in _COUNTS:
                if name.startswith("dropped/") and not totals[name]:
                    continue
                if name not in ("rollout_tokens", "answer_tokens"):
                    out[name] = totals[name] / b_steps
            rollouts = totals["rollouts"]
            out["rollout_len_mean"] = totals["rollout_tokens"] / rollouts if rollouts else 0.0
            out["rollout_len_max"] = float(length_max[0])
            out["answer_len_mean"] = totals["answer_tokens"] / rollouts if rollouts else 0.0
        if steps:
            processes = max(self.accelerator.num_processes, 1)
            for p in PHASES:
                out[f"time/{p}"] = totals[f"time/{p}"] / (steps * processes)
        if b_steps:
            step_time = sum(totals[f"time/{p}"] for p in PHASES)
            cpu = sum(totals[f"time/{p}"] for p in CPU_PHASES)
            out["time/cpu_share"] = cpu / step_time if step_time > 0 else 0.0
        self._window_channels = {}
        self._counts = dict.fromkeys(_COUNTS, 0.0)
        self._times = PhaseTimes()
        self._rollout_len_max = 0.0
        return {k: v for k, v in out.items() if math.isfinite(v)}

    # ---------------------------------------------------------------- lifecycle
    def train(self, *args: Any, **kwargs: Any) -> Any:
        """``Trainer.train``; the rollout backend is closed afterwards, even on error."""
        try:
            return super().train(*args, **kwargs)
        finally:
            self.runtime.backend.close()
