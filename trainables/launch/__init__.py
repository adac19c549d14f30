"""The entry points Ray starts: the Tune trial (trial.py) and the Ray Train trainer (ray_train.py)."""
