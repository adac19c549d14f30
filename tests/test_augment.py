"""Tests of the batched SimCLR augmentations.

Statistical tests draw with fixed seeds, so they are deterministic; their tolerances are
about five binomial (or sampling) standard deviations, so a correct pipeline passes them
for essentially any seed and a biased one fails.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor
from torchvision import transforms
from torchvision.transforms.v2 import functional as TF

import trainables.core.augment as augment_module
from trainables.core.augment import (
    BRIGHTNESS,
    CONTRAST,
    HUE,
    NO_OP,
    SATURATION,
    AugmentConfig,
    SimCLRAugment,
    adjust_colour,
    augment_config_for,
    eval_transform,
    gaussian_blur,
    grayscale,
    sample_params,
)
from trainables.spec.datasets import DATASETS

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
IDENTITY_NORM = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}  # views are then pixels in [0, 1]
FULL_CROP = {"crop_scale": (1.0, 1.0), "crop_ratio": (1.0, 1.0)}
NO_COLOUR = {"jitter_prob": 0.0, "gray_prob": 0.0}


def _defaults(dataset: str, size: int, mean: tuple, std: tuple, **overrides: object) -> AugmentConfig:
    """A dataset's augmentation defaults at any size and statistics."""
    return AugmentConfig(size, mean, std, **{**DATASETS[dataset].augment, **overrides})


def _images(n: int, height: int = 32, width: int | None = None, seed: int = 0) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, height, width or height), generator=generator, dtype=torch.uint8)


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _pixels(images: Tensor) -> Tensor:
    return images.to(torch.float32) / 255.0


def _binomial_tolerance(p: float, n: int) -> float:
    return 5.0 * math.sqrt(p * (1.0 - p) / n)


# --- output format -----------------------------------------------------------------------------


def test_views_have_the_documented_shape_dtype_and_layout() -> None:
    augment = SimCLRAugment(_defaults("cifar10", 32, MEAN, STD))
    out = augment.views(_images(6), 3, _generator(0))
    assert out.shape == (6, 3, 3, 32, 32)
    assert out.dtype == torch.float32
    assert out.is_contiguous()


def test_views_without_random_ops_are_the_normalised_images() -> None:
    images = _images(4)
    cfg = AugmentConfig(32, MEAN, STD, flip_prob=0.0, **FULL_CROP, **NO_COLOUR)
    out = SimCLRAugment(cfg).views(images, 2, _generator(0))
    expected = (_pixels(images) - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)
    torch.testing.assert_close(out, expected.unsqueeze(1).expand(4, 2, 3, 32, 32), atol=1e-5, rtol=0)


def test_eval_transform_normalises_images_of_the_output_size() -> None:
    images = _images(3)
    expected = (_pixels(images) - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)
    torch.testing.assert_close(eval_transform(images, AugmentConfig(32, MEAN, STD)), expected, atol=1e-6, rtol=0)


def test_eval_transform_resizes_and_centre_crops_other_sizes() -> None:
    # Left half black, right half white: a centre crop of any resize keeps the edge centred.
    images = torch.zeros((2, 3, 40, 60), dtype=torch.uint8)
    images[..., 30:] = 255
    out = eval_transform(images, AugmentConfig(16, **IDENTITY_NORM))
    assert out.shape == (2, 3, 16, 16)
    assert torch.all(out[..., :7] < 0.01) and torch.all(out[..., 9:] > 0.99)


# --- the random parameters ---------------------------------------------------------------------


def test_identical_images_get_different_views() -> None:
    images = _images(1).expand(256, 3, 32, 32).contiguous()
    out = SimCLRAugment(_defaults("cifar10", 32, MEAN, STD)).views(images, 1, _generator(0))
    # Identical views have identical random projections; different ones almost surely not.
    projections = out.flatten(1).double() @ torch.rand(3 * 32 * 32, generator=_generator(1), dtype=torch.float64)
    # Two views coincide only with the same integer box and flip and no jitter at both.
    assert len(torch.unique(projections)) >= 250


