"""Errors the CLI turns into one clear line (no traceback)."""


class RanError(Exception):
    """Base class for user-facing errors: the message names the bad value and what would be valid."""


class ConfigError(RanError, ValueError):
    """A configuration value is out of range or of the wrong kind."""


class ModelLoadError(RanError):
    """A model name, path or file could not be loaded."""


class ArtifactError(RanError):
    """A saved artifact or state file is missing, corrupt, or does not match the model."""


class TaskFileError(ConfigError):
    """A task file (a JSONL file of episodes) is malformed: the message names the file, the line and the field."""


class RanWarning(UserWarning):
    """Something the user should know that does not stop the work (the CLI prints it as one line)."""
