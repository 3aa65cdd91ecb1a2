"""Strict typed YAML configuration for CoordExp.

``load_config(path, overrides=())`` returns a frozen ``TrainingConfig``;
``parse_strict(schema_type, payload, path="")`` is the generic strict parser behind it;
every problem is reported at once in a ``ConfigError``.
"""

from importlib.metadata import version as _version

from coordexp_schema.config import TrainingConfig
from coordexp_schema.issues import ConfigError, ConfigIssue
from coordexp_schema.loader import load_config
from coordexp_schema.sections.custom import (
    CustomConfig,
    DebugConfig,
    DeepSpeedConfig,
    RlhfConfig,
    TrainerVariant,
)
from coordexp_schema.sections.data import DataConfig
from coordexp_schema.sections.model import (
    BUILTIN_TINY_MODEL,
    ModelConfig,
    QuantizationConfig,
    TemplateConfig,
    TunerConfig,
)
from coordexp_schema.sections.rollout import (
    DecodingConfig,
    MonitorDumpConfig,
    OffloadConfig,
    RepeatTerminateConfig,
    RolloutMatchingConfig,
    ServerEndpoint,
    VllmConfig,
    VllmServerConfig,
    VllmSyncConfig,
)
from coordexp_schema.sections.stage2_ab import ChannelBConfig, ScheduleConfig, Stage2ABConfig
from coordexp_schema.sections.training import TrainingArgs
from coordexp_schema.strict import parse_strict

__version__ = _version("coordexp-schema")

__all__ = [
    "BUILTIN_TINY_MODEL",
    "ChannelBConfig",
    "ConfigError",
    "ConfigIssue",
    "CustomConfig",
    "DataConfig",
    "DebugConfig",
    "DecodingConfig",
    "DeepSpeedConfig",
    "ModelConfig",
    "MonitorDumpConfig",
    "OffloadConfig",
    "QuantizationConfig",
    "RepeatTerminateConfig",
    "RlhfConfig",
    "RolloutMatchingConfig",
    "ScheduleConfig",
    "ServerEndpoint",
    "Stage2ABConfig",
    "TemplateConfig",
    "TrainerVariant",
    "TrainingArgs",
    "TrainingConfig",
    "TunerConfig",
    "VllmConfig",
    "VllmServerConfig",
    "VllmSyncConfig",
    "__version__",
    "load_config",
    "parse_strict",
]
