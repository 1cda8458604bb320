"""
Stage 1 of NeRM: learn every training sequence as a variational implicit neural representation.

Each step draws, per sequence, a framerate s up to the sequence's native rate and a clip of m frames at
rate s, so memory depends on m and never on the framerate (paper §3). Every --eval-every steps the
latents of held-out sequences are fitted with the decoder frozen and the mean joint error (MRE, metres)
is printed at 20/40/60/100/120 fps.

    python train_inr.py                                   # embedded data (generated on first use), ~3 min on 2 cores
    python train_inr.py --fps-mode fixed --out runs/inr_fixed.pt   # the peers' 20 fps preprocessing (baseline)
    python train_inr.py --data humanml3d --data-dir /path/to/HumanML3D
    python train_inr.py --steps 200 --eval-every 100 --out /tmp/tiny.pt   # a tiny CPU run
    python train_inr.py --resume                          # continue from --out
    python train_inr.py --compile                         # the evaluation decode through torch.compile
    python train_inr.py --steps 9000 --band-weight 0.1    # long budgets: a loss on the 10-60 Hz band (RESULTS.md)
    python train_inr.py --steps 9000 --gated              # long budgets: the detail gate (RESULTS.md)

Several GPUs or CPU processes (DistributedDataParallel; --batch is the global batch, split over the processes):

    torchrun --standalone --nproc_per_node=4 train_inr.py --batch 256            # 4 GPUs (nccl), 64 each
    torchrun --standalone --nproc_per_node=2 train_inr.py --device cpu --steps 200 --eval-every 100 --out /tmp/tiny.pt
    torchrun --standalone --nproc_per_node=4 train_inr.py --batch 256 --resume   # resume with any count
"""
import argparse
import math
import os
import sys
import time
from dataclasses import asdict

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

import checkpoint
import data
import guard
import metrics
import motion
import nerm

CFG = nerm.INRConfig()  # the defaults of the model flags below are the config's own
Int, Float, Path = guard.Int, guard.Float, guard.Path   # each flag's type states its range (guard.py)
parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--data", default="synthetic", choices=["synthetic", "humanml3d", "kit", "bvh"],
                    help="synthetic (the embedded dataset) | humanml3d | kit | bvh (a folder of BVH files)")
parser.add_argument("--data-dir", type=Path("any"), default=None, help="dataset directory in the HumanML3D layout, or a folder of BVH files with --data bvh (default: data/<name>)")
parser.add_argument("--num-synthetic", type=Int(10, 10**6), default=2000, help="sequences in the embedded dataset when generated")
parser.add_argument("--out", type=Path("any"), default="runs/inr.pt", help="checkpoint file (written atomically)")
parser.add_argument("--resume", action="store_true", help="continue training from --out (the same model and data)")
parser.add_argument("--force", action="store_true", help="start afresh even if --out exists (only a checkpoint nerm wrote is replaced)")
parser.add_argument("--steps", type=Int(1, 10**8), default=3000, help="optimizer steps")
parser.add_argument("--batch", type=Int(1, 2**16), default=64,
                    help="sequences per step (one clip each), over all processes: under torchrun each draws batch/N")
parser.add_argument("--clip-len", type=Int(2, 4096), default=32, help="m: frames per clip, whatever its framerate")
parser.add_argument("--lr", type=Float(0, math.inf, open=True), default=1e-3, help="decoder learning rate")
parser.add_argument("--latent-lr", type=Float(0, math.inf, open=True), default=1e-2, help="learning rate of the per-sequence latents")
parser.add_argument("--latent-dim", type=Int(1, 4096), default=CFG.latent_dim, help="Z (paper: 256)")
parser.add_argument("--hidden", type=Int(1, 8192), default=CFG.hidden, help="decoder width (paper-scale: 512)")
parser.add_argument("--blocks", type=Int(0, 64), default=CFG.n_blocks, help="residual blocks of 2 layers (paper-scale: 4)")
parser.add_argument("--kl-weight", type=Float(0, 1e6), default=CFG.kl_weight, help="lambda_KL (paper: 1e-4)")
parser.add_argument("--n-freqs", type=Int(0, 16), default=CFG.n_freqs, help="coarse Fourier octaves of normalized time (10: up to 256 cycles per sequence, those above --max-hz switched off)")
parser.add_argument("--max-hz", type=Float(0, 1000), default=CFG.max_hz,
                    help="the time encoding's band limit, Hz: coarse octaves above it on a sequence are switched off, "
                         "fine octaves of seconds are max-hz, max-hz/2, ... (0: the paper's plain octaves)")
