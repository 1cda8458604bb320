"""
Evaluate NeRM: the T2M text->motion (or action->motion) table at 20 fps, and stage 1's held-out MRE and
the framerate table at 20/40/60/100/120 fps (detail-FD, mean joint acceleration, clip-FID; each model decoded
directly and at 20 fps then interpolated; at 100-120 fps, the band error of reconstructions against the true
motion). Methods, and what each figure means: RESULTS.md.

    python eval.py                                                    # text->motion table of runs/diffusion.pt + Real row
    python eval.py --ckpt runs/diffusion.pt runs/diffusion_fixed.pt   # native vs the fixed-20-fps baseline
    python eval.py --ckpt runs/diffusion_action.pt                    # action->motion (train_diffusion.py --cond action)
    python eval.py --reps 20 --mm-texts 100                           # the paper's R = 20 (slow on a CPU)
    python eval.py --mre runs/inr.pt runs/inr_fixed.pt --actions punch,kick   # stage-1 MRE by fps, val sequences
    python eval.py --clip-fid runs/inr.pt runs/inr_fixed.pt           # the framerate table (stage-1 or stage-2 checkpoints)
    python eval.py --mre runs/inr.pt --clip-fid runs/inr.pt --json runs/inr_eval.json   # both; figures also as JSON
    python eval.py --ckpt /tmp/d.pt --reps 1 --evaluator /tmp/ev.pt --evaluator-steps 50   # a tiny CPU run

The evaluators are trained here on the real train motions, as T2M (EricGuo5513/text-to-motion) trained its
own (its weights cannot be downloaded), and saved once: runs/evaluator_<data>.pt, runs/clip_evaluator_<data>.pt.
The paper's stage-1 ablations (six trainings, then --mre and --clip-fid): python bench.py --only ablations
"""
import argparse
import json
import os
import time
from collections import defaultdict, namedtuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import data
import guard
import nerm

Int, Float, Path, Text = guard.Int, guard.Float, guard.Path, guard.Text   # each flag's type states its range
parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--ckpt", nargs="+", type=Path("file"), default=["runs/diffusion.pt"], help="stage-2 checkpoints, one table row each")
parser.add_argument("--mre", nargs="+", type=Path("file"), default=None, help="stage-1 checkpoints: MRE at each fps (no T2M table then)")
parser.add_argument("--clip-fid", nargs="+", type=Path("file"), default=None, help="stage-1 or stage-2 checkpoints: the framerate table, detail-FD and clip-FID at each fps (no T2M table then)")
parser.add_argument("--data", default="synthetic", choices=["synthetic", "humanml3d", "kit", "bvh"],
                    help="dataset the checkpoints were trained on (--mre reads it from each checkpoint)")
parser.add_argument("--data-dir", type=Path("any"), default=None, help="dataset directory (default: data/<name>)")
parser.add_argument("--evaluator", type=Path("any"), default=None, help="evaluator file (default: runs/evaluator_<data>.pt, trained if absent)")
parser.add_argument("--clip-evaluator", type=Path("any"), default=None, help="clip-FID encoders (default: runs/clip_evaluator_<data>.pt)")
parser.add_argument("--retrain-evaluator", action="store_true", help="train the evaluators again even if their files exist")
parser.add_argument("--evaluator-steps", type=Int(1, 10**6), default=600, help="training steps of the text/motion evaluator")
parser.add_argument("--reps", type=Int(1, 1000), default=3, help="R: replications per figure (paper: 20)")
parser.add_argument("--mm-texts", type=Int(1, 10**4), default=10, help="MModality: captions (paper: 100)")
parser.add_argument("--mm-samples", type=Int(20, 10**4), default=30, help="MModality: samples per caption or action, at least 20 (paper: 30)")
parser.add_argument("--guidance", type=Float(-1e3, 1e3), default=nerm.GUIDANCE, help="classifier-free guidance scale")
parser.add_argument("--split", default="test", choices=["test", "val"],
                    help="the T2M table's held-out split: test (the T2M protocol), or val to choose a setting such as "
                         "--guidance without looking at test (the detail columns' reference is then the test split)")
parser.add_argument("--steps", type=Int(1, 1000), default=50, help="DDIM steps (at most the model's diffusion steps)")
parser.add_argument("--actions", type=Text(), default=None, help="with --mre: only val sequences of these actions (comma-separated)")
parser.add_argument("--max-seqs", type=Int(1, 10**5), default=64, help="with --mre: at most this many val sequences")
parser.add_argument("--clips-per-seq", type=Int(1, 10**4), default=16, help="the framerate table: clips cut from each sequence")
parser.add_argument("--json", type=Path("any"), default=None, help="also write the figures (every replication, mean, CI) to this JSON file")
parser.add_argument("--force", action="store_true", help="replace a --json file (or, with --retrain-evaluator, an evaluator file) that nerm wrote")
parser.add_argument("--seed", type=Int(0, 2**31 - 1), default=0, help="random seed")
EVAL_FPS = (20, 40, 60, 100, 120)  # the paper's framerate columns
EVAL_RATE, MAX_FRAMES = 20.0, 196   # the standard evaluators see 20 fps, at most 196 frames
CLIP_M = 32                         # clip-FID: frames per clip at every rate, as the INR's training clips
R_PRECISION_BATCH = 32              # T2M: R-precision ranks each text among 32 motions


# ---- data, checkpoints and the one decoding path (nerm.decode) ----

def load_split(name, data_dir, split, fps_mode="native"):
    """One split of a dataset: a folder of BVH files through bvh.py, anything else in the HumanML3D layout."""
    data_dir = data_dir or os.path.join("data", name)
    if name == "bvh":
        import bvh   # only this dataset needs the BVH reader
        return bvh.load_bvh_folder(data_dir, split, fps_mode)
    return data.load_dataset(name, data_dir, split, fps_mode)


Stage2 = namedtuple("Stage2", "ckpt model decoder")   # a stage-2 checkpoint, its DDPM and the INR decoder it carries


def load_stage2(path):
    model, decoder, ckpt = nerm.load_diffusion(path)
    return Stage2(ckpt, model, decoder)


def sample_latents(gen, conds, durations, args, g, chunk=256):
    """z (N, Z) from a Stage2 for N conditions (captions, action names or None) and durations (N,) s."""
    out = []
    for i in range(0, len(conds), chunk):
        c, d = conds[i:i + chunk], torch.tensor(durations[i:i + chunk], dtype=torch.float32)
        kw = ({"text": list(c)} if gen.model.config.cond == "text" else {"action": torch.tensor(
            [gen.ckpt["actions"].index(a) for a in c])} if gen.model.config.cond == "action" else {})
        out.append(gen.model.sample(len(c), duration=d, guidance=args.guidance, steps=args.steps, generator=g, **kw))
    return torch.cat(out)


def decode_motions(decoder, z, seconds, chunk=256):
    """Whole motions decoded at 20 fps, at most 196 frames (as to_eval_rate): a list of (T_i, D) per-second features."""
    out = []
    for i in range(0, len(z), chunk):
        s = np.asarray(seconds[i:i + chunk], np.float64)
        x = nerm.decode(decoder, z[i:i + chunk], EVAL_RATE, torch.from_numpy(s)).cpu().numpy()   # (B, T, D)
        out += [xi[:min(MAX_FRAMES, nerm.num_frames(EVAL_RATE, si))] for xi, si in zip(x, s)]
    return out


