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
_CHUNK = 1 << 16  # points per step of the lattice build


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
        # per point, in cache-sized chunks (whole-image temporaries cost 3x in page faults)
        parts = [_simplex(work[start:start + _CHUNK], d) for start in range(0, points, _CHUNK)]
        base, rank, weights = (torch.cat(part) for part in zip(*parts))
        low, radix = _code_layout(base, d)
        codes = torch.cat([_vertex_codes(base[start:start + _CHUNK], rank[start:start + _CHUNK],
                                         low, radix) for start in range(0, points, _CHUNK)])
        unique, vertices, by_vertex, starts = _hash(codes.reshape(-1))
        self.vertex_count = unique.numel()
        # lattice row vertex_count is never written (an empty bag): the missing neighbour
        self.splat = _Bags(by_vertex // (d + 1), weights.reshape(-1)[by_vertex], starts)
        self.slice = _Bags(vertices, weights.reshape(-1) / (1.0 + 2.0 ** -d),
                           torch.arange(0, points * (d + 1), d + 1, device=features.device))
        self.blurs = [_blur_bags(unique, step) for step in _direction_steps(radix)]

    def filter(self, values: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
        """K values, each output row times `scale` (N x 1) when given."""
        return _LatticeFilter.apply(values, self, scale)

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
    def forward(ctx, values, lattice, scale):
        ctx.lattice, ctx.scale = lattice, scale
        out = lattice.run(values)
        return out if scale is None else out.mul_(scale)  # a fresh tensor: scaled in place

    @staticmethod
    def backward(ctx, grad):
        if ctx.scale is not None:
            grad = grad * ctx.scale
        return ctx.lattice.run(grad, reverse=True), None, None


def _hash(codes: torch.Tensor):
    """One sort of the vertex codes gives the sorted distinct codes, each code's vertex id,
    the codes' order grouped by vertex, and where each group starts (plus the end)."""
    ordered, by_vertex = torch.sort(codes)
    first = torch.ones_like(ordered, dtype=torch.bool)
    first[1:] = ordered[1:] != ordered[:-1]
    vertices = torch.empty_like(by_vertex).scatter_(0, by_vertex, first.cumsum(0) - 1)
    starts = torch.cat([first.nonzero().squeeze(1), by_vertex.new_tensor([codes.numel()])])
    return ordered[first], vertices, by_vertex, starts


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
    # rank_i = #{j: r_j > r_i} + #{j < i: r_j = r_i}: the place in a stable descending sort
    _, order = torch.sort(residual, dim=1, descending=True, stable=True)
    rank = torch.empty_like(order).scatter_(1, order, _places(order))
    # bring the point back onto the hyperplane: move the extreme residuals by d+1
    total = total.unsqueeze(1)
    too_high = (total > 0) & (rank >= d + 1 - total)
    too_low = (total < 0) & (rank < -total)
    rem0 = rem0 - (d + 1) * too_high + (d + 1) * too_low
    rank = rank + total - (d + 1) * too_high + (d + 1) * too_low
    return rem0, rank


def _places(like: torch.Tensor) -> torch.Tensor:
    """0, 1, .., d+1 in every row, shaped like `like`."""
    return torch.arange(like.shape[1], device=like.device).expand_as(like)


def _barycentric(elevated, rem0, rank, d: int) -> torch.Tensor:
    share = (elevated - rem0) / (d + 1)
    weights = torch.zeros(elevated.shape[0], d + 2, dtype=elevated.dtype, device=elevated.device)
    weights.scatter_add_(1, d - rank, share)
    weights.scatter_add_(1, d + 1 - rank, -share)
    weights[:, 0] += 1.0 + weights[:, d + 1]
    return weights[:, :d + 1]


def _simplex(features: torch.Tensor, d: int):
    """Each point's remainder-0 lattice point (first d coordinates, integers), the ranks of
    its residuals and its barycentric weights."""
    elevated = _elevate(features)
    rem0, rank = _closest_remainder_zero(elevated, d)
    return rem0[:, :d].round().long(), rank, _barycentric(elevated, rem0, rank, d)


def _code_layout(base: torch.Tensor, d: int):
    """A mixed-radix int64 code over the first d coordinates, with room for the vertices'
    and neighbours' +-d steps: its origin and radices."""
    low = base.min(0).values - 2 * d - 1
    span = base.max(0).values + 2 * d + 1 - low + 1
    if float(torch.prod(span.double())) >= 2.0 ** 62:
        raise ValueError("lattice keys span too wide a range to hash; scale the features down")
    return low, torch.cumprod(torch.cat([torch.ones_like(span[:1]), span[:-1]]), 0)


def _vertex_codes(base, rank, low, radix) -> torch.Tensor:
    """The codes of each point's d+1 simplex vertices, vertex r being rem0 + canonical(r)
    [rank]. canonical(r)[rank_i] = r - (d+1) [rank_i > d - r]: vertex r wraps the
    coordinates ranked d+1-r .. d, so its code loses (d+1) times their radices, a running
    sum in rank order."""
    d = base.shape[1]
    total = int(radix.sum())
    order = torch.empty_like(rank).scatter_(1, rank, _places(rank))  # coordinate of rank k
    by_rank = torch.cat([radix, radix.new_zeros(1)])[order]  # coordinate d is implicit
    wrapped = torch.cat([by_rank.new_zeros(len(rank), 1), by_rank.flip(1).cumsum(1)[:, :d]], 1)
    remainder = torch.arange(d + 1, device=base.device)
    return ((base - low) * radix).sum(1, keepdim=True) + remainder * total - (d + 1) * wrapped


def _direction_steps(radix) -> list[int]:
    """The code step along each lattice direction: (1, .., -d, .., 1), then all ones."""
    total = int(radix.sum())
    return [total - (len(radix) + 1) * int(step) for step in radix] + [total]


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
    """The exact spatial Gaussian exp(-dx^2 / (2 theta_x^2) - dy^2 / (2 theta_y^2)) over an
    H x W grid, as a column pass and a row pass; values are (H W) x V. theta is one width or
    a tensor (theta_x, theta_y), differentiable."""
    theta_x, theta_y = (theta[0], theta[1]) if torch.is_tensor(theta) else (theta, theta)

    def kernel(size, width_):
        position = torch.arange(size, dtype=values.dtype, device=values.device)
        return torch.exp(-0.5 * ((position[:, None] - position[None, :]) / width_) ** 2)
    grid = values.reshape(height, width, -1)
    grid = torch.einsum("hk,kwv->hwv", kernel(height, theta_y), grid)
    grid = torch.einsum("wk,hkv->hwv", kernel(width, theta_x), grid)
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
        if self.backend == "lattice":
            return self.lattice.filter(values, self.normaliser.to(values.dtype))
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
        unary = unary.reshape(classes, -1).T.contiguous()  # addmm would copy it every time
        logits = logits.reshape(classes, -1).T
        # Z' = U - (S Ws^T + B Wb^T) Mu^T, with the C x C products taken once
        spatial_map = -self.spatial_weight.T @ self.compatibility.T
        bilateral_map = -self.bilateral_weight.T @ self.compatibility.T
        for _ in range(self.iterations):
            q = torch.softmax(logits, 1)
            logits = torch.addmm(unary, spatial(q), spatial_map).addmm_(bilateral(q),
                                                                        bilateral_map)
        return logits.T.reshape(classes, height, width)


# ------------------------------------------------------------------ learned kernel widths
class LearnedKernelMeanfield(nn.Module):
    """Schwing & Urtasun's fully connected deep structured model in Caffe's terms (A7):
    Potts compatibility fixed; learned are one spatial and one bilateral weight and the
    width of every kernel feature (spatial x, y; bilateral x, y and the three colour
    channels). Messages are unnormalised sums over the other pixels, K Q - Q. Per
    iteration: Q = softmax(Z); Z' = U + w_s (Ks Q - Q) + w_b (Kb Q - Q).

    Widths get gradients from autograd with the separable and dense backends; with the
    lattice from the identity sum_j (u_i - u_j)^2 k_ij v_j = u_i^2 (Kv)_i - 2 u_i (K(u v))_i
    + (K(u^2 v))_i, which holds for the lattice's own weights k_ij (see _WidthGradient)."""

    def __init__(self, iterations: int, weights, spatial_widths, bilateral_widths,
                 spatial_backend: str = "separable", bilateral_backend: str = "lattice"):
        super().__init__()
        self.iterations = iterations
        self.spatial_backend, self.bilateral_backend = spatial_backend, bilateral_backend
        self.weights = nn.Parameter(torch.tensor(weights, dtype=torch.float32))
        self.spatial_width = nn.Parameter(torch.tensor(spatial_widths, dtype=torch.float32))
        self.bilateral_width = nn.Parameter(torch.tensor(bilateral_widths, dtype=torch.float32))

    def forward(self, unary, first, image):
        outputs = []
        for n in range(unary.shape[0]):
            height, width = image.shape[2:]
            grid = pixel_grid(height, width, image.dtype, image.device)
            features = torch.cat([grid, image[n].detach().reshape(3, -1).T], 1)
            spatial = self._kernel(grid, self.spatial_width, self.spatial_backend,
                                   (height, width))
            bilateral = self._kernel(features, self.bilateral_width, self.bilateral_backend)
            outputs.append(self.infer(unary[n], first[n], spatial, bilateral))
        return torch.stack(outputs)

    @staticmethod
    def _kernel(features, widths, backend, grid=None):
        """v -> K v for the Gaussian over features / widths, differentiable in v and widths."""
        if backend == "lattice":
            centred = features - features.mean(0)  # smaller u: less cancellation in the identity
            lattice = PermutohedralLattice(centred / widths.detach().to(centred.dtype))
            return lambda values: _WidthGradient.apply(values, widths, lattice, centred)
        if backend == "dense":
            return lambda values: dense_filter(features / widths, values)
        if backend == "separable" and grid is not None:
            return lambda values: separable_filter(*grid, widths, values)
        raise ValueError(f"backend {backend!r}: one of {BACKENDS} (separable: spatial only)")

    def infer(self, unary, logits, spatial, bilateral):
        classes, height, width = unary.shape
        unary = unary.reshape(classes, -1).T
        logits = logits.reshape(classes, -1).T
        for _ in range(self.iterations):
            q = torch.softmax(logits, 1)
            logits = unary + self.weights[0] * (spatial(q) - q) \
                + self.weights[1] * (bilateral(q) - q)
        return logits.T.reshape(classes, height, width)


class _WidthGradient(torch.autograd.Function):
    """K v through a kernel with run(values, reverse) (the lattice), with gradients to v
    (the adjoint) and to the widths theta_m of the features u_m: dk_ij/dtheta_m =
    k_ij (u_im - u_jm)^2 / theta_m^3, so with h = K^T g,
    dL/dtheta_m = theta_m^-3 sum_i [u_im^2 g_i.(Kv)_i - 2 u_im v_i.(K^T(u_m g))_i + u_im^2 v_i.h_i],
    one extra pass of the adjoint over m x V channels. float64 keeps the cancelling terms."""

    @staticmethod
    def forward(ctx, values, widths, kernel, features):
        out = kernel.run(values)
        ctx.save_for_backward(values, out, widths)
        ctx.kernel, ctx.features = kernel, features
        return out

    @staticmethod
    def backward(ctx, grad):
        values, out, widths = ctx.saved_tensors
        kernel, u = ctx.kernel, ctx.features.double()
        adjoint = kernel.run(grad, reverse=True)
        grad_widths = None
        if ctx.needs_input_grad[1]:
            g, v, points = grad.double(), values.double(), u.shape[0]
            shifted = kernel.run((u[:, :, None] * g[:, None, :]).reshape(points, -1),
                                 reverse=True).reshape(points, u.shape[1], -1)
            squares = u ** 2
            total = squares * ((g * out.double()).sum(1, keepdim=True)
                               + (v * adjoint.double()).sum(1, keepdim=True)) \
                - 2 * u * (v[:, None, :] * shifted).sum(2)
            grad_widths = (total.sum(0) / widths.double() ** 3).to(widths.dtype)
        return adjoint, grad_widths, None, None
