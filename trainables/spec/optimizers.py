"""The optimisers and learning-rate schedules a config may name (``optimizer``, ``schedule``), torch-free.

Each builder lives in ``trainables/core/optim.py``: an optimiser takes (param groups, lr,
momentum, fused), a schedule (optimiser, warm-up steps, total steps, final lr). A new one is a
builder of that signature in any module and one line here (see trainables/spec/choices.py).
"""

from __future__ import annotations

from trainables.spec.choices import Choice, catalog

OPTIMIZERS: dict[str, Choice] = catalog(
    Choice("lars", "trainables.core.optim:lars", "momentum SGD with a layer-wise trust ratio, FlatCLR's"),
    Choice("sgd", "trainables.core.optim:sgd", "momentum SGD"),
    Choice("adam", "trainables.core.optim:adam", "torch's default betas, AttentionNCE's; ignores momentum"),
)
SCHEDULES: dict[str, Choice] = catalog(
    Choice("cosine", "trainables.core.optim:cosine", "linear warm-up, then per-step cosine"),
    Choice("constant", "trainables.core.optim:constant", "the lr never changes"),
)
