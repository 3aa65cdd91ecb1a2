"""Losses: token CE, CoordExp coordinate terms, box losses and the one coord-vocab gate.

Every function is pure (no state, no randomness) and computes in float32 behind the numeric
fences of :mod:`coordexp_train.losses.fences`.
"""

from coordexp_train.losses.box import canonical_boxes, ciou_loss, giou_loss, iou, l1, smooth_l1
from coordexp_train.losses.coord_dist import (
    MAX_BIN,
    NUM_BINS,
    coord_log_probs,
    expected_coord,
    gaussian_bin_target,
    soft_ce,
    w1_distance,
)
from coordexp_train.losses.coord_terms import CoordTermsOutput, CoordWeights, coord_terms
from coordexp_train.losses.fences import LOGIT_FENCE, fence_logits, finite_or_zero
from coordexp_train.losses.gate import GateTerms, coord_vocab_gate
from coordexp_train.losses.objective import (
    IGNORE_INDEX,
    Stage1LossOutput,
    Stage1LossWeights,
    SupervisedPositions,
    stage1_loss,
    supervised_positions,
)
from coordexp_train.losses.rows import row_logsumexp_and_pick
from coordexp_train.losses.token_ce import weighted_token_ce

__all__ = [
    "IGNORE_INDEX",
    "LOGIT_FENCE",
    "MAX_BIN",
    "NUM_BINS",
    "CoordTermsOutput",
    "CoordWeights",
    "GateTerms",
    "Stage1LossOutput",
    "Stage1LossWeights",
    "SupervisedPositions",
    "canonical_boxes",
    "ciou_loss",
    "coord_log_probs",
    "coord_terms",
    "coord_vocab_gate",
    "expected_coord",
    "fence_logits",
    "finite_or_zero",
    "gaussian_bin_target",
    "giou_loss",
    "iou",
    "l1",
    "row_logsumexp_and_pick",
    "smooth_l1",
    "soft_ce",
    "stage1_loss",
    "supervised_positions",
    "w1_distance",
    "weighted_token_ce",
]
