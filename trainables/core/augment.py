"""SimCLR augmentations with per-sample random parameters, applied to a whole batch at once.

Every view of every image gets its own crop, flip, colour-jitter factors and order, grayscale
and blur decisions, drawn afresh at every call. All parameters of a global batch are drawn
from one generator in a fixed (image, view) order before any image is touched, so a worker
that holds only a slice of the batch produces exactly the views a single worker would.

The pipeline follows torchvision's SimCLR recipe:
RandomResizedCrop -> RandomHorizontalFlip -> RandomApply(ColorJitter) -> RandomGrayscale
-> GaussianBlur -> Normalize. It runs on the images' device and imports only torch and
torchvision, so it also runs standalone on a GPU machine.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache, partial
from numbers import Integral
from typing import TYPE_CHECKING, NoReturn

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.transforms.v2 import functional as TF

from trainables.spec.validation import (
    MAX_JITTER_STRENGTH,  # the config refuses what this module would
)

if TYPE_CHECKING:  # the augmentation imports only torch and torchvision at run time
    from trainables.spec.datasets import DatasetSpec

CROP_ATTEMPTS = 10  # torchvision's RandomResizedCrop tries this many boxes before the centre crop
GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # ITU-R 601-2 luma, as in torchvision's rgb_to_grayscale
BRIGHTNESS, CONTRAST, SATURATION, HUE = range(4)  # column of each jitter op in AugmentParams
NO_OP = 4  # `adjust_colour`'s code for images that it leaves unchanged
HUE_SECTOR_OFFSETS = (5.0, 3.0, 1.0)  # R, G, B offsets of the closed-form HSV -> RGB map
# On a CPU, views are made a few images at a time so that the intermediate tensors stay in
# cache and below the size that the allocator maps fresh (and page-faults) at every call.
CPU_CHUNK_BYTES = 4 * 2**20


def _fail(field: str, value: object, allowed: str) -> NoReturn:
    raise ValueError(f"AugmentConfig.{field}={value!r} is invalid: expected {allowed}")


def _as_floats(field: str, value: object, length: int) -> tuple[float, ...]:
    """Converts a sequence to a tuple of finite floats of the given length, or fails."""
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != length:
        _fail(field, value, f"a sequence of {length} numbers")
    floats = tuple(float(v) for v in value)
    if not all(math.isfinite(v) for v in floats):
        _fail(field, value, "finite numbers")
    return floats


def _check_probability(field: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        _fail(field, value, "a probability in [0, 1]")


def _check_positive_range(field: str, pair: tuple[float, ...], upper: float = math.inf) -> None:
    if not 0.0 < pair[0] <= pair[1] <= upper:
        _fail(field, pair, f"(low, high) with 0 < low <= high <= {upper}")


@dataclass(frozen=True)
class AugmentConfig:
    """Settings of the SimCLR augmentation pipeline.

    Attributes:
        image_size: Side S of the square output views, in pixels.
        mean: Per-channel mean subtracted after scaling pixels to [0, 1].
        std: Per-channel standard deviation divided out after subtracting the mean.
        crop_scale: Range of the crop's area as a fraction of the image area.
        crop_ratio: Range of the crop's aspect ratio (width / height), sampled log-uniformly.
        flip_prob: Probability of a horizontal flip.
        jitter_strength: SimCLR's colour strength s; jitter is (0.8s, 0.8s, 0.8s, 0.2s).
        jitter_prob: Probability that colour jitter is applied at all.
        gray_prob: Probability of converting the view to grayscale.
        blur_prob: Probability of a Gaussian blur.
        blur_sigma: Range of the blur's standard deviation, in pixels.
    """

    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_prob: float = 0.5
    jitter_strength: float = 0.5
    jitter_prob: float = 0.8
    gray_prob: float = 0.2
    blur_prob: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)

    def __post_init__(self) -> None:
        # Sequences are stored as tuples so that configs built from YAML lists stay hashable.
        for field, length in (("mean", 3), ("std", 3), ("crop_scale", 2), ("crop_ratio", 2), ("blur_sigma", 2)):
            object.__setattr__(self, field, _as_floats(field, getattr(self, field), length))
        if isinstance(self.image_size, bool) or not isinstance(self.image_size, Integral) or self.image_size < 1:
            _fail("image_size", self.image_size, "an integer >= 1")
        if min(self.std) <= 0.0:
            _fail("std", self.std, "three values > 0")
        _check_positive_range("crop_scale", self.crop_scale, upper=1.0)
        _check_positive_range("crop_ratio", self.crop_ratio)
        _check_positive_range("blur_sigma", self.blur_sigma)
        for field in ("flip_prob", "jitter_prob", "gray_prob", "blur_prob"):
            _check_probability(field, getattr(self, field))
        if not 0.0 <= self.jitter_strength <= MAX_JITTER_STRENGTH:
            _fail("jitter_strength", self.jitter_strength, f"a number in [0, {MAX_JITTER_STRENGTH}]")

    @property
    def blur_kernel_size(self) -> int:
        """Odd kernel side of about 10% of the image size, as in SimCLR (23 at 224 px)."""
        size = int(0.1 * self.image_size)
        return size + 1 - size % 2


def augment_config_for(spec: DatasetSpec, **overrides: float) -> AugmentConfig:
    """The SimCLR configuration of a loaded dataset: its resolution, statistics and augmentation defaults.

    Args:
        spec: A resolved dataset spec (``Splits.spec``), whose ``image_size``, ``mean`` and ``std`` are set.
        **overrides: Any other `AugmentConfig` field, taking precedence over the dataset's defaults.

    Returns:
        The validated configuration.
    """
    if spec.image_size is None or spec.mean is None or spec.std is None or spec.augment is None:
        raise ValueError(f"dataset {spec.name!r}: its spec is not resolved yet; use the spec of the loaded Splits")
    settings = {**spec.augment, **overrides}
    return AugmentConfig(image_size=spec.image_size, mean=spec.mean, std=spec.std, **settings)


@dataclass(frozen=True)
class AugmentParams:
    """Random parameters of n views, one row per view in (image, view) order.

    Attributes:
        boxes: Integer crop boxes (x0, y0, x1, y1) in pixel-edge coordinates. Shape: [n, 4].
        flip: Whether the view is mirrored left-right. Shape: [n].
        jitter: Whether colour jitter is applied. Shape: [n].
        jitter_order: Jitter op at each of the 4 positions (`BRIGHTNESS`, ...). Shape: [n, 4].
        jitter_factors: Brightness, contrast and saturation factors and the hue shift,
            in the columns `BRIGHTNESS`, `CONTRAST`, `SATURATION`, `HUE`. Shape: [n, 4].
        gray: Whether the view is turned grayscale. Shape: [n].
        blur: Whether the view is blurred. Shape: [n].
        blur_sigma: Standard deviation of the blur, in pixels. Shape: [n].
    """

    boxes: Tensor
    flip: Tensor
    jitter: Tensor
    jitter_order: Tensor
    jitter_factors: Tensor
    gray: Tensor
    blur: Tensor
    blur_sigma: Tensor

    def rows(self, start: int, stop: int) -> AugmentParams:
        """The parameters of views start..stop-1."""
        return AugmentParams(**{name: value[start:stop] for name, value in vars(self).items()})


# Uniform draws per view, in the column order of the one table `sample_params` draws.
UNIFORMS_PER_VIEW = {
    "crop_area": CROP_ATTEMPTS,
    "crop_log_ratio": CROP_ATTEMPTS,
    "crop_offset": 2,
    "flip": 1,
    "jitter": 1,
    "jitter_order": 4,
    "jitter_factors": 4,
    "gray": 1,
    "blur": 1,
    "blur_sigma": 1,
}


@lru_cache(maxsize=64)
def _constant(values: tuple[float, ...], device: torch.device) -> Tensor:
    """A small float32 constant, copied to the device once: each copy would wait for the GPU.

    Callers must not modify it in place.
    """
    return torch.tensor(values, dtype=torch.float32, device=device)


def _scaled(uniform: Tensor, low: float | Tensor, high: float | Tensor) -> Tensor:
    """U(0, 1) -> U(low, high)."""
    return uniform * (high - low) + low


def _centre_crop_size(height: int, width: int, ratio: tuple[float, float]) -> tuple[int, int]:
    """torchvision's fallback (h, w): the whole image, cut to the nearest allowed aspect ratio."""
    if width / height < ratio[0]:
        return int(round(width / ratio[0])), width
    if width / height > ratio[1]:
        return height, int(round(height * ratio[1]))
    return height, width


