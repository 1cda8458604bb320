"""
Evaluate NeRM: the T2M protocol at 20 fps (DESIGN §3), and clip-FID, MRE and the stage-1 ablations by framerate.

    python eval.py                                               # text->motion table of runs/diffusion.pt + Real row
    python eval.py --ckpt runs/diffusion.pt runs/diffusion_fixed.pt   # native vs the fixed-20-fps baseline
    python eval.py --ckpt runs/diffusion_action.pt               # action->motion table (train_diffusion.py --cond action)
    python eval.py --reps 20 --mm-texts 100 --mm-samples 30      # the paper's R = 20 (slow on a CPU)
    python eval.py --mre runs/inr.pt runs/inr_fixed.pt --actions punch,shake,kick,stomp   # stage-1 MRE by fps
    python eval.py --clip-fid runs/inr.pt runs/inr_fixed.pt      # clip-FID at 20/40/60/100/120 fps
    python eval.py --ablations                                   # trains 6 stage-1 variants, prints the paper's tables

The evaluator (T2M trained its own; its weights cannot be downloaded, so this trains one the same way) is
trained once on the real train motions and saved to runs/evaluator_<data>.pt: a motion encoder (strided
convolutions and a GRU over 20 fps features without the foot contacts, as T2M's) and a text encoder (learned
word embeddings and a bidirectional GRU; no GloVe) trained so a caption is nearer its own motion than the
batch's others (InfoNCE on squared Euclidean distance), and, when the data has action labels, an action
recognizer (the same convolutions and GRU on the root-relative joint positions and root motion at 20 fps).
It never sees the model under test. Motions are resampled to 20 fps, at most 196 frames, before it.

Text->motion: one motion per test sequence, with one of its captions drawn at random (as T2M's loader);
FID against the real *train* motions, R-precision top-1/2/3 in batches of 32, MM-Dist, Diversity (300 pairs,
or as many as there are motions: 204 on the embedded data), MModality (--mm-texts captions x --mm-samples
samples, 10 pairs) and the recognizer's accuracy against the sequence's action; "Real" is the held-out
test motions themselves. Action->motion: FID on the recognizer's features, accuracy, Diversity (200 pairs),
MModality (per action, 20 pairs). Each figure is mean ± 1.96 σ/√R over --reps replications (new samples,
captions, batches and pairs each time). The defaults (R = 3, 10 MModality captions) fit a few minutes on
2 CPU cores; the paper's protocol is --reps 20 --mm-texts 100.

clip-FID at 20/40/60/100/120 fps: FID between real clips and decoded clips of m = 32 frames at that rate
(the INR's training clip, rather than a fixed duration: at 120 fps it spans 0.26 s, so the embedding is
about motion within a quarter second, not about which action it is), seen by one encoder per rate,
trained on real train clips at that rate only (two
clips of one sequence close, of different sequences apart: no labels needed, so it works on HumanML3D).
Its input per frame is the root channels, the root-relative joints and their velocity and acceleration by
finite differences at that rate (per s, per s²). Only sequences recorded at >= the rate give clips at it.
Reference: real clips of the val sequences. Generated side, per stage-1 checkpoint, two rows:
  fit    the same val sequences, latents fitted with the decoder frozen on what its training saw (as MRE),
         decoded at the rate and cut at the same places: how much of the detail the representation holds;
  prior  z ~ N(m, C), the Gaussian of all training latents (for a variational model C includes the mean
         posterior variance), decoded for the val durations, same places: a stand-in for a generator that
         misses the training latents, where the paper's non-variational ablation differs (DESIGN §1).
A stage-2 checkpoint gets one row, z sampled from the val captions. Floors: "real via 20 fps" is the val
clips cut from the sequences resampled to 20 fps first (what fixed-rate preprocessing loses at best; the
fit rows compare the very same clips, so their floor is 0), "real (test)" other real sequences (the floor
of the prior and sample rows; at 100-120 fps only ~35 sequences per split are recorded that fast, so
which sequences they are dominates it).

--ablations trains (subprocess train_inr.py, --ablation-steps each, into runs/ablations/, skipping the
finished ones so a rerun resumes) codebook (the default), sinusoidal and no time encoding, the
non-variational auto-decoder, time in seconds, and fixed-20-fps training, then prints the paper's tables.
Measured on 2 CPU cores shared with other jobs (load 1-4): 2,501 s in all, the six trainings 230-500 s
each (one thread; ~150 s each on idle cores, README), their evaluation 318 s; the clip encoders, already
trained there, add 124 s on a first run.
"""
import argparse
import os
import subprocess
import sys
import time
from collections import defaultdict

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import data
import nerm

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--ckpt", nargs="+", default=["runs/diffusion.pt"], help="stage-2 checkpoints, one table row each")
parser.add_argument("--data", default="synthetic", help="dataset the checkpoints were trained on")
parser.add_argument("--data-dir", default=None, help="dataset directory (default: data/<name>)")
parser.add_argument("--evaluator", default=None, help="evaluator file (default: runs/evaluator_<data>.pt, trained if absent)")
parser.add_argument("--clip-evaluator", default=None, help="clip-FID encoders (default: runs/clip_evaluator_<data>.pt)")
parser.add_argument("--retrain-evaluator", action="store_true", help="train the evaluators again even if their files exist")
parser.add_argument("--evaluator-steps", type=int, default=600, help="training steps of the text/motion evaluator")
parser.add_argument("--reps", type=int, default=3, help="R: replications per figure (paper: 20)")
parser.add_argument("--mm-texts", type=int, default=10, help="MModality: captions (paper: 100)")
parser.add_argument("--mm-samples", type=int, default=30, help="MModality: samples per caption or action (paper: 30)")
parser.add_argument("--guidance", type=float, default=2.5, help="classifier-free guidance scale")
parser.add_argument("--steps", type=int, default=50, help="DDIM steps")
parser.add_argument("--seed", type=int, default=0, help="random seed")
parser.add_argument("--mre", nargs="+", default=None, help="stage-1 checkpoints to compare by MRE at each fps")
parser.add_argument("--actions", default=None, help="with --mre: only val sequences of these actions (comma-separated)")
parser.add_argument("--max-seqs", type=int, default=64, help="with --mre: at most this many val sequences")
parser.add_argument("--clip-fid", nargs="+", default=None, help="stage-1 or stage-2 checkpoints: clip-FID at each fps")
parser.add_argument("--clips-per-seq", type=int, default=8, help="clip-FID: clips cut from each sequence")
parser.add_argument("--ablations", action="store_true", help="train the stage-1 ablation variants and print the tables")
parser.add_argument("--ablation-steps", type=int, default=3000, help="training steps of each ablation variant")
parser.add_argument("--ablation-dir", default="runs/ablations", help="where the ablation checkpoints go")
EVAL_FPS = (20, 40, 60, 100, 120)  # the paper's framerate columns
EVAL_RATE, MAX_FRAMES = 20.0, 196   # the standard evaluators see 20 fps, at most 196 frames
CLIP_M = 32                         # clip-FID: frames per clip at every rate, as the INR's training clips
R_PRECISION_BATCH = 32              # T2M: R-precision ranks each text among 32 motions


