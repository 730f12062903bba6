"""Errors a user can cause. The CLI prints their message as one line and exits 2."""


class CnnlabError(Exception):
    """Base class: the message says what went wrong and what to do about it."""


class ConfigError(CnnlabError):
    """A recipe, a `--set` override or a CLI argument is wrong."""


class DataError(CnnlabError):
    """A dataset file is missing, truncated, corrupt or not the expected dataset."""


class ModelError(CnnlabError):
    """A model name or `module:function` reference cannot be built."""


class TrainingError(CnnlabError):
    """Training cannot go on (diverged loss, unusable resume folder)."""


class SpecError(CnnlabError):
    """The model or recipe breaks a rule of the recipe's `[spec]` (one line per rule)."""
