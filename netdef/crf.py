"""The CRF-RNN head: mean-field inference of a fully connected CRF with Gaussian kernels.

Messages are Gaussian filters over pixel features, v'_i = sum_j exp(-|f_i - f_j|^2 / 2) v_j,
computed by one of three backends behind `gaussian_filter`:

- "lattice": the permutohedral lattice (Adams, Baek & Davis 2010), as CRF-RNN's Caffe layer
  uses it: O(N) time and memory, approximate. Vectorised torch (sort-based hashing, no
  loops over pixels or lattice points), so it runs on CPU and CUDA and autograd gives the
  exact adjoint of its splat / blur / slice.
- "dense": the exact sum over all pixel pairs, in row chunks (small images; the test reference).
- "separable": the exact spatial Gaussian as a row pass and a column pass (features must be
  the pixel grid scaled by one width, as the spatial kernel's are).
"""
from __future__ import annotations

import math

import torch
from torch import nn

BACKENDS = ("lattice", "dense", "separable")


# ------------------------------------------------------------------ permutohedral lattice
class PermutohedralLattice:
    """The lattice for N points with d-dimensional features (N x d, already divided by the
    kernel widths). `filter(values)` blurs N x V values: splat each point into the d+1
    vertices of its simplex, blur along each lattice direction j (v + (v[below] + v[above])
    / 2, a missing neighbour counting as 0), slice back. Each step is a weighted sum of
    gathered rows, run as one embedding_bag (a fused gather-multiply-add, the fastest of
    torch's sparse primitives on CPU). The backward pass is the lattice's adjoint: the same
    pipeline with the blurs in reverse order (each blur is symmetric), as Caffe's."""

    def __init__(self, features: torch.Tensor):
        points, d = features.shape
        self.d = d
        work = features.detach()
        if work.dtype not in (torch.float32, torch.float64):
            work = work.float()
        elevated = _elevate(work)
        rem0, rank = _closest_remainder_zero(elevated, d)
        weights = _barycentric(elevated, rem0, rank, d)  # N x (d+1)
        codes, steps = _vertex_codes(rem0, rank, d)
        unique, inverse = torch.unique(codes.reshape(-1), sorted=True, return_inverse=True)
        self.vertex_count = count = unique.numel()
        vertices = inverse.reshape(points, d + 1)
        # lattice row `count` is never written: it is the missing neighbour, always 0
        self.splat = _splat_bags(vertices, weights, count)
        self.slice = _Bags(vertices.reshape(-1), weights.reshape(-1) / (1.0 + 2.0 ** -d),
                           torch.arange(0, points * (d + 1), d + 1, device=features.device))
        self.blurs = [_blur_bags(unique, step) for step in steps]

    def filter(self, values: torch.Tensor) -> torch.Tensor:
        return _LatticeFilter.apply(values, self)

    def run(self, values: torch.Tensor, reverse: bool = False) -> torch.Tensor:
        """slice . blur_d ... blur_0 . splat, or with the blurs reversed (the adjoint)."""
        lattice = self.splat(values)
        for blur in (reversed(self.blurs) if reverse else self.blurs):
            lattice = blur(lattice)
        return self.slice(lattice)


class _Bags:
    """out[b] = sum over bag b of weight * table[index], bag b starting at offsets[b] (an
    offset equal to len(index) gives an empty bag: a zero row)."""

    def __init__(self, index, weights, offsets):
        self.index, self.offsets, self.weights = index, offsets, {weights.dtype: weights}

    def __call__(self, table: torch.Tensor) -> torch.Tensor:
        if table.dtype not in self.weights:
            self.weights[table.dtype] = next(iter(self.weights.values())).to(table.dtype)
        return torch.nn.functional.embedding_bag(self.index, table, self.offsets, mode="sum",
                                                 per_sample_weights=self.weights[table.dtype])


class _LatticeFilter(torch.autograd.Function):
    """Gradients to the filtered values (the features are constants of the lattice)."""

    @staticmethod
    def forward(ctx, values, lattice):
        ctx.lattice = lattice
        return lattice.run(values)

    @staticmethod
    def backward(ctx, grad):
        return ctx.lattice.run(grad, reverse=True), None


