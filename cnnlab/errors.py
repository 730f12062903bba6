"""Errors a user can cause. The CLI prints their message and exits 2 (1 for a recipe that
breaks its budget or diverges: the command was right, the design was not)."""


class CnnlabError(Exception):
    """Base class: the message says what went wrong and what to do about it."""


class ConfigError(CnnlabError):
    """A recipe, a `--set` override or a CLI argument is wrong."""


class DataError(CnnlabError):
    """A dataset file is missing, truncated, corrupt or not the expected dataset."""


class BadFileError(DataError):
    """A data file on disk holds the wrong bytes. `problem` says how, without the path or the
    advice, for a message about bytes the user never saw as a file (a download in flight)."""

    REPLACE = "delete it so cnnlab downloads it again, or replace it with the original file"

    def __init__(self, path: object, problem: str, advice: str = REPLACE):
        super().__init__(f"{path} {problem}: {advice}")
        self.problem = problem


class ModelError(CnnlabError):
    """A model name or `module:function` reference cannot be built."""


class RunFolderError(CnnlabError):
    """A file of a run folder is missing, damaged or not what cnnlab wrote there."""


class UntrustedCodeError(CnnlabError):
    """A run folder names model code, and nothing says this user trusts it (see trust.py)."""


class TrainingError(CnnlabError):
    """Training cannot go on (an unusable resume folder, a run folder in use)."""


class DivergedError(TrainingError):
    """The loss became NaN or infinite: the recipe's fault, not the command line's (exit 1)."""


class SpecError(CnnlabError):
    """The model or recipe breaks a rule of the recipe's `[spec]` (one line per rule; exit 1,
    as `cnnlab check` exits on a broken rule)."""


class ConversionError(CnnlabError):
    """A converter (onnx2tf, say) cannot turn this model into the format asked for."""
