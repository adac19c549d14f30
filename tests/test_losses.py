"""Each loss against a float64 NumPy version of its formula, plus the gradient identities."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import loss_references as ref
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from trainables.core.losses import CATALOG, build_loss
from trainables.core.losses.dense import DENSE
from trainables.spec import run_schema as rs
from trainables.spec.losses import HYPERPARAMETERS

SHAPES = [(2, 2, 3), (4, 2, 8), (3, 3, 5), (5, 4, 16)]  # (B, V, D)
Formula = Callable[[np.ndarray, np.ndarray, dict], float]  # (z, frozen, hyperparameters) -> loss value


@dataclass(frozen=True)
class Reference:
    """A loss's float64 formula and the hyperparameter sets it is tested at.

    ``frozen`` is what stop-gradient weights are computed from (z itself for the value).
    ``gradient`` is the formula whose gradient the loss must have, where it is not ``value``'s.
    """

    value: Formula
    settings: list[dict[str, float]]
    gradient: Formula | None = None


# One line per loss of the catalog (FlatNCE's value is the InfoNCE value; its gradient the decoupled loss's).
REFERENCES: dict[str, Reference] = {
    "infonce": Reference(lambda z, f, hp: ref.infonce(z, hp["temperature"]), [{"temperature": 0.1}, {"temperature": 0.5}]),
    "flatnce": Reference(
        lambda z, f, hp: ref.infonce(z, hp["temperature"]),
        [{"temperature": 0.1}, {"temperature": 0.2}],
        lambda z, f, hp: ref.decoupled(z, hp["temperature"]),
    ),
    "dcl": Reference(
        lambda z, f, hp: ref.dcl(z, hp["temperature"], hp["tau_plus"]),
        [{"temperature": 0.5, "tau_plus": 0.1}, {"temperature": 0.2, "tau_plus": 0.3}],
    ),
    "hcl": Reference(
        lambda z, f, hp: ref.hcl(z, hp["temperature"], hp["tau_plus"], hp["beta"]),
        [{"temperature": 0.5, "tau_plus": 0.1, "beta": 1.0}, {"temperature": 0.3, "tau_plus": 0.05, "beta": 2.0}],
    ),
    "attentionnce": Reference(
        lambda z, f, hp: ref.attentionnce(z, hp["temperature"], hp["d_pos"], hp["d_neg"], f),
        [{"temperature": 0.5, "d_pos": 1.0, "d_neg": 1.0}, {"temperature": 0.2, "d_pos": 2.0, "d_neg": 0.5}],
    ),
}


def random_z(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape)


def cases(references: dict[str, Reference]) -> list[tuple[str, dict[str, float]]]:
    return [(name, hp) for name, reference in references.items() for hp in reference.settings]


def shape_for(name: str, shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """``shape`` with room for the loss's anchors: at least one positive besides them."""
    b, v, d = shape
    return (b, v + CATALOG[name].anchor_views - 1, d)


def check_value(name: str, hp: dict[str, float], shape: tuple[int, int, int], references: dict[str, Reference]) -> None:
    z = random_z(shape_for(name, shape), seed=sum(shape))
    got = build_loss(name, **hp)(torch.from_numpy(z))
    assert got.item() == pytest.approx(references[name].value(z, z, hp), rel=1e-9, abs=1e-12)


def check_gradient(name: str, hp: dict[str, float], references: dict[str, Reference]) -> None:
    """Against central differences of the reference, the stop-gradient weights held at z0."""
    z0 = random_z(shape_for(name, (3, 3, 4)), seed=7)
    z = torch.from_numpy(z0).requires_grad_()
    build_loss(name, **hp)(z).backward()
    formula = references[name].gradient or references[name].value
    expected = ref.finite_difference_grad(lambda x: formula(x, z0, hp), z0)
    np.testing.assert_allclose(z.grad.numpy(), expected, rtol=1e-5, atol=1e-8)


def test_every_catalog_loss_has_a_reference() -> None:
    assert set(REFERENCES) == set(CATALOG)


@pytest.mark.parametrize("name,hp", cases(REFERENCES))
@pytest.mark.parametrize("shape", SHAPES)
def test_value_matches_numpy_formula(name: str, hp: dict, shape: tuple[int, int, int]) -> None:
    check_value(name, hp, shape, REFERENCES)


