"""
Generate motions with a trained NeRM at any framerate and duration.

A latent z is drawn by the stage-2 DDPM (text, action or unconditional, classifier-free guidance) and the
stage-1 INR decodes it at the requested timestamps, in chunks so memory stays bounded.

    python sample.py --text "a person walks to the right slowly" --fps 60
    python sample.py --text "someone punches quickly" --fps 120 --seconds 5 --num 3 --sampler ddpm
    python sample.py --ckpt runs/diffusion_action.pt --action jump --fps 100
    python sample.py --fit low_rate.npy --fit-fps 20 --fps 120     # temporal super-resolution of (T, 22, 3) joints
    python sample.py --text "a man waves his hand" --fps 240 --seconds 10 --compile --dtype bf16   # compiled, bf16 decoder
    python sample.py --ckpt runs/diffusion_bvh.pt --text "a person walks in a happy way" --fps 60  # trained on BVH files

For each sample it writes, under --out: <name>.npy joints (T, J, 3) metres, T = round(fps * seconds);
<name>_features.npy (T, D) HumanML3D layout (velocities per frame at --fps); <name>.bvh; and
<name>.gif, a stick-figure preview, when matplotlib is installed (optional). J and D are those of the skeleton
the checkpoint carries: SMPL's 22 joints and 263 for the embedded data and HumanML3D, the files' own skeleton
for a model trained on BVH files (train_inr.py --data bvh).
"""
import argparse
import os
import re
import sys

import numpy as np
import torch

import data
import nerm
from train_inr import load_checkpoint

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--ckpt", default="runs/diffusion.pt", help="stage-2 checkpoint from train_diffusion.py")
parser.add_argument("--text", action="append", default=[], help="a prompt (repeatable)")
parser.add_argument("--text-file", default=None, help="a file with one prompt per line")
parser.add_argument("--action", action="append", default=[], help="an action label (repeatable)")
parser.add_argument("--fps", type=float, default=20.0, help="output framerate, any value in (0, 480]")
parser.add_argument("--seconds", type=float, default=4.0, help="duration of each motion, (0, 60]")
parser.add_argument("--num", type=int, default=1, help="samples per prompt")
parser.add_argument("--guidance", type=float, default=2.5, help="classifier-free guidance scale r (1 = none)")
parser.add_argument("--sampler", default="ddim", choices=["ddim", "ddpm"], help="ddim: fast, deterministic; ddpm: all 1000 steps")
parser.add_argument("--steps", type=int, default=50, help="DDIM steps")
parser.add_argument("--seed", type=int, default=0, help="random seed: the same seed gives the same motions")
parser.add_argument("--out", default="samples", help="output directory")
parser.add_argument("--fit", default=None,
                    help="(T, J, 3) joints .npy on the checkpoint's skeleton (SMPL: J = 22) to fit a latent to (decoder frozen) and re-decode")
parser.add_argument("--fit-fps", type=float, default=20.0, help="framerate of the --fit joints")
parser.add_argument("--no-preview", action="store_true", help="skip the GIF preview")
parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu | cuda")
parser.add_argument("--compile", action="store_true",
                    help="decode through torch.compile (inductor): a few seconds of compiling per new shape, then ~5%% faster on a CPU")
parser.add_argument("--dtype", default="fp32", choices=["fp32", "tf32", "bf16"],
                    help="decoder precision: bf16 autocast (CPU or GPU); tf32 matmuls on a CUDA GPU")
MAX_FPS, MAX_SECONDS = 480.0, 60.0


