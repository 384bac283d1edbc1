"""Loop closure's back end: Sim(3) algebra and fits, and the pose graph that spreads loop corrections over chunks."""

from __future__ import annotations

import numpy as np
import pytest

from loger3d.errors import InputError
from loger3d.loop.graph import GraphSolution, LoopEdge, solve_pose_graph
from loger3d.loop.sim3 import Sim3, fit_sim3, robust_fit_sim3, so3_exp, so3_log

LAP = 30  # chunks per lap of the synthetic two-lap run
K = 2 * LAP
# Per-chunk drift increment δ_k = BIAS + N(0, NOISE): 0.5° about the vertical, 2 cm + 1 cm, +0.5 % scale, so
# drift accumulates, plus a random part of ~10 % of that. Loops between laps only say that the two laps agree, so
# drift common to both (lap 1's random walk) is invisible to them and only the chain's smoothness guesses it:
# that sets a floor on the restore error no solver can beat. Even without noise the floor is ~1.5 %: chain edge
# 29→30 is the one edge not repeated in both laps, and the chain prior's optimum gives it a double step.
BIAS = np.array([0.0, np.radians(0.5), 0.0, 0.02, 0.0, 0.01, 0.005])
NOISE = np.array([np.radians(0.05)] * 3 + [0.002] * 3 + [0.0005])


def _random_sim3(rng: np.random.Generator, angle_deg: float, translation: float, log_scale: float) -> Sim3:
    axis = rng.normal(size=3)
    direction = rng.normal(size=3)
    vector = np.concatenate([axis / np.linalg.norm(axis) * np.radians(angle_deg),
                             direction / np.linalg.norm(direction) * translation, [log_scale]])
    return Sim3.from_vector(vector)


def _close(a: Sim3, b: Sim3, atol: float = 1e-10) -> bool:
    return np.allclose(a.matrix(), b.matrix(), atol=atol)


# --- Sim3 ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("angle", [0.0, 1e-12, 1e-7, 0.3, 2.0, np.pi - 1e-6, np.pi - 1e-10])
def test_so3_exp_log_round_trip(angle: float) -> None:
    rng = np.random.default_rng(0)
    axes = rng.normal(size=(50, 3))
    rotvec = axes / np.linalg.norm(axes, axis=1, keepdims=True) * angle
    rotation = so3_exp(rotvec)
    assert np.allclose(rotation @ rotation.swapaxes(1, 2), np.eye(3), atol=1e-14)
    assert np.allclose(np.linalg.det(rotation), 1.0, atol=1e-14)
    assert np.allclose(so3_log(rotation), rotvec, rtol=1e-12, atol=1e-13)


def test_so3_log_at_pi_gives_the_same_rotation() -> None:
    rng = np.random.default_rng(1)
    axes = rng.normal(size=(50, 3))
    rotation = so3_exp(axes / np.linalg.norm(axes, axis=1, keepdims=True) * np.pi)
    rotvec = so3_log(rotation)
    assert np.allclose(np.linalg.norm(rotvec, axis=1), np.pi, atol=1e-14)
    assert np.allclose(so3_exp(rotvec), rotation, atol=1e-14)


def test_sim3_vector_matrix_round_trip() -> None:
    rng = np.random.default_rng(2)
    for _ in range(20):
        vector = np.concatenate([rng.normal(0, 0.8, 3), rng.normal(0, 3, 3), rng.normal(0, 0.5, 1)])
        sim = Sim3.from_vector(vector)
        assert np.allclose(sim.to_vector(), vector, atol=1e-12)
        assert _close(Sim3.from_matrix(sim.matrix()), sim)
    assert Sim3.identity().angle_deg == 0.0 and np.array_equal(Sim3.identity().matrix(), np.eye(4))
    assert Sim3.from_vector(np.array([0, 0, np.radians(30), 0, 0, 0, 0])).angle_deg == pytest.approx(30.0)


def test_compose_and_inverse_identities() -> None:
    rng = np.random.default_rng(3)
    a, b, c = (_random_sim3(rng, 40, 2.0, 0.3) for _ in range(3))
    points = rng.normal(size=(10, 3))
    assert _close(a.compose(a.inverse()), Sim3.identity())
    assert _close(a.inverse().compose(a), Sim3.identity())
    assert _close(a.compose(b).compose(c), a.compose(b.compose(c)))
    assert _close(a.compose(b).inverse(), b.inverse().compose(a.inverse()))
    assert np.allclose(a.compose(b).apply(points), a.apply(b.apply(points)))
    assert np.allclose(a.compose(b).matrix(), a.matrix() @ b.matrix())
    assert np.allclose(a.inverse().apply(a.apply(points)), points)