def decoded_clips(decoder, z, seconds, plan, rate, via_fps=None, kind="linear", chunk=32):
    """(K, m, D) clips at the places of a clip_plan, cut from whole motions decoded at `rate`: a clip's frames
    lie on the rate's grid, so they are rows of the decoded motion (the real side reads them by interpolation).
    A clip reaching past the motion (a fixed-20-fps fit is up to 1/20 s shorter than the native sequence)
    holds its last frame, as data.interpolate does for the real clips "via 20 fps". via_fps: what a 20 fps
    system does for a high rate, decode at via_fps, then interpolate (`kind`) up to the clips at `rate`."""
    fps = via_fps or rate
    out = np.zeros((len(plan), CLIP_M, decoder.cfg.feature_dim), np.float32)
    seqs = np.unique(plan[:, 0])
    for i in range(0, len(seqs), chunk):
        part = seqs[i:i + chunk]
        x = nerm.decode(decoder, z[torch.from_numpy(part)], fps, torch.from_numpy(seconds[part])).cpu().numpy()
        for xi, q in zip(x, part):
            rows, T = plan[:, 0] == q, nerm.num_frames(fps, seconds[q])
            frames = plan[rows, 1:] + np.arange(CLIP_M)                               # (k, m) frames at `rate`
            out[rows] = (data.interpolate(xi[:T], fps, frames / rate, kind) if via_fps
                         else xi[np.minimum(frames, T - 1)])
    return out


# ---- stage 1: held-out MRE by framerate (train_inr.py reports it while training) ----

def fit_heldout_latents(decoder, ms, n, steps, m, seed=0):
    """Latents (n, Z) of the first n sequences of MotionSet ms, decoder frozen (auto-decoder inference):
    clips of m frames drawn as in training, 64 per step."""
    sampler = data.ClipSampler(ms, decoder.mean.cpu().numpy(), decoder.std.cpu().numpy(), lowpass=decoder.cfg.integrated)
    g, dev = torch.Generator().manual_seed(seed), decoder.mean.device

    def sample_clip():
        k = torch.randint(0, n, (64,), generator=g)
        x, t, s, _ = sampler.sample(k, m, generator=g)
        return k.to(dev), t.to(dev), sampler.duration[k].to(dev), s.to(dev), x.to(dev)

    return nerm.fit_latents(decoder, sample_clip, n, steps=steps)


def evaluate_mre(decoder, fit_set, gt_set, n, fit_steps, m, fps_list=EVAL_FPS, seed=0, compiled=None):
    """MRE (metres) at each framerate on the first n held-out sequences, their latents fitted with the decoder frozen.

    fit_set: what the model may see of them (at its training's fps mode); gt_set: the same sequences at their
    native rate. Each is decoded by nerm.decode for the duration it was fitted on, and compared with the
    native ground truth read at the same instants; both go through the same joint recovery. Returns
    {"mre": {fps: global error}, "local": {fps: error with both roots at the origin}}: the global error
    includes the drift of the integrated root velocity, the local one is the pose alone.
    compiled: nerm.compile_decoder(decoder), used for decoding (fitting trains z through decoder).
    """
    n = min(n, len(gt_set))
    assert fit_set.names[:n] == gt_set.names[:n]
    z = fit_heldout_latents(decoder, fit_set, n, fit_steps, m, seed)
    seconds = fit_set.durations()[:n]
    out = {"mre": {}, "local": {}}
    for f in fps_list:
        x_hat = nerm.decode(compiled or decoder, z, f, torch.from_numpy(seconds)).cpu().numpy()  # (n, T, D)
        errs, local = [], []
        for i in range(n):
            t = np.arange(nerm.num_frames(f, seconds[i])) / f                          # (T_i,) seconds
            x_gt = data.interpolate(gt_set.features[i], gt_set.fps[i], t)            # (T_i, D) per second
            j_gt = data.features_to_joints(data.features_per_frame(x_gt, f), gt_set.skeleton)
            j_hat = data.features_to_joints(data.features_per_frame(x_hat[i, :len(t)], f), gt_set.skeleton)
            errs.append(np.linalg.norm(j_gt - j_hat, axis=-1).mean())
            local.append(np.linalg.norm((j_gt - j_gt[:, :1]) - (j_hat - j_hat[:, :1]), axis=-1).mean())
        out["mre"][f], out["local"][f] = float(np.mean(errs)), float(np.mean(local))
    return out


# ---- T2M metrics: evaluator embeddings in (numpy), floats out ----

def fid(real, gen):
    """Frechet distance of two (N, D) embedding sets: ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^1/2) (T2M)."""
    real, gen = np.asarray(real, np.float64), np.asarray(gen, np.float64)
    assert real.ndim == gen.ndim == 2 and real.shape[1] == gen.shape[1] and min(len(real), len(gen)) >= 2
    mu1, mu2 = real.mean(0), gen.mean(0)
    s1, s2 = np.atleast_2d(np.cov(real, rowvar=False)), np.atleast_2d(np.cov(gen, rowvar=False))
    # Tr((S1 S2)^1/2) = Tr((S1^1/2 S2 S1^1/2)^1/2): same eigenvalues, but a symmetric PSD matrix, so eigh
    # suffices where T2M calls scipy.linalg.sqrtm on the non-symmetric product (rounding's tiny negative
    # eigenvalues -> 0)
    w, v = np.linalg.eigh(s1)
    r1 = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T                   # S1^1/2
    m = r1 @ s2 @ r1
    tr_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0.0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2.0 * tr_sqrt)


def diversity(x, pairs=300, seed=0):
    """Mean distance between `pairs` random pairs of rows of (N, D) embeddings (T2M: 300; 200 for actions)."""
    x = np.asarray(x, np.float64)
    assert x.ndim == 2 and len(x) >= pairs, f"diversity needs at least {pairs} rows, got {x.shape}"
    rng = np.random.default_rng(seed)
    first = rng.choice(len(x), pairs, replace=False)    # T2M: two independent draws without replacement
    second = rng.choice(len(x), pairs, replace=False)
    return float(np.linalg.norm(x[first] - x[second], axis=1).mean())


def multimodality(x, pairs=10, seed=0):
    """Mean distance between `pairs` random pairs of samples per text of (M texts, S samples, D) embeddings,
    averaged over texts (T2M: 100 texts x 30 samples, 10 pairs; 20 for actions)."""
    x = np.asarray(x, np.float64)
    assert x.ndim == 3 and x.shape[1] >= pairs, f"multimodality needs at least {pairs} samples per text, got {x.shape}"
    rng = np.random.default_rng(seed)
    first = rng.choice(x.shape[1], pairs, replace=False)  # T2M draws one set of pairs, shared by all texts
    second = rng.choice(x.shape[1], pairs, replace=False)
    return float(np.linalg.norm(x[:, first] - x[:, second], axis=2).mean())


def r_precision(text_emb, motion_emb, k=3):
    """Top-1..top-k retrieval accuracy, (k,): in each batch of 32 aligned (text, motion) rows, the share of
    texts whose own motion is among its j nearest of the 32 (T2M; the last incomplete batch is dropped)."""
    t, m = np.asarray(text_emb, np.float64), np.asarray(motion_emb, np.float64)
    assert t.shape == m.shape and t.ndim == 2
    n = len(t) // R_PRECISION_BATCH * R_PRECISION_BATCH
    assert n > 0, f"r_precision needs at least {R_PRECISION_BATCH} pairs, got {len(t)}"
    hits = np.zeros(k)
    for i in range(0, n, R_PRECISION_BATCH):
        tb, mb = t[i:i + R_PRECISION_BATCH], m[i:i + R_PRECISION_BATCH]
        dist = np.linalg.norm(tb[:, None] - mb[None], axis=-1)            # (32 texts, 32 motions)
        order = np.argsort(dist, axis=1, kind="stable")                 # ties: lower motion index first
        rank = (order == np.arange(len(tb))[:, None]).argmax(1)          # position of each text's own motion
        hits += (rank[:, None] < np.arange(1, k + 1)).sum(0)
    return hits / n


