"""Is a run's dataset there? Both command lines ask before Ray starts.

A dry run checks the files of the dataset's layout without importing torch; a run that starts loads
the dataset (checksums verified, an image folder's decoded cache built) and returns the sizes of its
splits, which ``study.preflight.check_splits`` holds against the run's batch. The bundled digits need
no check on a dry run; a run that starts loads them too, for the sizes of its splits. The driver never downloads: a dataset a run is asked to download (``download=true``) is
checked only if it is already there, since the run's workers download it.
"""

from __future__ import annotations

from pathlib import Path

from trainables.spec.datasets import DATASETS
from trainables.spec.pretrain_config import PretrainConfig
from trainables.spec.validation import ConfigError

BUNDLED = "digits"  # scikit-learn's digits ship with the package: nothing to check on disk
# The fields a check depends on: configs equal in these need one check.
DATA_FIELDS = (
    "dataset", "data_dir", "download", "image_size", "load_size", "in_memory_gb", "cache_dir", "val_fraction", "split_seed", "limit_train"
)


def check_dataset(cfg: PretrainConfig, *, dry_run: bool) -> dict[str, int] | None:
    """A ConfigError naming what is missing or unreadable in ``cfg``'s dataset; for a run that starts,
    the size of each split (None where the workers download the dataset, so the driver cannot count it)."""
    if cfg.dataset == BUNDLED and dry_run:
        return None
    from trainables.spec.dataset_errors import DatasetNotFoundError, UnreadableImageError

    try:
        if dry_run:
            from trainables.spec.layouts import check_files, skipped_note

            files = check_files(DATASETS[cfg.dataset], Path(cfg.data_dir).expanduser())
            if files is not None and files.skipped:
                print(f"note: dataset {cfg.dataset!r} in {cfg.data_dir}: {skipped_note(files.skipped)}")
            return None
        from trainables.core.data import load_for

        splits = load_for(cfg, download=False)
    except DatasetNotFoundError as err:
        if not (cfg.download and not DATASETS[cfg.dataset].from_files):  # folders are never downloaded
            raise ConfigError(str(err)) from None
        return None
    except (UnreadableImageError, ValueError) as err:  # a ValueError of the loader names its field (cache_dir, load_size)
        raise ConfigError(str(err)) from None
    return {split: len(getattr(splits, split)) for split in ("pretrain", "train", "val", "test")}
