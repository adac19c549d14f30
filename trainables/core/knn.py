"""Weighted kNN classification on frozen features (k = 200, t = 0.1, cosine similarity).

The monitor of InstDisc and the AttentionNCE minimal repo: each query's k nearest training
features vote for their labels with weight exp(similarity / t).
"""

from __future__ import annotations

import torch

from trainables.core.data import Images
from trainables.core.features import Encode, split_features


def knn_predict(
    bank: torch.Tensor, bank_labels: torch.Tensor, queries: torch.Tensor, *, k: int, temperature: float, num_classes: int, chunk: int = 1024
) -> torch.Tensor:
    """Predicted class of every query.

    Shape:
        bank: [N, F] and queries: [Q, F], both L2-normalised; bank_labels: [N] -> [Q].
    """
    k = min(k, bank.shape[0])
    predictions = []
    for start in range(0, queries.shape[0], chunk):
        sim, idx = (queries[start : start + chunk] @ bank.T).topk(k, dim=1)
        votes = torch.zeros(sim.shape[0], num_classes, device=bank.device, dtype=sim.dtype)
        votes.scatter_add_(1, bank_labels[idx], (sim / temperature).exp())
        predictions.append(votes.argmax(dim=1))
    return torch.cat(predictions)


def knn_accuracy(encode: Encode, bank: Images, queries: Images, *, k: int, temperature: float, num_classes: int) -> float:
    """Top-1 kNN accuracy of the queries against the bank, identical on every worker."""
    bank_feats = split_features(encode, bank)
    query_feats = split_features(encode, queries)
    predicted = knn_predict(
        bank_feats, bank.labels.to(bank_feats.device), query_feats, k=k, temperature=temperature, num_classes=num_classes
    )
    return (predicted.cpu() == queries.labels).float().mean().item()
