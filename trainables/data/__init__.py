"""Datasets for pretraining and evaluation, the splits every run shares, and their batch order.

=============  =======  ==========  ================================================================
name           classes  resolution  official splits
=============  =======  ==========  ================================================================
cifar10        10       32          train 50,000; test 10,000
cifar100       100      32          train 50,000; test 10,000
stl10          10       96          train 5,000; test 8,000; unlabeled 100,000 (pretraining only)
imagefolder    counted  measured    ``DIR/train/<class>/*``; ``DIR/val/<class>/*`` is the test split
digits         10       32          1,797 images; a fixed, stratified 20% is held out as test
tinyimagenet   200      64          train 100,000; the official val 10,000 is the test split
imagenet       1,000    224         ``DIR/train/<class>/*``; ``DIR/val/<class>/*`` is the test split
=============  =======  ==========  ================================================================

Modules, one concept each: ``specs`` (what is known of each dataset before reading it), ``order``
(the (seed, epoch) seed rule and the batch order), ``images`` (the ``Images`` interface every split
implements, in memory or from files), ``splits`` (the validation hold-out and ``Splits``),
``builtin`` (CIFAR, STL-10, digits), ``folders`` (folder layouts, resolution and load size),
``decode`` (files to uint8 squares, the decoded cache), ``statistics`` (mean and std from the data),
``load`` (the entry point).
"""

from __future__ import annotations

from trainables.lazy import lazy_getattr

# Name -> submodule. Imported on first use, so that ``trainables.data.specs`` (and config validation
# and --help with it) is read without importing torch.
_EXPORTS = {
    "DATASETS": "specs",
    "DEFAULT_IN_MEMORY_GB": "specs",
    "DatasetNotFoundError": "errors",
    "DatasetSpec": "specs",
    "FolderImages": "images",
    "Images": "images",
    "LabeledImages": "images",
    "Splits": "splits",
    "UnreadableImageError": "errors",
    "batch_indices": "order",
    "dataset_spec": "specs",
    "epoch_generator": "order",
    "epoch_seed": "order",
    "load_dataset": "load",
    "load_for": "load",
    "worker_batch_indices": "order",
}
__all__ = list(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS)