def _attempt_sizes(cfg: AugmentConfig, area_u: Tensor, log_ratio_u: Tensor, height: int, width: int) -> Tensor:
    """Rounded heights and widths of the candidate boxes, as RandomResizedCrop draws them.

    Shape:
        area_u, log_ratio_u: [n, CROP_ATTEMPTS] U(0, 1) -> [2, n, CROP_ATTEMPTS] (heights, widths).
    """
    area = _scaled(area_u, *cfg.crop_scale) * (height * width)
    aspect = _scaled(log_ratio_u, math.log(cfg.crop_ratio[0]), math.log(cfg.crop_ratio[1])).exp_()
    return torch.stack(((area / aspect).sqrt_(), (area * aspect).sqrt_())).round_()


def _crop_boxes(cfg: AugmentConfig, draws: dict[str, Tensor], height: int, width: int) -> Tensor:
    """RandomResizedCrop's boxes: the first candidate that fits, else the centre crop.

    Returns:
        Integer-valued boxes (x0, y0, x1, y1). Shape: [n, 4].
    """
    sizes = _attempt_sizes(cfg, draws["crop_area"], draws["crop_log_ratio"], height, width)
    limits = _constant((height, width), sizes.device).view(2, 1, 1)
    fits = ((sizes > 0) & (sizes <= limits)).all(0)
    first = fits.int().argmax(1, keepdim=True)  # argmax returns the first maximal index
    chosen = sizes.gather(2, first.expand(2, -1, 1)).squeeze(2)
    fallback = _constant(_centre_crop_size(height, width, cfg.crop_ratio), sizes.device)
    found = fits.any(1)
    h, w = torch.where(found, chosen, fallback.view(2, 1))
    offset_u = draws["crop_offset"].T
    y0 = torch.where(found, (offset_u[0] * (height - h + 1)).floor_(), (height - h).div(2).floor_())
    x0 = torch.where(found, (offset_u[1] * (width - w + 1)).floor_(), (width - w).div(2).floor_())
    return torch.stack((x0, y0, x0 + w, y0 + h), dim=1)


