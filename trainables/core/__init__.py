"""The torch core: losses, data, models, augmentation, optimisers, features and kNN. Imports no Ray or MLflow."""
