"""
Evaluate NeRM: the T2M text->motion (or action->motion) table at 20 fps, and stage 1's held-out MRE and
the framerate table at 20/40/60/100/120 fps (detail-FD, mean joint acceleration; each model decoded
directly and at 20 fps then interpolated; at 100-120 fps, the band error of reconstructions against the true
motion). Methods, and what each figure means: RESULTS.md.

    python eval.py                                                    # text->motion table of runs/diffusion.pt + Real row
    python eval.py --ckpt runs/diffusion.pt runs/diffusion_fixed.pt   # native vs the fixed-20-fps baseline
    python eval.py --ckpt runs/diffusion_action.pt                    # action->motion (train_diffusion.py --cond action)
    python eval.py --reps 20 --mm-texts 100                           # the paper's R = 20 (slow on a CPU)
    python eval.py --mre runs/inr.pt runs/inr_fixed.pt --actions punch,kick   # stage-1 MRE by fps, val sequences
    python eval.py --by-fps runs/inr.pt runs/inr_fixed.pt             # the framerate table (stage-1 or stage-2 checkpoints)
    python eval.py --mre runs/inr.pt --by-fps runs/inr.pt --json runs/inr_eval.json   # both; figures also as JSON
    python eval.py --ckpt /tmp/d.pt --reps 1 --evaluator /tmp/ev.pt --evaluator-steps 50   # a tiny CPU run

The evaluators are trained here on the real train motions, as T2M (EricGuo5513/text-to-motion) trained its
own (its weights cannot be downloaded), and saved once: runs/evaluator_<data>.pt.
The paper's stage-1 ablations (six trainings, then --mre and --by-fps): python bench.py --only ablations
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

import checkpoint
import data
import guard
import metrics
import motion
import nerm

Int, Float, Path, Text = guard.Int, guard.Float, guard.Path, guard.Text   # each flag's type states its range
parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--ckpt", nargs="+", type=Path("file"), default=["runs/diffusion.pt"], help="stage-2 checkpoints, one table row each")
parser.add_argument("--mre", nargs="+", type=Path("file"), default=None, help="stage-1 checkpoints: MRE at each fps (no T2M table then)")
parser.add_argument("--by-fps", nargs="+", type=Path("file"), default=None, help="stage-1 or stage-2 checkpoints: the framerate table (detail-FD, band error, acceleration) at each fps (no T2M table then)")
parser.add_argument("--data", default="synthetic", choices=["synthetic", "humanml3d", "kit", "bvh"],
                    help="dataset the checkpoints were trained on (--mre reads it from each checkpoint)")
parser.add_argument("--data-dir", type=Path("any"), default=None, help="dataset directory (default: data/<name>)")
parser.add_argument("--evaluator", type=Path("any"), default=None, help="evaluator file (default: runs/evaluator_<data>.pt, trained if absent)")
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
EVAL_FPS, EVAL_RATE = metrics.EVAL_FPS, metrics.EVAL_RATE
MAX_FRAMES = 196                    # the standard evaluators see 20 fps, at most 196 frames
CLIP_M = 32                         # the framerate table: frames per clip at every rate, as the INR's training clips


# ---- data, checkpoints and the one decoding path (nerm.decode) ----


Stage2 = namedtuple("Stage2", "ckpt model decoder")   # a stage-2 checkpoint, its DDPM and the INR decoder it carries


def load_stage2(path):
    model, decoder, ckpt = checkpoint.load_diffusion(path)
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
    holds its last frame, as motion.interpolate does for the real clips "via 20 fps". via_fps: what a 20 fps
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
            out[rows] = (motion.interpolate(xi[:T], fps, frames / rate, kind) if via_fps
                         else xi[np.minimum(frames, T - 1)])
    return out


# ---- the evaluator: motion and text encoders (T2M), an action recognizer; trained on real motions ----

def to_eval_rate(x, fps):
    """Per-second features (T, D) at fps -> at 20 fps, at most 196 frames: what the standard evaluators see."""
    return motion.resample(x, fps, EVAL_RATE)[:MAX_FRAMES]


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
    sl = motion.feature_slices(ms.skeleton)
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


def get_evaluator(args, train):
    """The evaluator: loaded, or trained and saved once."""
    path = args.evaluator or os.path.join("runs", f"evaluator_{args.data}.pt")
    payload = None
    if os.path.exists(path) and not args.retrain_evaluator:
        payload = checkpoint.load_file(path, "evaluator file")
        if not isinstance(payload, dict) or payload.get("kind") != "nerm-evaluator":
            raise checkpoint.CheckpointError(f"{path}: not a nerm-evaluator file")
        if payload.get("names") != list(train.names):
            raise checkpoint.CheckpointError(f"{path} was trained on other train sequences; pass --retrain-evaluator")
    if payload is None:
        t0 = time.time()
        print(f"training the evaluator on {len(train)} real train motions ...")
        guard.claim(path, force=args.retrain_evaluator, remedy="pass --retrain-evaluator to replace it")
        payload = train_evaluator(train, args.evaluator_steps, args.seed)
        checkpoint.save(payload, path)
        print(f"  wrote {path} in {time.time() - t0:.0f} s")
    try:
        return Evaluator(payload)
    except RuntimeError:  # written by another version of these networks
        raise checkpoint.CheckpointError(f"{path} does not fit this eval.py's networks; pass --retrain-evaluator") from None


# ---- the framerate table's clips: real, and decoded (see decoded_clips) ----

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
    i.e. motion.resample(x, fps, rate)[c:c + m], interpolating only the frames the clips need; via_fps: from
    the sequences decimated to it first, then interpolated (`kind`: linear or cubic) back up to `rate`."""
    out = np.zeros((len(plan), CLIP_M, ms.features[0].shape[1]), np.float32)
    for i in np.unique(plan[:, 0]):
        rows = plan[:, 0] == i
        x, f = ms.features[i], ms.fps[i]
        if via_fps:
            x, f = motion.resample(x, f, via_fps), via_fps
        out[rows] = motion.interpolate(x, f, (plan[rows, 1:] + np.arange(CLIP_M)) / rate, kind)   # (k, m) seconds
    return out


