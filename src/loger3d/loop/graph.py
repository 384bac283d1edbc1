"""The Sim(3) pose graph over chunks: one correction per chunk that closes the loops and spreads the drift.

Chunk k's frames live in its own drifted world; the correction ``C_k`` maps that world onto the
corrected one (``X' = C_k(X)``). A loop edge ``(a, b, D)`` says ``X_a = D(X_b)`` for the same
physical point, so the corrected run is consistent when ``C_b = C_a ∘ D``. Loops alone leave most
chunks free, so chain edges ask consecutive corrections to agree (drift accumulates smoothly):
the solution spreads each loop's misfit along the chunks between its ends. Chunk 0 is the gauge,
``C_0 = identity``.

Residuals are 7-vectors (``sim3.to_vectors``) whitened by ``CHAIN_SIGMA`` / ``LOOP_SIGMA``; loop
edges go through a Cauchy kernel so a wrong loop is down-weighted instead of bending the run.
Levenberg–Marquardt on sparse normal equations, unknowns perturbed on the right
(``C_k ← C_k ∘ Exp(δ_k)``, ``δ_k`` a 7-vector), Jacobians by central differences over all edges at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import spsolve

from ..errors import InputError
from .sim3 import Sim3, Sim3Arrays, compose_arrays, from_vectors, inverse_arrays, to_vectors

__all__ = ["CHAIN_SIGMA", "LOOP_SIGMA", "GraphSolution", "LoopEdge", "solve_pose_graph"]

#: How much a correction may change from one chunk to the next: (radians, metres, log scale). Wide, so the
#: chain only fills in what loops leave free: with LOOP_SIGMA 5x tighter, a loop over n chunks gives up only
#: 0.04 / (n + 0.04) of its misfit to the chain's pull. Kept as given: on tests/test_loop_graph.py's two-lap
#: restore (8 seeds), doubling any one component gained at most 0.05 % of the drift, while halving one, or
#: doubling the scale sigma, lost up to 0.6 %.
CHAIN_SIGMA = (0.01, 0.05, 0.01)
#: How well a verified loop's drift is known: (radians, metres, log scale).
LOOP_SIGMA = (0.002, 0.01, 0.002)

_STEP = 1e-6  # central-difference step on the 7-vector; truncation ~1e-12, rounding ~1e-10
_PERTURB = np.concatenate([np.eye(7), -np.eye(7)]) * _STEP  # [14, 7]: +h·e_m, then −h·e_m


@dataclass(frozen=True)
class LoopEdge:
    """Chunks ``a < b`` see the same place: ``X_a = drift(X_b)``; ``weight`` multiplies the information."""

    a: int
    b: int
    drift: Sim3
    weight: float = 1.0


@dataclass
class GraphSolution:
    """Per-chunk corrections (``[0]`` is identity) and how the solve went.

    ``loop_weights`` ``[L]``: each loop edge's final Cauchy weight in [0, 1], in the order given (near 0:
    the loop disagrees with the rest and was set aside). Costs are the robust objective: half the squared
    whitened chain residuals plus the Cauchy cost of the loop residuals.
    """

    corrections: list[Sim3]
    loop_weights: np.ndarray
    iterations: int
    initial_cost: float
    final_cost: float


@dataclass(frozen=True)
class _Edges:
    """All edges as arrays, chain edges first: residual ``log(A ∘ C_i⁻¹ ∘ C_j) · info``."""

    first: np.ndarray  # [E] node i
    second: np.ndarray  # [E] node j
    measured_inverse: Sim3Arrays  # [E] A: identity on chain edges, D⁻¹ on loop edges
    info: np.ndarray  # [E, 7] 1/sigma, times sqrt(weight) on loops
    is_loop: np.ndarray  # [E] bool
    slot: np.ndarray  # [K] node k's block among the unknowns (see _slots); -1 for the gauge node 0


def _take(transform: Sim3Arrays, index: int | slice | tuple | np.ndarray) -> Sim3Arrays:
    return tuple(x[index] for x in transform)  # type: ignore[return-value]


def _whitening(sigma: tuple[float, float, float]) -> np.ndarray:
    rotation, translation, log_scale = sigma
    return 1.0 / np.array([rotation] * 3 + [translation] * 3 + [log_scale])


def _check(num_nodes: int, loops: Sequence[LoopEdge], robust_scale: float, max_iterations: int) -> None:
    if int(num_nodes) != num_nodes or num_nodes < 1:
        raise InputError(f"a pose graph needs at least one node (chunk), got num_nodes={num_nodes}")
    if not robust_scale > 0.0:
        raise InputError(f"robust_scale must be positive, got {robust_scale}")
    if max_iterations < 0:
        raise InputError(f"max_iterations must be 0 or more, got {max_iterations}")
    for n, edge in enumerate(loops):
        if not 0 <= edge.a < edge.b < num_nodes:
            raise InputError(f"loop edge {n} joins chunks {edge.a} and {edge.b}: needs 0 <= a < b < {num_nodes}")
        if not (np.isfinite(edge.weight) and edge.weight >= 0.0):
            raise InputError(f"loop edge {n} has weight {edge.weight}: needs a finite weight >= 0")


def _slots(num_nodes: int, loops: Sequence[LoopEdge]) -> np.ndarray:
    """Each node's block among the unknowns ``[K]``: chunks no loop touches first, loop ends last.

    Eliminating a chunk inside the chain only joins its two neighbours, so in this order the fill of the
    factorisation stays among the few loop ends (SuperLU then needs no reordering of its own: "NATURAL"),
    about twice as fast as COLAMD on 3,000 chunks.
    """
    is_end = np.zeros(num_nodes, dtype=bool)
    is_end[[e.a for e in loops] + [e.b for e in loops]] = True
    order = np.concatenate([np.flatnonzero(~is_end[1:]), np.flatnonzero(is_end[1:])]) + 1
    slot = np.full(num_nodes, -1)
    slot[order] = np.arange(num_nodes - 1)
    return slot


def _edges(num_nodes: int, loops: Sequence[LoopEdge]) -> _Edges:
    chain = num_nodes - 1
    rotation = np.concatenate([np.broadcast_to(np.eye(3), (chain, 3, 3)),
                               np.stack([e.drift.rotation.T for e in loops])])
    drift_inverse = [e.drift.inverse() for e in loops]
    translation = np.concatenate([np.zeros((chain, 3)), np.stack([d.translation for d in drift_inverse])])
    scale = np.concatenate([np.ones(chain), [d.scale for d in drift_inverse]])
    info = np.concatenate([np.tile(_whitening(CHAIN_SIGMA), (chain, 1)),
                           _whitening(LOOP_SIGMA) * np.sqrt([[e.weight] for e in loops])])
    return _Edges(
        first=np.concatenate([np.arange(chain), [e.a for e in loops]]).astype(np.int64),
        second=np.concatenate([np.arange(1, num_nodes), [e.b for e in loops]]).astype(np.int64),
        measured_inverse=(rotation, translation, scale),
        info=info,
        is_loop=np.arange(chain + len(loops)) >= chain,
        slot=_slots(num_nodes, loops),
    )


def _relative(state: Sim3Arrays, edges: _Edges) -> Sim3Arrays:
    """``C_i⁻¹ ∘ C_j`` per edge."""
    return compose_arrays(inverse_arrays(_take(state, edges.first)), _take(state, edges.second))


def _residuals(state: Sim3Arrays, edges: _Edges) -> np.ndarray:
    """Whitened residuals ``[E, 7]``."""
    return to_vectors(compose_arrays(edges.measured_inverse, _relative(state, edges))) * edges.info


def _jacobians(state: Sim3Arrays, edges: _Edges) -> tuple[np.ndarray, np.ndarray]:
    """Whitened residual Jacobians ``[E, 7, 7]`` w.r.t. ``δ_i`` and ``δ_j`` (``C ← C ∘ Exp(δ)``).

    ``C_i ∘ Exp(δ)`` turns the residual into ``log(A ∘ Exp(−δ) ∘ B)`` and ``C_j ∘ Exp(δ)`` into
    ``log(A ∘ B ∘ Exp(δ))``, ``B = C_i⁻¹ ∘ C_j``: 28 evaluations per edge, all edges in one batch.
    """
    a, b = edges.measured_inverse, _relative(state, edges)
    lift = np.s_[:, None]  # [E, ...] → [E, 1, ...], against the 14 perturbations
    plus, minus = from_vectors(_PERTURB), from_vectors(-_PERTURB)
    on_first = to_vectors(compose_arrays(compose_arrays(_take(a, lift), minus), _take(b, lift)))
    on_second = to_vectors(compose_arrays(_take(compose_arrays(a, b), lift), plus))

    def central(values: np.ndarray) -> np.ndarray:  # [E, 14, 7] → [E, 7 residual, 7 parameter]
        return ((values[:, :7] - values[:, 7:]) / (2 * _STEP)).swapaxes(1, 2) * edges.info[:, :, None]

    return central(on_first), central(on_second)


def _robust(residuals: np.ndarray, edges: _Edges, robust_scale: float) -> tuple[np.ndarray, float]:
    """IRLS weights ``[E]`` (1 on chain edges, Cauchy on loops) and the robust cost."""
    squared = np.sum(residuals**2, axis=1)
    ratio = squared / robust_scale**2
    weights = np.where(edges.is_loop, 1.0 / (1.0 + ratio), 1.0)
    cost = np.where(edges.is_loop, 0.5 * robust_scale**2 * np.log1p(ratio), 0.5 * squared)
    return weights, float(cost.sum())


def _normal_equations(
    state: Sim3Arrays, edges: _Edges, residuals: np.ndarray, weights: np.ndarray, num_nodes: int
) -> tuple[sp.csc_matrix, np.ndarray]:
    """``H = Jᵀ W J`` ``[7(K−1), 7(K−1)]`` and ``g = Jᵀ W r``, in ``slot`` order; the gauge node 0 has no columns."""
    on_first, on_second = _jacobians(state, edges)
    root = np.sqrt(weights)
    edge_rows = np.arange(len(weights))[:, None, None] * 7 + np.arange(7)[None, :, None]  # [E, 7, 1]
    data, rows, cols = [], [], []
    for jacobian, node in ((on_first, edges.first), (on_second, edges.second)):
        free = node > 0
        node_cols = edges.slot[node][:, None, None] * 7 + np.arange(7)[None, None, :]  # [E, 1, 7]
        row, col = np.broadcast_arrays(edge_rows, node_cols)
        data.append((jacobian * root[:, None, None])[free].ravel())
        rows.append(row[free].ravel())
        cols.append(col[free].ravel())
    shape = (7 * len(weights), 7 * (num_nodes - 1))
    jacobian = sp.csr_matrix((np.concatenate(data), (np.concatenate(rows), np.concatenate(cols))), shape=shape)
    hessian = (jacobian.T @ jacobian).tocsc()
    gradient = jacobian.T @ (residuals * root[:, None]).ravel()
    return hessian, gradient


def _retract(state: Sim3Arrays, step: np.ndarray, slot: np.ndarray) -> Sim3Arrays:
    """``C_k ∘ Exp(δ_k)`` for k ≥ 1; ``step`` ``[7(K−1)]`` in ``slot`` order. Node 0 stays exactly identity."""
    moved = compose_arrays(_take(state, slice(1, None)), from_vectors(step.reshape(-1, 7)[slot[1:]]))
    return tuple(np.concatenate([x[:1], y]) for x, y in zip(state, moved))  # type: ignore[return-value]


def solve_pose_graph(
    num_nodes: int, loops: Sequence[LoopEdge], robust_scale: float = 5.0, max_iterations: int = 50
) -> GraphSolution:
    """Corrections ``C_k`` for chunks ``0..num_nodes−1`` that satisfy ``C_b ≈ C_a ∘ drift`` on every loop edge.

    Minimises ``½ Σ_chain ‖log(C_k⁻¹ ∘ C_{k+1}) / CHAIN_SIGMA‖²`` plus, per loop edge, the Cauchy cost
    ``½ c² log(1 + ‖r‖²/c²)`` of ``r = log((C_a ∘ D)⁻¹ ∘ C_b) / LOOP_SIGMA · √weight``, ``c = robust_scale``
    (in sigmas). Levenberg–Marquardt from all-identity corrections; the IRLS weights
    ``1 / (1 + (‖r‖/c)²)`` are recomputed at each linearisation and the damping accepts a step only if the
    robust cost falls. With no loop edges nothing is measured: every correction is exactly identity.
    """
    loops = list(loops)
    _check(num_nodes, loops, robust_scale, max_iterations)
    if not loops:
        return GraphSolution([Sim3.identity() for _ in range(num_nodes)], np.zeros(0), 0, 0.0, 0.0)
    edges = _edges(num_nodes, loops)
    state = (np.tile(np.eye(3), (num_nodes, 1, 1)), np.zeros((num_nodes, 3)), np.ones(num_nodes))
    residuals = _residuals(state, edges)
    weights, cost = _robust(residuals, edges, robust_scale)
    initial_cost = cost
    damping, growth = 1e-4, 2.0  # Marquardt's λ on diag(H), Nielsen's update
    iterations, linearised = 0, False
    while iterations < max_iterations:
        if not linearised:
            hessian, gradient = _normal_equations(state, edges, residuals, weights, num_nodes)
            diagonal = hessian.diagonal()
            linearised = True
            if np.max(np.abs(gradient)) < 1e-9:
                break
        iterations += 1
        step = spsolve(hessian + sp.diags(damping * diagonal, format="csc"), -gradient, permc_spec="NATURAL")
        candidate = _retract(state, step, edges.slot)
        candidate_residuals = _residuals(candidate, edges)
        candidate_weights, candidate_cost = _robust(candidate_residuals, edges, robust_scale)
        predicted = -(gradient @ step + 0.5 * step @ (hessian @ step))
        gain = cost - candidate_cost
        if gain > 0.0 and predicted > 0.0:
            converged = gain <= 1e-10 * cost or np.max(np.abs(step)) < 1e-10
            state, residuals, weights, cost = candidate, candidate_residuals, candidate_weights, candidate_cost
            damping *= max(1.0 / 3.0, 1.0 - (2.0 * gain / predicted - 1.0) ** 3)
            growth, linearised = 2.0, False
            if converged:
                break
        else:
            damping *= growth
            growth *= 2.0
            if damping > 1e12:  # no step lowers the cost: at a minimum to machine precision
                break
    corrections = [Sim3.identity()] + [Sim3.from_arrays(_take(state, k)) for k in range(1, num_nodes)]
    return GraphSolution(corrections, weights[edges.is_loop].copy(), iterations, initial_cost, cost)