def test_apply_to_poses_matches_apply_on_points() -> None:
    rng = np.random.default_rng(4)
    sim = _random_sim3(rng, 25, 1.5, 0.4)
    poses = np.tile(np.eye(4), (5, 1, 1))
    poses[:, :3, :3] = so3_exp(rng.normal(0, 1, (5, 3)))
    poses[:, :3, 3] = rng.normal(0, 2, (5, 3))
    local = rng.normal(size=(5, 8, 3))  # camera-frame points
    world = np.einsum("nij, npj -> npi", poses[:, :3, :3], local) + poses[:, None, :3, 3]
    moved = sim.apply_to_poses(poses)
    rescaled = np.einsum("nij, npj -> npi", moved[:, :3, :3], sim.scale * local) + moved[:, None, :3, 3]
    assert np.allclose(rescaled, sim.apply(world))
    assert np.allclose(moved[:, :3, :3] @ moved[:, :3, :3].swapaxes(1, 2), np.eye(3))
    assert np.array_equal(moved[:, 3], poses[:, 3])


def test_fit_sim3_recovers_exact_transform_with_and_without_weights() -> None:
    rng = np.random.default_rng(5)
    truth = _random_sim3(rng, 70, 3.0, -0.4)
    src = rng.normal(size=(40, 3))
    dst = truth.apply(src)
    assert _close(fit_sim3(src, dst), truth)
    assert _close(fit_sim3(src, dst, rng.uniform(0.1, 5.0, 40)), truth)
    corrupted = dst.copy()
    corrupted[:10] += 7.0
    weights = np.r_[np.zeros(10), np.ones(30)]  # weight 0 removes the corrupted points exactly
    assert _close(fit_sim3(src, corrupted, weights), truth)
    rigid = Sim3(truth.rotation, truth.translation, 1.0)
    assert _close(fit_sim3(src, rigid.apply(src), with_scale=False), rigid)


def test_fit_sim3_returns_a_rotation_for_mirrored_points() -> None:
    rng = np.random.default_rng(6)
    src = rng.normal(size=(30, 3))
    fit = fit_sim3(src, src * np.array([1.0, 1.0, -1.0]))  # the best orthogonal map is a reflection
    assert np.linalg.det(fit.rotation) == pytest.approx(1.0)
    assert fit.scale > 0


def test_robust_fit_sim3_rejects_30_percent_gross_outliers() -> None:
    rng = np.random.default_rng(7)
    truth = _random_sim3(rng, 35, 2.0, 0.3)
    src = rng.normal(size=(200, 3))
    dst = truth.apply(src)
    outlier = rng.random(200) < 0.3
    dst[outlier] = rng.uniform(-10, 10, (outlier.sum(), 3))

    def rotation_error_deg(fit: Sim3) -> float:
        return Sim3(fit.rotation.T @ truth.rotation, np.zeros(3)).angle_deg

    plain = fit_sim3(src, dst)
    robust, weights = robust_fit_sim3(src, dst)
    assert rotation_error_deg(plain) > 5.0
    assert _close(robust, truth, atol=1e-8)
    assert weights.shape == (200,) and np.all((weights >= 0) & (weights <= 1))
    assert weights[outlier].max() < 0.05 and weights[~outlier].min() > 0.99
    _, given = robust_fit_sim3(src, dst, robust_scale=0.1)
    assert given[outlier].max() < 0.05


@pytest.mark.parametrize(
    ("src", "weights", "match"),
    [
        (np.eye(3)[:2], None, "at least 3 points"),
        (np.eye(3), np.array([1.0, 1.0, 0.0]), "at least 3 points"),
        (np.ones((5, 3)), None, "same point"),
    ],
)
def test_fit_sim3_input_errors(src: np.ndarray, weights: np.ndarray | None, match: str) -> None:
    with pytest.raises(InputError, match=match):
        fit_sim3(src, src + 1.0, weights)
    with pytest.raises(InputError, match=match):
        robust_fit_sim3(src, src + 1.0, weights)


# --- pose graph ------------------------------------------------------------------------------------------------


def _drifted_run(seed: int, noise: float = 1.0, chunks: int = K) -> tuple[list[Sim3], np.ndarray]:
    """Drifted frames ``D_k = δ_1 ∘ … ∘ δ_k`` (``D_0 = I``) and a ground-truth camera centre per chunk ``[K, 3]``
    on a two-lap circle of radius 3 m, so chunks ``a`` and ``a + LAP`` are the same place."""
    rng = np.random.default_rng(seed)
    drifts = [Sim3.identity()]
    for _ in range(1, chunks):
        drifts.append(drifts[-1].compose(Sim3.from_vector(BIAS + noise * NOISE * rng.normal(size=7))))
    angle = 2 * np.pi * np.arange(chunks) / LAP
    centres = np.stack([3 * np.cos(angle), 0.3 * np.sin(2 * angle), 3 * np.sin(angle)], axis=1)
    return drifts, centres


