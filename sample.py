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
    python sample.py --text "a person punches forward five times using their left arm" --fps 120 --plot punch.png

For each sample it writes, under --out: <name>.npy joints (T, J, 3) metres, frame k at exactly k / fps seconds,
T = floor(fps * seconds) + 1 (so the last frame is at --seconds, or less than a frame interval before it);
<name>_features.npy (T, D) HumanML3D layout (velocities per frame at --fps); <name>.bvh; and
<name>.gif, a stick-figure preview, when matplotlib is installed (optional). J and D are those of the skeleton
the checkpoint carries: SMPL's 22 joints and 263 for the embedded data and HumanML3D, the files' own skeleton
for a model trained on BVH files (train_inr.py --data bvh). Existing files are never overwritten without --force.
"""
import argparse
import importlib.util
import os
import sys

import numpy as np
import torch

import checkpoint
import bvh
import data
import guard
import motion
import nerm

MAX_FPS, MAX_SECONDS = 480.0, 60.0
Int, Float, Path, Text = guard.Int, guard.Float, guard.Path, guard.Text   # each flag's type states its range
parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--ckpt", type=Path("file"), default="runs/diffusion.pt", help="stage-2 checkpoint from train_diffusion.py")
parser.add_argument("--text", type=Text(), action="append", default=[], help="a prompt (repeatable)")
parser.add_argument("--text-file", type=Path("file"), default=None, help="a UTF-8 file with one prompt per line")
parser.add_argument("--action", type=Text(200), action="append", default=[], help="an action label (repeatable)")
parser.add_argument("--fps", type=Float(0, MAX_FPS, open=True), default=20.0, help="output framerate, any value in (0, 480]")
parser.add_argument("--seconds", type=Float(0, MAX_SECONDS, open=True), default=4.0,
                    help="duration of each motion, (0, 60]: stage 2 is told it, and time is normalized by it, so a 4 s "
                         "motion is not the first half of an 8 s one")
parser.add_argument("--num", type=Int(1, 1000), default=1, help="samples per prompt")
parser.add_argument("--guidance", type=Float(-1e3, 1e3), default=nerm.GUIDANCE, help="classifier-free guidance scale r (1 = none)")
parser.add_argument("--sampler", default="ddim", choices=["ddim", "ddpm"], help="ddim: fast, deterministic; ddpm: all 1000 steps")
parser.add_argument("--steps", type=Int(1, 10**4), default=50, help="DDIM steps (at most the model's diffusion steps)")
parser.add_argument("--seed", type=Int(0, 2**31 - 1), default=0, help="random seed: the same seed gives the same motions")
parser.add_argument("--out", type=Path("any"), default="samples", help="output directory")
parser.add_argument("--fit", type=Path("file"), default=None,
                    help="(T, J, 3) joints .npy on the checkpoint's skeleton (SMPL: J = 22) to fit a latent to (decoder frozen) and re-decode")
parser.add_argument("--fit-fps", type=Float(0, MAX_FPS, open=True), default=20.0, help="framerate of the --fit joints")
parser.add_argument("--no-preview", action="store_true", help="skip the GIF preview")
parser.add_argument("--force", action="store_true", help="replace files of the same name that nerm wrote in --out (and --plot)")
parser.add_argument("--plot", type=Path("any"), default=None,
                    help="a PNG of the first sample's joint speeds at --fps and at 20 fps, decoded from the same z (needs matplotlib)")
parser.add_argument("--device", type=guard.device, default="cuda" if torch.cuda.is_available() else "cpu", help="cpu | cuda")
parser.add_argument("--compile", action="store_true",
                    help="decode through torch.compile (inductor): a few seconds of compiling per new shape, then ~5%% faster on a CPU")
parser.add_argument("--dtype", default="fp32", choices=["fp32", "tf32", "bf16"],
                    help="decoder precision: bf16 autocast (CPU or GPU); tf32 matmuls on a CUDA GPU")


def decode_motion(decoder, z, seconds, fps, skeleton, fast=None, dtype=None):
    """z (Z,) -> features (T, D) with velocities per frame at fps, and joints (T, J, 3) metres: frame k at
    k / fps seconds, T = floor(fps * seconds) + 1 (nerm.decode)."""
    x = nerm.decode(fast or decoder, z[None], fps, seconds, dtype=dtype)[0].cpu().numpy()   # (T, D) per second
    feats = motion.features_per_frame(x, fps)
    return feats, motion.features_to_joints(feats, skeleton)


def fit_joints(decoder, skeleton, path, fit_fps):
    """Fit a latent to joints at a low rate, decoder frozen (auto-decoder inference) -> (z, seconds)."""
    J = skeleton.num_joints
    joints = data.load_npy(path, (None, J, 3), f"finite (T >= 3, {J}, 3) joint positions on the checkpoint's "
                                               f"skeleton {skeleton.name}")
    if len(joints) < 3:
        raise data.DataError(f"{path}: {len(joints)} frames; expected at least 3 to fit a motion to")
    x = motion.joints_to_features(joints, skeleton, fps=fit_fps, hml3d_frame0=False)
    x = motion.features_per_second(x, fit_fps)
    dev = decoder.mean.device
    x = ((torch.from_numpy(x).to(dev) - decoder.mean) / decoder.std).float()[None]   # (1, T-1, D) normalized
    seconds = (x.shape[1] - 1) / fit_fps
    t = torch.arange(x.shape[1], device=dev)[None] / fit_fps                       # (1, T-1) seconds
    dur, s = torch.tensor([seconds], device=dev), torch.tensor([fit_fps], device=dev)
    z = nerm.fit_latents(decoder, lambda: (torch.zeros(1, dtype=torch.long), t, dur, s, x), 1, steps=300)
    return z[0], seconds


def has_matplotlib():
    """The GIF preview and --plot need matplotlib (optional): without it the preview is skipped."""
    return importlib.util.find_spec("matplotlib") is not None


def preview(path, joints, fps, title, skeleton=motion.SMPL22):
    """Stick-figure GIF (at most 30 frames per second)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.animation import FuncAnimation, PillowWriter
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


