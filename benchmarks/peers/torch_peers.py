"""The PyTorch side of the peer benchmarks: the original Blackbox-Backprop models, rewritten from their definitions.

The Blackbox-Backprop repositories (Vlastelica et al. 2020: Warcraft shortest path; the Globe TSP code the ICLR 2023
paper builds on) do not run on current Python / PyTorch as published (pinned 2019-2020 releases, ``ray``-based
helpers, removed ``torchvision`` arguments). What follows is written from their model and solver definitions:

* Warcraft: ``CombRenset18`` -- torchvision's ResNet18 ``conv1``/``bn1``/``relu``/``maxpool``/``layer1`` on the
  ``3 x 96 x 96`` map, ``AdaptiveMaxPool2d((12, 12))``, mean over the 64 channels; ``torch.abs`` makes the
  weights positive; the ``ShortestPath`` autograd function solves every instance on the host with the original
  heapq Dijkstra (8-neighbourhood, vertex costs, path from the top-left to the bottom-right cell) in a plain
  loop (``maybe_parallelize`` without ray); BB's backward re-solves at ``w + lambda * grad`` (clamped at 0);
  ``HammingLoss`` is ``(y (1 - t) + (1 - y) t).mean(0).sum()``; Adam 5e-4.
* Globe TSP: the paper's CNN (conv 20 @ 4 / 2, conv 50 @ 4 / 2, dense 500, 3 outputs per flag, normalised onto
  the unit sphere), great-circle distances, a BB ``TSP`` autograd function calling an exact solver (or LKH)
  once per instance on the forward and once on the backward pass (the paper's Table 8 setting), Hamming loss,
  Adam 1e-4.

The ResNet layers are written out (``BasicBlock`` as in torchvision, with its initialisation), so torchvision is
not needed. Only ``bench_peers.py``'s PyTorch workers import this module.
"""

from __future__ import annotations

import heapq

import numpy as np
import torch
from torch import nn

MOVES_8 = tuple((dx, dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1) if (dx, dy) != (0, 0))


# ------------------------------------------------------------------------------------------------ Warcraft


def bb_dijkstra(matrix: np.ndarray) -> np.ndarray:
    """The original code's ``dijkstra(matrix, "8-grid").shortest_path``: heapq over vertex costs, no early exit.

    The path cost counts both end cells; ``transitions`` keeps the last strict improvement of each cell.
    """
    x_max, y_max = matrix.shape
    costs = np.full_like(matrix, 1.0e10)
    costs[0][0] = matrix[0][0]
    priority_queue = [(matrix[0][0], (0, 0))]
    certain = set()
    transitions = {}
    while priority_queue:
        _, (cur_x, cur_y) = heapq.heappop(priority_queue)
        if (cur_x, cur_y) in certain:
            continue
        for dx, dy in MOVES_8:
            x, y = cur_x + dx, cur_y + dy
            if 0 <= x < x_max and 0 <= y < y_max and (x, y) not in certain:
                if matrix[x][y] + costs[cur_x][cur_y] < costs[x][y]:
                    costs[x][y] = matrix[x][y] + costs[cur_x][cur_y]
                    heapq.heappush(priority_queue, (costs[x][y], (x, y)))
                    transitions[(x, y)] = (cur_x, cur_y)
        certain.add((cur_x, cur_y))
    on_path = np.zeros_like(matrix)
    cur_x, cur_y = x_max - 1, y_max - 1
    on_path[cur_x, cur_y] = 1.0
    while (cur_x, cur_y) != (0, 0):
        cur_x, cur_y = transitions[(cur_x, cur_y)]
        on_path[cur_x, cur_y] = 1.0
    return on_path


class ScipyDijkstra:
    """Per-instance ``scipy.sparse.csgraph.dijkstra`` on the 8-neighbour grid (edge weight = head cell's cost):
    a faster host solver than the original heapq loop, for a stronger peer."""

    def __init__(self, h: int, w: int):
        import scipy.sparse

        rows, cols = [], []
        for i in range(h):
            for j in range(w):
                for di, dj in MOVES_8:
                    a, b = i + di, j + dj
                    if 0 <= a < h and 0 <= b < w:
                        rows.append(i * w + j)
                        cols.append(a * w + b)
        self.graph = scipy.sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(h * w, h * w))
        self.graph.sort_indices()

    def __call__(self, matrix: np.ndarray) -> np.ndarray:
        import scipy.sparse.csgraph

        flat = matrix.reshape(-1).astype(np.float64)
        self.graph.data = flat[self.graph.indices] + 1e-300  # csgraph drops explicit zeros
        _, pred = scipy.sparse.csgraph.dijkstra(self.graph, directed=True, indices=0, return_predecessors=True)
        path = np.zeros(flat.size, matrix.dtype)
        v = flat.size - 1
        while v >= 0:
            path[v] = 1.0
            v = pred[v]
        return path.reshape(matrix.shape)


