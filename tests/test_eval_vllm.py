"""`coordexp-eval --config` rolling out through vLLM: the same predictions as through HF.

Runs in the vLLM CPU environment (``bash scripts/test-vllm.sh``). The held-out images
are larger than ``template.max_pixels``, so the check covers image sizing too: both
backends must see the image at the template's size, as the model was trained (sized by
the checkpoint's defaults instead, vLLM answered differently from the first token).

Answers are kept short: the untrained model's logits are nearly flat, and HF and vLLM
float32 kernels may break a near-tie differently (a top-2 margin of 3e-4 at the 6th
token of one of these images).
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.vllm

CONFIG = """\
model: {{model: builtin:tiny-qwen3-vl, dtype: float32}}
template: {{max_pixels: 4096, prompt_variant: short}}
data: {{train_jsonl: {train}}}
training: {{output_dir: {out}}}
custom: {{trainer_variant: rollout_matching_sft}}
global_max_length: 1024
rollout_matching:
  rollout_backend: {backend}
  decode_batch_size: 3
  max_new_tokens: 5
  vllm: {{mode: colocate, max_model_len: 1024, gpu_memory_utilization: 0.1}}
"""


def test_eval_through_vllm_colocate_equals_eval_through_hf(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from coordexp_train.data.synthetic import write_synthetic_dataset
    from coordexp_train.data.synthetic_scene import SceneSpec
    from coordexp_train.evaluation.cli import main
    from coordexp_train.evaluation.predictions import read_predictions

    monkeypatch.setenv("COORDEXP_CACHE_DIR", str(tmp_path / "cache"))
    data = write_synthetic_dataset(
        tmp_path / "ds", SceneSpec(width=128, height=96), num_train=1, num_val=5
    )
    answers = {}
    for backend in ("hf", "vllm"):
        config = tmp_path / f"{backend}.yaml"
        config.write_text(CONFIG.format(train=data.train_jsonl, out=tmp_path, backend=backend))
        out = tmp_path / backend
        argv = ["--gt", str(data.val_jsonl), "--config", str(config), "--out", str(out)]
        assert main([*argv, "--overlays", "0"]) == 0
        answers[backend] = [p.raw_text for p in read_predictions(out / "predictions.jsonl")]
    assert len(answers["hf"]) == 5
    assert answers["vllm"] == answers["hf"]
