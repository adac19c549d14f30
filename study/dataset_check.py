"""Is a run's dataset there? Both command lines ask before Ray starts.

A dry run checks the files of the dataset's layout without importing torch; a run that starts loads
the dataset (checksums verified, an image folder's decoded cache built). The bundled digits need no
check. The driver never downloads: a dataset a run is asked to download (``download=true``) is
checked only if it is already there, since the run's workers download it.
"""

from __future__ import annotations

from pathlib import Path

from trainables.spec.datasets import DATASETS
from trainables.spec.pretrain_config import PretrainConfig
from trainables.spec.validation import ConfigError

BUNDLED = "digits"  # scikit-learn's digits ship with the package: nothing to check on disk
# The fields a check depends on: configs equal in these need one check.
DATA_FIELDS = ("dataset", "data_dir", "download", "image_size", "load_size", "in_memory_gb", "cache_dir")


def check_dataset(cfg: PretrainConfig, *, dry_run: bool) -> None:
    """A ConfigError naming what is missing or unreadable in ``cfg``'s dataset."""
    if cfg.dataset == BUNDLED:
        return
    from trainables.spec.dataset_errors import (
        DatasetNotFoundError,
        UnreadableImageError,
    )

    try:
        if dry_run:
            from trainables.spec.layouts import check_files

            check_files(DATASETS[cfg.dataset], Path(cfg.data_dir).expanduser())
        else:
            from trainables.core.data import load_for

            load_for(cfg, download=False)
    except DatasetNotFoundError as err:
        if not (cfg.download and not DATASETS[cfg.dataset].from_files):  # folders are never downloaded
            raise ConfigError(str(err)) from None
    except UnreadableImageError as err:
        raise ConfigError(str(err)) from None