# ---- the tables ----

COLUMNS = {"text": ["FID", "top-1", "top-2", "top-3", "MM-Dist", "Diversity", "MModality", "Accuracy"],
           "action": ["FID", "Accuracy", "Diversity", "MModality"], "none": ["FID", "Diversity"]}


def summary(values):
    """What the JSON file keeps of a figure: every replication, the mean and the 95% half-width."""
    mean, half = metrics.mean_ci(values)
    return {"values": [float(v) for v in values], "mean": mean, "ci": half}


def ci_text(values):
    mean, half = metrics.mean_ci(values)
    return f"{round(mean, 3) + 0.0:.3f} ± {half:.3f}"        # + 0.0: rounding error never prints as -0.000


def print_table(title, rows, cols, first="motions"):
    """rows: [(name, {column: values over the replications})] -> a markdown table of mean ± its 95% t-interval."""
    print(f"\n{title}\n\n| {first} | " + " | ".join(cols) + " |\n|---|" + "---|" * len(cols))

    def cell(v):   # one float (a figure without replications), a figure with its bootstrap interval (a
        if isinstance(v, float):                            # tuple), values over the replications, or none
            return f"{v:.3f}"
        if isinstance(v, tuple):
            return "{:.3f} [{:.3f}, {:.3f}]".format(*v)
        return ci_text(v) if v else "-"

    for name, res in rows:
        print(f"| {name} | " + " | ".join(cell(res.get(c)) for c in cols) + " |")


