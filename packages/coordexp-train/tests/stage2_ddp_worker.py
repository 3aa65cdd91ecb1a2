"""One rank of the 2-process Stage-2 test: the ``coordexp-train`` CLI, then its weights.

Started by ``torch.distributed.run`` from ``test_stage2_distributed.py``. After training,
each rank writes the weights it ended with to ``<output_dir>/rank<r>.safetensors``, so the
test can compare the ranks (the Trainer itself saves rank 0's only).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from safetensors.torch import save_file

from coordexp_train.cli import main
from coordexp_train.stage2.trainer import Stage2Trainer

_train = Stage2Trainer.train


def _train_and_save_rank_weights(self: Stage2Trainer, *args: Any, **kwargs: Any) -> Any:
    result = _train(self, *args, **kwargs)
    model = self.accelerator.unwrap_model(self.model)
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    rank = int(os.environ["RANK"])
    save_file(weights, str(Path(self.args.output_dir) / f"rank{rank}.safetensors"))
    return result


if __name__ == "__main__":
    Stage2Trainer.train = _train_and_save_rank_weights  # type: ignore[method-assign]
    sys.exit(main(sys.argv[1:]))
