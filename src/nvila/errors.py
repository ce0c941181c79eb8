"""User-facing error types.

Everything a user can cause by giving bad input (a corrupt image, a missing checkpoint file, an unknown
preset) raises a subclass of :class:`NVILAError`. The CLI turns these into a one-line message and exit
code 1; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class NVILAError(Exception):
    """Base class of errors caused by user input, not by bugs."""


class ConfigError(NVILAError, ValueError):
    """An unknown preset, a malformed config file or an out-of-range option."""


class MediaError(NVILAError, ValueError):
    """An image or video that cannot be read, or that is too large or malformed to use."""


class CheckpointError(NVILAError):
    """A checkpoint folder that is missing files or tensors, or whose tensors have the wrong shapes."""


class PromptError(NVILAError, ValueError):
    """A prompt that does not match its media (placeholder count) or is empty."""
