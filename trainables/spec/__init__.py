"""What can be named and configured, in pure Python: the catalogs, configs, dataset specs and layouts, run schema.

Imports no torch, Ray or MLflow, so that ``--help``, ``--dry-run``, validation and the tables read it cheaply."""