class Stage1:
    """The INR decoder, the feature statistics and the skeleton carried by a stage-2 checkpoint."""

    def __init__(self, payload, device, compile=False, dtype=None):
        self.cfg = nerm.INRConfig(**payload["model_args"])
        self.decoder = nerm.INRDecoder(self.cfg).to(device).eval()
        self.decoder.load_state_dict(payload["decoder"])
        # decode() only runs the compiled one; --fit trains z through the eager decoder
        self.fast = nerm.compile_decoder(self.decoder) if compile else self.decoder
        self.dtype = dtype
        self.mean, self.std = payload["mean"].numpy(), payload["std"].numpy()
        self.time_norm = payload["time_norm"]
        self.max_fps = payload["max_fps"]   # the highest clip rate the decoder was told in training
        # a skeleton_to_dict dict, or the name ('smpl22', 'kit21') that older checkpoints stored
        self.skeleton = data.resolve_skeleton(payload["skeleton"])
        self.device = device

    def times(self, frames, seconds):
        """Time coordinates of `frames` evenly spaced frames over `seconds` (normalized unless trained raw)."""
        t = torch.linspace(0, seconds, frames, device=self.device)[None]   # (1, T) seconds
        return t / seconds if self.time_norm else t

    def decode(self, z, seconds, fps):
        """z (Z,) -> features (T, D) per frame at fps and joints (T, J, 3), T = round(fps * seconds)."""
        T = max(2, int(round(fps * seconds)))
        # the decoder was told clip rates up to the data's highest; above it velocities are per second anyway
        s = torch.tensor([min(fps, self.max_fps)], device=self.device)
        x = nerm.decode(self.fast, z[None], self.times(T, seconds), s, dtype=self.dtype)[0].cpu().numpy()
        feats = data.features_per_frame(x * self.std + self.mean, fps)
        return feats, data.features_to_joints(feats, self.skeleton)


def fit_joints(stage1, path, fit_fps):
    """Fit a latent to joints at a low rate, decoder frozen (auto-decoder inference) -> (z, seconds)."""
    try:
        joints = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise data.DataError(f"{path}: cannot read joints ({e})") from None
    J = stage1.skeleton.num_joints
    if joints.ndim != 3 or joints.shape[1:] != (J, 3) or len(joints) < 3 or not np.isfinite(joints).all():
        raise data.DataError(f"{path}: expected finite (T >= 3, {J}, 3) joint positions on the checkpoint's "
                             f"skeleton {stage1.skeleton.name}, got {joints.shape}")
    x = data.joints_to_features(joints, stage1.skeleton, fps=fit_fps, hml3d_frame0=False)
    x = data.features_per_second(x, fit_fps)
    x = torch.from_numpy((x - stage1.mean) / stage1.std).float()[None].to(stage1.device)   # (1, T-1, D)
    seconds = (x.shape[1] - 1) / fit_fps
    t, s = stage1.times(x.shape[1], seconds), torch.tensor([fit_fps], device=stage1.device)
    z = nerm.fit_latents(stage1.decoder, lambda: (torch.zeros(1, dtype=torch.long), t, s, x), 1,
                         stage1.cfg.latent_dim, steps=300, kl_weight=stage1.cfg.kl_weight)
    return z[0], seconds


