"""Procedural textures, functions of the surface point alone, so a point has the same colour in every view.

Inputs per hit (R of them): texture coordinates ``u``, ``v`` ``[R]`` in metres on the surface (``v`` up side
faces), a solid-texture point ``p`` ``[R, 3]`` (metres, the primitive's local frame plus a random shift), and
the pixel ``footprint`` ``[R]`` (metres on the surface covered by one pixel). Patterns fade to their mean as
their marks shrink below a pixel, and noise drops octaves finer than a pixel: a cheap stand-in for mipmapping
that keeps distant textures from aliasing into moiré.

Noise is value noise: random values on an integer lattice (a fixed 64³ table that repeats, drawn once with
seed 0 on the CPU, so identical on every device), interpolated smoothly, summed over octaves.
"""

from __future__ import annotations

import torch

from .scene import Materials, Pattern

__all__ = ["albedo", "fbm", "hash_unit", "noise_table", "value_noise"]

_PERIOD = 64  # lattice cells before the noise repeats (per axis); shifts per material and octave hide it
_SIDE = _PERIOD + 1  # the table repeats its first layer at the end of each axis: corners never wrap
_CORNERS = torch.tensor([dx * _SIDE**2 + dy * _SIDE + dz for dx in (0, 1) for dy in (0, 1) for dz in (0, 1)])
_TABLES: dict[torch.device, torch.Tensor] = {}
_MARKED = tuple(kind for kind in Pattern if kind != Pattern.PLAIN)
"""The patterns that mark a surface, as a tuple: torch.compile (2.11) cannot iterate over the enum class itself."""


def noise_table(device: torch.device) -> torch.Tensor:
    """The fixed random lattice values, ``[65³]`` flattened (seed 0, drawn on the CPU), cached per device."""
    if device not in _TABLES:
        values = torch.rand(_PERIOD, _PERIOD, _PERIOD, generator=torch.Generator().manual_seed(0))
        wrap = torch.arange(_SIDE) % _PERIOD
        _TABLES[device] = values[wrap][:, wrap][:, :, wrap].reshape(-1).to(device)
    return _TABLES[device]


def _flat(ix: torch.Tensor, iy: torch.Tensor, iz: torch.Tensor) -> torch.Tensor:
    mask = _PERIOD - 1
    return ((ix & mask) * _SIDE + (iy & mask)) * _SIDE + (iz & mask)


def hash_unit(ix: torch.Tensor, iy: torch.Tensor) -> torch.Tensor:
    """A pseudo-random float in [0, 1) per integer cell (``ix``, ``iy``) of a plane (int64 tensors)."""
    return noise_table(ix.device)[_flat(ix, iy, torch.zeros_like(ix))]


def value_noise(p: torch.Tensor) -> torch.Tensor:
    """Smooth noise ``[R]`` in [0, 1] at points ``p`` ``[R, 3]`` (lattice spacing 1): trilinear interpolation,
    with smoothstep weights, of random values at the eight surrounding lattice points."""
    cell = torch.floor(p)
    f = p - cell
    w = f * f * (3.0 - 2.0 * f)
    cell = cell.to(torch.int64)
    base = _flat(cell[:, 0], cell[:, 1], cell[:, 2])
    values = noise_table(p.device)[base[:, None] + _CORNERS.to(p.device)].view(-1, 2, 2, 2)
    wx, wy, wz = w[:, 0, None, None], w[:, 1, None], w[:, 2]
    values = values[:, 0] * (1 - wx) + values[:, 1] * wx
    values = values[:, 0] * (1 - wy) + values[:, 1] * wy
    return values[:, 0] * (1 - wz) + values[:, 1] * wz


def fbm(p: torch.Tensor, footprint: torch.Tensor, octaves: int = 4) -> torch.Tensor:
    """Fractal noise ``[R]`` in [0, 1] at ``p`` ``[R, 3]`` (base wavelength 1). An octave fades to its mean as its
    wavelength shrinks from four to two pixel footprints (the Nyquist limit)."""
    total = torch.zeros_like(p[:, 0])
    amplitude, frequency, norm = 0.5, 1.0, 0.0
    for _ in range(octaves):
        keep = (2.0 - 4.0 * footprint * frequency).clamp(0.0, 1.0)  # wavelength 1 / frequency vs footprint
        total = total + amplitude * (0.5 + keep * (value_noise(p * frequency + 17.0 * frequency) - 0.5))
        norm += amplitude
        amplitude, frequency = amplitude * 0.5, frequency * 2.0
    return total / norm


