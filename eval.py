"""
Evaluate NeRM: does a generated motion do what its text says?

An action recognizer (an MLP on 40 time-normalized frames of root-relative joints) is trained on the real
motions of the train split, checked on the real test split, then applied to motions generated from the
test split's captions. Its accuracy on generated motions is the share that show the captioned action.

    python eval.py                                # runs/diffusion.pt on the embedded data, ~1 min on 2 cores
    python eval.py --ckpt runs/diffusion.pt --num 300 --guidance 2.5
    python eval.py --mre runs/inr.pt runs/inr_fixed.pt --actions punch,shake,kick,stomp   # MRE by fps, by action

--mre compares stage-1 checkpoints: held-out (val) latents are fitted with the decoder frozen, on what each
model's training saw (native rates or the fixed 20 fps), and decoded at 20/40/60/100/120 fps against the
native-rate sequence.

The T2M metrics (DESIGN §3: fid, diversity, multimodality, r_precision, matching_distance, mean_ci) are plain
functions on evaluator embeddings, numpy in and floats out: tests/test_metrics.py checks them against closed forms.
"""
import argparse
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import data
import nerm
from sample import Stage1
from train_inr import EVAL_FPS, evaluate_mre, load_checkpoint

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--ckpt", default="runs/diffusion.pt", help="stage-2 checkpoint (text-conditioned)")
parser.add_argument("--data", default="synthetic", help="dataset with action labels (synthetic)")
parser.add_argument("--data-dir", default=None, help="dataset directory (default: data/<name>)")
parser.add_argument("--num", type=int, default=300, help="generated motions to classify (test captions, in order)")
parser.add_argument("--guidance", type=float, default=2.5, help="classifier-free guidance scale")
parser.add_argument("--steps", type=int, default=50, help="DDIM steps")
parser.add_argument("--seed", type=int, default=0, help="random seed")
parser.add_argument("--mre", nargs="+", default=None, help="stage-1 checkpoints to compare by MRE at each fps")
parser.add_argument("--actions", default=None, help="with --mre: only val sequences of these actions (comma-separated)")
parser.add_argument("--max-seqs", type=int, default=64, help="with --mre: at most this many val sequences")
FRAMES = 40
R_PRECISION_BATCH = 32                                # T2M: R-precision ranks each text among 32 motions


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


def recognizer_input(joints, fps):
    """(T, 22, 3) joints at fps -> (FRAMES * 22 * 3,) root-relative positions over normalized time."""
    flat = joints.reshape(len(joints), -1)
    x = data.resample(flat, fps, (FRAMES - 1) * fps / (len(joints) - 1)).reshape(-1, 22, 3)[:FRAMES]
    x = x - x[:, :1] * np.array([1.0, 0.0, 1.0])      # keep the root height, drop its xz trajectory
    return x.reshape(-1).astype(np.float32)


class Recognizer(nn.Module):
    """An MLP action classifier on recognizer_input."""

    def __init__(self, d_in, n_classes, h=256):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_in, h), nn.ReLU(), nn.Dropout(0.2), nn.Linear(h, h), nn.ReLU(),
                                 nn.Linear(h, n_classes))

    def forward(self, x):
        return self.net(x)


def real_inputs(ms):
    """Joints recovered from the features of a MotionSet (as generated motions are), recognizer inputs."""
    out = []
    for x, f in zip(ms.features, ms.fps):
        out.append(recognizer_input(data.features_to_joints(data.features_per_frame(x, f), ms.skeleton), f))
    return np.stack(out)