def preview(path, joints, fps, title, skeleton=data.SMPL22):
    """Stick-figure GIF (at most 30 frames per second); silently skipped without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.animation import FuncAnimation, PillowWriter
    except ImportError:
        return False
    step = max(1, int(round(fps / 30)))
    frames = joints[::step]
    fig = plt.figure(figsize=(4, 4))
    ax = fig.add_subplot(projection="3d")
    lo, hi = joints.min((0, 1)), joints.max((0, 1))
    centre, half = (lo + hi) / 2, max(1.0, (hi - lo).max() / 2)
    lines = [ax.plot([], [], [], lw=2)[0] for _ in skeleton.chains]

    def draw(i):
        for line, chain in zip(lines, skeleton.chains):
            p = frames[i, list(chain)]
            line.set_data(p[:, 0], p[:, 2])       # x, z on the ground plane; y up drawn as the plot's z
            line.set_3d_properties(p[:, 1])
        return lines

    ax.set(xlim=(centre[0] - half, centre[0] + half), ylim=(centre[2] - half, centre[2] + half), zlim=(0, 2 * half))
    ax.set_title(title[:40], fontsize=8)
    FuncAnimation(fig, draw, frames=len(frames)).save(path, writer=PillowWriter(fps=fps / step))
    plt.close(fig)
    return True


def check_args(args, model, actions):
    """Every user mistake gets one line (raised as DataError)."""
    if not 0 < args.fps <= MAX_FPS:
        raise data.DataError(f"--fps must be in (0, {MAX_FPS:g}], got {args.fps:g}")
    if not 0 < args.seconds <= MAX_SECONDS:
        raise data.DataError(f"--seconds must be in (0, {MAX_SECONDS:g}], got {args.seconds:g}")
    if args.num < 1 or args.steps < 1:
        raise data.DataError("--num and --steps must be at least 1")
    if args.text_file:
        if not os.path.exists(args.text_file):
            raise data.DataError(f"--text-file {args.text_file} not found")
        with open(args.text_file, encoding="utf-8") as f:
            args.text += [line.strip() for line in f if line.strip()]
    for text in args.text:
        if not re.search(r"[a-z0-9]", text.lower()):
            raise data.DataError(f"--text {text!r} is empty")
    cond = model.config.cond
    if args.text and cond != "text":
        raise data.DataError(f"{args.ckpt} is a {cond}-conditioned model: use --action or no condition")
    if args.action and cond != "action":
        raise data.DataError(f"{args.ckpt} is a {cond}-conditioned model: use --text or no condition")
    for a in args.action:
        if a not in actions:
            raise data.DataError(f"unknown action {a!r}; this model knows: {', '.join(actions)}")


if __name__ == "__main__":
    args = parser.parse_args()
    try:
        ckpt = load_checkpoint(args.ckpt, stage=2)
        model = nerm.LatentDiffusion(nerm.DiffusionConfig(**ckpt["model_args"])).to(args.device).eval()
        model.load_state_dict(ckpt["model"])
        if args.dtype == "tf32":  # TF32 tensor-core matmuls (GPU only; the CPU ignores the setting)
            torch.backends.cuda.matmul.allow_tf32 = True
        stage1 = Stage1(ckpt["inr"], args.device, compile=args.compile,
                        dtype=torch.bfloat16 if args.dtype == "bf16" else None)
        check_args(args, model, ckpt["actions"])
        if args.fit:
            jobs = [("fit", None, None)]
        elif args.text:
            jobs = [(re.sub(r"[^a-z0-9]+", "_", t.lower()).strip("_")[:40], t, None) for t in args.text]
        elif args.action:
            jobs = [(a, None, ckpt["actions"].index(a)) for a in args.action]
        else:
            jobs = [("uncond", None, None)]
    except data.DataError as e:
        sys.exit(f"error: {e}")
    os.makedirs(args.out, exist_ok=True)
    g = torch.Generator(device=args.device).manual_seed(args.seed)
    for name, text, action in jobs:
        if args.fit:
            try:
                z, seconds = fit_joints(stage1, args.fit, args.fit_fps)
            except data.DataError as e:
                sys.exit(f"error: {e}")
            zs = z[None]
        else:
            seconds = args.seconds
            zs = model.sample(args.num, text=text, action=action, duration=seconds, guidance=args.guidance,
                              sampler=args.sampler, steps=args.steps, generator=g)
        for i, z in enumerate(zs):
            feats, joints = stage1.decode(z, seconds, args.fps)
            base = os.path.join(args.out, f"{name}_{i}")
            np.save(base + ".npy", joints.astype(np.float32))
            np.save(base + "_features.npy", feats.astype(np.float32))
            data.write_bvh(base + ".bvh", joints, stage1.skeleton, fps=args.fps)
            wrote = [base + ".npy", base + "_features.npy", base + ".bvh"]
            if not args.no_preview and preview(base + ".gif", joints, args.fps, text or name, stage1.skeleton):
                wrote.append(base + ".gif")
            print(f"{text or name!r} #{i}: {len(joints)} frames at {args.fps:g} fps ({seconds:.2f} s) -> "
                  + ", ".join(wrote))
