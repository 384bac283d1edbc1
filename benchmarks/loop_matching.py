"""Diagnostic: can the shipped model's encoder patch tokens match a revisit's two views? (docs/loop-closure.md)

For a held-out world of each kind it reconstructs 1,000 frames plainly, then takes up to 25 keyframe
pairs that truly revisit a place (ground-truth cameras within 2 m and 30 degrees, 100+ frames apart)
and 25 that do not (15+ m apart). For each pair: mutual nearest neighbours of the two frames' encoder
patch tokens (cosine), each patch lifted to 3D by the run's local point at its centre, a RANSAC Sim(3)
(inliers within 5 % of depth), and the rotation and translation errors of the relative pose it gives
against the ground truth (translation in metres after the run's global scale). Writes $OUT/match_diag.json.

    PYTHONPATH=src OUT=benchmarks/results/loop_closure python benchmarks/loop_matching.py
"""
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, 'benchmarks')
from loop_closure import render

from loger3d.loop.sim3 import fit_sim3
from loger3d.run import RunSettings, reconstruct
from loger3d.sinks.images import read_images
from loger3d.sinks.store import FrameStore
from loger3d.weights import model_from_spec
from loger3d.weights.registry import card_for

dev = 'cuda'
model, dtype = model_from_spec('tiny_synthetic', dev, 'auto')
card = card_for('tiny_synthetic')
S = model.config.num_special_tokens
rng = np.random.default_rng(0)

def tokens(images):
    acts = model.begin_chunk(torch.from_numpy(images).permute(0, 3, 1, 2)[None])
    with torch.no_grad():
        acts = model._encode(acts)
    t = acts.tokens[:, S:].float()
    return torch.nn.functional.normalize(t, dim=-1)

def match(ta, tb):
    sim = ta @ tb.T
    ab, ba = sim.argmax(1), sim.argmax(0)
    idx = torch.arange(len(ta), device=sim.device)
    mutual = ba[ab] == idx
    keep = mutual
    return idx[keep].cpu().numpy(), ab[keep].cpu().numpy(), sim[idx, ab][keep].cpu().numpy()

def patch_points(frames, k, ids, width=224 // 14):
    """The run's local point and confidence at the centre of patches ``ids`` of frame ``k``."""
    r, c = ids // width * 14 + 7, ids % width * 14 + 7
    return frames['local_points'][k, r, c].astype(np.float64), frames['conf'][k, r, c]


def ransac(pa, pb, depth, iters=300, tol=0.05):
    best = None
    n = len(pa)
    if n < 6:
        return None, 0
    for _ in range(iters):
        pick = rng.choice(n, 3, replace=False)
        try:
            s = fit_sim3(pb[pick], pa[pick])
        except ValueError:
            continue
        err = np.linalg.norm(s.apply(pb) - pa, axis=1)
        inl = err < tol * depth
        if best is None or inl.sum() > best.sum():
            best = inl
    if best is None or best.sum() < 3:
        return None, 0
    s = fit_sim3(pb[best], pa[best])
    err = np.linalg.norm(s.apply(pb) - pa, axis=1)
    inl = err < tol * depth
    return fit_sim3(pb[inl], pa[inl]) if inl.sum() >= 3 else s, int(inl.sum())

out_rows = []
for name in ['terrain-orbit', 'indoor-walk', 'street-loops']:
    scratch = Path(tempfile.mkdtemp())
    gt = render(name, 10**9 + 700, 1000, scratch / 'f', dev)
    settings = RunSettings(input=[str(scratch / 'f')], model='tiny_synthetic', window=card.window, overlap=card.overlap,
                           align=card.align, dtype=dtype, resolution=[224, 126], edge_rtol=card.edge_rtol)
    with torch.no_grad():
        reconstruct(str(scratch / 'f'), scratch / 'out', model, settings, checkpoint_every=1e9)
    store = FrameStore(scratch / 'out')
    est = store.read_poses()[2]
    def length(poses):
        return np.linalg.norm(np.diff(poses[:, :3, 3], axis=0), axis=1).sum()

    sc = length(gt) / length(est)  # the run's global scale: ratio of path lengths
    keys = np.arange(0, 1000, 10)
    c, f = gt[keys, :3, 3], gt[keys, :3, 2]
    d = np.linalg.norm(c[:, None] - c[None], axis=-1)
    ang = np.degrees(np.arccos(np.clip(f @ f.T, -1, 1)))
    gap = keys[None] - keys[:, None]
    true = np.argwhere((d < 2) & (ang < 30) & (gap >= 100))
    false = np.argwhere((d > 15) & (gap >= 100))
    pairs = []
    if len(true):
        pairs += [(keys[i], keys[j], 1) for i, j in true[rng.choice(len(true), min(25, len(true)), replace=False)]]
    pairs += [(keys[i], keys[j], 0) for i, j in false[rng.choice(len(false), 25, replace=False)]]
    t0 = time.perf_counter()
    for a, b, label in pairs:
        fr = store.read_frames([a, b])
        imgs = read_images(scratch / 'out', [str(n) for n in fr['name']])
        tk = tokens(imgs)
        ia, ib, sims = match(tk[0], tk[1])
        pa, ca = patch_points(fr, 0, ia)
        pb, cb = patch_points(fr, 1, ib)
        ok = (ca > 0.1) & (cb > 0.1)
        s, ninl = ransac(pa[ok], pb[ok], pa[ok, 2])
        g = np.linalg.inv(gt[a]) @ gt[b]
        row = dict(world=name, a=int(a), b=int(b), true=label, matches=int(ok.sum()), inliers=ninl,
                   gt_dist=float(np.linalg.norm(g[:3, 3])))
        if s is not None:
            dr = s.rotation.T @ g[:3, :3]
            row['rot_err'] = float(np.degrees(np.arccos(np.clip((np.trace(dr) - 1) / 2, -1, 1))))
            row['trans_err'] = float(np.linalg.norm(s.translation * sc - g[:3, 3]))
            row['scale'] = float(s.scale)
        out_rows.append(row)
        print(json.dumps(row), flush=True)
    print(name, 'secs per pair', (time.perf_counter() - t0) / len(pairs), flush=True)
json.dump(out_rows, open(os.environ['OUT'] + '/match_diag.json', 'w'), indent=0)
for lab in (1, 0):
    rs = [r for r in out_rows if r['true'] == lab]
    inl = np.array([r['inliers'] for r in rs])
    rot = np.array([r.get('rot_err', 180) for r in rs])
    te = np.array([r.get('trans_err', 99) for r in rs])
    print('true' if lab else 'false', 'n', len(rs), 'inliers median', np.median(inl), 'pct',
          np.percentile(inl, [10, 90]), 'rot<5', np.mean(rot < 5), 'trans<0.5', np.mean(te < 0.5))