def test_grayscale_fraction_of_views_is_the_configured_probability() -> None:
    n_images, n_views = 2500, 4
    cfg = _defaults("cifar10", 8, **IDENTITY_NORM)
    out = SimCLRAugment(cfg).views(_images(n_images, 8), n_views, _generator(1)).flatten(0, 1)
    # Jitter keeps colour (saturation factors are >= 0.6), so only the grayscale op makes R == G == B.
    gray = ((out[:, 0] == out[:, 1]) & (out[:, 1] == out[:, 2])).flatten(1).all(1)
    assert abs(gray.float().mean().item() - 0.2) <= 0.02


def _torchvision_crop_boxes(n: int, height: int, width: int) -> Tensor:
    torch.manual_seed(0)
    dummy = torch.zeros((1, height, width))
    crop = transforms.RandomResizedCrop(height)
    boxes = [crop.get_params(dummy, scale=[0.08, 1.0], ratio=[3 / 4, 4 / 3]) for _ in range(n)]
    return torch.tensor(boxes, dtype=torch.float32)  # (top, left, h, w)


def _means_agree(ours: Tensor, theirs: Tensor) -> bool:
    """Whether two sample means differ by less than 5 standard errors of their difference."""
    standard_error = math.sqrt(ours.var().item() / len(ours) + theirs.var().item() / len(theirs))
    return abs(ours.mean().item() - theirs.mean().item()) < 5.0 * standard_error


@pytest.mark.parametrize(("height", "width"), [(32, 32), (8, 64)])
def test_crop_boxes_follow_torchvision_random_resized_crop(height: int, width: int) -> None:
    n = 10_000
    cfg = AugmentConfig(32, MEAN, STD)
    boxes = sample_params(cfg, n, height, width, _generator(2)).boxes
    box_w, box_h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    reference = _torchvision_crop_boxes(n, height, width)
    ref_h, ref_w = reference[:, 2], reference[:, 3]

    assert torch.equal(boxes, boxes.round()) and boxes[:, :2].min() >= 0
    assert torch.all(boxes[:, 2] <= width) and torch.all(boxes[:, 3] <= height)
    assert _means_agree(box_w * box_h / (height * width), ref_w * ref_h / (height * width))
    assert _means_agree(torch.log(box_w / box_h), torch.log(ref_w / ref_h))
    # Horizontal position of the box centre, which the offsets' distribution decides.
    assert _means_agree((boxes[:, 0] + box_w / 2) / width, (reference[:, 1] + ref_w / 2) / width)


def test_flip_jitter_and_blur_fractions_follow_their_probabilities() -> None:
    n = 10_000
    params = sample_params(AugmentConfig(32, MEAN, STD, blur_prob=0.5), n, 32, 32, _generator(3))
    assert abs(params.flip.float().mean().item() - 0.5) <= _binomial_tolerance(0.5, n)
    assert abs(params.jitter.float().mean().item() - 0.8) <= _binomial_tolerance(0.8, n)
    assert abs(params.blur.float().mean().item() - 0.5) <= _binomial_tolerance(0.5, n)
    assert abs(params.gray.float().mean().item() - 0.2) <= _binomial_tolerance(0.2, n)


def test_jitter_order_is_a_uniformly_random_permutation() -> None:
    n = 10_000
    order = sample_params(AugmentConfig(32, MEAN, STD), n, 32, 32, _generator(4)).jitter_order
    assert torch.equal(order.sort(dim=1).values, torch.arange(4).expand(n, 4))
    for position in range(4):
        counts = torch.bincount(order[:, position], minlength=4).float() / n
        assert torch.all((counts - 0.25).abs() <= _binomial_tolerance(0.25, n))


@pytest.mark.parametrize("strength", [0.5, 1.0])
def test_jitter_factors_are_uniform_on_simclr_ranges(strength: float) -> None:
    n = 10_000
    cfg = AugmentConfig(32, MEAN, STD, jitter_strength=strength)
    factors = sample_params(cfg, n, 32, 32, _generator(5)).jitter_factors
    for column, (low, high) in {
        BRIGHTNESS: (max(0.0, 1 - 0.8 * strength), 1 + 0.8 * strength),
        CONTRAST: (max(0.0, 1 - 0.8 * strength), 1 + 0.8 * strength),
        SATURATION: (max(0.0, 1 - 0.8 * strength), 1 + 0.8 * strength),
        HUE: (-0.2 * strength, 0.2 * strength),
    }.items():
        values = factors[:, column]
        assert values.min() >= low and values.max() <= high
        # A uniform variable's mean has standard error (high - low) / sqrt(12 n).
        assert abs(values.mean().item() - (low + high) / 2) <= 5 * (high - low) / math.sqrt(12 * n)