def matching_distance(text_emb, motion_emb):
    """MM-Dist (T2M's matching score): mean distance between each text's and its own motion's embedding."""
    t, m = np.asarray(text_emb, np.float64), np.asarray(motion_emb, np.float64)
    assert t.shape == m.shape and t.ndim == 2
    return float(np.linalg.norm(t - m, axis=1).mean())


# Student's t quantile t_{0.975, df} for df = 1..30; above, the normal's 1.96 is within 2%
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def mean_ci(values):
    """(mean, 95% half-width t_{0.975, R-1} s / sqrt(R)) over R replications, s the sample std (ddof=1).
    T2M reports 1.96 sigma / sqrt(R) with R = 20; with the few replications a CPU affords that is far too
    narrow (at R = 3 the t quantile is 4.30, not 1.96). One replication has no interval (0)."""
    v = np.asarray(values, np.float64)
    if len(v) < 2:
        return float(v.mean()), 0.0
    t = T975[len(v) - 2] if len(v) - 1 <= len(T975) else 1.96
    return float(v.mean()), float(t * v.std(ddof=1) / np.sqrt(len(v)))


# ---- the evaluator: motion and text encoders (T2M), an action recognizer; trained on real motions ----

def to_eval_rate(x, fps):
    """Per-second features (T, D) at fps -> at 20 fps, at most 196 frames: what the standard evaluators see."""
    return data.resample(x, fps, EVAL_RATE)[:MAX_FRAMES]


class ConvGRU(nn.Module):
    """Three strided convolutions (8x fewer steps: stepping a GRU is what costs on a CPU), then a GRU;
    -> its state at each row's last valid step (B, H). Every layer zeroes what lies past a row's end, as a
    lone row's zero padding would be, so a motion embeds the same alone or in a padded batch."""

    def __init__(self, d_in, h):
        super().__init__()
        self.conv = nn.ModuleList(nn.Conv1d(d_in if i == 0 else h, h, 4, 2, 1) for i in range(3))
        self.gru = nn.GRU(h, h, batch_first=True)

    def forward(self, x, lengths):
        h = x.transpose(1, 2)                                               # (B, d, T)
        for conv in self.conv:
            h, lengths = F.leaky_relu(conv(h), 0.2), lengths // 2            # (B, H, T / 2)
            h = h * (torch.arange(h.shape[-1]) < lengths[:, None])[:, None]
        out, _ = self.gru(h.transpose(1, 2))                                 # (B, T / 8, H)
        return out[torch.arange(len(out)), lengths.clamp(1, out.shape[1]) - 1]


class MotionEncoder(nn.Module):
    """A ConvGRU and a head: T2M's motion side (head: an MLP -> (B, E)), or, as the action-to-motion evaluators,
    an action recognizer (head: a linear classifier; the FID of action models is on its body's (B, H))."""

    def __init__(self, d_in, h, head):
        super().__init__()
        self.body = ConvGRU(d_in, h)
        self.out = head

    def forward(self, x, lengths):
        return self.out(self.body(x, lengths))