def train_recognizer(x, y, n_classes, steps=600, seed=0):
    torch.manual_seed(seed)
    mean, std = x.mean(0), x.std(0) + 1e-3
    model = Recognizer(x.shape[1], n_classes)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    xt, yt = torch.from_numpy((x - mean) / std), torch.from_numpy(y)
    for _ in range(steps):
        idx = torch.randint(0, len(xt), (128,))
        loss = F.cross_entropy(model(xt[idx]), yt[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    return lambda q: model(torch.from_numpy((q - mean) / std)).argmax(-1).numpy()


def compare_mre(args):
    """Print MRE and root-relative MRE by framerate for each stage-1 checkpoint, as a markdown table."""
    print("| checkpoint | fps mode | error | " + " | ".join(f"@{f}" for f in EVAL_FPS) + " |")
    print("|---|---|---|" + "---|" * len(EVAL_FPS))
    for path in args.mre:
        ckpt = load_checkpoint(path, stage=1)
        a = ckpt["args"]
        data_dir = a["data_dir"] or os.path.join("data", a["data"])
        gt = data.load_dataset(a["data"], data_dir, "val", "native")
        fit = data.load_dataset(a["data"], data_dir, "val", a["fps_mode"])
        keep = [i for i, act in enumerate(gt.actions) if not args.actions or act in args.actions.split(",")]
        keep = keep[:args.max_seqs]
        cfg = nerm.INRConfig(**ckpt["model_args"])
        model = nerm.NeRM(cfg)
        model.load_state_dict(ckpt["model"])
        mean, std = ckpt["mean"].numpy(), ckpt["std"].numpy()
        out = evaluate_mre(model.decoder, fit.subset(keep), gt.subset(keep), len(keep), cfg, mean, std,
                           a["fit_steps"], a["clip_len"], "cpu", ckpt["time_norm"], seed=args.seed)
        for kind, name in (("mre", "MRE"), ("local", "local MRE")):
            print(f"| {path} ({len(keep)} seqs) | {a['fps_mode']} | {name} | "
                  + " | ".join(f"{out[kind][f]:.4f}" for f in EVAL_FPS) + " |")


if __name__ == "__main__":
    args = parser.parse_args()
    t0 = time.time()
    if args.mre:
        try:
            compare_mre(args)
        except data.DataError as e:
            sys.exit(f"error: {e}")
        sys.exit(0)
    try:
        ckpt = load_checkpoint(args.ckpt, stage=2)
        data_dir = args.data_dir or os.path.join("data", args.data)
        train = data.load_dataset(args.data, data_dir, "train")
        test = data.load_dataset(args.data, data_dir, "test")
    except data.DataError as e:
        sys.exit(f"error: {e}")
    labels = sorted(set(train.actions))
    if labels == [""]:
        sys.exit(f"error: {data_dir} has no action labels to recognize")
    y_train = np.array([labels.index(a) for a in train.actions])
    y_test = np.array([labels.index(a) for a in test.actions])
    predict = train_recognizer(real_inputs(train), y_train, len(labels), seed=args.seed)
    real_acc = (predict(real_inputs(test)) == y_test).mean()
    print(f"recognizer: {len(labels)} actions, {len(train)} real train motions; real test accuracy "
          f"{real_acc:.3f} ({len(test)} motions)")

    model = nerm.LatentDiffusion(nerm.DiffusionConfig(**ckpt["model_args"])).eval()
    model.load_state_dict(ckpt["model"])
    stage1 = Stage1(ckpt["inr"], "cpu")
    g = torch.Generator().manual_seed(args.seed)
    n = min(args.num, len(test))
    gen = []
    for i in range(n):
        seconds = float(test.durations()[i])
        if model.config.cond == "text":
            z = model.sample(1, text=test.captions[i][0], duration=seconds, guidance=args.guidance, steps=args.steps,
                             generator=g)[0]
        elif model.config.cond == "action":
            z = model.sample(1, action=ckpt["actions"].index(test.actions[i]), duration=seconds,
                             guidance=args.guidance, steps=args.steps, generator=g)[0]
        else:
            z = model.sample(1, duration=seconds, steps=args.steps, generator=g)[0]
        _, joints = stage1.decode(z, seconds, 20.0)
        gen.append(recognizer_input(joints, 20.0))
    gen_acc = (predict(np.stack(gen)) == y_test[:n]).mean()
    print(f"generated from test {'captions' if model.config.cond == 'text' else model.config.cond}: accuracy "
          f"{gen_acc:.3f} ({n} motions, guidance {args.guidance}, {args.steps} DDIM steps); "
          f"chance {1 / len(labels):.3f}; {time.time() - t0:.0f} s")