# --- reproducibility and the distributed contract ---------------------------------------------


def test_same_seed_gives_same_views_and_another_seed_different_ones() -> None:
    augment = SimCLRAugment(_defaults("stl10", 32, MEAN, STD))
    images = _images(8)
    first = augment.views(images, 2, _generator(10))
    assert torch.equal(first, augment.views(images, 2, _generator(10)))
    assert not torch.allclose(first, augment.views(images, 2, _generator(11)))


def test_consecutive_calls_draw_fresh_views() -> None:
    augment = SimCLRAugment(_defaults("cifar10", 32, MEAN, STD))
    images, generator = _images(8), _generator(12)
    assert not torch.allclose(augment.views(images, 2, generator), augment.views(images, 2, generator))


@pytest.mark.parametrize("split", [(6, 6), (5, 4, 3)])
def test_worker_slices_reproduce_the_single_worker_views(split: tuple[int, ...]) -> None:
    augment = SimCLRAugment(_defaults("stl10", 32, MEAN, STD))
    images = _images(12)
    whole = augment.views(images, 3, _generator(20))
    parts, start = [], 0
    for size in split:
        rows = slice(start, start + size)
        parts.append(augment.views(images[rows], 3, _generator(20), rows=rows, global_batch=12))
        start += size
    assert torch.equal(torch.cat(parts), whole)


def test_views_do_not_depend_on_how_the_cpu_chunks_the_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    augment = SimCLRAugment(_defaults("stl10", 32, MEAN, STD))
    images = _images(10)
    whole = augment.views(images, 2, _generator(21))
    monkeypatch.setattr(augment_module, "CPU_CHUNK_BYTES", 3 * 2 * 3 * 32 * 32 * 4)  # three images a chunk
    assert torch.equal(augment.views(images, 2, _generator(21)), whole)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_cpu_views_are_the_same_on_any_thread_count_and_leave_it_as_it_was(
    threads: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    augment = SimCLRAugment(_defaults("stl10", 32, MEAN, STD))
    images = _images(10)
    monkeypatch.setattr(augment_module, "CPU_CHUNK_BYTES", 2 * 2 * 3 * 32 * 32 * 4)  # five chunks for the threads
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        # Chunk by chunk in this thread, each op on one thread: the reference the pool must equal.
        params = sample_params(augment.cfg, 20, 32, 32, _generator(22))
        expected = torch.empty((20, 3, 32, 32))
        for first in range(0, 10, 2):
            rows = slice(2 * first, 2 * first + 4)
            chunk_params = params.rows(rows.start, rows.stop)
            augment_module._augment_chunk(images[first : first + 2], chunk_params, 2, augment.cfg, expected[rows])
        torch.set_num_threads(threads)
        views = augment.views(images, 2, _generator(22))
        assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(before)
    assert torch.equal(views.view(20, 3, 32, 32), expected)


def test_an_error_in_a_cpu_chunk_reaches_the_caller_and_restores_the_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("chunk failed")

    monkeypatch.setattr(augment_module, "_augment_chunk", broken)
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError, match="chunk failed"):
        SimCLRAugment(_defaults("stl10", 32, MEAN, STD)).views(_images(4), 2, _generator(0))
    assert torch.get_num_threads() == before


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_worker_slices_reproduce_the_single_worker_views_on_cuda() -> None:
    augment = SimCLRAugment(_defaults("stl10", 96, MEAN, STD))
    images = _images(64, 96).cuda()
    whole = augment.views(images, 2, torch.Generator("cuda").manual_seed(0))
    halves = [
        augment.views(images[rows], 2, torch.Generator("cuda").manual_seed(0), rows=rows, global_batch=64)
        for rows in (slice(0, 32), slice(32, 64))
    ]
    assert whole.device.type == "cuda" and whole.shape == (64, 2, 3, 96, 96)
    torch.testing.assert_close(torch.cat(halves), whole, atol=1e-5, rtol=0)