def _jitter_factors(cfg: AugmentConfig, uniform: Tensor) -> Tensor:
    """ColorJitter's factors for SimCLR strength s: U(max(0, 1 - 0.8s), 1 + 0.8s), hue shift U(-0.2s, 0.2s).

    Shape:
        uniform: [n, 4] U(0, 1) -> [n, 4] in the columns `BRIGHTNESS`, `CONTRAST`, `SATURATION`, `HUE`.
    """
    spread, hue = 0.8 * cfg.jitter_strength, 0.2 * cfg.jitter_strength
    low = _constant((max(0.0, 1.0 - spread),) * 3 + (-hue,), uniform.device)
    high = _constant((1.0 + spread,) * 3 + (hue,), uniform.device)
    return _scaled(uniform, low, high)


def sample_params(cfg: AugmentConfig, n: int, height: int, width: int, generator: torch.Generator) -> AugmentParams:
    """Draws the parameters of n views of (height x width) images, on the generator's device.

    All randomness is one [n, 35] table of U(0, 1) draws, row k belonging to view k, so two
    callers with identically seeded generators get identical parameters. `SimCLRAugment.views`
    uses exactly these parameters.

    Args:
        cfg: Pipeline settings.
        n: Number of views (images x views per image).
        height: Input image height.
        width: Input image width.
        generator: Source of all randomness.

    Returns:
        The parameters, one row per view.
    """
    table = torch.rand((n, sum(UNIFORMS_PER_VIEW.values())), generator=generator, device=generator.device)
    draws = dict(zip(UNIFORMS_PER_VIEW, table.split(list(UNIFORMS_PER_VIEW.values()), dim=1)))
    return AugmentParams(
        boxes=_crop_boxes(cfg, draws, height, width),
        flip=draws["flip"].squeeze(1) < cfg.flip_prob,
        jitter=draws["jitter"].squeeze(1) < cfg.jitter_prob,
        # The argsort of i.i.d. uniforms is a uniformly random permutation, as torch.randperm's.
        jitter_order=draws["jitter_order"].argsort(dim=1),
        jitter_factors=_jitter_factors(cfg, draws["jitter_factors"]),
        gray=draws["gray"].squeeze(1) < cfg.gray_prob,
        blur=draws["blur"].squeeze(1) < cfg.blur_prob,
        blur_sigma=_scaled(draws["blur_sigma"].squeeze(1), *cfg.blur_sigma),
    )


