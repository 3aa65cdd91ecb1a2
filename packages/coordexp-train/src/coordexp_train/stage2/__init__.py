"""Stage-2 components: the A/B schedule, Channel-B targets and loss, Channel-A soft context."""

from coordexp_train.stage2.channel_a import channel_a_logits
from coordexp_train.stage2.channel_b_loss import (
    ChannelBLossOutput,
    Stage2CoordWeights,
    channel_b_loss,
)
from coordexp_train.stage2.channel_b_sample import (
    ChannelBSample,
    MatchingOptions,
    build_channel_b_sample,
    step_stats,
)
from coordexp_train.stage2.channel_b_targets import (
    ChannelBPolicy,
    ChannelBTargets,
    channel_b_targets,
)
from coordexp_train.stage2.schedule import Channel, channel_at_step, needs_weight_sync
from coordexp_train.stage2.softctx import (
    SoftctxGradMode,
    SoftctxMode,
    expected_coord_embedding,
    softctx_inputs_embeds,
)
from coordexp_train.stage2.teacher_forced import (
    TeacherForcedSample,
    placements,
    teacher_forced_sample,
)

__all__ = [
    "Channel",
    "ChannelBLossOutput",
    "ChannelBPolicy",
    "ChannelBSample",
    "ChannelBTargets",
    "MatchingOptions",
    "SoftctxGradMode",
    "SoftctxMode",
    "Stage2CoordWeights",
    "TeacherForcedSample",
    "build_channel_b_sample",
    "channel_a_logits",
    "channel_at_step",
    "channel_b_loss",
    "channel_b_targets",
    "expected_coord_embedding",
    "needs_weight_sync",
    "placements",
    "softctx_inputs_embeds",
    "step_stats",
    "teacher_forced_sample",
]