class TextGRU(nn.Module):
    """T2M's text side without GloVe (nothing can be downloaded): word embeddings, a bidirectional GRU -> (B, E)."""

    def __init__(self, vocab_size, h, e):
        super().__init__()
        self.emb = nn.Embedding(vocab_size, h, padding_idx=nerm.Vocab.PAD)
        self.gru = nn.GRU(h, h, batch_first=True, bidirectional=True)
        self.out = nn.Sequential(nn.Linear(2 * h, h), nn.LayerNorm(h), nn.LeakyReLU(0.2), nn.Linear(h, e))

    def forward(self, tokens):
        lengths = (tokens != nerm.Vocab.PAD).sum(1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(self.emb(tokens), lengths, batch_first=True, enforce_sorted=False)
        _, h = self.gru(packed)                                            # (2, B, H): both directions' last states
        return self.out(torch.cat([h[0], h[1]], -1))                       # (B, L) -> (B, E)


class Evaluator:
    """The trained evaluator, rebuilt from its payload (a dict that torch.load(weights_only=True) reads)."""

    def __init__(self, payload):
        c = payload["config"]
        self.vocab = nerm.Vocab(payload["vocab"])
        self.actions = payload["actions"]
        self.mean, self.std = payload["mean"].numpy(), payload["std"].numpy()
        self.motion_cols, self.recog_cols = slice(0, c["d_motion"]), slice(0, c["d_recog"])
        h, e = c["hidden"], c["emb"]
        self.motion = MotionEncoder(c["d_motion"], h, nn.Sequential(nn.Linear(h, h), nn.LayerNorm(h), nn.LeakyReLU(0.2),
                                                                    nn.Linear(h, e)))
        self.text = TextGRU(len(self.vocab), h, e)
        self.recognizer = MotionEncoder(c["d_recog"], h, nn.Linear(h, max(1, len(self.actions))))
        for name in ("motion", "text", "recognizer"):
            if name in payload:                                          # absent while being trained
                getattr(self, name).load_state_dict(payload[name])
                getattr(self, name).eval()

    def batch(self, feats, cols):
        """list of (T_i, D) per-second 20 fps features -> normalized, zero-padded (B, T, d) and lengths (B,)."""
        lengths = torch.tensor([len(x) for x in feats])
        x = torch.zeros(len(feats), int(lengths.max()), cols.stop)
        for i, f in enumerate(feats):
            x[i, :len(f)] = torch.from_numpy(((f - self.mean) / self.std)[:, cols]).float()
        return x, lengths

    @torch.no_grad()
    def embed_motions(self, feats, chunk=256):
        return torch.cat([self.motion(*self.batch(feats[i:i + chunk], self.motion_cols))
                          for i in range(0, len(feats), chunk)]).numpy()

    @torch.no_grad()
    def embed_texts(self, texts, chunk=256):
        return torch.cat([self.text(self.vocab.encode(texts[i:i + chunk])) for i in range(0, len(texts), chunk)]).numpy()

    @torch.no_grad()
    def recognize(self, feats, chunk=256):
        """-> predicted action indices (N,) and the recognizer's features (N, H)."""
        h = torch.cat([self.recognizer.body(*self.batch(feats[i:i + chunk], self.recog_cols))
                       for i in range(0, len(feats), chunk)])
        return self.recognizer.out(h).argmax(-1).numpy(), h.numpy()


def train_evaluator(ms, steps, seed=0, hidden=128, emb=64, batch=64, log=print):
    """Train the evaluator on real motions (a MotionSet, native rates) -> its payload."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    feats = [to_eval_rate(x, f) for x, f in zip(ms.features, ms.fps)]
    allx = np.concatenate(feats)
    sl = data.feature_slices(ms.skeleton)
    labels = sorted(set(ms.actions)) if all(ms.actions) else []
    payload = {"kind": "nerm-evaluator", "names": list(ms.names), "vocab": nerm.Vocab.build(
        [c for caps in ms.captions for c in caps]).to_list(), "actions": labels,
        # T2M drops the 4 foot contacts; the recognizer reads root channels + root-relative joints
        "config": {"d_motion": sl["contact"].start, "d_recog": sl["ric"].stop, "hidden": hidden, "emb": emb},
        "mean": torch.from_numpy(allx.mean(0)), "std": torch.from_numpy(data.group_std(allx.std(0), ms.skeleton))}
    ev = Evaluator(payload)
    y = torch.tensor([labels.index(a) for a in ms.actions]) if labels else None
    modules = [ev.motion, ev.text] + ([ev.recognizer] if labels else [])
    opt = torch.optim.Adam([p for mod in modules for p in mod.parameters()], lr=1e-3)
    batch = min(batch, len(feats))
    for step in range(steps):
        idx = rng.choice(len(feats), batch, replace=False)
        texts = [ms.captions[i][rng.integers(len(ms.captions[i]))] for i in idx]
        t = ev.text(ev.vocab.encode(texts))                               # (B, E)
        m = ev.motion(*ev.batch([feats[i] for i in idx], ev.motion_cols))  # (B, E)
        # InfoNCE both ways on -||t - m||^2: the metrics are Euclidean, so the training distance is too
        logits = -torch.cdist(t, m).pow(2)                                 # (B texts, B motions)
        target = torch.arange(batch)
        loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
        if labels:
            loss = loss + F.cross_entropy(ev.recognizer(*ev.batch([feats[i] for i in idx], ev.recog_cols)), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % 250 == 0 or step + 1 == steps:
            log(f"  evaluator step {step + 1}/{steps}: loss {loss.item():.3f}")
    for name in ("motion", "text", "recognizer"):
        payload[name] = getattr(ev, name).state_dict()
    return payload


def get_evaluator(args, train, kind="nerm-evaluator"):
    """The evaluator (or, kind "nerm-clip-evaluator", the clip-FID encoders): loaded, or trained and saved once."""
    clip = kind == "nerm-clip-evaluator"
    path = (args.clip_evaluator if clip else args.evaluator) or os.path.join(
        "runs", f"{'clip_' * clip}evaluator_{args.data}.pt")
    payload = None
    if os.path.exists(path) and not args.retrain_evaluator:
        payload = nerm.load_file(path, "evaluator file")
        if not isinstance(payload, dict) or payload.get("kind") != kind:
            raise data.DataError(f"{path}: not a {kind} file")
        if payload.get("names") != list(train.names):
            raise data.DataError(f"{path} was trained on other train sequences; pass --retrain-evaluator")
    if payload is None:
        t0 = time.time()
        print(f"training the {'clip-FID encoders' if clip else 'evaluator'} on {len(train)} real train motions ...")
        guard.claim(path, force=args.retrain_evaluator, remedy="pass --retrain-evaluator to replace it")
        payload = train_clip_encoders(train, EVAL_FPS, seed=args.seed) if clip else \
            train_evaluator(train, args.evaluator_steps, args.seed)
        nerm.save_checkpoint(payload, path)
        print(f"  wrote {path} in {time.time() - t0:.0f} s")
    try:
        return ClipEvaluator(payload, train.skeleton) if clip else Evaluator(payload)
    except RuntimeError:  # written by another version of these networks
        raise data.DataError(f"{path} does not fit this eval.py's networks; pass --retrain-evaluator") from None


# ---- clip-FID: one small encoder per framerate, trained on real clips at that rate ----

def clip_plan(ms, rate, per_seq, rng, m=CLIP_M):
    """Where clips are cut: (K, 2) rows (sequence, first frame on its `rate` grid), per_seq per sequence
    recorded at >= rate (a sequence recorded below it holds no detail at that rate)."""
    rows = []
    for i, (x, f) in enumerate(zip(ms.features, ms.fps)):
        starts = int(np.floor((len(x) - 1) / f * rate + 1e-6)) - m + 2   # starts 0 .. last that fit m frames
        if f + 1e-6 >= rate and starts > 0:
            rows += [(i, int(c)) for c in rng.integers(0, starts, per_seq)]
    return np.array(rows, dtype=np.int64).reshape(-1, 2)


def real_clips(ms, plan, rate, via_fps=None, kind="linear"):
    """(K, m, D) clips of a MotionSet at the places of a plan: frames c .. c+m-1 of a sequence's grid at `rate`,
    i.e. data.resample(x, fps, rate)[c:c + m], interpolating only the frames the clips need; via_fps: from
    the sequences decimated to it first, then interpolated (`kind`: linear or cubic) back up to `rate`."""
    out = np.zeros((len(plan), CLIP_M, ms.features[0].shape[1]), np.float32)
    for i in np.unique(plan[:, 0]):
        rows = plan[:, 0] == i
        x, f = ms.features[i], ms.fps[i]
        if via_fps:
            x, f = data.resample(x, f, via_fps), via_fps
        out[rows] = data.interpolate(x, f, (plan[rows, 1:] + np.arange(CLIP_M)) / rate, kind)   # (k, m) seconds
    return out


def clip_input(clips, rate, skeleton):
    """(K, m, D) per-second feature clips at `rate` -> (K, m - 2, 4 + 9 (J - 1)): root channels, root-relative
    joints, and their velocity and acceleration by finite differences at this rate (per s, per s^2), which
    converge to the true derivatives only as the rate rises: the detail a high rate holds."""
    ric = clips[..., data.feature_slices(skeleton)["ric"]]
    vel = np.diff(ric, axis=1) * rate
    acc = np.diff(vel, axis=1) * rate
    return np.concatenate([clips[:, 2:, :4], ric[:, 2:], vel[:, 1:], acc], -1).astype(np.float32)


SPECTRUM_FLOOR = 1e-2   # (m/s^2)^2 per frequency bin: accelerations below ~0.1 m/s^2 count as stillness


def joint_acceleration(clips, rate, skeleton):
    """(K, m, D) clips at `rate` -> (K, m - 2, J - 1, 3) root-relative joint accelerations, m/s^2, by second
    differences at this rate."""
    ric = clips[..., data.feature_slices(skeleton)["ric"]]
    acc = np.diff(ric, n=2, axis=1) * rate * rate
    return acc.reshape(*acc.shape[:2], -1, 3)


def mean_acceleration(clips, rate, skeleton):
    """The mean norm of the clips' root-relative joint accelerations, m/s^2."""
    return float(np.linalg.norm(joint_acceleration(clips, rate, skeleton), axis=-1).mean())


def acceleration_spectrum(clips, rate, skeleton):
    """(K, m, D) clips at `rate` -> (K, (m - 2) // 2) detail features: per clip, the log10 power of its
    root-relative joint acceleration in each frequency bin k * rate / (m - 2) Hz, k = 1 .. (m - 2) / 2
    (Hann window, mean over joints and axes, in (m/s^2)^2 per bin, plus SPECTRUM_FLOOR). The bins reach
    rate / 2: at 120 fps they cover 4 .. 60 Hz, the band a 20 fps system cannot hold (above 10 Hz)."""
    acc = joint_acceleration(clips, rate, skeleton)
    acc = acc - acc.mean(1, keepdims=True)
    w = np.hanning(acc.shape[1])[None, :, None, None]
    power = np.abs(np.fft.rfft(acc * w, axis=1)) ** 2 / (w ** 2).sum()      # (K, bins, J - 1, 3)
    return np.log10(power.mean((2, 3))[:, 1:] + SPECTRUM_FLOOR)


# ---- band error: the decoded 10-60 Hz band against the true one, frame by frame ----

BAND_HZ = (10.0, 60.0)   # above what a 20 fps system can hold (its Nyquist, 10 Hz), up to what 120 fps holds
BAND_RATES = tuple(r for r in EVAL_FPS if r >= 100)   # the rates whose frames hold most of that band


def band_pass(x, rate, lo=BAND_HZ[0], hi=BAND_HZ[1]):
    """(T, ...) a signal sampled at `rate` -> (T, ...) its part from lo to hi Hz, frame by frame (T >= 3).

    The line through the first and last frames is taken off, the rest is written as a sine series,
    sum_k b_k sin(pi k t / t_end) (DST-I, computed as the FFT of its odd extension, period 2 (T - 1) frames),
    and the terms at lo <= k rate / (2 (T - 1)) <= hi Hz are kept. Why not the FFT of the sequence itself,
    even after taking off a least-squares line: the FFT wraps the last frame onto the first, and a motion
    that ends moving breaks there in slope, which leaks into the band (~1/f^2): on the embedded data's
    100-120 fps sequences that leak is a third of the band energy of the root-relative joint positions and
    98% of the global ones'. The odd extension is continuous in value and in slope at both ends; only its
    break in acceleration leaks (~1/f^3; under 1% there). Why not the signal minus a smooth low-pass: the
    band starts at lo exactly (the terms are 1 / (2 t_end) Hz apart), where a filter's skirt would keep part
    of 5-10 Hz and drop part of 10-15 Hz. Defined on any clip of 3 frames or more; the price is that the band
    is 0 at the two end frames (the odd extension's zeros), for the truth and the prediction alike."""
    T = len(x)
    assert T >= 3, T
    s = (np.arange(T) / (T - 1)).reshape(-1, *[1] * (x.ndim - 1))          # (T, 1, ...) from 0 to 1
    y = x - (x[:1] + (x[-1:] - x[:1]) * s)                                  # 0 at both end frames
    ext = np.concatenate([y, -y[-2:0:-1]])                                  # (2 (T - 1), ...) odd about both ends
    spec = np.fft.rfft(ext, axis=0)
    f = np.fft.rfftfreq(len(ext), 1.0 / rate)                               # k rate / (2 (T - 1)) Hz
    spec[(f < lo) | (f > hi)] = 0
    return np.fft.irfft(spec, len(ext), axis=0)[:T]


def band_error(pred, true, rate, lo=BAND_HZ[0], hi=BAND_HZ[1]):
    """How far pred's lo..hi Hz band (band_pass) is from true's, frame by frame, phase included: per joint,
    the energy of band(pred) - band(true) over the energy of band(true), each summed over frames and axes;
    then the mean over joints. 0: the true band. 1: no band at all, what a decoder without detail scores.
    The true band delayed by a phase phi: 2 - 2 cos(phi); a band of the true energy but unrelated to it: 2.
    Above 1, what the band holds adds more error than it removes: noise, not detail.

    pred, true: (T, J, 3) positions in metres at `rate`, aligned frame by frame, or two lists of such
    sequences, whose energies are then summed per joint before the ratio (a sequence that hardly moves
    weighs little, rather than dividing by almost nothing). A joint without true band energy (one that
    never moves) is left out. At 100 fps the band stops at 50 Hz, the rate's Nyquist."""
    if isinstance(true, np.ndarray):
        pred, true = [pred], [true]
    err = ref = 0.0
    for p, q in zip(pred, true, strict=True):
        assert p.shape == q.shape, (p.shape, q.shape)
        band = band_pass(q, rate, lo, hi)
        miss = band_pass(p - q, rate, lo, hi)          # = band(p) - band(q): the band-pass is linear
        err, ref = err + (miss ** 2).sum((0, 2)), ref + (band ** 2).sum((0, 2))       # (J,) each
    keep = ref > 0
    return float(np.mean(err[keep] / ref[keep]))


def ric_positions(x, skeleton):
    """(T, D) features -> (T, J - 1, 3) the joints' positions relative to the root in its facing frame, metres."""
    return x[:, data.feature_slices(skeleton)["ric"]].reshape(len(x), -1, 3).astype(np.float64)


def recorded_at(ms, rate):
    """Indices of the sequences of MotionSet ms recorded at `rate`."""
    return [i for i, f in enumerate(ms.fps) if abs(f - rate) <= 1e-6 * rate]


def band_rows(ms, rate, decoder=None, z=None, seconds=None, chunk=32):
    """Band errors at `rate` over the sequences of MotionSet ms recorded at that rate (so the truth is their own
    frames, never an interpolation), on root-relative joint positions (ric_positions, what detail-FD reads):
    a fitted decoder's global positions also carry the drift of its integrated root velocity and heading
    (its global MRE is ~5x the root-relative one), slow errors that would turn the true band with them.
    Without a decoder, the real motion through 20 fps (resampled to 20 fps, interpolated back):
    {"linear": e, "cubic": e}. With one, latents z (len(ms), Z) decoded for `seconds` (len(ms),), directly at
    the rate and at 20 fps then interpolated: {"direct": e, "linear": e, "cubic": e}; a decoded motion
    shorter than its sequence (a fixed-20-fps fit) is compared on its own frames. {} if none is at the rate."""
    idx = recorded_at(ms, rate)
    if not idx:
        return {}
    if decoder is None:
        preds = {kind: [data.interpolate(data.resample(ms.features[i], rate, EVAL_RATE), EVAL_RATE,
                                         np.arange(len(ms.features[i])) / rate, kind) for i in idx]
                 for kind in ("linear", "cubic")}
    else:
        preds = {"direct": [], "linear": [], "cubic": []}
        for c in range(0, len(idx), chunk):
            part = idx[c:c + chunk]
            zp, sp = z[torch.tensor(part)], torch.from_numpy(seconds[part])
            direct = nerm.decode(decoder, zp, rate, sp).cpu().numpy()              # (B, T, D) padded
            low = nerm.decode(decoder, zp, EVAL_RATE, sp).cpu().numpy()            # (B, T20, D) padded
            for x, x20, q in zip(direct, low, part):
                T = min(len(ms.features[q]), nerm.num_frames(rate, seconds[q]))
                preds["direct"].append(x[:T])
                for kind in ("linear", "cubic"):
                    preds[kind].append(data.interpolate(x20[:nerm.num_frames(EVAL_RATE, seconds[q])], EVAL_RATE,
                                                        np.arange(T) / rate, kind))
    sk = ms.skeleton
    return {k: band_error([ric_positions(x, sk) for x in p], [ric_positions(ms.features[q][:len(x)], sk)
                                                               for x, q in zip(p, idx)], rate)
            for k, p in preds.items()}


class ClipEncoder(nn.Module):
    """clip-FID's encoder for one rate: temporal convolutions over a clip's frames, mean-pooled -> (B, E)."""

    def __init__(self, d_in, h=128, e=32):
        super().__init__()
        self.net = nn.Sequential(nn.Conv1d(d_in, h, 3, padding=1), nn.LeakyReLU(0.2),
                                 nn.Conv1d(h, h, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
                                 nn.Conv1d(h, h, 3, stride=2, padding=1), nn.LeakyReLU(0.2))
        self.out = nn.Linear(h, e)

    def forward(self, x):
        return self.out(self.net(x.transpose(1, 2)).mean(-1))            # (B, m-2, d) -> (B, H, m/4) -> (B, E)


class ClipEvaluator:
    """The per-rate clip encoders and their input statistics, rebuilt from a payload."""

    def __init__(self, payload, skeleton):
        self.skeleton, self.enc, self.stats = skeleton, {}, {}
        for key, sd in payload["enc"].items():
            enc = ClipEncoder(sd["net.0.weight"].shape[1])
            enc.load_state_dict(sd)
            self.enc[float(key)] = enc.eval()
            self.stats[float(key)] = (payload["mean"][key], payload["std"][key])

    @torch.no_grad()
    def embed(self, clips, rate):
        mean, std = self.stats[float(rate)]
        x = (torch.from_numpy(clip_input(clips, rate, self.skeleton)) - mean) / std
        return torch.cat([self.enc[float(rate)](x[i:i + 1024]) for i in range(0, len(x), 1024)]).numpy()


def train_clip_encoders(ms, rates, steps=300, batch=128, seed=0, log=print):
    """Per rate: two clips of one sequence near, of different sequences apart (InfoNCE on cosine, T = 0.1)."""
    payload = {"kind": "nerm-clip-evaluator", "names": list(ms.names), "m": CLIP_M, "enc": {}, "mean": {}, "std": {}}
    for rate in rates:
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        plan = clip_plan(ms, rate, 4, rng)
        x = torch.from_numpy(clip_input(real_clips(ms, plan, rate), rate, ms.skeleton))  # (K, m-2, d)
        mean, std = x.mean((0, 1)), x.std((0, 1)).clamp(min=1e-3)
        seqs = np.unique(plan[:, 0])
        enc = ClipEncoder(x.shape[-1])
        opt = torch.optim.Adam(enc.parameters(), lr=1e-3)
        for step in range(steps):
            sub = ms.subset(rng.choice(seqs, min(batch, len(seqs)), replace=False))
            two = clip_plan(sub, rate, 2, rng)          # (2B, 2): rows 2i and 2i + 1 are two clips of sequence i
            emb = enc((torch.from_numpy(clip_input(real_clips(sub, two, rate), rate, ms.skeleton)) - mean) / std)
            a, b = F.normalize(emb[0::2], dim=-1), F.normalize(emb[1::2], dim=-1)
            logits = a @ b.T / 0.1
            target = torch.arange(len(a))
            loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        log(f"  clip encoder @{rate:g} fps: {len(seqs)} train sequences, loss {loss.item():.3f} after {steps} steps")
        key = str(float(rate))
        payload["enc"][key], payload["mean"][key], payload["std"][key] = enc.state_dict(), mean, std
    return payload


# ---- the tables ----

COLUMNS = {"text": ["FID", "top-1", "top-2", "top-3", "MM-Dist", "Diversity", "MModality", "Accuracy"],
           "action": ["FID", "Accuracy", "Diversity", "MModality"], "none": ["FID", "Diversity"]}


def summary(values):
    """What the JSON file keeps of a figure: every replication, the mean and the 95% half-width."""
    mean, half = mean_ci(values)
    return {"values": [float(v) for v in values], "mean": mean, "ci": half}


def ci_text(values):
    mean, half = mean_ci(values)
    return f"{round(mean, 3) + 0.0:.3f} ± {half:.3f}"        # + 0.0: rounding error never prints as -0.000


def print_table(title, rows, cols, first="motions"):
    """rows: [(name, {column: values over the replications})] -> a markdown table of mean ± its 95% t-interval."""
    print(f"\n{title}\n\n| {first} | " + " | ".join(cols) + " |\n|---|" + "---|" * len(cols))
    for name, res in rows:   # a cell: values over the replications, one float (a figure without them), or none
        print(f"| {name} | " + " | ".join(f"{res[c]:.3f}" if isinstance(res.get(c), float) else
                                          ci_text(res[c]) if res.get(c) else "-" for c in cols) + " |")


def score(ev, motions, texts, labels, ref, div_pairs, seed, space):
    """One replication's figures for 20 fps motions, their captions and action ids (either may be None)."""
    out = {}
    pred, rec = ev.recognize(motions) if ev.actions else (None, None)
    emb = ev.embed_motions(motions) if space == "motion" else rec     # action models: the recognizer's features
    if texts is not None and len(texts) >= R_PRECISION_BATCH:
        t = ev.embed_texts(texts)
        out.update(zip(("top-1", "top-2", "top-3"), r_precision(t, emb)))
        out["MM-Dist"] = matching_distance(t, emb)
    out["FID"] = fid(ref, emb)
    out["Diversity"] = diversity(emb, min(div_pairs, len(emb)), seed)
    if labels is not None and pred is not None:
        out["Accuracy"] = float((pred == labels).mean())
    return out


def mmodality(ev, test, gen, args, rng, g, seed):
    """MModality: --mm-samples motions per caption (text) or per action, the mean distance within each."""
    cond, dur = gen.model.config.cond, test.durations()
    if cond == "text":
        seqs = rng.choice(len(test), min(args.mm_texts, len(test)), replace=False)
        conds = [test.captions[i][rng.integers(len(test.captions[i]))] for i in seqs]
    else:  # every action, each as long as one of its test motions
        seqs = [rng.choice(np.flatnonzero(np.array(test.actions) == a)) for a in gen.ckpt["actions"] if a in test.actions]
        conds = [test.actions[i] for i in seqs]
    S, pairs = args.mm_samples, 10 if cond == "text" else 20
    z = sample_latents(gen, np.repeat(conds, S).tolist(), np.repeat(dur[seqs], S), args, g)
    motions = decode_motions(gen.decoder, z, np.repeat(dur[seqs], S))
    emb = ev.embed_motions(motions) if cond == "text" else ev.recognize(motions)[1]
    return multimodality(emb.reshape(len(conds), S, -1), pairs, seed)                # (texts, S, E)


DETAIL_RATE = 120.0   # the T2M table's detail columns: what the motions hold at 120 fps


def detail_figures(test, val, rng, gen=None, z=None):
    """The T2M table's detail columns: detail-FD of 120 fps clips, 32 per motion, of the motions (the test
    sequences recorded at >= 120 fps: generated for their captions, z (len(test), Z) in test order, or the
    real ones) against real val clips at 120 fps, decoded directly ("detail@120") and decoded at 20 fps then
    interpolated linearly ("detail@120 via 20", the 20 fps systems' way); {} without 120 fps sequences."""
    plan, ref_plan = clip_plan(test, DETAIL_RATE, 32, rng), clip_plan(val, DETAIL_RATE, 32, rng)
    if not len(plan) or not len(ref_plan):
        return {}
    sk, dur = test.skeleton, test.durations()
    ref = acceleration_spectrum(real_clips(val, ref_plan, DETAIL_RATE), DETAIL_RATE, sk)
    direct = real_clips(test, plan, DETAIL_RATE) if gen is None else decoded_clips(gen.decoder, z, dur, plan, DETAIL_RATE)
    via = (real_clips(test, plan, DETAIL_RATE, EVAL_RATE) if gen is None
           else decoded_clips(gen.decoder, z, dur, plan, DETAIL_RATE, EVAL_RATE))
    return {"detail@120": fid(ref, acceleration_spectrum(direct, DETAIL_RATE, sk)),
            "detail@120 via 20": fid(ref, acceleration_spectrum(via, DETAIL_RATE, sk))}


def replications(ev, test, refs, cond, args, gen=None, val=None):
    """{figure: one value per replication} of a Stage2 (gen) or, gen=None, of the real test motions; with
    val, also the detail columns (detail_figures)."""
    labels = np.array([ev.actions.index(a) for a in test.actions]) if ev.actions else None
    dur = test.durations()
    real = [to_eval_rate(x, f) for x, f in zip(test.features, test.fps)]
    space = "recognizer" if cond == "action" else "motion"
    g = torch.Generator().manual_seed(args.seed)
    res = defaultdict(list)
    for r in range(args.reps):
        rng = np.random.default_rng(args.seed + r)
        seq = rng.permutation(len(test))                     # new batches of 32 for R-precision every time
        # one motion per test sequence; a text model gets one of its captions at random, as T2M's loader
        texts = [test.captions[i][rng.integers(len(test.captions[i]))] for i in seq] if cond == "text" else None
        if gen is None:
            motions, z = [real[i] for i in seq], None
        else:
            conds = texts if cond == "text" else [test.actions[i] for i in seq]
            z = torch.empty(len(test), gen.decoder.cfg.latent_dim)
            z[torch.from_numpy(seq)] = sample_latents(gen, conds, dur[seq], args, g)    # z in test order
            motions = decode_motions(gen.decoder, z[torch.from_numpy(seq)], dur[seq])
        fig = score(ev, motions, texts, None if labels is None or cond == "none" else labels[seq], refs[space],
                    200 if cond == "action" else 300, args.seed + r, space)
        if val is not None:
            fig.update(detail_figures(test, val, rng, gen, z))
        if gen is not None and cond != "none":
            fig["MModality"] = mmodality(ev, test, gen, args, rng, g, args.seed + r)
        for k, v in fig.items():
            res[k].append(v)
    return res


def t2m_tables(args):
    """The text->motion (action->motion, unconditional) table of each kind of stage-2 checkpoint, with a Real row."""
    gens = [(path, load_stage2(path)) for path in args.ckpt]   # a broken checkpoint fails before any work
    other = "val" if args.split == "test" else "test"    # the detail columns' real reference
    train = load_split(args.data, args.data_dir, "train")
    held, ref_set = load_split(args.data, args.data_dir, args.split), load_split(args.data, args.data_dir, other)
    ev = get_evaluator(args, train)
    train20 = [to_eval_rate(x, f) for x, f in zip(train.features, train.fps)]
    held20 = [to_eval_rate(x, f) for x, f in zip(held.features, held.fps)]
    # FID references: text->motion against the held-out (test) motions, as T2M's evaluation; action->motion
    # against the train motions (the paper's FID_train)
    refs = {"motion": ev.embed_motions(held20), "recognizer": ev.recognize(train20)[1] if ev.actions else None}
    out = {}
    for cond in ("text", "action", "none"):
        mine = [(path, gen) for path, gen in gens if gen.model.config.cond == cond]
        if not mine:
            continue
        if cond == "action" and not ev.actions:
            raise data.DataError(f"the {args.data} data has no action labels: the action recognizer cannot be trained")
        t0 = time.time()
        rows = [(f"Real ({args.split}, {len(held)} motions)", replications(ev, held, refs, cond, args, val=ref_set))]
        for path, gen in mine:   # the fps the decoder was trained up to: 20 for the fixed-rate baseline
            rows.append((f"{path} (INR <= {gen.decoder.cfg.max_fps:g} fps)",
                         replications(ev, held, refs, cond, args, gen, ref_set)))
        detail = [c for c in ("detail@120", "detail@120 via 20") if c in rows[0][1]]
        print_table(f"{cond}->motion, {args.data} {args.split} split: mean ± 95% t-interval over R = {args.reps}; per replication "
                    f"one motion per {args.split} sequence ({len(held)}{', a random one of its captions' * (cond == 'text')}), "
                    f"20 fps ≤ {MAX_FRAMES} frames; FID against the {len(held) if cond != 'action' else len(train)} real "
                    f"{args.split if cond != 'action' else 'train'} motions; diversity "
                    f"{min(len(held), 200 if cond == 'action' else 300)} pairs; MModality "
                    f"{min(args.mm_texts, len(held)) if cond == 'text' else len(ev.actions)} "
                    f"{'captions' if cond == 'text' else 'actions'} x {args.mm_samples} samples, "
                    f"{10 if cond == 'text' else 20} pairs; guidance {args.guidance}, {args.steps} DDIM steps "
                    f"({time.time() - t0:.0f} s)" + (f"; detail@120: detail-FD of 120 fps clips against real {other} "
                    f"clips, decoded at 120 fps or at 20 fps + linear interpolation (via 20)" if detail else ""),
                    rows, COLUMNS[cond] + detail)
        out[cond] = {name: {k: summary(v) for k, v in res.items()} for name, res in rows}
    return out


def mre_table(args):
    """MRE and root-relative MRE by framerate of each stage-1 checkpoint on its val sequences (as train_inr.py
    measures them, on the data and with the fit settings of its training), as a markdown table."""
    print("| checkpoint | fps mode | error | " + " | ".join(f"@{f}" for f in EVAL_FPS) + " |")
    print("|---|---|---|" + "---|" * len(EVAL_FPS))
    out = {}
    for path in args.mre:
        ckpt = nerm.load_checkpoint(path, stage=1)
        a = ckpt["args"]
        gt, fit = load_split(a["data"], a["data_dir"], "val"), load_split(a["data"], a["data_dir"], "val", a["fps_mode"])
        keep = [i for i, act in enumerate(gt.actions) if not args.actions or act in args.actions.split(",")]
        keep = keep[:args.max_seqs]
        res = evaluate_mre(nerm.load_decoder(nerm.decoder_payload(ckpt)), fit.subset(keep), gt.subset(keep), len(keep),
                           a["fit_steps"], a["clip_len"], seed=args.seed)
        for kind, name in (("mre", "MRE"), ("local", "local MRE")):
            print(f"| {path} ({len(keep)} seqs) | {a['fps_mode']} | {name} | "
                  + " | ".join(f"{res[kind][f]:.4f}" for f in EVAL_FPS) + " |")
        out[path] = {"sequences": len(keep), "fps_mode": a["fps_mode"],
                     **{k: {str(f): v for f, v in d.items()} for k, d in res.items()}}
    return out


def clip_sources(path, val, args):
    """Rows of a checkpoint: [(label, decoder, z_fn)], z_fn(rep) -> (z (len(val), Z), seconds (len(val),))."""
    try:
        ckpt = nerm.load_checkpoint(path, stage=1)
    except nerm.CheckpointError:
        gen = load_stage2(path)                               # its message names the file when it is neither
        cond = gen.model.config.cond
        conds = [c[0] for c in val.captions] if cond == "text" else val.actions if cond == "action" else [None] * len(val)
        return [("samples", gen.decoder, lambda rep: (sample_latents(
            gen, conds, val.durations(), args, torch.Generator().manual_seed(args.seed + rep)), val.durations()))]
    decoder, a = nerm.load_decoder(nerm.decoder_payload(ckpt)), ckpt["args"]
    # fit: latents of the val sequences, decoder frozen, on what this model's training saw (as MRE);
    # ~200 clips of 64 per sequence (train_inr's fit of 32 sequences gives each 400; this fits all of them)
    fit_set = load_split(args.data, args.data_dir, "val", a["fps_mode"])
    assert fit_set.names == val.names
    z_fit = fit_heldout_latents(decoder, fit_set, len(fit_set), a["fit_steps"] * max(1, round(len(fit_set) / 64)),
                                a["clip_len"], seed=args.seed)
    # prior: the Gaussian of all training latents (+ the mean posterior variance of a variational model)
    mu = ckpt["model"]["latents.mu"].double()
    cov = torch.cov(mu.T) + (torch.diag(ckpt["model"]["latents.logvar"].double().exp().mean(0))
                             if decoder.cfg.variational else 0)
    chol = torch.linalg.cholesky(cov + 1e-8 * torch.eye(len(cov), dtype=torch.float64))

    def prior(rep):
        eps = torch.randn(len(val), len(cov), generator=torch.Generator().manual_seed(args.seed + rep), dtype=torch.float64)
        return (mu.mean(0) + eps @ chol.T).float(), val.durations()

    return [("fit", decoder, lambda rep: (z_fit, fit_set.durations())), ("prior", decoder, prior)]


BY_FPS = {"clip_fid": "clip-FID: the per-rate clip encoders' Fréchet distance to real val clips",
          "detail_fd": "detail-FD: Fréchet distance of per-clip acceleration spectra to real val clips",
          "acceleration": "mean root-relative joint acceleration, m/s^2"}
BAND_TITLE = (f"; band @r: band error {BAND_HZ[0]:g}-{BAND_HZ[1]:g} Hz (to r/2) of the whole val sequences recorded at "
              "r fps against their own frames, root-relative joints, one figure: 0 the true band, 1 none, > 1 noise")


def clip_fid_table(args):
    """The framerate table: clip-FID, detail-FD and mean joint acceleration of clips at each fps, for the
    real floors (test clips, val clips through 20 fps and back) and each checkpoint's rows, decoded directly
    at the rate and decoded at 20 fps then interpolated (linear, cubic) as 20 fps systems do; beside
    detail-FD at 100-120 fps, the band error of the fit rows and of real motion through 20 fps (band_rows;
    in the JSON, detail_fd[row][rate]["band_error"])."""
    train = load_split(args.data, args.data_dir, "train")
    val, test = load_split(args.data, args.data_dir, "val"), load_split(args.data, args.data_dir, "test")
    ce, sk = get_evaluator(args, train, "nerm-clip-evaluator"), val.skeleton
    plans, ref = {}, {}
    rows = {key: defaultdict(lambda: defaultdict(list)) for key in BY_FPS}
    band = defaultdict(dict)      # label -> rate -> band error: whole sequences, one figure (no replications)
    spectra = defaultdict(lambda: defaultdict(list))     # label -> rate -> per replication, the clips' mean spectrum

    def add(label, rep, rate, clips):
        emb, spec = ce.embed(clips, rate), acceleration_spectrum(clips, rate, sk)
        rows["clip_fid"][label][rate].append(fid(ref[rep, rate][0], emb))
        rows["detail_fd"][label][rate].append(fid(ref[rep, rate][1], spec))
        rows["acceleration"][label][rate].append(mean_acceleration(clips, rate, sk))
        spectra[label][rate].append(spec.mean(0))

    for rep in range(args.reps):
        rng = np.random.default_rng(args.seed + rep)
        for rate in EVAL_FPS:
            plans[rep, rate] = plan = clip_plan(val, rate, args.clips_per_seq, rng)
            clips = real_clips(val, plan, rate)
            ref[rep, rate] = ce.embed(clips, rate), acceleration_spectrum(clips, rate, sk)
            rows["acceleration"]["real (val)"][rate].append(mean_acceleration(clips, rate, sk))
            spectra["real (val)"][rate].append(ref[rep, rate][1].mean(0))
            add("real (test)", rep, rate, real_clips(test, clip_plan(test, rate, args.clips_per_seq, rng), rate))
            for kind in ("linear", "cubic"):
                add(f"real via 20 fps, {kind}", rep, rate, real_clips(val, plan, rate, EVAL_RATE, kind))
    for rate in BAND_RATES:
        for kind, e in band_rows(val, rate).items():
            band[f"real via 20 fps, {kind}"][rate] = e
    print(f"By framerate: clips of {CLIP_M} frames, {args.clips_per_seq} per val sequence recorded at >= the rate: "
          + ", ".join(f"{len(plans[0, r])} @{r}" for r in EVAL_FPS) + f"; R = {args.reps}; band error: the val "
          "sequences recorded at " + ", ".join(f"{r} fps ({len(recorded_at(val, r))})" for r in BAND_RATES))
    for path in args.clip_fid:
        t0 = time.time()
        for label, decoder, z_fn in clip_sources(path, val, args):
            for rep in range(args.reps):
                z, seconds = z_fn(rep)
                for rate in EVAL_FPS:
                    add(f"{path} ({label})", rep, rate, decoded_clips(decoder, z, seconds, plans[rep, rate], rate))
                    for kind in ("linear", "cubic"):
                        add(f"{path} ({label} @20 + {kind})", rep, rate,
                            decoded_clips(decoder, z, seconds, plans[rep, rate], rate, EVAL_RATE, kind))
            if label == "fit":    # the band error needs the true motion: only a reconstruction has one
                z, seconds = z_fn(0)
                for rate in BAND_RATES:
                    for kind, e in band_rows(val, rate, decoder, z, seconds).items():
                        band[f"{path} (fit{'' if kind == 'direct' else ' @20 + ' + kind})"][rate] = e
        print(f"  {path}: {time.time() - t0:.0f} s", flush=True)
    cols, bands = [f"@{r}" for r in EVAL_FPS], [f"band @{r}" for r in BAND_RATES]
    for key, title in BY_FPS.items():
        beside = key == "detail_fd"   # the band error beside detail-FD, in the rows that have it
        print_table(title + (" (lower is better)" if key != "acceleration" else "") + BAND_TITLE * beside,
                    [(k, {**{f"@{r}": v for r, v in d.items()}, **{f"band @{r}": e for r, e in band.get(k, {}).items()
                                                                   if beside}}) for k, d in rows[key].items()],
                    cols + bands * beside, "rows")
    # where in the band the rows differ: the mean spectrum detail-FD compares, at the highest rate
    top = max(EVAL_FPS)
    bins = [f"{k * top / (CLIP_M - 2):g} Hz" for k in range(1, (CLIP_M - 2) // 2 + 1)]
    print_table(f"mean log10 acceleration power per bin at {top:g} fps, (m/s^2)^2 (+ {SPECTRUM_FLOOR:g})",
                [(label, dict(zip(bins, np.array(d[top]).T.tolist()))) for label, d in spectra.items()], bins, "rows")
    out = {key: {label: {str(r): summary(v) for r, v in d.items()} for label, d in table.items()}
           for key, table in rows.items()}
    for label, d in band.items():
        for r, e in d.items():
            out["detail_fd"][label][str(r)]["band_error"] = e
    out["spectrum"] = {label: {str(r): np.mean(v, 0).tolist() for r, v in d.items()} for label, d in spectra.items()}
    return out


if __name__ == "__main__":
    guard.report_errors()          # a user's mistake or a failing disk: one line, no traceback
    args = parser.parse_args()
    t0, results = time.time(), {}
    if args.json:   # claimed before any minutes of work; never one of the files this run reads
        guard.claim(args.json, force=args.force, inputs=(args.mre or []) + (args.clip_fid or []) + args.ckpt
                    + [args.data_dir or os.path.join("data", args.data)])
    if args.mre:
        results["mre"] = mre_table(args)
    if args.clip_fid:
        results.update(clip_fid_table(args))
    if not (args.mre or args.clip_fid):
        results["t2m"] = t2m_tables(args)
    if args.json:
        guard.write_text(args.json, json.dumps(results, indent=1))
        print(f"\nwrote {args.json}")
    print(f"\n{time.time() - t0:.0f} s")