def _pixel_centres(count: int, device: torch.device) -> Tensor:
    """0.5, 1.5, ..., count - 0.5.

    Shape:
        [count].
    """
    return _constant(tuple(i + 0.5 for i in range(count)), device)


def _resampling_weights(start: Tensor, length: Tensor, size: int, extent: int) -> Tensor:
    """Rows that resample pixels start..start+length-1 of a line to `size` pixels.

    The triangle filter of width max(length / size, 1) is torchvision's antialiased bilinear
    resize of the cropped line: plain bilinear when enlarging, averaging when shrinking.

    Shape:
        start, length: [n] -> [n, size, extent], each row summing to 1.
    """
    scale = (length / size).view(-1, 1, 1)
    centre = _pixel_centres(size, start.device).view(1, -1, 1) * scale + start.view(-1, 1, 1)
    pixel = _pixel_centres(extent, start.device).view(1, 1, -1)
    weights = (1.0 - (pixel - centre).abs_() / scale.clamp(min=1.0)).clamp_(min=0.0)
    inside = (pixel > start.view(-1, 1, 1)) & (pixel < (start + length).view(-1, 1, 1))
    weights = weights.mul_(inside)
    return weights.div_(weights.sum(-1, keepdim=True))


def _resized_crops(images: Tensor, params: AugmentParams, views_per_image: int, size: int) -> Tensor:
    """Cuts each view's box out of its image, resizes it to size x size and mirrors it if drawn.

    Resampling is separable, so it is two batched matrix products: down the height for all
    V views of an image at once, then across the width of each view. Mirroring reverses
    the rows of the width matrix, and the 1/255 scale rides along in it.

    Shape:
        images: [b, C, H, W] uint8 -> [b * V, C, size, size] float32 in [0, 1], stored
        as [b * V, size, C, size] (the layout the products leave it in).
    """
    b, c, h, w = images.shape
    x0, y0, x1, y1 = params.boxes.unbind(1)
    down = _resampling_weights(y0, y1 - y0, size, h).view(b, views_per_image * size, h)
    across = _resampling_weights(x0, x1 - x0, size, w)
    across = torch.where(params.flip.view(-1, 1, 1), across.flip(1), across).mul_(1.0 / 255.0)
    rows = torch.empty((b, h, c, w), device=images.device).copy_(images.permute(0, 2, 1, 3))
    resized_rows = torch.bmm(down, rows.view(b, h, c * w))  # [b, V * size, C * W]
    crops = torch.bmm(resized_rows.view(-1, size * c, w), across.transpose(1, 2))  # [b * V, size * C, size]
    return crops.view(-1, size, c, size).permute(0, 2, 1, 3)


