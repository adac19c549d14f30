"""The Ray and MLflow services a run reports through: its session (Ray Train or Tune), its MLflow run, MLflow searches."""
