"""Float64 NumPy versions of each loss, written from the papers' formulas (one loop per anchor).

They share nothing with the code under test. ``frozen`` holds the embeddings that the
stop-gradient weights (AttentionNCE's alpha and beta) are computed from, so that finite
differences of these functions give the gradient the detached weights imply.
"""

from __future__ import annotations

import numpy as np


def normalize(z: np.ndarray) -> np.ndarray:
    return z / np.linalg.norm(z, axis=-1, keepdims=True)


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def pairs(z: np.ndarray, tau: float):
    """Yield (s+/tau, [s_n/tau for every negative]) for every (anchor, positive) pair."""
    zn = normalize(z)
    big_b, v, _ = zn.shape
    for i in range(big_b):
        for a in range(v):
            negs = np.array([zn[i, a] @ zn[j, u] / tau for j in range(big_b) if j != i for u in range(v)])
            for p in range(v):
                if p != a:
                    yield zn[i, a] @ zn[i, p] / tau, negs


def infonce(z: np.ndarray, tau: float) -> float:
    return float(np.mean([-sp + np.log(np.exp(sp) + np.exp(n).sum()) for sp, n in pairs(z, tau)]))


def pos_prob(z: np.ndarray, tau: float) -> float:
    return float(np.mean([np.exp(sp) / (np.exp(sp) + np.exp(n).sum()) for sp, n in pairs(z, tau)]))


def decoupled(z: np.ndarray, tau: float) -> float:
    """Yeh et al.'s decoupled loss: InfoNCE without the positive in the denominator."""
    return float(np.mean([-sp + np.log(np.exp(n).sum()) for sp, n in pairs(z, tau)]))


def debiased_ng(pos: float, neg_mass: float, n: int, tau: float, tau_plus: float) -> float:
    return max((neg_mass - tau_plus * n * pos) / (1 - tau_plus), n * np.exp(-1 / tau))


def dcl(z: np.ndarray, tau: float, tau_plus: float) -> float:
    terms = []
    for sp, negs in pairs(z, tau):
        pos, neg = np.exp(sp), np.exp(negs)
        terms.append(-np.log(pos / (pos + debiased_ng(pos, neg.sum(), len(neg), tau, tau_plus))))
    return float(np.mean(terms))


def hcl(z: np.ndarray, tau: float, tau_plus: float, beta: float) -> float:
    terms = []
    for sp, negs in pairs(z, tau):
        pos, neg = np.exp(sp), np.exp(negs)
        imp = neg**beta
        reweighted = (imp * neg).sum() / imp.mean()
        terms.append(-np.log(pos / (pos + debiased_ng(pos, reweighted, len(neg), tau, tau_plus))))
    return float(np.mean(terms))


def attentionnce(z: np.ndarray, tau: float, d_pos: float, d_neg: float, frozen: np.ndarray | None = None) -> float:
    """Views 0, 1 are anchors, views 2.. positives; negatives: other images' anchor views."""
    return float(np.mean(-np.log(prototype_probabilities(z, tau, d_pos, d_neg, frozen))))


def prototype_probabilities(z: np.ndarray, tau: float, d_pos: float, d_neg: float, frozen: np.ndarray | None = None) -> np.ndarray:
    """AttentionNCE's probability of the prototype against the beta-rescaled negatives, per anchor."""
    zn, fn = normalize(z), normalize(z if frozen is None else frozen)
    big_b = zn.shape[0]
    probabilities = []
    for i in range(big_b):
        for a in range(2):
            alpha = softmax(np.array([fn[i, a] @ p for p in fn[i, 2:]]) / d_pos)
            proto = sum(w * (zn[i, a] @ p) for w, p in zip(alpha, zn[i, 2:]))
            others = [(j, u) for j in range(big_b) if j != i for u in range(2)]
            beta = len(others) * (softmax(np.array([fn[i, a] @ fn[j, u] for j, u in others]) / d_neg) + 1e-6)
            neg = sum(np.exp(b * (zn[i, a] @ zn[j, u]) / tau) for b, (j, u) in zip(beta, others))
            probabilities.append(np.exp(proto / tau) / (np.exp(proto / tau) + neg))
    return np.array(probabilities)


def finite_difference_grad(f, z: np.ndarray, h: float = 1e-6) -> np.ndarray:
    grad = np.zeros_like(z)
    for idx in np.ndindex(z.shape):
        up, down = z.copy(), z.copy()
        up[idx] += h
        down[idx] -= h
        grad[idx] = (f(up) - f(down)) / (2 * h)
    return grad