def _per_sample(values: Tensor) -> Tensor:
    """Shape: [k] -> [k, 1, 1, 1], to broadcast one value per image."""
    return values.view(-1, 1, 1, 1)


def grayscale(images: Tensor) -> Tensor:
    """Luma of RGB images, as torchvision's rgb_to_grayscale.

    Shape:
        images: [k, 3, H, W] float -> [k, 1, H, W].
    """
    return (images * _constant(GRAY_WEIGHTS, images.device).view(1, 3, 1, 1)).sum(dim=1, keepdim=True)


def _blend_targets(images: Tensor, ops: Tensor) -> Tensor:
    """What each image is blended with: black (brightness), its mean luma (contrast), its luma (saturation).

    Shape:
        images: [k, 3, H, W]; ops: [k] -> [k, 1, H, W].
    """
    luma = grayscale(images)
    targets = torch.where(_per_sample(ops == CONTRAST), luma.mean(dim=(1, 2, 3), keepdim=True), luma)
    return targets.mul_(_per_sample(ops != BRIGHTNESS))


def _blend(images: Tensor, targets: Tensor, factors: Tensor) -> Tensor:
    """factor * images + (1 - factor) * targets, clamped to [0, 1], as torchvision's _blend.

    torch.lerp returns its end point exactly at weight 1, so a factor of 1 changes nothing.

    Shape:
        images: [k, 3, H, W]; targets: broadcastable to images; factors: [k] -> [k, 3, H, W].
    """
    return torch.lerp(targets, images, _per_sample(factors)).clamp_(0.0, 1.0)


def _hue_sextant(images: Tensor, maxc: Tensor, span: Tensor) -> Tensor:
    """HSV hue in units of 60 degrees, in [-1, 5); 0 where the pixel is gray.

    The hue is (g - b) / span on the red sextant, (b - r) / span + 2 on the green and
    (r - g) / span + 4 on the blue; the first maximal channel, in R, G, B order, picks the
    sextant, as in torchvision. The channel is found by comparing with the maximum rather
    than by argmax: a CPU argmax over a dimension of 3 is a slow strided reduction (half the
    pipeline's time at 96 px) and slower still with more threads.

    Shape:
        images: [k, 3, H, W]; maxc, span: [k, 1, H, W] (max, max - min channel) -> [k, 1, H, W].
    """
    r, g, b = images.split(1, dim=1)
    red = r == maxc
    green = (g == maxc) & ~red
    # Gray pixels have zero differences, so any positive denominator gives them hue 0.
    difference = torch.where(red, g - b, torch.where(green, b - r, r - g))
    sextant_start = torch.where(red, 0.0, torch.where(green, 2.0, 4.0))
    return difference.div_(span.clamp(min=1e-12)).add_(sextant_start)


def adjust_hue(images: Tensor, shifts: Tensor) -> Tensor:
    """Rotates the HSV hue by a per-image shift (in turns), keeping saturation and value.

    Uses the closed form of HSV -> RGB, channel = V - (V - min) * clamp(min(k, 4 - k), 0, 1)
    with k = (offset + 6 hue) mod 6, so no HSV image or per-pixel gather is built.

    Shape:
        images: [k, 3, H, W] float in [0, 1]; shifts: [k] in [-0.5, 0.5] -> [k, 3, H, W].
    """
    maxc = images.amax(dim=1, keepdim=True)
    span = maxc - images.amin(dim=1, keepdim=True)
    sextant = _hue_sextant(images, maxc, span).add_(_per_sample(shifts * 6.0))
    k = (sextant + _constant(HUE_SECTOR_OFFSETS, images.device).view(1, 3, 1, 1)).remainder_(6.0)
    ramp = torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0)
    return maxc - span * ramp