# --- each op against torchvision --------------------------------------------------------------


def _colourful_pixels() -> Tensor:
    """Random colours plus the edge cases of HSV: gray pixels, black, white and ties of maxima."""
    pixels = torch.rand((6, 3, 12, 12), generator=_generator(30))
    pixels[:, :, 0, :4] = pixels[:, :1, 0, :4]  # gray
    pixels[:, :, 1, :2] = 0.0
    pixels[:, :, 1, 2:4] = 1.0
    pixels[:, 1, 2, :4] = pixels[:, 0, 2, :4]  # red == green
    return pixels


TORCHVISION_OPS = {
    BRIGHTNESS: TF.adjust_brightness,
    CONTRAST: TF.adjust_contrast,
    SATURATION: TF.adjust_saturation,
    HUE: TF.adjust_hue,
}
BLEND_FACTORS = [0.0, 0.6, 0.9, 1.0, 1.2, 1.8]


@pytest.mark.parametrize(
    ("op", "factors", "tolerance"),
    [
        (BRIGHTNESS, BLEND_FACTORS, 1e-5),
        (CONTRAST, BLEND_FACTORS, 1e-5),
        (SATURATION, BLEND_FACTORS, 1e-5),
        (HUE, [-0.5, -0.2, -0.05, 0.0, 0.1, 0.45], 1e-3),
    ],
)
def test_colour_ops_match_torchvision(op: int, factors: list[float], tolerance: float) -> None:
    pixels = _colourful_pixels()
    expected = torch.stack([TORCHVISION_OPS[op](image, factor) for image, factor in zip(pixels, factors)])
    ours = adjust_colour(pixels.clone(), torch.full((6,), op), torch.tensor(factors))
    torch.testing.assert_close(ours, expected, atol=tolerance, rtol=0)


def test_each_image_gets_its_own_colour_op() -> None:
    pixels = _colourful_pixels()
    ops, factors = [BRIGHTNESS, HUE, NO_OP, SATURATION, CONTRAST, HUE], [1.3, 0.2, 0.5, 0.4, 0.7, -0.3]
    ours = adjust_colour(pixels.clone(), torch.tensor(ops), torch.tensor(factors))
    for image, adjusted, op, factor in zip(pixels, ours, ops, factors):
        expected = image if op == NO_OP else TORCHVISION_OPS[op](image, factor)
        torch.testing.assert_close(adjusted, expected, atol=1e-3 if op == HUE else 1e-5, rtol=0)


def test_grayscale_matches_torchvision() -> None:
    pixels = _colourful_pixels()
    torch.testing.assert_close(grayscale(pixels), TF.rgb_to_grayscale(pixels), atol=1e-6, rtol=0)