def score(ev, motions, texts, labels, ref, div_pairs, seed, space):
    """One replication's figures for 20 fps motions, their captions and action ids (either may be None)."""
    out = {}
    pred, rec = ev.recognize(motions) if ev.actions else (None, None)
    emb = ev.embed_motions(motions) if space == "motion" else rec     # action models: the recognizer's features
    if texts is not None and len(texts) >= metrics.R_PRECISION_BATCH:
        t = ev.embed_texts(texts)
        out.update(zip(("top-1", "top-2", "top-3"), metrics.r_precision(t, emb)))
        out["MM-Dist"] = metrics.matching_distance(t, emb)
    out["FID"] = metrics.fid(ref, emb)
    out["Diversity"] = metrics.diversity(emb, min(div_pairs, len(emb)), seed)
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
    return metrics.multimodality(emb.reshape(len(conds), S, -1), pairs, seed)                # (texts, S, E)


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
    ref = metrics.acceleration_spectrum(real_clips(val, ref_plan, DETAIL_RATE), DETAIL_RATE, sk)
    direct = real_clips(test, plan, DETAIL_RATE) if gen is None else decoded_clips(gen.decoder, z, dur, plan, DETAIL_RATE)
    via = (real_clips(test, plan, DETAIL_RATE, EVAL_RATE) if gen is None
           else decoded_clips(gen.decoder, z, dur, plan, DETAIL_RATE, EVAL_RATE))
    return {"detail@120": metrics.fid(ref, metrics.acceleration_spectrum(direct, DETAIL_RATE, sk)),
            "detail@120 via 20": metrics.fid(ref, metrics.acceleration_spectrum(via, DETAIL_RATE, sk))}


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
    train = data.open_split(args.data, args.data_dir, "train")
    held, ref_set = data.open_split(args.data, args.data_dir, args.split), data.open_split(args.data, args.data_dir, other)
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
        ckpt = checkpoint.load(path, stage=1)
        a = ckpt["args"]
        gt, fit = data.open_split(a["data"], a["data_dir"], "val"), data.open_split(a["data"], a["data_dir"], "val", a["fps_mode"])
        keep = [i for i, act in enumerate(gt.actions) if not args.actions or act in args.actions.split(",")]
        keep = keep[:args.max_seqs]
        decoder = checkpoint.load_decoder(checkpoint.decoder_payload(ckpt))
        res = metrics.evaluate_mre(decoder, fit.subset(keep), gt.subset(keep), len(keep), a["fit_steps"], a["clip_len"],
                                   seed=args.seed)
        for kind, name in (("mre", "MRE"), ("local", "local MRE")):
            print(f"| {path} ({len(keep)} seqs) | {a['fps_mode']} | {name} | "
                  + " | ".join(f"{res[kind][f]:.4f}" for f in EVAL_FPS) + " |")
        out[path] = {"sequences": len(keep), "fps_mode": a["fps_mode"],
                     **{k: {str(f): v for f, v in d.items()} for k, d in res.items()}}
    return out