def adjust_colour(images: Tensor, ops: Tensor, factors: Tensor) -> Tensor:
    """Applies to each image its own ColorJitter op, as torchvision's adjust_* with that factor.

    Brightness, contrast and saturation are all blends, so they run as one blend over the
    whole batch (a factor of 1 leaves an image exactly as it is); hue runs only on the
    images that have it.

    Args:
        images: float images in [0, 1].
        ops: `BRIGHTNESS`, `CONTRAST`, `SATURATION`, `HUE` or `NO_OP`, per image.
        factors: Blend factor, or hue shift in turns, per image.

    Returns:
        The adjusted images.

    Shape:
        images: [k, 3, H, W]; ops, factors: [k] -> [k, 3, H, W].
    """
    blends = ops < HUE  # the op codes put the three blends first
    images = _blend(images, _blend_targets(images, ops), torch.where(blends, factors, 1.0))
    return _apply_to_subset(images, ops == HUE, adjust_hue, factors)


def gaussian_blur(images: Tensor, sigmas: Tensor, kernel_size: int) -> Tensor:
    """Separable Gaussian blur with one sigma per image and reflect padding, as torchvision's.

    Shape:
        images: [k, C, H, W] float; sigmas: [k] -> [k, C, H, W].
    """
    k, c, h, w = images.shape
    taps = torch.arange(kernel_size, device=images.device, dtype=images.dtype) - kernel_size // 2
    kernels = torch.softmax(-0.5 * (taps / sigmas.view(-1, 1)) ** 2, dim=1).repeat_interleave(c, dim=0)
    pad = kernel_size // 2
    # Every (image, channel) plane is its own conv group, so each gets its own kernel.
    planes = F.pad(images.reshape(1, k * c, h, w), (pad, pad, pad, pad), mode="reflect")
    planes = F.conv2d(planes, kernels.view(k * c, 1, 1, kernel_size), groups=k * c)
    planes = F.conv2d(planes, kernels.view(k * c, 1, kernel_size, 1), groups=k * c)
    return planes.view(k, c, h, w)


def subsets_on_host(device: torch.device) -> bool:
    """Whether the masked images are picked out before an op (CPU) or the op runs on all of
    them and torch.where keeps the masked ones (GPU). Picking a subset needs its size on the
    host, a sync that drains the GPU's launch queue; the GPU does the extra arithmetic for less."""
    return device.type == "cpu"


def _apply_to_subset(images: Tensor, mask: Tensor, op: Callable[..., Tensor], *per_sample: Tensor) -> Tensor:
    """The images with the masked ones replaced by op(images[mask], *[p[mask] for p in per_sample]).

    Shape:
        images: [n, C, H, W]; mask: [n] bool; each of per_sample: [n, ...].
    """
    if not subsets_on_host(images.device):
        return torch.where(_per_sample(mask), op(images, *per_sample), images)
    index = mask.nonzero().squeeze(1)
    if index.numel() == 0:  # empty grouped convolutions are not allowed
        return images
    chosen = [values.index_select(0, index) for values in per_sample]
    return images.index_copy_(0, index, op(images.index_select(0, index), *chosen))


def _colour_jitter(images: Tensor, params: AugmentParams) -> Tensor:
    """ColorJitter with each view's own factors and op order; views without jitter pass through.

    Shape:
        images: [n, 3, S, S] float in [0, 1] -> [n, 3, S, S].
    """
    ops = torch.where(params.jitter.unsqueeze(1), params.jitter_order, NO_OP)
    factors = params.jitter_factors.gather(1, params.jitter_order)  # the factor of the op at each position
    for position in range(4):
        images = adjust_colour(images, ops[:, position], factors[:, position])
    return images