def _splat_bags(vertices: torch.Tensor, weights: torch.Tensor, count: int) -> _Bags:
    """Vertex v <- the points whose simplex has it, with their barycentric weights; the
    count + 1 bags are the lattice's rows (the last, the missing neighbour, empty)."""
    corners = vertices.shape[1]
    flat = vertices.reshape(-1)
    by_vertex = torch.argsort(flat, stable=True)
    offsets = torch.zeros(count + 1, dtype=torch.long, device=flat.device)
    offsets[1:] = torch.bincount(flat, minlength=count).cumsum(0)
    return _Bags(by_vertex // corners, weights.reshape(-1)[by_vertex], offsets)


def _blur_bags(unique: torch.Tensor, step: int) -> _Bags:
    """v + (v[below] + v[above]) / 2 along the direction whose code step is `step`; a
    missing neighbour is row count (zero). `unique` holds the sorted vertex codes."""
    count = unique.numel()
    vertex = torch.arange(count, device=unique.device)
    target = unique + step
    position = torch.searchsorted(unique, target).clamp_max(count - 1)
    hit = unique[position] == target
    above = torch.where(hit, position, count)
    below = torch.full((count,), count, dtype=torch.long, device=unique.device)
    below[position[hit]] = vertex[hit]
    index = torch.stack([vertex, below, above], 1).reshape(-1)
    weights = torch.tensor([1.0, 0.5, 0.5], device=unique.device).repeat(count)
    return _Bags(index, weights, torch.arange(0, 3 * count + 1, 3, device=unique.device))


def _elevate(features: torch.Tensor) -> torch.Tensor:
    """Into the hyperplane sum(y) = 0 of R^(d+1), scaled so the lattice blur approximates a
    unit Gaussian: axis i scaled by sqrt(2/3) (d+1) / sqrt((i+1)(i+2))."""
    points, d = features.shape
    index = torch.arange(d, dtype=features.dtype, device=features.device)
    scale = math.sqrt(2.0 / 3.0) * (d + 1) / torch.sqrt((index + 1) * (index + 2))
    scaled = features * scale
    # y_i = sum_{k >= i} s_k - i s_{i-1} (i = 1..d), y_0 = sum of all s
    tail = scaled.flip(1).cumsum(1).flip(1)  # tail[:, k] = sum_{m >= k} s_m
    elevated = torch.empty(points, d + 1, dtype=features.dtype, device=features.device)
    elevated[:, 0] = tail[:, 0]
    later = torch.cat([tail[:, 1:], torch.zeros_like(tail[:, :1])], 1)  # sum_{m >= i} s_m, i=1..d
    elevated[:, 1:] = later - (index + 1) * scaled
    return elevated


def _closest_remainder_zero(elevated: torch.Tensor, d: int):
    """The nearest lattice point of remainder 0 and the rank of each coordinate's residual."""
    down = torch.floor(elevated / (d + 1)) * (d + 1)
    up = down + (d + 1)
    rem0 = torch.where(up - elevated < elevated - down, up, down)
    total = (rem0.sum(1) / (d + 1)).round().long()
    residual = elevated - rem0
    # rank_i = #{j > i: r_i < r_j} + #{j < i: r_j >= r_i}  (ties broken by position)
    bigger = residual.unsqueeze(1) > residual.unsqueeze(2)  # [n, i, j] = r_j > r_i
    not_smaller = residual.unsqueeze(1) >= residual.unsqueeze(2)
    later = torch.triu(torch.ones(d + 1, d + 1, dtype=torch.bool, device=elevated.device), 1)
    rank = (bigger & later).sum(2) + (not_smaller & later.T).sum(2)
    # bring the point back onto the hyperplane: move the extreme residuals by d+1
    total = total.unsqueeze(1)
    too_high = (total > 0) & (rank >= d + 1 - total)
    too_low = (total < 0) & (rank < -total)
    rem0 = rem0 - (d + 1) * too_high + (d + 1) * too_low
    rank = rank + total - (d + 1) * too_high + (d + 1) * too_low
    return rem0, rank


def _barycentric(elevated, rem0, rank, d: int) -> torch.Tensor:
    share = (elevated - rem0) / (d + 1)
    weights = torch.zeros(elevated.shape[0], d + 2, dtype=elevated.dtype, device=elevated.device)
    weights.scatter_add_(1, d - rank, share)
    weights.scatter_add_(1, d + 1 - rank, -share)
    weights[:, 0] += 1.0 + weights[:, d + 1]
    return weights[:, :d + 1]


def _vertex_codes(rem0, rank, d: int):
    """Each point's d+1 simplex vertices (vertex r: rem0 + canonical(r)[rank]) as one int64
    each, a mixed-radix code of the first d coordinates with room for the neighbours'
    +-d steps; and the code step of each lattice direction ((1, .., -d, .., 1), then ones),
    so neighbours are found by adding a constant to a code."""
    base = rem0[:, :d].round().long()
    low = base.min(0).values - 2 * d - 1
    span = base.max(0).values + 2 * d + 1 - low + 1
    if float(torch.prod(span.double())) >= 2.0 ** 62:
        raise ValueError("lattice keys span too wide a range to hash; scale the features down")
    radix = torch.cumprod(torch.cat([torch.ones_like(span[:1]), span[:-1]]), 0)
    # canonical(r)[rank_i] = r - (d+1) [rank_i > d - r]
    remainder = torch.arange(d + 1, device=rem0.device)
    wraps = rank[:, None, :d] > (d - remainder)[None, :, None]  # N x (d+1) x d
    total = int(radix.sum())
    codes = ((base - low) * radix).sum(1, keepdim=True) + remainder * total \
        - (d + 1) * (wraps * radix).sum(2)
    steps = [total - (d + 1) * int(radix[axis]) for axis in range(d)] + [total]
    return codes, steps


# ------------------------------------------------------------------ exact filters
def dense_filter(features: torch.Tensor, values: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
    """sum_j exp(-|f_i - f_j|^2 / 2) v_j exactly, chunk rows at a time (O(N chunk) memory)."""
    rows = []
    for start in range(0, features.shape[0], chunk):
        block = features[start:start + chunk]
        kernel = torch.exp(-0.5 * torch.cdist(block, features).pow(2))
        rows.append(kernel @ values)
    return torch.cat(rows)


def separable_filter(height: int, width: int, theta, values: torch.Tensor) -> torch.Tensor:
    """The exact spatial Gaussian exp(-(dx^2 + dy^2) / (2 theta^2)) over an H x W grid, as a
    column pass and a row pass; values are (H W) x V."""
    def kernel(size):
        position = torch.arange(size, dtype=values.dtype, device=values.device)
        return torch.exp(-0.5 * ((position[:, None] - position[None, :]) / theta) ** 2)
    grid = values.reshape(height, width, -1)
    grid = torch.einsum("hk,kwv->hwv", kernel(height), grid)
    grid = torch.einsum("wk,hkv->hwv", kernel(width), grid)
    return grid.reshape(height * width, -1)


class GaussianFilter:
    """One kernel over one image's pixels, with its normaliser 1 / (K 1 + 1e-20)."""

    def __init__(self, features: torch.Tensor, backend: str, grid=None, theta=None):
        self.features, self.backend, self.grid, self.theta = features, backend, grid, theta
        if backend == "lattice":
            self.lattice = PermutohedralLattice(features)
        elif backend == "separable" and grid is None:
            raise ValueError("the separable backend serves the spatial kernel only")
        ones = features.new_ones(features.shape[0], 1)
        self.normaliser = 1.0 / (self.raw(ones) + 1e-20)

    def raw(self, values: torch.Tensor) -> torch.Tensor:
        if self.backend == "lattice":
            return self.lattice.filter(values)
        if self.backend == "dense":
            return dense_filter(self.features, values)
        return separable_filter(*self.grid, self.theta, values)

    def __call__(self, values: torch.Tensor) -> torch.Tensor:
        return self.raw(values) * self.normaliser


def pixel_grid(height: int, width: int, dtype, device) -> torch.Tensor:
    """(x, y) of every pixel, row-major: x the column index, y the row index."""
    ys, xs = torch.meshgrid(torch.arange(height, dtype=dtype, device=device),
                            torch.arange(width, dtype=dtype, device=device), indexing="ij")
    return torch.stack([xs.reshape(-1), ys.reshape(-1)], 1)


# ------------------------------------------------------------------ the layer
class MultiStageMeanfield(nn.Module):
    """CRF-RNN's layer in Caffe's order of operations. Per iteration, from logits Z:
    Q = softmax(Z); S = nS Gs(Q); B = nB Gb(Q); M = Ws S + Wb B; Z' = U - Mu M. Ws, Wb, Mu
    are C x C (Caffe's blobs 0-2), shared by the iterations. Bottoms: unary U, the first
    iteration's logits Q0, the image (bilateral features); any size and batch per call."""

    def __init__(self, classes: int, iterations: int, theta_alpha: float, theta_beta: float,
                 theta_gamma: float, spatial_weights, bilateral_weights,
                 spatial_backend: str = "lattice", bilateral_backend: str = "lattice"):
        super().__init__()
        self.iterations = iterations
        self.theta_alpha, self.theta_beta, self.theta_gamma = theta_alpha, theta_beta, theta_gamma
        self.spatial_backend, self.bilateral_backend = spatial_backend, bilateral_backend
        self.spatial_weight = nn.Parameter(torch.diag(torch.tensor(spatial_weights,
                                                                   dtype=torch.float32)))
        self.bilateral_weight = nn.Parameter(torch.diag(torch.tensor(bilateral_weights,
                                                                     dtype=torch.float32)))
        self.compatibility = nn.Parameter(-torch.eye(classes))
        self._spatial_cache: dict = {}

    def filters(self, image: torch.Tensor) -> tuple[GaussianFilter, GaussianFilter]:
        """The spatial and bilateral kernels of one 3 x H x W image."""
        height, width = image.shape[1:]
        grid = pixel_grid(height, width, image.dtype, image.device)
        colour = image.reshape(3, -1).T / self.theta_beta
        bilateral = GaussianFilter(torch.cat([grid / self.theta_alpha, colour], 1).detach(),
                                   self.bilateral_backend)
        return self._spatial_filter(grid, height, width), bilateral

    def _spatial_filter(self, grid, height, width) -> GaussianFilter:
        """The spatial kernel depends on the size only: built once per size, as Caffe's
        layer builds it in Reshape."""
        key = (height, width, grid.dtype, grid.device, self.theta_gamma, self.spatial_backend)
        if key not in self._spatial_cache:
            if len(self._spatial_cache) >= 4:
                self._spatial_cache.clear()
            self._spatial_cache[key] = GaussianFilter(grid / self.theta_gamma,
                                                      self.spatial_backend, grid=(height, width),
                                                      theta=self.theta_gamma)
        return self._spatial_cache[key]

    def forward(self, unary, first, image):
        outputs = []
        for n in range(unary.shape[0]):
            spatial, bilateral = self.filters(image[n].detach())
            outputs.append(self.infer(unary[n], first[n], spatial, bilateral))
        return torch.stack(outputs)

    def infer(self, unary, logits, spatial, bilateral):
        # pixels x classes throughout: the filters gather rows, so no transposed copies
        classes, height, width = unary.shape
        unary = unary.reshape(classes, -1).T
        logits = logits.reshape(classes, -1).T
        # Z' = U - (S Ws^T + B Wb^T) Mu^T, with the C x C products taken once
        spatial_map = -self.spatial_weight.T @ self.compatibility.T
        bilateral_map = -self.bilateral_weight.T @ self.compatibility.T
        for _ in range(self.iterations):
            q = torch.softmax(logits, 1)
            logits = torch.addmm(torch.addmm(unary, spatial(q), spatial_map),
                                 bilateral(q), bilateral_map)
        return logits.T.reshape(classes, height, width)