def checkpoint_rows(path, val, args):
    """Rows of a checkpoint: [(label, decoder, z_fn)], z_fn(rep) -> (z (len(val), Z), seconds (len(val),))."""
    try:
        ckpt = checkpoint.load(path, stage=1)
    except checkpoint.CheckpointError:
        gen = load_stage2(path)                               # its message names the file when it is neither
        cond = gen.model.config.cond
        conds = [c[0] for c in val.captions] if cond == "text" else val.actions if cond == "action" else [None] * len(val)
        return [("samples", gen.decoder, lambda rep: (sample_latents(
            gen, conds, val.durations(), args, torch.Generator().manual_seed(args.seed + rep)), val.durations()))]
    decoder, a = checkpoint.load_decoder(checkpoint.decoder_payload(ckpt)), ckpt["args"]
    # fit: latents of the val sequences, decoder frozen, on what this model's training saw (as MRE);
    # ~200 clips of 64 per sequence (train_inr's fit of 32 sequences gives each 400; this fits all of them)
    fit_set = data.open_split(args.data, args.data_dir, "val", a["fps_mode"])
    assert fit_set.names == val.names
    z_fit = metrics.fit_heldout_latents(decoder, fit_set, len(fit_set), a["fit_steps"] * max(1, round(len(fit_set) / 64)),
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


BY_FPS = {"detail_fd": "detail-FD: Fréchet distance of per-clip acceleration spectra to real val clips",
          "acceleration": "mean root-relative joint acceleration, m/s^2"}
BOOT = 1000   # bootstrap resamplings of the sequences for the band error's interval
BAND_TITLE = (f"; band @r: band error {metrics.BAND_HZ[0]:g}-{metrics.BAND_HZ[1]:g} Hz (to r/2) of the whole val sequences recorded at "
              "r fps against their own frames, root-relative joints, [95% bootstrap interval over the sequences]: "
              "0 the true band, 1 none, > 1 noise")


def by_fps_table(args):
    """The framerate table: detail-FD and mean joint acceleration of clips at each fps, for the
    real floors (test clips, val clips through 20 fps and back) and each checkpoint's rows, decoded directly
    at the rate and decoded at 20 fps then interpolated (linear, cubic) as 20 fps systems do; beside
    detail-FD at 100-120 fps, the band error of the fit rows and of real motion through 20 fps (band_rows;
    in the JSON, detail_fd[row][rate]["band_error"]); at 100-120 fps, the share of whole motions' acceleration
    power above 10 Hz of every row (band_share) and that band's acceleration where the motion is stillest and
    where it is most active (still_and_active)."""
    val, test = data.open_split(args.data, args.data_dir, "val"), data.open_split(args.data, args.data_dir, "test")
    sk = val.skeleton
    plans, ref = {}, {}
    rows = {key: defaultdict(lambda: defaultdict(list)) for key in BY_FPS}
    band = defaultdict(dict)      # label -> rate -> band error: whole sequences, one figure (no replications)
    spectra = defaultdict(lambda: defaultdict(list))     # label -> rate -> per replication, the clips' mean spectrum

    def add(label, rep, rate, clips):
        spec = metrics.acceleration_spectrum(clips, rate, sk)
        rows["detail_fd"][label][rate].append(metrics.fid(ref[rep, rate], spec))
        rows["acceleration"][label][rate].append(metrics.mean_acceleration(clips, rate, sk))
        spectra[label][rate].append(spec.mean(0))

    for rep in range(args.reps):
        rng = np.random.default_rng(args.seed + rep)
        for rate in EVAL_FPS:
            plans[rep, rate] = plan = clip_plan(val, rate, args.clips_per_seq, rng)
            clips = real_clips(val, plan, rate)
            ref[rep, rate] = metrics.acceleration_spectrum(clips, rate, sk)
            rows["acceleration"]["real (val)"][rate].append(metrics.mean_acceleration(clips, rate, sk))
            spectra["real (val)"][rate].append(ref[rep, rate].mean(0))
            add("real (test)", rep, rate, real_clips(test, clip_plan(test, rate, args.clips_per_seq, rng), rate))
            for kind in ("linear", "cubic"):
                add(f"real via 20 fps, {kind}", rep, rate, real_clips(val, plan, rate, EVAL_RATE, kind))
    share = defaultdict(lambda: defaultdict(list))     # label -> rate -> (share, still, active): one, or one a replication

    def shares(seqs, rate):
        return (metrics.band_share(seqs, rate, sk), *metrics.still_and_active(seqs, rate, sk))

    def add_shares(prefix, decoder, z, seconds, fit):
        """shares at 100-120 fps of a row's motions decoded directly and via 20 fps; a fit's: of the val
        sequences recorded at the rate (as the real row's), one figure."""
        for rate in metrics.BAND_RATES:
            keep = metrics.recorded_at(val, rate) if fit else list(range(len(z)))
            for kind, seqs in (metrics.decoded_sequences(decoder, z[torch.tensor(keep)], seconds[keep], rate)
                               if keep else {}).items():
                row, v = share[prefix + ("" if kind == "direct" else f" @20 + {kind}") + ")"], shares(seqs, rate)
                row[rate] = v if fit else row[rate] + [v]

    for rate in metrics.BAND_RATES:
        for kind, e in metrics.band_rows(val, rate, boot=BOOT).items():
            band[f"real via 20 fps, {kind}"][rate] = e
        real = [val.features[i] for i in metrics.recorded_at(val, rate)]
        for kind, seqs in ({"": real, **metrics.through_20fps(real, rate)} if real else {}).items():
            share[f"real via 20 fps, {kind}" if kind else "real (val)"][rate] = shares(seqs, rate)
    print(f"By framerate: clips of {CLIP_M} frames, {args.clips_per_seq} per val sequence recorded at >= the rate: "
          + ", ".join(f"{len(plans[0, r])} @{r}" for r in EVAL_FPS) + f"; R = {args.reps}; band error: the val "
          "sequences recorded at " + ", ".join(f"{r} fps ({len(metrics.recorded_at(val, r))})" for r in metrics.BAND_RATES))
    for path in args.by_fps:
        t0 = time.time()
        for label, decoder, z_fn in checkpoint_rows(path, val, args):
            for rep in range(args.reps):
                z, seconds = z_fn(rep)
                for rate in EVAL_FPS:
                    add(f"{path} ({label})", rep, rate, decoded_clips(decoder, z, seconds, plans[rep, rate], rate))
                    for kind in ("linear", "cubic"):
                        add(f"{path} ({label} @20 + {kind})", rep, rate,
                            decoded_clips(decoder, z, seconds, plans[rep, rate], rate, EVAL_RATE, kind))
                if label != "fit" or rep == 0:     # a fit is the same in every replication: one figure
                    add_shares(f"{path} ({label}", decoder, z, seconds, fit=label == "fit")
            if label == "fit":    # the band error needs the true motion: only a reconstruction has one
                z, seconds = z_fn(0)
                for rate in metrics.BAND_RATES:
                    for kind, e in metrics.band_rows(val, rate, decoder, z, seconds, boot=BOOT).items():
                        band[f"{path} (fit{'' if kind == 'direct' else ' @20 + ' + kind})"][rate] = e
        print(f"  {path}: {time.time() - t0:.0f} s", flush=True)
    cols, bands = [f"@{r}" for r in EVAL_FPS], [f"band @{r}" for r in metrics.BAND_RATES]
    for key, title in BY_FPS.items():
        beside = key == "detail_fd"   # the band error beside detail-FD, in the rows that have it
        print_table(title + (" (lower is better)" if key != "acceleration" else "") + BAND_TITLE * beside,
                    [(k, {**{f"@{r}": v for r, v in d.items()}, **{f"band @{r}": e for r, e in band.get(k, {}).items()
                                                                   if beside}}) for k, d in rows[key].items()],
                    cols + bands * beside, "rows")
    figures = {name: {label: {r: v[i] if isinstance(v, tuple) else [t[i] for t in v] for r, v in d.items()}
                      for label, d in share.items()} for i, name in enumerate(("share", "still", "active"))}
    print_table(f"share of whole motions' acceleration power above {metrics.BAND_HZ[0]:g} Hz (metrics.band_share), and "
                "that band's RMS acceleration (m/s^2) in the stillest half and the most active quarter of their "
                f"{CLIP_M}-frame windows (metrics.still_and_active): the val sequences recorded at r fps (real, fit "
                "rows), all samples decoded at r fps",
                [(k, {f"{name} @{r}": v for name, f in figures.items() for r, v in f[k].items()}) for k in share],
                [f"{name} @{r}" for name in figures for r in metrics.BAND_RATES], "rows")
    # where in the band the rows differ: the mean spectrum detail-FD compares, at the highest rate
    top = max(EVAL_FPS)
    bins = [f"{k * top / (CLIP_M - 2):g} Hz" for k in range(1, (CLIP_M - 2) // 2 + 1)]
    print_table(f"mean log10 acceleration power per bin at {top:g} fps, (m/s^2)^2 (+ {metrics.SPECTRUM_FLOOR:g})",
                [(label, dict(zip(bins, np.array(d[top]).T.tolist()))) for label, d in spectra.items()], bins, "rows")
    out = {key: {label: {str(r): summary(v) for r, v in d.items()} for label, d in table.items()}
           for key, table in rows.items()}
    for label, d in band.items():
        for r, (e, lo, hi) in d.items():
            out["detail_fd"][label][str(r)].update(band_error=e, band_interval=[lo, hi])
    for name, f in figures.items():
        out[f"band_{name}"] = {label: {str(r): v if isinstance(v, float) else summary(v) for r, v in d.items()}
                               for label, d in f.items()}
    out["spectrum"] = {label: {str(r): np.mean(v, 0).tolist() for r, v in d.items()} for label, d in spectra.items()}
    return out


if __name__ == "__main__":
    guard.report_errors()          # a user's mistake or a failing disk: one line, no traceback
    args = parser.parse_args()
    t0, results = time.time(), {}
    if args.json:   # claimed before any minutes of work; never one of the files this run reads
        guard.claim(args.json, force=args.force, inputs=(args.mre or []) + (args.by_fps or []) + args.ckpt
                    + [args.data_dir or os.path.join("data", args.data)])
    if args.mre:
        results["mre"] = mre_table(args)
    if args.by_fps:
        results.update(by_fps_table(args))
    if not (args.mre or args.by_fps):
        results["t2m"] = t2m_tables(args)
    if args.json:
        guard.write_text(args.json, json.dumps(results, indent=1))
        print(f"\nwrote {args.json}")
    print(f"\n{time.time() - t0:.0f} s")