parser.add_argument("--n-hz", type=Int(0, 16), default=CFG.n_hz, help="fine octaves: max-hz, max-hz/2, ...")
parser.add_argument("--time-enc", default=CFG.time_enc, choices=["none", "sinusoidal", "codebook"], help="time encoding")
parser.add_argument("--no-variational", action="store_true", help="plain auto-decoder: one point latent per sequence")
parser.add_argument("--no-time-norm", action="store_true", help="time in seconds instead of normalized to [0, 1]")
parser.add_argument("--fps-mode", default="native", choices=["native", "fixed"],
                    help="native: clips from each sequence at its own rate; fixed: everything resampled to 20 fps first")
parser.add_argument("--band-weight", type=Float(0, 1e6), default=0.0,
                    help="weight of the band loss: the clips' 10-60 Hz error on root-relative joints over their true band's "
                         "energy (0: the paper's loss; 0.1 places the band at 9,000 steps, over-smooths at 3,000)")
parser.add_argument("--gated", action="store_true", help="a smooth trunk and a ReLU detail head let through by an envelope of z and "
                    "slow time (nerm.INRDecoder): wins at 9,000 steps, loses to the fixed model at 3,000 (RESULTS.md)")
parser.add_argument("--eval-every", type=Int(0, 10**8), default=1000, help="steps between MRE evaluations (0: only at the end)")
parser.add_argument("--eval-seqs", type=Int(1, 10**5), default=32, help="held-out sequences for MRE")
parser.add_argument("--fit-steps", type=Int(1, 10**5), default=200, help="steps to fit held-out latents, decoder frozen")
parser.add_argument("--save-every", type=Int(1, 10**8), default=500, help="steps between checkpoints")
parser.add_argument("--seed", type=Int(0, 2**31 - 1), default=0, help="random seed")
parser.add_argument("--device", type=guard.device, default="cuda" if torch.cuda.is_available() else "cpu",
                    help="cpu | cuda (under torchrun: process k on cuda:LOCAL_RANK)")
parser.add_argument("--compile", action="store_true",
                    help="decode the held-out sequences through torch.compile (the training step stays eager)")


def get_lr(step, base, total, warmup=100):
    """Linear warm-up, then cosine decay to 10% of the base rate."""
    if step < warmup:
        return base * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def setup_distributed(device):
    """(rank, world size, device) of this process. Under torchrun (RANK is set) it joins the process group:
    nccl with one GPU per process (cuda:LOCAL_RANK), gloo for CPU processes. Plain python: (0, 1, device)."""
    if "RANK" not in os.environ:
        return 0, 1, device
    if device.startswith("cuda"):
        device = f"cuda:{os.environ['LOCAL_RANK']}"
        torch.cuda.set_device(device)  # first, so that nccl (and its barrier) use this GPU
    dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return dist.get_rank(), dist.get_world_size(), device


def band_loss(x_hat, x, fps, ric):
    """The batch's band error (metrics.band_error, on clips): per joint, the 10-60 Hz energy of x_hat - x over
    that of x, summed over clips, then the mean over joints with a band. ric: the root-relative position
    channels, which share one std (data.group_std), so normalized units give the ratio in metres."""
    err = metrics.clip_band_pass(x_hat[..., ric] - x[..., ric], fps)
    ref = metrics.clip_band_pass(x[..., ric], fps)
    B, m = x.shape[:2]
    err, ref = err.reshape(B, m, -1, 3).pow(2).sum((0, 1, 3)), ref.reshape(B, m, -1, 3).pow(2).sum((0, 1, 3))
    keep = ref > 1e-12
    return (err[keep] / ref[keep]).mean() if keep.any() else x_hat.sum() * 0


def resume_mismatch(ckpt, cfg, args, train_set, fingerprint):
    """What differs between the run in ckpt and the one these flags and this data define ('' if nothing):
    the model config, the fps mode, and the data itself (data.fingerprint: names and their order, since
    latent i belongs to sequence i, lengths, rates, statistics, captions, a hash of the frames)."""
    now = asdict(cfg)   # (the checkpoint's config as this nerm reads it: without the settings of retired experiments)
    diff = [f"{k}={v!r} (now {now[k]!r})" for k, v in asdict(checkpoint.inr_config(ckpt["model_args"])).items() if now[k] != v]
    for key in ("data", "fps_mode"):
        if ckpt["args"].get(key) != getattr(args, key):
            diff.append(f"--{key.replace('_', '-')} {ckpt['args'].get(key)} (now {getattr(args, key)})")
    if "fingerprint" not in ckpt["sequences"]:
        diff.append("a checkpoint of an older nerm, which did not record its data (start afresh with --force)")
    elif ckpt["sequences"]["fingerprint"] != fingerprint:
        diff.append("other training data (" + ("other sequences, or in another order" if ckpt["sequences"]["names"]
                                               != train_set.names else "the same names with other content") + ")")
    return "; ".join(diff)


