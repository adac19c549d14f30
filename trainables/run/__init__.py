"""A run: the pretraining loop and its epoch end, evaluation, checkpoints, fault injection, the random-init baseline."""