def _loop(drifts: list[Sim3], a: int, b: int) -> LoopEdge:
    return LoopEdge(a, b, drifts[a].compose(drifts[b].inverse()))  # X_a = D(X_b)


def _position_errors(drifts: list[Sim3], centres: np.ndarray, solution: GraphSolution) -> tuple[float, float]:
    """Max camera-centre error before (``D_k(p)``) and after (``C_k(D_k(p))``) correction."""
    before = [np.linalg.norm(d.apply(p) - p) for d, p in zip(drifts, centres)]
    after = [np.linalg.norm(c.apply(d.apply(p)) - p) for c, d, p in zip(solution.corrections, drifts, centres)]
    return max(before), max(after)


def test_two_lap_loops_restore_the_trajectory() -> None:
    drifts, centres = _drifted_run(seed=10)
    solution = solve_pose_graph(K, [_loop(drifts, a, a + LAP) for a in range(LAP)])
    before, after = _position_errors(drifts, centres, solution)
    print(f"two laps, {LAP} loops: max position error {before:.4f} m before, {after:.4f} m after "
          f"({after / before:.2%}), {solution.iterations} iterations")
    assert after < 0.02 * before
    assert np.array_equal(solution.corrections[0].matrix(), np.eye(4))
    assert solution.final_cost < solution.initial_cost
    assert solution.loop_weights.shape == (LAP,) and np.all(solution.loop_weights > 0.9)


def test_one_loop_with_uniform_drift_is_spread_evenly() -> None:
    drifts, centres = _drifted_run(seed=11, noise=0.0, chunks=LAP + 1)
    solution = solve_pose_graph(LAP + 1, [_loop(drifts, 0, LAP)])
    before, after = _position_errors(drifts, centres, solution)
    print(f"one loop, uniform drift: max position error {before:.4f} m before, {after:.4f} m after "
          f"({after / before:.2%})")
    assert after < 0.04 * before
    end = solution.corrections[LAP].compose(drifts[LAP])  # C_b ∘ D_b ≈ I: the loop is closed
    assert end.angle_deg < 0.05 and abs(np.log(end.scale)) < 1e-3


def test_wrong_loop_is_set_aside() -> None:
    drifts, centres = _drifted_run(seed=12)
    loops = [_loop(drifts, a, a + LAP) for a in (0, 6, 12, 18, 24, 29)]
    wrong = LoopEdge(14, 47, _random_sim3(np.random.default_rng(13), 30.0, 5.0, 0.0))  # 14 and 47 never meet
    solution = solve_pose_graph(K, loops[:3] + [wrong] + loops[3:])
    before, after = _position_errors(drifts, centres, solution)
    print(f"six loops + one wrong: max position error {before:.4f} m before, {after:.4f} m after "
          f"({after / before:.2%}), loop weights {np.round(solution.loop_weights, 4).tolist()}")
    assert solution.loop_weights[3] < 0.05
    assert np.all(np.delete(solution.loop_weights, 3) > 0.9)
    assert after < 0.02 * before


def test_no_loops_gives_exact_identity() -> None:
    solution = solve_pose_graph(7, [])
    assert len(solution.corrections) == 7 and solution.iterations == 0
    assert all(np.array_equal(c.matrix(), np.eye(4)) for c in solution.corrections)
    assert solution.loop_weights.shape == (0,)


def test_scales_to_thousands_of_chunks() -> None:
    rng = np.random.default_rng(14)
    chunks = 3000
    steps = np.array([0, np.radians(0.005), 0, 0.002, 0, 0, 0.0001]) + rng.normal(size=(chunks, 7)) * np.array(
        [np.radians(0.03)] * 3 + [0.005] * 3 + [0.0005])
    drifts = [Sim3.identity()]
    for step in steps[1:]:
        drifts.append(drifts[-1].compose(Sim3.from_vector(step)))
    ends = rng.integers(0, chunks - 200, 40)
    loops = [_loop(drifts, int(a), int(min(a + rng.integers(50, 1500), chunks - 1))) for a in ends]
    solution = solve_pose_graph(chunks, loops)  # its time is benchmarks/pose_graph.py's
    for edge in loops:  # every loop closed: C_b ≈ C_a ∘ D
        gap = solution.corrections[edge.b].inverse().compose(solution.corrections[edge.a].compose(edge.drift))
        assert gap.angle_deg < 0.05 and np.linalg.norm(gap.translation) < 0.01


@pytest.mark.parametrize(
    ("num_nodes", "a", "b"),
    [(0, 0, 1), (5, 3, 3), (5, 4, 2), (5, -1, 2), (5, 1, 5)],
)
def test_pose_graph_input_errors(num_nodes: int, a: int, b: int) -> None:
    with pytest.raises(InputError):
        solve_pose_graph(num_nodes, [LoopEdge(a, b, Sim3.identity())])