if __name__ == "__main__":
    guard.report_errors()          # a user's mistake or a failing disk: one line, no traceback
    args = parser.parse_args()
    rank, world, device = setup_distributed(args.device)
    if args.batch % world:
        parser.error(f"--batch {args.batch} is not a multiple of the {world} processes")
    batch = args.batch // world
    # each process its own random stream (nanoGPT's seed + rank): its own clips, latent noise, dropout.
    # The initial weights may differ too: DDP copies rank 0's parameters (latent table included) to all
    torch.manual_seed(args.seed + rank)
    ckpt = checkpoint.load(args.out, stage=1) if args.resume else None   # nerm's own file: --resume replaces it
    def load():   # the train and val splits, mapped from their stores (data.stored)
        return tuple(data.open_split(args.data, args.data_dir, split, mode, generate=args.num_synthetic)
                     for split, mode in (("train", args.fps_mode), ("val", args.fps_mode), ("val", "native")))
    if rank == 0:   # one process writes: it claims --out, makes the embedded dataset and the stores on first use
        guard.claim(args.out, force=args.force or args.resume, inputs=[args.data_dir or os.path.join("data", args.data)],
                    remedy="pass --resume to continue it, --force to start afresh, or choose another --out",
                    resumed=ckpt is not None)
        train_set, val_fit, val_gt = load()            # the embedded data is generated first if missing
    if world > 1:   # the others wait, then map the same files
        dist.barrier()
    if rank > 0:
        train_set, val_fit, val_gt = load()
    sampler = data.ClipSampler(train_set, train_set.mean, train_set.std)
    if rank == 0:
        print(f"{args.data}: {len(train_set)} train sequences, {sum(len(x) for x in train_set.features)} frames, "
              f"native fps {sorted(set(train_set.fps.tolist()))}, fps mode {args.fps_mode}"
              + (f", {world} processes of {batch} clips" if world > 1 else ""))

    cfg = nerm.INRConfig(feature_dim=train_set.skeleton.feature_dim, num_sequences=len(train_set),
                         latent_dim=args.latent_dim, hidden=args.hidden, n_blocks=args.blocks, time_enc=args.time_enc,
                         n_freqs=args.n_freqs, max_hz=args.max_hz, n_hz=args.n_hz,
                         variational=not args.no_variational, kl_weight=args.kl_weight,
                         time_norm=not args.no_time_norm, max_fps=float(train_set.fps.max()), gated=args.gated)
    fingerprint = data.fingerprint(train_set)
    differs = resume_mismatch(ckpt, cfg, args, train_set, fingerprint) if ckpt is not None else ""
    if differs:
        raise guard.UserError(f"--resume: {args.out} is another run: {differs}. Repeat its flags and data, "
                              "or choose another --out")
    model = nerm.NeRM(cfg).to(device)
    # the model carries the statistics its decoder's output is normalized by (see nerm.decode)
    model.decoder.mean.copy_(torch.from_numpy(train_set.mean))
    model.decoder.std.copy_(torch.from_numpy(train_set.std))
    # separate learning rates: each latent is updated only when its sequence is drawn, so it gets a larger one
    latent_params = [p for p in model.latents.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam([{"params": latent_params, "lr": args.latent_lr, "base": args.latent_lr},
                                  {"params": model.decoder.parameters(), "lr": args.lr, "base": args.lr}])
    step, history = 0, []
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        for group, base in zip(optimizer.param_groups, (args.latent_lr, args.lr)):
            group["base"] = base  # the rates asked for now, not the saved ones
        step, history = ckpt["step"], ckpt.get("history", [])
        torch.manual_seed(args.seed + step + rank)
        if rank == 0:
            print(f"resumed {args.out} at step {step}")
    # Under torchrun each process draws its own batch/N clips and DDP averages the gradients over the
    # processes during backward. The latent table is a parameter like the decoder's, with a dense gradient
    # that is zero in the rows a process did not draw, so latent i receives
    #     (1/N) sum_r (1/(B/N)) sum_{clips of i on r} grad  =  (1/B) sum_{clips of i} grad,
    # exactly its gradient in one process drawing all B clips (the loss is a mean over the batch): a row
    # drawn on one process only is not scaled down, nor multiplied by N. Every process then applies the same
    # Adam update to the same averaged gradients, so the tables, decoders and Adam moments stay identical
    # with no other communication. The price: the whole table (mu and logvar, 2 x sequences x Z floats) is
    # all-reduced every step: ~47 MB for 23k sequences at Z = 256, small for a GPU interconnect.
    train_model = DDP(model, device_ids=[device] if device.startswith("cuda") else None) if world > 1 else model

    def save():
        checkpoint.save({"stage": 1, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                              "model_args": asdict(cfg), "args": vars(args), "step": step, "history": history,
                              "skeleton": motion.skeleton_to_dict(train_set.skeleton),
                              "sequences": {"names": train_set.names, "fps": torch.from_numpy(train_set.fps),
                                            "fingerprint": fingerprint,
                                            "duration": torch.from_numpy(train_set.durations()),
                                            "captions": train_set.captions, "actions": train_set.actions}}, args.out)

    # compiled once; the weights are graph inputs (no freezing), so each evaluation sees the current ones
    eval_decoder = nerm.compile_decoder(model.decoder) if args.compile else None

    def run_eval():
        mre = metrics.evaluate_mre(model.decoder, val_fit, val_gt, args.eval_seqs, args.fit_steps, args.clip_len,
                           compiled=eval_decoder)
        history.append({"step": step, **{k: {str(f): v for f, v in d.items()} for k, d in mre.items()}})
        print(f"step {step}: held-out MRE (m)       " + "  ".join(f"@{f}fps {v:.4f}" for f, v in mre["mre"].items()))
        print(f"step {step}: held-out local MRE (m) " + "  ".join(f"@{f}fps {v:.4f}" for f, v in mre["local"].items()))
        return mre

    ric = motion.feature_slices(train_set.skeleton)["ric"]
    g = torch.Generator().manual_seed(args.seed + step + rank)
    t0, start = time.time(), step
    pbar = tqdm(total=args.steps, initial=step, disable=None if rank == 0 else True)
    while step < args.steps:
        for group in optimizer.param_groups:
            group["lr"] = get_lr(step, group["base"], args.steps)
        idx = torch.randint(0, len(sampler), (batch,), generator=g)
        x, t, fps, idx = sampler.sample(idx, args.clip_len, generator=g)   # (B, m, D), (B, m) s, (B,) Hz
        dur = sampler.duration[idx]                              # (B,) the clips' sequence durations, s
        x, t, dur, fps, idx = x.to(device), t.to(device), dur.to(device), fps.to(device), idx.to(device)
        x_hat, loss, recon, prior = train_model(idx, t, dur, fps, x)
        if args.band_weight:
            loss = loss + args.band_weight * band_loss(x_hat, x, fps, ric)
        # the mean over the processes (= the loss of the whole batch), so that all of them stop together
        stats = torch.stack([loss, recon, prior]).detach()
        if world > 1:
            dist.all_reduce(stats)
            stats /= world
        if not torch.isfinite(stats[0]):
            kept = f"the last good checkpoint is {args.out}" if os.path.exists(args.out) else "no checkpoint was written"
            sys.exit(f"error: loss became {stats[0].item()} at step {step}; stopping ({kept}). Try a lower --lr.")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        pbar.update(1)
        if step % 20 == 0:
            pbar.set_postfix(recon=f"{stats[1].item():.4f}", prior=f"{stats[2].item():.1f}")
        # one process evaluates and writes; the others wait for it at the next step's first collective
        if step % args.save_every == 0 and rank == 0:
            save()
        if args.eval_every and step % args.eval_every == 0 and step < args.steps and rank == 0:
            run_eval()
    pbar.close()
    if rank == 0:
        print(f"trained steps {start}..{step} in {time.time() - t0:.0f} s")
        if cfg.variational:   # what the KL (weighted as the paper's, nerm.NeRM.forward) left of sigma
            sigma = model.latents.logvar.detach().mul(0.5).exp()
            print(f"posterior sigma: mean {sigma.mean():.4f} (min {sigma.min():.4f}, max {sigma.max():.4f}); "
                  f"initial {math.exp(0.5 * cfg.init_logvar):.4f}")
        run_eval()
        save()
        print(f"wrote {args.out}")
    if dist.is_initialized():
        dist.destroy_process_group()
