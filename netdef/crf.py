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
import warnings

import torch
from torch import nn

BACKENDS = ("lattice", "dense", "separable")


# ------------------------------------------------------------------ permutohedral lattice
class PermutohedralLattice:
    """The lattice for N points with d-dimensional features (N x d, already divided by the
    kernel widths). `filter(values)` blurs N x V values: slice . blur_d ... blur_0 . splat,
    each a sparse matrix built once (splat/slice: d+1 entries per point; blur along lattice
    direction j: v + (v[below] + v[above]) / 2, a missing neighbour counting as 0). The blur
    matrices are symmetric, so autograd's adjoint runs the directions in reverse order,
    which is Caffe's backward."""

    def __init__(self, features: torch.Tensor):
        points, d = features.shape
        self.d = d
        work = features.detach().double()
        elevated = _elevate(work)
        rem0, rank = _closest_remainder_zero(elevated, d)
        weights = _barycentric(elevated, rem0, rank, d).to(features.dtype)  # N x (d+1)
        keys = _simplex_keys(rem0, rank, d).reshape(-1, d)  # vertex coordinates, first d
        codes, coder = _encode(keys)
        unique, inverse = torch.unique(codes, sorted=True, return_inverse=True)
        self.vertex_count = count = unique.numel()
        vertex_keys = keys.new_zeros(count, d).index_copy_(0, inverse, keys)
        point = torch.arange(points, device=features.device).repeat_interleave(d + 1)
        alpha = 1.0 / (1.0 + 2.0 ** -d)
        self.splat = _sparse(inverse, point, weights.reshape(-1), (count, points))
        self.slice = _sparse(point, inverse, alpha * weights.reshape(-1), (points, count))
        self.blurs = [self._blur(vertex_keys, unique, coder, axis, features.dtype)
                      for axis in range(d + 1)]

    def _blur(self, keys, unique, coder, axis, dtype):
        """I + (P_below + P_above) / 2 along direction `axis` (the step (1, .., -d, .., 1))."""
        count = unique.numel()
        step = torch.ones(self.d, dtype=keys.dtype, device=keys.device)
        if axis < self.d:
            step[axis] = -self.d
        vertex = torch.arange(count, device=keys.device)
        rows, columns = [vertex], [vertex]
        for sign in (-1, 1):
            code = coder(keys + sign * step)
            position = torch.searchsorted(unique, code).clamp_max(count - 1)
            hit = unique[position] == code
            rows.append(vertex[hit])
            columns.append(position[hit])
        rows, columns = torch.cat(rows), torch.cat(columns)
        values = torch.full(rows.shape, 0.5, dtype=dtype, device=keys.device)
        values[:count] = 1.0
        return _sparse(rows, columns, values, (count, count))

    def filter(self, values: torch.Tensor) -> torch.Tensor:
        lattice = self.splat.to(values.dtype) @ values
        for blur in self.blurs:
            lattice = blur.to(values.dtype) @ lattice
        return self.slice.to(values.dtype) @ lattice


def _sparse(rows, columns, values, size) -> torch.Tensor:
    """A CSR matrix (duplicates summed)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        matrix = torch.sparse_coo_tensor(torch.stack([rows, columns]), values, size,
                                         check_invariants=False)
        return matrix.coalesce().to_sparse_csr()


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


def _simplex_keys(rem0, rank, d: int) -> torch.Tensor:
    """Vertex r of the enclosing simplex: rem0 + canonical(r)[rank], first d coordinates."""
    remainder = torch.arange(d + 1, device=rem0.device).reshape(1, d + 1, 1)
    position = rank[:, :d].unsqueeze(1)  # N x 1 x d
    canonical = torch.where(position <= d - remainder, remainder, remainder - (d + 1))
    return rem0[:, :d].round().long().unsqueeze(1) + canonical


def _encode(keys: torch.Tensor):
    """One int64 per key (mixed radix over each coordinate's range, with room for the
    neighbours' +-d steps), and the function that encodes further keys the same way."""
    margin = keys.shape[1] + 1
    low = keys.min(0).values - margin
    span = keys.max(0).values + margin - low + 1
    radix = torch.cumprod(torch.cat([torch.ones_like(span[:1]), span[:-1]]), 0)
    if float(torch.prod(span.double())) >= 2.0 ** 62:
        raise ValueError("lattice keys span too wide a range to hash; scale the features down")

    def coder(more: torch.Tensor) -> torch.Tensor:
        return ((more - low) * radix).sum(1)
    return coder(keys), coder


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

    def filters(self, image: torch.Tensor) -> tuple[GaussianFilter, GaussianFilter]:
        """The spatial and bilateral kernels of one 3 x H x W image."""
        height, width = image.shape[1:]
        grid = pixel_grid(height, width, image.dtype, image.device)
        spatial = GaussianFilter(grid / self.theta_gamma, self.spatial_backend,
                                 grid=(height, width), theta=self.theta_gamma)
        colour = image.reshape(3, -1).T / self.theta_beta
        bilateral = GaussianFilter(torch.cat([grid / self.theta_alpha, colour], 1).detach(),
                                   self.bilateral_backend)
        return spatial, bilateral

    def forward(self, unary, first, image):
        outputs = []
        for n in range(unary.shape[0]):
            spatial, bilateral = self.filters(image[n].detach())
            outputs.append(self.infer(unary[n], first[n], spatial, bilateral))
        return torch.stack(outputs)

    def infer(self, unary, logits, spatial, bilateral):
        classes, height, width = unary.shape
        unary = unary.reshape(classes, -1)
        logits = logits.reshape(classes, -1)
        for _ in range(self.iterations):
            q = torch.softmax(logits, 0).T  # pixels x classes
            message = self.spatial_weight @ spatial(q).T + self.bilateral_weight @ bilateral(q).T
            logits = unary - self.compatibility @ message
        return logits.reshape(classes, height, width)