def test_gaussian_blur_matches_torchvision_per_sigma() -> None:
    pixels, sigmas = _colourful_pixels(), torch.tensor([0.1, 0.5, 1.0, 1.5, 2.0, 0.7])
    expected = torch.stack([TF.gaussian_blur(image, [5, 5], [float(s), float(s)]) for image, s in zip(pixels, sigmas)])
    torch.testing.assert_close(gaussian_blur(pixels, sigmas, 5), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("input_size", [32, 20, 64])
def test_views_are_torchvision_resized_crops_of_the_sampled_boxes(input_size: int) -> None:
    images = _images(16, input_size)
    cfg = AugmentConfig(32, **IDENTITY_NORM, **NO_COLOUR)
    out = SimCLRAugment(cfg).views(images, 2, _generator(40)).flatten(0, 1)
    params = sample_params(cfg, 32, input_size, input_size, _generator(40))
    for k, (x0, y0, x1, y1) in enumerate(params.boxes.int().tolist()):
        crop = TF.resized_crop(_pixels(images[k // 2]), y0, x0, y1 - y0, x1 - x0, [32, 32], antialias=True)
        torch.testing.assert_close(out[k], crop.flip(-1) if params.flip[k] else crop, atol=1e-5, rtol=0)


def test_views_apply_jitter_ops_in_each_views_own_order() -> None:
    images = _images(8, 16)
    cfg = AugmentConfig(16, **IDENTITY_NORM, **FULL_CROP, flip_prob=0.0, jitter_prob=1.0, gray_prob=0.0)
    out = SimCLRAugment(cfg).views(images, 3, _generator(50)).flatten(0, 1)
    params = sample_params(cfg, 24, 16, 16, _generator(50))
    for k in range(24):
        expected = _pixels(images[k // 3])
        for op in params.jitter_order[k].tolist():
            expected = TORCHVISION_OPS[op](expected, float(params.jitter_factors[k, op]))
        torch.testing.assert_close(out[k], expected, atol=2e-3, rtol=0)


def test_views_blur_with_each_views_own_sigma() -> None:
    images = _images(6)
    cfg = AugmentConfig(32, **IDENTITY_NORM, **FULL_CROP, **NO_COLOUR, flip_prob=0.0, blur_prob=1.0)
    out = SimCLRAugment(cfg).views(images, 2, _generator(60)).flatten(0, 1)
    sigmas = sample_params(cfg, 12, 32, 32, _generator(60)).blur_sigma.tolist()
    assert cfg.blur_kernel_size == 3
    for k, sigma in enumerate(sigmas):
        expected = TF.gaussian_blur(_pixels(images[k // 2]), [3, 3], [sigma, sigma])
        torch.testing.assert_close(out[k], expected, atol=1e-5, rtol=0)


# --- configuration and argument checks --------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("image_size", 0),
        ("image_size", 32.5),
        ("mean", (0.5, 0.5)),
        ("std", (0.2, 0.0, 0.2)),
        ("crop_scale", (0.0, 1.0)),
        ("crop_scale", (0.6, 0.2)),
        ("crop_scale", (0.1, 1.5)),
        ("crop_ratio", (0.0, 1.0)),
        ("flip_prob", 1.5),
        ("jitter_prob", -0.1),
        ("gray_prob", 2.0),
        ("blur_prob", -1.0),
        ("jitter_strength", 3.0),
        ("jitter_strength", -0.5),
        ("blur_sigma", (0.0, 2.0)),
    ],
)
def test_nonsense_config_values_are_rejected_naming_the_field(field: str, value: object) -> None:
    settings = {"image_size": 32, "mean": MEAN, "std": STD, field: value}
    with pytest.raises(ValueError, match=rf"AugmentConfig\.{field}="):
        AugmentConfig(**settings)


def test_config_accepts_lists_and_stores_tuples() -> None:
    cfg = AugmentConfig(32, list(MEAN), list(STD), crop_scale=[0.2, 1.0])
    assert cfg.mean == MEAN and cfg.crop_scale == (0.2, 1.0)
    assert hash(cfg) == hash(AugmentConfig(32, MEAN, STD, crop_scale=(0.2, 1.0)))


def test_dataset_defaults_and_overrides() -> None:
    stl = augment_config_for(DATASETS["stl10"])
    assert (stl.image_size, stl.mean, stl.jitter_strength, stl.blur_prob, stl.blur_kernel_size) == (96, DATASETS["stl10"].mean, 1.0, 0.5, 9)
    cifar = augment_config_for(DATASETS["cifar10"], gray_prob=0.0)
    assert (cifar.image_size, cifar.jitter_strength, cifar.blur_prob, cifar.gray_prob) == (32, 0.5, 0.0, 0.0)
    with pytest.raises(ValueError, match="'imagefolder': its spec is not resolved"):
        augment_config_for(DATASETS["imagefolder"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"images": _images(2).float()}, "images"),
        ({"num_views": 0}, "num_views"),
        ({"rows": slice(0, 2)}, "global_batch"),
        ({"rows": slice(0, 3), "global_batch": 4}, "rows"),
        ({"rows": slice(3, 5), "global_batch": 4}, "rows"),
    ],
)
def test_bad_view_arguments_are_rejected(kwargs: dict[str, object], message: str) -> None:
    arguments = {"images": _images(2), "num_views": 2, "generator": _generator(0), **kwargs}
    with pytest.raises(ValueError, match=message):
        SimCLRAugment(AugmentConfig(32, MEAN, STD)).views(**arguments)