# ---- stage 1: held-out MRE by framerate (train_inr.py reports it while training) ----

def fit_heldout_latents(decoder, ms, n, steps, m, seed=0):
    """Latents (n, Z) of the first n sequences of MotionSet ms, decoder frozen (auto-decoder inference):
    clips of m frames drawn as in training, 64 per step."""
    sampler = data.ClipSampler(ms, decoder.mean.cpu().numpy(), decoder.std.cpu().numpy())
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
        x_hat = nerm.decode(compiled or decoder, z, f, torch.from_numpy(seconds).float()).cpu().numpy()  # (n, T, D)
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


# ---- T2M metrics (DESIGN §3): evaluator embeddings in (numpy), floats out ----

def _sqrtm_psd(s):
    """Square root of a symmetric PSD matrix by eigendecomposition; rounding's tiny negative eigenvalues -> 0."""
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def fid(real, gen):
    """Frechet distance of two (N, D) embedding sets: ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^1/2) (T2M)."""
    real, gen = np.asarray(real, np.float64), np.asarray(gen, np.float64)
    assert real.ndim == gen.ndim == 2 and real.shape[1] == gen.shape[1] and min(len(real), len(gen)) >= 2
    mu1, mu2 = real.mean(0), gen.mean(0)
    s1, s2 = np.atleast_2d(np.cov(real, rowvar=False)), np.atleast_2d(np.cov(gen, rowvar=False))
    # Tr((S1 S2)^1/2) = Tr((S1^1/2 S2 S1^1/2)^1/2): same eigenvalues, but a symmetric PSD matrix, so eigh
    # suffices where T2M calls scipy.linalg.sqrtm on the non-symmetric product
    r1 = _sqrtm_psd(s1)
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