@pytest.mark.parametrize("name,hp", cases(REFERENCES))
def test_gradient_matches_finite_differences_of_formula(name: str, hp: dict) -> None:
    check_gradient(name, hp, REFERENCES)


@pytest.mark.parametrize("shape", SHAPES)
def test_pos_prob_diagnostic_is_infonce_positive_probability(shape: tuple[int, int, int]) -> None:
    z = random_z(shape, seed=3)
    for name in ("infonce", "flatnce", "dcl", "hcl"):
        loss = build_loss(name, temperature=0.3)
        loss(torch.from_numpy(z))
        diag = loss.diagnostics()
        assert diag["pos_prob"].item() == pytest.approx(ref.pos_prob(z, 0.3), rel=1e-9)
        assert diag["grad_scale"].item() == pytest.approx(1 - ref.pos_prob(z, 0.3), rel=1e-9)


def test_attentionnce_diagnostic_is_the_prototype_probability_under_its_own_name() -> None:
    """Not InfoNCE's pi+: the prototype against the beta-rescaled negatives, so not logged as pos_prob."""
    z = random_z((4, 4, 8), seed=6)
    loss = build_loss("attentionnce", temperature=0.3, d_pos=2.0, d_neg=0.5)
    loss(torch.from_numpy(z))
    expected = ref.prototype_probabilities(z, 0.3, 2.0, 0.5).mean()
    assert set(loss.diagnostics()) == {"prototype_prob", "prototype_grad_scale"} == {rs.M_PROTOTYPE_PROB, rs.M_PROTOTYPE_GRAD_SCALE}
    assert loss.diagnostics()["prototype_prob"].item() == pytest.approx(expected, rel=1e-9)
    assert loss.diagnostics()["prototype_grad_scale"].item() == pytest.approx(1 - expected, rel=1e-9)


def per_anchor_grads(name: str, z0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient of every anchor's own term with respect to z, and InfoNCE's pi+ per anchor."""
    loss = build_loss(name, temperature=0.2)
    z = z0.clone().requires_grad_()
    local = F.normalize(z, dim=-1)
    out = loss.terms(local, local, 0)
    grads = torch.stack([torch.autograd.grad(t, z, retain_graph=True)[0] for t in out.terms.reshape(-1)])
    return grads, out.pos_prob.reshape(-1).detach()


def test_flatnce_gradient_is_infonce_gradient_over_one_minus_pos_prob_per_anchor() -> None:
    z0 = torch.from_numpy(random_z((6, 2, 8), seed=11))
    info, pi = per_anchor_grads("infonce", z0)
    flat, _ = per_anchor_grads("flatnce", z0)
    torch.testing.assert_close(flat, info / (1 - pi)[:, None, None, None], rtol=1e-9, atol=1e-12)


def test_flatnce_value_is_infonce_value_and_gradient_is_decoupled_loss() -> None:
    z0 = random_z((5, 2, 6), seed=5)
    z = torch.from_numpy(z0).requires_grad_()
    flat = build_loss("flatnce", temperature=0.1)(z)
    flat.backward()
    assert flat.item() == pytest.approx(ref.infonce(z0, 0.1), rel=1e-12)
    z2 = torch.from_numpy(z0).requires_grad_()
    n = F.normalize(z2, dim=-1)
    sim = torch.einsum("ivd,jud->ivju", n, n) / 0.1
    own = torch.eye(5, dtype=torch.bool)[:, None, :, None].expand(5, 2, 5, 2)
    neg_lse = torch.logsumexp(sim.masked_fill(own, -math.inf).reshape(10, 10), dim=1).reshape(5, 2)
    pos = (n[:, 0] * n[:, 1]).sum(-1) / 0.1
    decoupled = (neg_lse - pos[:, None]).mean()  # Yeh et al.: positive dropped from the denominator
    decoupled.backward()
    torch.testing.assert_close(z.grad, z2.grad, rtol=1e-10, atol=1e-12)


def test_infonce_with_one_positive_is_simclr_nt_xent() -> None:
    """SimCLR / FlatCLR's info_nce_loss: 2B x 2B cosines, diagonal dropped, CE with target 0."""
    z0 = torch.from_numpy(random_z((8, 2, 16), seed=2))
    z = z0.clone().requires_grad_()
    ours = build_loss("infonce", temperature=0.1)(z)
    ours.backward()
    x = z0.clone().requires_grad_()
    feats = F.normalize(torch.cat([x[:, 0], x[:, 1]]), dim=1)
    labels = torch.cat([torch.arange(8)] * 2)
    same = (labels[:, None] == labels[None, :]).float()
    sim = feats @ feats.T
    keep = ~torch.eye(16, dtype=torch.bool)
    same, sim = same[keep].view(16, -1), sim[keep].view(16, -1)
    logits = torch.cat([sim[same.bool()].view(16, -1), sim[~same.bool()].view(16, -1)], dim=1) / 0.1
    theirs = F.cross_entropy(logits, torch.zeros(16, dtype=torch.long))
    theirs.backward()
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-12)
    torch.testing.assert_close(z.grad, x.grad, rtol=1e-10, atol=1e-12)