def plot_rates(path, rates, title):
    """One figure: the wrist and ankle speeds over time of one motion decoded at several framerates, rates =
    {fps: joints (T, J, 3)} on SMPL's skeleton. Where 20 fps only has a few points on a fast movement, the
    higher rate shows its shape."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = {"right wrist": 21, "left wrist": 20, "right ankle": 8, "left ankle": 7}
    fig, axes = plt.subplots(len(names), 1, figsize=(7, 1.6 * len(names)), sharex=True)
    for ax, (name, j) in zip(axes, names.items()):
        for fps, joints in sorted(rates.items(), reverse=True):
            speed = np.linalg.norm(np.diff(joints[:, j], axis=0), axis=-1) * fps      # (T-1,) m/s
            t = (np.arange(len(speed)) + 0.5) / fps
            ax.plot(t, speed, "-" if fps > 20 else "o-", ms=3, lw=1 if fps > 20 else 0.8, label=f"{fps:g} fps")
        ax.set_ylabel(f"{name}\nm/s", fontsize=8)
    axes[0].legend(fontsize=8, loc="upper right")
    axes[0].set_title(title[:80], fontsize=9)
    axes[-1].set_xlabel("seconds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---- the argument checks: flags against each other and against the model, outputs claimed ----

def output_exts(gif):
    """The files written per motion: joints, features, BVH, and the GIF preview when matplotlib is there."""
    return (".npy", "_features.npy", ".bvh") + ((".gif",) if gif else ())


def check_args(args, model, actions, skeleton):
    """Every flag against the others and against this model, before any work: a flag mistake is one argparse
    line (parser.error), a data file's is one DataError. Then the outputs are named and claimed: file names
    from guard.name (a prompt or label made a plain name: no folder, no '..'), kept apart by unique_names,
    every target checked now and written later through guard.write. -> (jobs [(name, text, action id)], gif)."""
    if args.text_file:
        args.text += read_prompts(args.text_file)
    if args.plot and not has_matplotlib():
        parser.error("--plot needs matplotlib: pip install matplotlib")
    if args.plot and skeleton.num_joints != 22:
        parser.error("--plot draws SMPL's wrists and ankles: it needs a model trained on SMPL's 22 joints")
    check_condition(args, model, actions)
    if args.fit:
        jobs = [("fit", None, None)]
    elif args.text:
        jobs = [(guard.name(t), t, None) for t in args.text]
    elif args.action:
        jobs = [(guard.name(a), None, actions.index(a)) for a in args.action]
    else:
        jobs = [("uncond", None, None)]
    jobs, gif = unique_names(jobs), not args.no_preview and has_matplotlib()
    guard.claim(args.out, force=args.force, inputs=[args.ckpt, args.fit, args.text_file], into=True)
    if args.plot:
        guard.claim(args.plot, force=args.force, inputs=[args.ckpt, args.fit, args.text_file, args.out])
    for name, _, _ in jobs:
        for i in range(1 if args.fit else args.num):
            for ext in output_exts(gif):
                guard.check(os.path.join(args.out, f"{name}_{i}{ext}"))
    return jobs, gif


def unique_names(jobs):
    """Make the names of (name, text, action) jobs distinct: a repeated name gets -2, -3 ... so two prompts
    that share their first 40 characters (or differ only in case and punctuation) never overwrite each other."""
    seen, out = {}, []
    for name, text, action in jobs:
        seen[name] = seen.get(name, 0) + 1
        out.append((name if seen[name] == 1 else f"{name}-{seen[name]}", text, action))
    return out


def read_prompts(path):
    """The prompts of a --text-file: one per line (UTF-8, a byte-order mark and CRLF line ends are fine)."""
    lines = [line.strip() for line in data.read_text(path).splitlines()]
    if not any(lines):
        raise data.DataError(f"--text-file {path}: no prompt in it (every line is blank)")
    return [text for text in lines if text]


def check_condition(args, model, actions):
    """The prompts and labels against what this model knows: one line for a mistake, a note for unknown words."""
    cond = model.config.cond
    if args.text and cond != "text":
        parser.error(f"{args.ckpt} is a {cond}-conditioned model: use --action or no condition")
    if args.action and cond != "action":
        parser.error(f"{args.ckpt} is a {cond}-conditioned model: use --text or no condition")
    if args.steps > model.config.timesteps:
        parser.error(f"--steps {args.steps}: this model has {model.config.timesteps} diffusion steps")
    for text in args.text:
        words = nerm.Vocab.normalize(text)
        known = [w for w in words if w in model.vocab.index]
        if not known:
            parser.error(f"--text {text!r} has no word this model knows (its vocabulary is the English words "
                         f"of its training captions, {len(model.vocab) - 2} of them)")
        unknown = sorted(set(words) - set(known))
        if unknown:
            print(f"note: {text!r}: words this model does not know, read as <unk>: {' '.join(unknown)}", file=sys.stderr)
        if len(words) > model.config.max_words:
            print(f"note: {text!r}: only the first {model.config.max_words} words are read", file=sys.stderr)
    for a in args.action:
        if a not in actions:
            parser.error(f"unknown action {a!r}; this model knows: {', '.join(actions)}")


if __name__ == "__main__":
    guard.report_errors()          # a user's mistake or a failing disk: one line, no traceback
    args = parser.parse_args()
    model, decoder, ckpt = checkpoint.load_diffusion(args.ckpt, args.device)
    skeleton = motion.resolve_skeleton(ckpt["inr"]["skeleton"])   # the training data's: no data folder is needed
    jobs, gif = check_args(args, model, ckpt["actions"], skeleton)   # every flag and output, before any work
    if args.dtype == "tf32":  # TF32 tensor-core matmuls (GPU only; the CPU ignores the setting)
        torch.backends.cuda.matmul.allow_tf32 = True
    dtype = torch.bfloat16 if args.dtype == "bf16" else None
    # nerm.decode runs the compiled decoder; --fit trains z through the eager one
    fast = nerm.compile_decoder(decoder) if args.compile else None
    fitted = fit_joints(decoder, skeleton, args.fit, args.fit_fps) if args.fit else None

    g = torch.Generator(device=args.device).manual_seed(args.seed)
    for name, text, action in jobs:
        if fitted is not None:
            zs, seconds = fitted[0][None], fitted[1]
        else:   # stage 2 draws z (classifier-free guidance), stage 1 decodes it at --fps
            seconds = args.seconds
            zs = model.sample(args.num, text=text, action=action, duration=seconds, guidance=args.guidance,
                              sampler=args.sampler, steps=args.steps, generator=g)
        for i, z in enumerate(zs):
            feats, joints = decode_motion(decoder, z, seconds, args.fps, skeleton, fast, dtype)
            if not np.isfinite(joints).all():   # nothing half-made is written
                raise checkpoint.CheckpointError(f"the decoded motion {name}_{i} is not finite; the checkpoint {args.ckpt} is broken")
            base = os.path.join(args.out, f"{name}_{i}")
            guard.write(base + ".npy", lambda tmp: np.save(tmp, joints.astype(np.float32)))
            guard.write(base + "_features.npy", lambda tmp: np.save(tmp, feats.astype(np.float32)))
            guard.write(base + ".bvh", lambda tmp: bvh.write_bvh(tmp, joints, skeleton, fps=args.fps))
            if gif:
                guard.write(base + ".gif", lambda tmp: preview(tmp, joints, args.fps, text or name, skeleton))
            print(f"{text or name!r} #{i}: {len(joints)} frames at {args.fps:g} fps ({seconds:.2f} s) -> "
                  + ", ".join(base + ext for ext in output_exts(gif)))
            if args.plot and (name, i) == (jobs[0][0], 0):   # the same z at 20 fps, as a 20 fps model gives it
                _, low = decode_motion(decoder, z, seconds, 20.0, skeleton, fast, dtype)
                guard.write(args.plot, lambda tmp: plot_rates(tmp, {args.fps: joints, 20.0: low}, text or name))
                print(f"wrote {args.plot}")
