"""The errors a dataset raises for its files; both name the path at fault."""

from __future__ import annotations


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are missing or incomplete; the message says where it looked and how to fix it."""


class UnreadableImageError(ValueError):
    """An image file that cannot be read or decoded; the message names its path."""