def test_dcl_with_tau_plus_zero_is_infonce_and_hcl_with_beta_zero_is_dcl() -> None:
    z = torch.from_numpy(random_z((6, 3, 8), seed=9))
    infonce = build_loss("infonce", temperature=0.5)(z)
    assert build_loss("dcl", temperature=0.5, tau_plus=0.0)(z).item() == pytest.approx(infonce.item(), rel=1e-12)
    dcl = build_loss("dcl", temperature=0.5, tau_plus=0.2)(z)
    assert build_loss("hcl", temperature=0.5, tau_plus=0.2, beta=0.0)(z).item() == pytest.approx(dcl.item(), rel=1e-12)


def adversarial_anchors(big_b: int = 256) -> torch.Tensor:
    """Image 0's anchors and one anchor of image 1 at e1, every other anchor at -e1.

    For image 0's anchors the negative attention then concentrates on one negative:
    beta ~ 49 at d_neg 0.5, a logit of ~ 99 at tau 0.5, past float32's exp limit (~88.7).
    """
    z = torch.zeros(big_b, 3, 2)
    z[:, :2, 0] = -1.0
    z[0, :2, 0] = 1.0
    z[1, 0, 0] = 1.0
    z[:, 2, 1] = 1.0  # the positive view
    return z


def test_attentionnce_is_finite_where_raw_exp_overflows() -> None:
    z = adversarial_anchors().requires_grad_()
    loss = build_loss("attentionnce", temperature=0.5, d_pos=1.0, d_neg=0.5)
    value = loss(z)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(z.grad).all()
    a = F.normalize(z.detach()[:, :2].reshape(-1, 2), dim=1)
    sim = a[0] @ a[2:].T  # image 0's first anchor against the other images' anchors
    beta = sim.numel() * (torch.softmax(sim / 0.5, dim=0) + 1e-6)
    assert torch.isinf(torch.exp(beta * sim / 0.5)).any(), "the input must overflow the official raw exp"


def test_loss_runs_in_float32_under_bfloat16_autocast() -> None:
    z = torch.from_numpy(random_z((8, 2, 16), seed=4)).float()
    expected = build_loss("infonce")(z)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = build_loss("infonce")(z.bfloat16())
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(expected.item(), rel=2e-2)


@pytest.mark.parametrize("name", CATALOG)
def test_views_per_image(name: str) -> None:
    assert CATALOG[name].views_per_image(4) == (6 if name == "attentionnce" else 5)


def test_defaults_follow_official_code() -> None:
    assert build_loss("infonce").temperature == 0.1 and build_loss("flatnce").temperature == 0.1
    att = build_loss("attentionnce")
    assert (att.temperature, att.d_pos, att.d_neg) == (0.5, 1.0, 1.0)
    hcl = build_loss("hcl")
    assert (hcl.temperature, hcl.tau_plus, hcl.beta) == (0.5, 0.1, 1.0)
    assert (build_loss("dcl").temperature, build_loss("dcl").tau_plus) == (0.5, 0.1)