def mean_ci(values):
    """(mean, 95% half-width 1.96 sigma / sqrt(R)) over R replications, T2M's report format (np.std: ddof=0)."""
    v = np.asarray(values, np.float64)
    return float(v.mean()), float(1.96 * v.std() / np.sqrt(len(v)))


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
    """T2M's motion side (convolutions then a GRU over 20 fps features), smaller -> (B, E)."""

    def __init__(self, d_in, h, e):
        super().__init__()
        self.body = ConvGRU(d_in, h)
        self.out = nn.Sequential(nn.Linear(h, h), nn.LayerNorm(h), nn.LeakyReLU(0.2), nn.Linear(h, e))

    def forward(self, x, lengths):
        return self.out(self.body(x, lengths))


class TextEncoder(nn.Module):
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


class Recognizer(nn.Module):
    """Action recognizer (as the action-to-motion evaluators): a GRU over joint positions at 20 fps."""

    def __init__(self, d_in, h, n_classes):
        super().__init__()
        self.body = ConvGRU(d_in, h)
        self.out = nn.Linear(h, n_classes)

    def features(self, x, lengths):
        return self.body(x, lengths)                                       # (B, H): FID of action models

    def forward(self, x, lengths):
        return self.out(self.features(x, lengths))


class Evaluator:
    """The trained evaluator, rebuilt from its payload (a dict that torch.load(weights_only=True) reads)."""

    def __init__(self, payload):
        c = payload["config"]
        self.vocab = nerm.Vocab.from_list(payload["vocab"])
        self.actions = payload["actions"]
        self.mean, self.std = payload["mean"].numpy(), payload["std"].numpy()
        self.motion_cols, self.recog_cols = slice(0, c["d_motion"]), slice(0, c["d_recog"])
        self.motion = MotionEncoder(c["d_motion"], c["hidden"], c["emb"])
        self.text = TextEncoder(len(self.vocab), c["hidden"], c["emb"])
        self.recognizer = Recognizer(c["d_recog"], c["hidden"], max(1, len(self.actions)))
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
        h = torch.cat([self.recognizer.features(*self.batch(feats[i:i + chunk], self.recog_cols))
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


def load_payload(path, kind, names):
    """An evaluator file, checked to be of this kind and trained on these train sequences; None when absent."""
    if not os.path.exists(path):
        return None
    payload = load_weights_only(path, "evaluator file")
    if not isinstance(payload, dict) or payload.get("kind") != kind:
        raise data.DataError(f"{path}: not a {kind} file")
    if payload["names"] != list(names):
        raise data.DataError(f"{path} was trained on other train sequences; pass --retrain-evaluator")
    return payload


def get_evaluator(args, train, kind="nerm-evaluator"):
    """The evaluator (or, kind "nerm-clip-evaluator", the clip-FID encoders): loaded, or trained and saved once."""
    clip = kind == "nerm-clip-evaluator"
    path = (args.clip_evaluator if clip else args.evaluator) or os.path.join(
        "runs", f"{'clip_' * clip}evaluator_{args.data}.pt")
    payload = None if args.retrain_evaluator else load_payload(path, kind, train.names)
    if payload is None:
        t0 = time.time()
        print(f"training the {'clip-FID encoders' if clip else 'evaluator'} on {len(train)} real train motions ...")
        payload = train_clip_encoders(train, EVAL_FPS, seed=args.seed) if clip else \
            train_evaluator(train, args.evaluator_steps, args.seed)
        save_atomic(payload, path)
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


def cut_clips(x, fps, rate, starts, m=CLIP_M):
    """(K, m, D) clips of one native sequence x (T, D): frames c .. c+m-1 of its grid at `rate`, i.e.
    data.resample(x, fps, rate)[c:c + m], interpolating only the frames the clips need."""
    return data.interpolate(x, fps, (starts[:, None] + np.arange(m)[None]) / rate)   # (K, m) seconds -> (K, m, D)


def real_clips(ms, plan, rate, via_fps=None):
    """Clips of a MotionSet at the places of a plan; via_fps: from the sequences resampled to it first."""
    out = np.zeros((len(plan), CLIP_M, ms.features[0].shape[1]), np.float32)
    for i in np.unique(plan[:, 0]):
        rows = plan[:, 0] == i
        x, f = ms.features[i], ms.fps[i]
        if via_fps:
            x, f = data.resample(x, f, via_fps), via_fps
        out[rows] = cut_clips(x, f, rate, plan[rows, 1])
    return out


def clip_input(clips, rate, skeleton):
    """(K, m, D) per-second feature clips at `rate` -> (K, m - 2, 4 + 9 (J - 1)): root channels, root-relative
    joints, and their velocity and acceleration by finite differences at this rate (per s, per s^2), which
    converge to the true derivatives only as the rate rises: the detail a high rate holds."""
    ric = clips[..., data.feature_slices(skeleton)["ric"]]
    vel = np.diff(ric, axis=1) * rate
    acc = np.diff(vel, axis=1) * rate
    return np.concatenate([clips[:, 2:, :4], ric[:, 2:], vel[:, 1:], acc], -1).astype(np.float32)


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


# ---- generating and decoding ----

def load_stage2(path):
    ckpt = load_checkpoint(path, stage=2)
    model = nerm.LatentDiffusion(nerm.DiffusionConfig(**ckpt["model_args"])).eval()
    model.load_state_dict(ckpt["model"])
    return ckpt, model, Stage1(ckpt["inr"], "cpu")


def sample_latents(gen, conds, durations, args, g, chunk=256):
    """z (N, Z) from a stage-2 model for N conditions (captions, action names or None) and durations (N,) s."""
    ckpt, model, _ = gen
    out = []
    for i in range(0, len(conds), chunk):
        c, d = conds[i:i + chunk], torch.tensor(durations[i:i + chunk], dtype=torch.float32)
        kw = ({"text": list(c)} if model.config.cond == "text" else
              {"action": torch.tensor([ckpt["actions"].index(a) for a in c])} if model.config.cond == "action" else {})
        out.append(model.sample(len(c), duration=d, guidance=args.guidance, steps=args.steps, generator=g, **kw))
    return torch.cat(out)


def decode_times(stage1, z, t_sec, durations, rate):
    """Per-second features (B, M, D) of latents z (B, Z) at times t_sec (B, M) s, of motions lasting durations (B,)."""
    durations = torch.as_tensor(np.asarray(durations), dtype=torch.float32)
    t = t_sec / durations[:, None] if stage1.time_norm else t_sec
    s = torch.full((len(z),), min(float(rate), stage1.max_fps))  # told the rate, capped as sample.py does
    # rows of at most M timestamps: decode() pads each sequence to whole rows, 256 would be 8x the work of a clip
    return nerm.decode(stage1.decoder, z, t.float(), s, row=min(256, t.shape[1])).numpy() * stage1.std + stage1.mean


def decode_motions(stage1, z, durations, chunk=256):
    """Whole motions at 20 fps, at most 196 frames (as to_eval_rate): a list of (T_i, D) per-second features."""
    frames = [min(MAX_FRAMES, int(np.floor(d * EVAL_RATE + 1e-6)) + 1) for d in durations]
    out = []
    for i in range(0, len(z), chunk):
        n, M = len(z[i:i + chunk]), max(frames[i:i + chunk])
        t = torch.arange(M, dtype=torch.float32)[None].expand(n, M) / EVAL_RATE        # (B, M) seconds
        x = decode_times(stage1, z[i:i + chunk], t, durations[i:i + chunk], EVAL_RATE)
        out += [xi[:k] for xi, k in zip(x, frames[i:i + chunk])]
    return out


# ---- text->motion and action->motion tables ----

COLUMNS = {"text": ["FID", "top-1", "top-2", "top-3", "MM-Dist", "Diversity", "MModality", "Accuracy"],
           "action": ["FID", "Accuracy", "Diversity", "MModality"], "none": ["FID", "Diversity"]}


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
    cond, dur = gen[1].config.cond, test.durations()
    if cond == "text":
        seqs = rng.choice(len(test), min(args.mm_texts, len(test)), replace=False)
        conds = [test.captions[i][rng.integers(len(test.captions[i]))] for i in seqs]
    else:  # every action, each as long as one of its test motions
        seqs = [rng.choice(np.flatnonzero(np.array(test.actions) == a)) for a in gen[0]["actions"] if a in test.actions]
        conds = [test.actions[i] for i in seqs]
    S, pairs = args.mm_samples, 10 if cond == "text" else 20
    z = sample_latents(gen, np.repeat(conds, S).tolist(), np.repeat(dur[seqs], S), args, g)
    motions = decode_motions(gen[2], z, np.repeat(dur[seqs], S))
    emb = ev.embed_motions(motions) if cond == "text" else ev.recognize(motions)[1]
    return multimodality(emb.reshape(len(conds), S, -1), pairs, seed)                # (texts, S, E)


def replications(ev, test, refs, cond, args, gen=None):
    """{figure: one value per replication} of a stage-2 model (gen) or, gen=None, of the real test motions."""
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
            motions = [real[i] for i in seq]
        else:
            conds = texts if cond == "text" else [test.actions[i] for i in seq]
            motions = decode_motions(gen[2], sample_latents(gen, conds, dur[seq], args, g), dur[seq])
        fig = score(ev, motions, texts, None if labels is None or cond == "none" else labels[seq], refs[space],
                    200 if cond == "action" else 300, args.seed + r, space)
        if gen is not None and cond != "none":
            fig["MModality"] = mmodality(ev, test, gen, args, rng, g, args.seed + r)
        for k, v in fig.items():
            res[k].append(v)
    return res


def ci_text(values):
    mean, half = mean_ci(values)
    return f"{round(mean, 3) + 0.0:.3f} ± {half:.3f}"        # + 0.0: rounding error never prints as -0.000


def print_table(title, rows, cols, first="motions"):
    print(f"\n{title}\n\n| {first} | " + " | ".join(cols) + " |\n|---|" + "---|" * len(cols))
    for name, res in rows:
        print(f"| {name} | " + " | ".join(ci_text(res[c]) if res.get(c) else "-" for c in cols) + " |")


def stage2_tables(args):
    gens = [(path, load_stage2(path)) for path in args.ckpt]   # a missing checkpoint fails before any work
    if args.mm_samples < 20 or args.reps < 1:
        raise data.DataError("--mm-samples must be at least 20 (MModality pairs) and --reps at least 1")
    data_dir = args.data_dir or os.path.join("data", args.data)
    train, test = data.load_dataset(args.data, data_dir, "train"), data.load_dataset(args.data, data_dir, "test")
    ev = get_evaluator(args, train)
    train20 = [to_eval_rate(x, f) for x, f in zip(train.features, train.fps)]
    refs = {"motion": ev.embed_motions(train20), "recognizer": ev.recognize(train20)[1] if ev.actions else None}
    for cond in ("text", "action", "none"):
        mine = [(path, gen) for path, gen in gens if gen[1].config.cond == cond]
        if not mine:
            continue
        if cond == "action" and not ev.actions:
            raise data.DataError(f"{data_dir} has no action labels: the action recognizer cannot be trained")
        t0 = time.time()
        rows = [(f"Real (test, {len(test)} motions)", replications(ev, test, refs, cond, args))]
        for path, gen in mine:
            rows.append((f"{path} ({gen[0]['inr']['args']['fps_mode']} fps)", replications(ev, test, refs, cond, args, gen)))
        print_table(f"{cond}->motion, {args.data} test split: mean ± 1.96 σ/√R over R = {args.reps}; per replication "
                    f"one motion per test sequence ({len(test)}{', a random one of its captions' * (cond == 'text')}), "
                    f"20 fps ≤ {MAX_FRAMES} frames; FID against {len(train)} real train motions; diversity "
                    f"{min(len(test), 200 if cond == 'action' else 300)} pairs; MModality "
                    f"{min(args.mm_texts, len(test)) if cond == 'text' else len(ev.actions)} "
                    f"{'captions' if cond == 'text' else 'actions'} x {args.mm_samples} samples, "
                    f"{10 if cond == 'text' else 20} pairs; guidance {args.guidance}, {args.steps} DDIM steps "
                    f"({time.time() - t0:.0f} s)", rows, COLUMNS[cond])


# ---- stage 1: MRE and clip-FID by framerate ----

def mre_of(path, actions=None, max_seqs=64, seed=0):
    """(n, fps mode, {"mre"|"local": {fps: metres}}) of a stage-1 checkpoint on its val sequences, as train_inr.py."""
    ckpt = load_checkpoint(path, stage=1)
    a = ckpt["args"]
    data_dir = a["data_dir"] or os.path.join("data", a["data"])
    gt = data.load_dataset(a["data"], data_dir, "val", "native")
    fit = data.load_dataset(a["data"], data_dir, "val", a["fps_mode"])
    keep = [i for i, act in enumerate(gt.actions) if not actions or act in actions][:max_seqs]
    cfg = nerm.INRConfig(**ckpt["model_args"])
    model = nerm.NeRM(cfg)
    model.load_state_dict(ckpt["model"])
    out = evaluate_mre(model.decoder, fit.subset(keep), gt.subset(keep), len(keep), cfg, ckpt["mean"].numpy(),
                       ckpt["std"].numpy(), a["fit_steps"], a["clip_len"], "cpu", ckpt["time_norm"], seed=seed)
    return len(keep), a["fps_mode"], out


def compare_mre(args):
    """Print MRE and root-relative MRE by framerate for each stage-1 checkpoint, as a markdown table."""
    print("| checkpoint | fps mode | error | " + " | ".join(f"@{f}" for f in EVAL_FPS) + " |")
    print("|---|---|---|" + "---|" * len(EVAL_FPS))
    for path in args.mre:
        n, mode, out = mre_of(path, args.actions and args.actions.split(","), args.max_seqs, args.seed)
        for kind, name in (("mre", "MRE"), ("local", "local MRE")):
            print(f"| {path} ({n} seqs) | {mode} | {name} | " + " | ".join(f"{out[kind][f]:.4f}" for f in EVAL_FPS) + " |")


def clip_sources(path, val, args):
    """clip-FID rows of a checkpoint: [(label, Stage1, z_fn)], z_fn(rep) -> (z (len(val), Z), durations)."""
    try:
        ckpt = load_checkpoint(path, stage=1)
    except data.DataError:
        ckpt = load_checkpoint(path, stage=2)                # its message names the file when it is neither
    if ckpt["stage"] == 2:
        gen = load_stage2(path)
        conds = ([c[0] for c in val.captions] if gen[1].config.cond == "text" else
                 val.actions if gen[1].config.cond == "action" else [None] * len(val))
        return [("samples", gen[2], lambda rep: (sample_latents(
            gen, conds, val.durations(), args, torch.Generator().manual_seed(args.seed + rep)), val.durations()))]
    stage1, a = Stage1(stage1_payload(ckpt), "cpu"), ckpt["args"]
    # fit: latents of the val sequences, decoder frozen, on what this model's training saw (as MRE)
    fit_set = data.load_dataset(args.data, args.data_dir or os.path.join("data", args.data), "val", a["fps_mode"])
    assert fit_set.names == val.names
    sampler = data.ClipSampler(fit_set, stage1.mean, stage1.std, time_norm=stage1.time_norm)
    # ~200 clips of 64 per sequence (train_inr's fit of 32 sequences gives each 400; this fits all 211)
    z_fit = fit_heldout_latents(stage1.decoder, sampler, len(fit_set), stage1.cfg,
                                a["fit_steps"] * max(1, round(len(fit_set) / 64)), a["clip_len"], seed=args.seed)
    # prior: the Gaussian of all training latents (+ the mean posterior variance of a variational model)
    mu = ckpt["model"]["latents.mu"].double()
    cov = torch.cov(mu.T) + (torch.diag(ckpt["model"]["latents.logvar"].double().exp().mean(0))
                             if stage1.cfg.variational else 0)
    chol = torch.linalg.cholesky(cov + 1e-8 * torch.eye(len(cov), dtype=torch.float64))

    def prior(rep):
        eps = torch.randn(len(val), len(cov), generator=torch.Generator().manual_seed(args.seed + rep), dtype=torch.float64)
        return (mu.mean(0) + eps @ chol.T).float(), val.durations()

    return [("fit", stage1, lambda rep: (z_fit, fit_set.durations())), ("prior", stage1, prior)]


def clip_fids(paths, args):
    """{row label: {rate: [clip-FID per replication]}}: the real floors, then each checkpoint's rows."""
    data_dir = args.data_dir or os.path.join("data", args.data)
    train = data.load_dataset(args.data, data_dir, "train")
    val, test = data.load_dataset(args.data, data_dir, "val"), data.load_dataset(args.data, data_dir, "test")
    ce = get_evaluator(args, train, "nerm-clip-evaluator")
    plans, ref, rows = {}, {}, defaultdict(lambda: defaultdict(list))
    for rep in range(args.reps):
        rng = np.random.default_rng(args.seed + rep)
        for rate in EVAL_FPS:
            plans[rep, rate] = plan = clip_plan(val, rate, args.clips_per_seq, rng)
            ref[rep, rate] = ce.embed(real_clips(val, plan, rate), rate)
            test_clips = real_clips(test, clip_plan(test, rate, args.clips_per_seq, rng), rate)
            rows["real (test)"][rate].append(fid(ref[rep, rate], ce.embed(test_clips, rate)))
            rows["real via 20 fps"][rate].append(fid(ref[rep, rate], ce.embed(real_clips(val, plan, rate, 20.0), rate)))
    print(f"clip-FID: clips of {CLIP_M} frames, {args.clips_per_seq} per val sequence recorded at >= the rate: "
          + ", ".join(f"{len(plans[0, r])} @{r}" for r in EVAL_FPS) + f"; R = {args.reps}")
    for path in paths:
        t0 = time.time()
        for label, stage1, z_fn in clip_sources(path, val, args):
            for rep in range(args.reps):
                z, dur = z_fn(rep)
                for rate in EVAL_FPS:
                    seq, start = plans[rep, rate][:, 0], plans[rep, rate][:, 1]
                    t = torch.from_numpy((start[:, None] + np.arange(CLIP_M)[None]) / rate)   # (K, m) s
                    clips = decode_times(stage1, z[seq], t, dur[seq], rate)
                    rows[f"{path} ({label})"][rate].append(fid(ref[rep, rate], ce.embed(clips, rate)))
        print(f"  {path}: {time.time() - t0:.0f} s", flush=True)
    return rows


def clip_fid_table(args):
    rows = clip_fids(args.clip_fid, args)
    print_table("clip-FID by the fps decoded at (lower is better)",
                [(k, {f"@{r}": v for r, v in d.items()}) for k, d in rows.items()], [f"@{r}" for r in EVAL_FPS], "rows")


# ---- the stage-1 ablations of the paper, as one command ----

VARIANTS = [("codebook", []), ("sinusoidal", ["--time-enc", "sinusoidal"]), ("none", ["--time-enc", "none"]),
            ("no_variational", ["--no-variational"]), ("no_time_norm", ["--no-time-norm"]),
            ("fixed", ["--fps-mode", "fixed"])]


def run_ablations(args):
    t0, paths = time.time(), {}
    for name, flags in VARIANTS:
        paths[name] = path = os.path.join(args.ablation_dir, name + ".pt")
        if os.path.exists(path) and load_checkpoint(path, stage=1)["step"] >= args.ablation_steps:
            print(f"{path}: trained, skipped")
            continue
        cmd = [sys.executable, "train_inr.py", "--data", args.data, "--steps", str(args.ablation_steps),
               "--eval-every", "0", "--eval-seqs", "4", "--out", path, *flags]
        cmd += (["--data-dir", args.data_dir] if args.data_dir else []) + (["--resume"] if os.path.exists(path) else [])
        print("$ python " + " ".join(cmd[1:]), flush=True)
        t1 = time.time()
        if subprocess.run(cmd).returncode != 0:
            raise data.DataError(f"training the {name} variant failed (above); rerun to resume")
        print(f"  {name}: {time.time() - t1:.0f} s", flush=True)
    t1 = time.time()
    mre = {name: mre_of(path, seed=args.seed)[2] for name, path in paths.items()}
    cf = clip_fids(list(paths.values()), args)
    print(f"evaluated in {time.time() - t1:.0f} s: MRE (m) on 64 val sequences; clip-FID mean ± 1.96 σ/√R")

    def m(name, f, kind="mre"):
        return f"{mre[name][kind][f]:.4f}"

    def c(name, f, row="fit"):
        return ci_text(cf[f"{paths[name]} ({row})" if name in paths else name][f])

    def table(title, head, lines):
        print(f"\n{title}\n\n| " + " | ".join(head) + " |\n|" + "---|" * len(head))
        for line in lines:
            print("| " + " | ".join(line) + " |")

    table("Time encoding (native rates, variational, time normalized)",
          ["time encoding", "MRE@20", "MRE@120", "clip-FID@20", "clip-FID@120"],
          [[n, m(n, 20), m(n, 120), c(n, 20), c(n, 120)] for n in ("none", "sinusoidal", "codebook")])
    table("Variational vs the plain auto-decoder (fit: val latents fitted; prior: z from the training latents' Gaussian)",
          ["latent", "MRE@20", "MRE@120", "clip-FID@20 fit", "clip-FID@120 fit", "clip-FID@20 prior", "clip-FID@120 prior"],
          [[label, m(n, 20), m(n, 120), c(n, 20), c(n, 120), c(n, 20, "prior"), c(n, 120, "prior")]
           for label, n in (("variational", "codebook"), ("plain (--no-variational)", "no_variational"))])
    table("Time normalization", ["time", "MRE@20", "MRE@120", "clip-FID@20", "clip-FID@120"],
          [[label, m(n, 20), m(n, 120), c(n, 20), c(n, 120)]
           for label, n in (("normalized to [0, 1]", "codebook"), ("seconds (--no-time-norm)", "no_time_norm"))])
    both = (("native", "codebook"), ("fixed 20 fps", "fixed"))
    table("Framerates: native-rate training vs every sequence resampled to 20 fps first, by the fps decoded at",
          ["training", "figure"] + [f"@{f}" for f in EVAL_FPS],
          [[label, name] + [m(n, f, kind) for f in EVAL_FPS] for kind, name in (("mre", "MRE"), ("local", "local MRE"))
           for label, n in both]
          + [[label, f"clip-FID {row}"] + [c(n, f, row) for f in EVAL_FPS] for row in ("fit", "prior") for label, n in both]
          + [[label, "clip-FID"] + [c(label, f) for f in EVAL_FPS] for label in ("real via 20 fps", "real (test)")])
    print(f"\n--ablations: {time.time() - t0:.0f} s in all ({args.ablation_steps} steps per variant)")


if __name__ == "__main__":
    args = parser.parse_args()
    t0 = time.time()
    try:
        for path in args.mre or args.clip_fid or ([] if args.ablations else args.ckpt):
            if not os.path.exists(path):                         # before any minutes of work
                raise data.DataError(f"checkpoint {path} not found")
        if args.mre:
            compare_mre(args)
        elif args.clip_fid:
            clip_fid_table(args)
        elif args.ablations:
            run_ablations(args)
        else:
            stage2_tables(args)
    except data.DataError as e:
        sys.exit(f"error: {e}")
    print(f"\n{time.time() - t0:.0f} s")
