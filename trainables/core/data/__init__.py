"""Datasets for pretraining and evaluation, the splits every run shares, and their batch order.

=============  =======  ==========  ================================================================
name           classes  resolution  official splits
=============  =======  ==========  ================================================================
cifar10        10       32          train 50,000; test 10,000
cifar100       100      32          train 50,000; test 10,000
stl10          10       96          train 5,000; test 8,000; unlabeled 100,000 (pretraining only)
imagefolder    counted  measured    ``DIR/train/<class>/*``; ``DIR/test/<class>/*`` or ``DIR/val/<class>/*`` is the test split
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

from trainables.spec.lazy import by_name, lazy_getattr

# Submodule -> the names it exports, each imported on first use, so that importing the package imports no torch.
_EXPORTS = by_name(
    {
        "images": ("FolderImages", "Images", "LabeledImages"),
        "splits": ("Splits",),
        "order": ("batch_indices", "epoch_generator", "epoch_seed", "worker_batch_indices"),
        "load": ("load_dataset", "load_for"),
    }
)
__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS)