class BlackboxSolver(torch.autograd.Function):
    """BB (Vlastelica et al. 2020) around a per-instance numpy solver of a *minimisation* problem.

    Forward: ``y = [solve(w_i) for i]``; backward: ``w' = project(w + lam * grad)``, ``y' = [solve(w'_i)]``,
    gradient ``-(y - y') / lam`` -- the original ``ShortestPath`` / ``TspSolver`` functions.
    """

    @staticmethod
    def forward(ctx, weights, solve, lam, project):
        ctx.weights = weights.detach().cpu().numpy()
        ctx.solve, ctx.lam, ctx.project = solve, lam, project
        ctx.solutions = np.asarray([solve(w) for w in ctx.weights])
        return torch.from_numpy(ctx.solutions).to(weights.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        perturbed = ctx.project(ctx.weights + ctx.lam * grad_output.detach().cpu().numpy())
        better = np.asarray([ctx.solve(w) for w in perturbed])
        gradient = -(ctx.solutions - better) / ctx.lam
        return torch.from_numpy(gradient).to(grad_output.dtype), None, None, None


class IdentitySolver(torch.autograd.Function):
    """The paper's Identity method for a minimisation solver: per-instance solves forward, ``-grad`` backward."""

    @staticmethod
    def forward(ctx, weights, solve):
        solutions = np.asarray([solve(w) for w in weights.detach().cpu().numpy()])
        return torch.from_numpy(solutions).to(weights.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        return -grad_output, None


def hamming_loss(suggested, targets):
    """The original ``HammingLoss``: mean over the batch of the number of wrong cells."""
    errors = suggested * (1.0 - targets) + (1.0 - suggested) * targets
    return errors.mean(dim=0).sum()


class BasicBlock(nn.Module):
    """torchvision's ResNet ``BasicBlock`` without downsampling (``layer1``)."""

    def __init__(self, planes: int):
        super().__init__()
        self.conv1 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + x)


class CombResnet18(nn.Module):
    """The original ``CombRenset18``: ResNet18 stem + ``layer1``, adaptive max-pool to ``k x k``, channel mean."""

    def __init__(self, grid: int, in_channels: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = nn.Sequential(BasicBlock(64), BasicBlock(64))
        self.pool = nn.AdaptiveMaxPool2d((grid, grid))
        for m in self.modules():  # torchvision's ResNet initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.pool(self.layer1(x))
        return x.mean(dim=1)


def warcraft_step(gradient: str, dijkstra: str, maps: np.ndarray, paths: np.ndarray, lam: float = 20.0):
    """A train-step closure of the original Warcraft trainer (``DijkstraOnFull.forward_pass`` + Adam 5e-4).

    Args:
        gradient: "blackbox" or "identity".
        dijkstra: "python" (the original heapq loop) or "scipy" (per-instance csgraph Dijkstra).
        maps: ``[B, 8k, 8k, 3]`` float32 images (channels-last, as identity_tf reads them).
        paths: ``[B, k, k]`` 0/1 true paths.
    """
    torch.manual_seed(0)
    k = paths.shape[-1]
    model = CombResnet18(k)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-4)
    solve = bb_dijkstra if dijkstra == "python" else ScipyDijkstra(k, k)
    x = torch.from_numpy(np.ascontiguousarray(maps.transpose(0, 3, 1, 2)))  # NCHW, as the original loader
    targets = torch.from_numpy(paths)

    def clamp(w):
        return np.maximum(w, 0.0)

    def step():
        optimizer.zero_grad()
        weights = torch.abs(model(x))
        if gradient == "blackbox":
            suggested = BlackboxSolver.apply(weights, solve, lam, clamp)
        else:
            suggested = IdentitySolver.apply(weights, solve)
        loss = hamming_loss(suggested, targets)
        loss.backward()
        optimizer.step()
        return loss.detach()

    return step


# ------------------------------------------------------------------------------------------------ Globe TSP


class GlobeNet(nn.Module):
    """The paper's Globe TSP CNN, one flag at a time (identity_tf's ``flag_encoding: shared``): ``[B, k, 3]``."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(3, 20, 4, stride=2),
            nn.ReLU(),
            nn.Conv2d(20, 50, 4, stride=2),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(50 * 3 * 8, 500),
            nn.ReLU(),
            nn.Linear(500, 3),
        )

    def forward(self, flags):  # [B, k, 3, 20, 40]
        b, k = flags.shape[:2]
        raw = self.encoder(flags.reshape(b * k, *flags.shape[2:])).reshape(b, k, 3)
        return nn.functional.normalize(raw, dim=-1)


def sphere_distances(points, eps: float = 1e-12):
    """Great-circle distances ``2 atan2(|p - q|, |p + q|)``, symmetric, zero diagonal (as identity_tf's model)."""
    p, q = points[:, :, None, :], points[:, None, :, :]
    apart = torch.sqrt(((p - q) ** 2).sum(-1) + eps**2)
    d = 2.0 * torch.atan2(apart, torch.sqrt(((p + q) ** 2).sum(-1) + eps**2))
    d = 0.5 * (d + d.transpose(1, 2))
    return d * (1.0 - torch.eye(points.shape[1], dtype=d.dtype))


def tsp_step(solve, flags: np.ndarray, tours: np.ndarray, lam: float = 20.0):
    """A BB train step of the Globe TSP model calling ``solve`` (``[k, k]`` -> tour adjacency) per instance.

    Args:
        solve: Per-instance solver of the symmetric TSP.
        flags: ``[B, k, 20, 40, 3]`` float32 in [0, 1].
        tours: ``[B, k, k]`` true tour adjacencies.
    """
    torch.manual_seed(0)
    model = GlobeNet()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.from_numpy(np.ascontiguousarray(flags.transpose(0, 1, 4, 2, 3)))  # [B, k, 3, 20, 40]
    targets = torch.from_numpy(tours)

    def symmetrise(w):
        return 0.5 * (w + w.transpose(0, 2, 1))

    def step():
        optimizer.zero_grad()
        d = sphere_distances(model(x))
        loss = hamming_loss(BlackboxSolver.apply(d, solve, lam, symmetrise), targets)
        loss.backward()
        optimizer.step()
        return loss.detach()

    return step