def _fade(hard: torch.Tensor, mean: float | torch.Tensor, feature: torch.Tensor,
          footprint: torch.Tensor) -> torch.Tensor:
    """A pattern's 0/1 marks, faded to their area ``mean`` once a pixel covers half the ``feature`` size."""
    contrast = (2.0 - 2.0 * footprint / feature).clamp(0.0, 1.0)
    return mean + contrast * (hard - mean)


def _pattern(kind: Pattern, u, v, p, scale, footprint, vertical) -> tuple[torch.Tensor, torch.Tensor]:
    """Accent weight ``[R]`` in [0, 1] and a per-cell brightness ``[R]`` (bricks, tiles and windows vary)."""
    one = torch.ones_like(u)
    if kind == Pattern.CHECKER:
        hard = (torch.floor(u / scale) + torch.floor(v / scale)).remainder(2.0)
        return _fade(hard, 0.5, scale, footprint), one
    if kind == Pattern.STRIPES:
        hard = (torch.floor(2.0 * u / scale)).remainder(2.0)
        return _fade(hard, 0.5, 0.5 * scale, footprint), one
    if kind == Pattern.NOISE:
        return fbm(p / scale[:, None], footprint / scale), one
    if kind == Pattern.BRICK:
        height = 0.35 * scale
        row = torch.floor(v / height)
        along = u / scale + 0.5 * row.remainder(2.0)
        col = torch.floor(along)
        mortar = 0.06 * height
        joint = (along.frac() * scale < mortar) | ((v / height).frac() * height < mortar)
        hard = torch.where(vertical, joint.to(u.dtype), 0.0)
        tint = 0.85 + 0.3 * hash_unit(col.long(), row.long())
        return _fade(hard, 0.08, mortar, footprint), torch.where(vertical, tint, one)
    if kind == Pattern.TILES:
        grout = 0.04 * scale
        hard = (((u / scale).frac() * scale < grout) | ((v / scale).frac() * scale < grout)).to(u.dtype)
        tint = 0.9 + 0.2 * hash_unit(torch.floor(u / scale).long(), torch.floor(v / scale).long())
        return _fade(hard, 0.08, grout, footprint), tint
    if kind == Pattern.WINDOWS:
        width = 0.9 * scale
        fu, fv = (u / width).frac(), (v / scale).frac()
        glass = vertical & (fu > 0.2) & (fu < 0.8) & (fv > 0.3) & (fv < 0.85)
        tint = 0.7 + 0.6 * hash_unit(torch.floor(u / width).long(), torch.floor(v / scale).long())
        weight = _fade(glass.to(u.dtype), 0.33, 0.2 * scale, footprint)
        return torch.where(vertical, weight, 0.0), torch.where(glass, tint, one)
    return torch.zeros_like(u), one


def albedo(materials: Materials, rows: torch.Tensor, u: torch.Tensor, v: torch.Tensor, p: torch.Tensor,
           footprint: torch.Tensor, vertical: torch.Tensor, dense: bool = False) -> torch.Tensor:
    """Surface colour ``[R, 3]`` in [0, 1] of hits on material ``rows`` ``[R]``. Each pattern is computed for the
    hits that have it, or with ``dense`` for every hit and then picked (no data-dependent shapes; the same
    colours)."""
    shift = materials.shift[rows]
    p = p + shift
    u, v = u + shift[:, 0], v + shift[:, 1]
    scale = materials.scale[rows]
    pattern = materials.pattern[rows]
    weight = torch.zeros_like(u)
    tint = torch.ones_like(u)
    for kind in _MARKED:
        if dense:
            w, t = _pattern(kind, u, v, p, scale, footprint, vertical)
            here = pattern == int(kind)  # a plain int: torch.compile traces it
            weight, tint = torch.where(here, w, weight), torch.where(here, t, tint)
            continue
        picked = (pattern == kind).nonzero().squeeze(-1)
        if picked.numel() == 0:
            continue
        w, t = _pattern(kind, u[picked], v[picked], p[picked], scale[picked], footprint[picked], vertical[picked])
        weight[picked], tint[picked] = w, t
    base = torch.lerp(materials.colour[rows], materials.accent[rows], weight[:, None])
    grain = fbm(p / 0.6, footprint / 0.6, octaves=5)
    shade = tint * (1.0 + 2.0 * materials.grain[rows] * (grain - 0.5))
    return (base * shade[:, None]).clamp(0.0, 1.0)
