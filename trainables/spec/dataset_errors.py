"""The errors a dataset raises for its files; both name the path at fault."""

from __future__ import annotations


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are missing or incomplete; the message says where it looked and how to fix it."""


class UnreadableImageError(ValueError):
    """An image file that cannot be read or decoded; the message names its path."""

    def __init__(self, message: str) -> None:
        # A DataLoader re-raises a worker's exception as one made from "Caught ... Original Traceback
        # ..." text; the worker's own message, which names the file, is that text's last line.
        if message.startswith("Caught "):
            last = message.rstrip().splitlines()[-1]
            message = last.split(": ", 1)[1] if ": " in last else last
        super().__init__(message)


class MalformedDatasetError(DatasetNotFoundError, ValueError):
    """A dataset's files are there but disagree with its layout (train/ and val/ naming different classes,
    an annotation naming no image): a missing dataset to whoever checks the files, a bad value to a loader's caller."""