def _normalise(images: Tensor, cfg: AugmentConfig, out: Tensor) -> Tensor:
    """(x - mean) / std per channel, written into `out` whatever the layout of `images`.

    Shape:
        images: [n, 3, H, W] float in [0, 1]; out: [n, 3, H, W] -> out.
    """
    mean = _constant(cfg.mean, images.device).view(1, 3, 1, 1)
    std = _constant(cfg.std, images.device).view(1, 3, 1, 1)
    return torch.sub(images, mean, out=out).div_(std)


def _augment_chunk(
    images: Tensor, params: AugmentParams, views_per_image: int, cfg: AugmentConfig, out: Tensor
) -> None:
    """Writes the normalised views of some images into `out`.

    Shape:
        images: [c, 3, H, W] uint8; out: [c * V, 3, S, S] float32.
    """
    views = _resized_crops(images, params, views_per_image, cfg.image_size)
    views = _colour_jitter(views, params)
    views = torch.where(_per_sample(params.gray), grayscale(views), views)
    blur = partial(gaussian_blur, kernel_size=cfg.blur_kernel_size)
    views = _apply_to_subset(views, params.blur, blur, params.blur_sigma)
    _normalise(views, cfg, out)


def _images_per_chunk(images: Tensor, views_per_image: int, size: int) -> int:
    """All images at once on a GPU; on a CPU as many as keep a chunk's views within the cache budget."""
    if images.device.type != "cpu":
        return images.shape[0]
    return max(1, CPU_CHUNK_BYTES // (views_per_image * 3 * size * size * 4))


@lru_cache(maxsize=None)
def _chunk_pool(threads: int) -> ThreadPoolExecutor:
    """One pool per thread count, kept: a fresh thread's first torch op sets up its math
    libraries, which took longer than a small batch's whole pipeline."""
    return ThreadPoolExecutor(threads, thread_name_prefix="augment")


@contextmanager
def _threads_over_chunks(device: torch.device) -> Iterator[ThreadPoolExecutor | None]:
    """On a CPU, runs torch ops on one intra-op thread inside the block and yields a pool of
    the threads it took away, for whole chunks; elsewhere yields None and changes nothing.

    The pipeline is some hundred small element-wise ops per chunk. Splitting each over threads
    costs a fork and a join per op, and when a thread waits for a busy core every op waits:
    at 96 px on 2 cores, 2 intra-op threads made the pipeline several times slower than 1.
    Every op computes the same numbers on any number of threads, so the views do not change.
    """
    if device.type != "cpu":
        yield None
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield _chunk_pool(threads)
    finally:
        torch.set_num_threads(threads)


def apply_params(
    images: Tensor, params: AugmentParams, views_per_image: int, cfg: AugmentConfig, pool: Executor | None = None
) -> Tensor:
    """Applies drawn parameters to local images.

    Args:
        images: Local uint8 images.
        params: Parameters of the local views, views_per_image rows per image in order.
        views_per_image: V.
        cfg: Pipeline settings.
        pool: Runs the CPU chunks, one task each; None runs them in turn in this thread.

    Returns:
        Normalised views.

    Shape:
        images: [b, 3, H, W] uint8 -> [b * V, 3, S, S] float32.
    """
    b, size = images.shape[0], cfg.image_size
    out = torch.empty((b * views_per_image, 3, size, size), device=images.device)
    step = _images_per_chunk(images, views_per_image, size)

    def augment_chunk(first: int) -> None:
        rows = slice(first * views_per_image, min(first + step, b) * views_per_image)
        chunk_params = params.rows(rows.start, rows.stop)
        _augment_chunk(images[first : first + step], chunk_params, views_per_image, cfg, out[rows])

    firsts = range(0, b, step)
    list(map(augment_chunk, firsts) if pool is None else pool.map(augment_chunk, firsts))  # re-raises a chunk's error
    return out


def _local_rows(batch: int, rows: slice | None, global_batch: int | None) -> tuple[int, int, int]:
    """Resolves (start, stop, global_batch) of the local images within the global batch."""
    if rows is None:
        rows = slice(0, batch)
        global_batch = batch if global_batch is None else global_batch
    if global_batch is None:
        raise ValueError("global_batch=None is invalid with rows given: every worker must draw for the whole batch")
    start, stop = rows.start or 0, rows.stop
    if rows.step not in (None, 1) or stop is None or not 0 <= start <= stop <= global_batch or stop - start != batch:
        raise ValueError(
            f"rows={rows!r} is invalid: expected slice(start, start + {batch}) within global_batch={global_batch}"
        )
    return start, stop, global_batch


def _check_inputs(images: Tensor, num_views: int, generator: torch.Generator) -> None:
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(
            f"images (dtype {images.dtype}, shape {tuple(images.shape)}) are invalid: expected uint8 [B, 3, H, W]"
        )
    if isinstance(num_views, bool) or not isinstance(num_views, int) or num_views < 1:
        raise ValueError(f"num_views={num_views!r} is invalid: expected an integer >= 1")
    if generator.device.type != images.device.type:
        raise ValueError(
            f"generator.device={generator.device} is invalid for images on {images.device}: expected the same device"
        )


class SimCLRAugment(torch.nn.Module):
    """SimCLR views of uint8 image batches, with per-view random parameters.

    Args:
        cfg: Pipeline settings.
    """

    def __init__(self, cfg: AugmentConfig) -> None:
        super().__init__()
        self.cfg = cfg

    @torch.no_grad()
    def views(
        self,
        images: Tensor,
        num_views: int,
        generator: torch.Generator,
        rows: slice | None = None,
        global_batch: int | None = None,
    ) -> Tensor:
        """uint8 [b, C, H, W] -> float32 [b, V, C, S, S].

        Draws the parameters of all global_batch x num_views views with `sample_params`,
        in (image, view) order, then applies the rows of the local images only. Workers
        that seed their generators identically therefore together produce exactly the views
        of a single worker holding the whole batch.

        Args:
            images: The local images, rows `rows` of the global batch, on any device.
            num_views: V, views per image.
            generator: Source of all randomness, on the images' device.
            rows: Position of the local images in the global batch; None for all of it.
            global_batch: Size of the global batch; required when rows is given.

        Returns:
            Normalised views, the V views of each image together.

        Shape:
            images: [b, 3, H, W] uint8 -> [b, V, 3, S, S] float32.
        """
        _check_inputs(images, num_views, generator)
        start, stop, total = _local_rows(images.shape[0], rows, global_batch)
        height, width = images.shape[-2:]
        with _threads_over_chunks(images.device) as pool:
            params = sample_params(self.cfg, total * num_views, height, width, generator)
            local = params.rows(start * num_views, stop * num_views)
            out = apply_params(images, local, num_views, self.cfg, pool)
        return out.view(images.shape[0], num_views, 3, self.cfg.image_size, self.cfg.image_size)

    def forward(self, images: Tensor, num_views: int, generator: torch.Generator) -> Tensor:
        """`views` of a batch held whole by this worker."""
        return self.views(images, num_views, generator)


def eval_transform(images: Tensor, cfg: AugmentConfig) -> Tensor:
    """Deterministic evaluation view: resize the shorter side to S, centre-crop, normalise.

    Args:
        images: uint8 images on any device.
        cfg: Supplies image_size, mean and std.

    Returns:
        Normalised images.

    Shape:
        images: [N, 3, H, W] uint8 -> [N, 3, S, S] float32.
    """
    size = cfg.image_size
    unit = images.to(torch.float32).div_(255.0)
    if unit.shape[-2:] != (size, size):
        unit = TF.center_crop(TF.resize(unit, [size], antialias=True), [size, size])
    return _normalise(unit, cfg, out=torch.empty(unit.shape, device=unit.device))