@pytest.mark.parametrize(
    "name,hp,field",
    [
        ("infonce", {"temperature": 0.0}, "temperature"),
        ("attentionnce", {"d_neg": -1.0}, "d_neg"),
        ("attentionnce", {"d_pos": 0.0}, "d_pos"),
        ("dcl", {"tau_plus": 1.0}, "tau_plus"),
        ("hcl", {"beta": -0.5}, "beta"),
        ("infonce", {"d_pos": 1.0}, "d_pos"),
        ("nope", {}, "loss"),
    ],
)
def test_bad_hyperparameters_are_rejected_by_name(name: str, hp: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        build_loss(name, **hp)


def test_catalog_reads_each_signature_as_python_does() -> None:
    """The catalog parses the source; inspect reads the imported class: they must agree."""
    import inspect

    for name, entry in CATALOG.items():
        params = inspect.signature(entry.load()).parameters.values()
        assert entry.defaults == {p.name: p.default for p in params if p.name != "gather_distributed"}, name
        assert entry.load().name == name


def test_allowed_ranges_are_the_papers() -> None:
    """Written from the issue, not read from the catalog: temperature, d_pos, d_neg > 0,
    tau_plus in [0, 1), beta >= 0; NaN and infinities refused."""
    allowed = {"temperature": (1e-9, 5.0), "d_pos": (1e-9, 1e6), "d_neg": (1e-9, 1e6), "tau_plus": (0.0, 0.999), "beta": (0.0, 1e6)}
    refused = {"temperature": (0.0, -1.0), "d_pos": (0.0,), "d_neg": (-0.5,), "tau_plus": (-0.1, 1.0), "beta": (-1e-9,)}
    assert set(HYPERPARAMETERS) == set(allowed)
    for name, spec in HYPERPARAMETERS.items():
        assert all(spec.problem(v) is None for v in allowed[name]), name
        assert all(f"{name}=" in (spec.problem(v) or "") for v in (*refused[name], math.nan, math.inf, -math.inf)), name


@pytest.mark.parametrize("name", CATALOG)
def test_backward_graph_keeps_no_whole_similarity_matrix(name: str) -> None:
    """Autograd saves only embeddings and per-anchor values: never the similarity matrix,
    (B·V)², or (2B)² for AttentionNCE, whose negatives are the 2 anchor views of each image."""
    z = torch.randn(64, 3, 16, requires_grad=True)
    saved: list[int] = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        build_loss(name)(z).backward()
    whole = (64 * (2 if name == "attentionnce" else 3)) ** 2
    assert saved and max(saved) < whole / 4


@pytest.mark.parametrize("name", CATALOG)
def test_forward_and_backward_hold_less_than_one_similarity_matrix(name: str) -> None:
    """The memory bound of the loss benchmark: the CPU allocator's peak over forward and
    backward stays under one (B·V)² float32 matrix ((2B)² for AttentionNCE). D is small, so the
    embeddings and their gradients hardly count."""
    from benchmarks.losses import cpu_peak, unit_matrix

    batch, views = 512, 3
    z = F.normalize(torch.randn(batch, views, 8), dim=-1).requires_grad_()
    loss = build_loss(name)
    unit = unit_matrix(name, batch, views) ** 2 * 4
    peak, held = cpu_peak(lambda: loss(z).backward(), unit)
    assert peak < unit, f"peak {peak / unit:.2f} matrices; blocks of a quarter or more: {held}"


@pytest.mark.parametrize("name", sorted(DENSE))
def test_dense_versions_agree_with_the_losses(name: str) -> None:
    """The loss benchmark's baselines compute the same loss: value and gradient, in float64."""
    z0 = torch.from_numpy(random_z(shape_for(name, (6, 3, 8)), seed=12))
    loss = build_loss(name, gather_distributed=False)
    grads = []
    for fn in (loss, lambda z: DENSE[name].loss(z, loss)):
        z = z0.clone().requires_grad_()
        value = fn(z)
        value.backward()
        grads.append((value.item(), z.grad))
    assert grads[0][0] == pytest.approx(grads[1][0], rel=1e-10)
    torch.testing.assert_close(grads[0][1], grads[1][1], rtol=1e-8, atol=1e-12)
