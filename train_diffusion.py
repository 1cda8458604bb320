"""
Stage 2 of NeRM: a latent DDPM with classifier-free guidance over the stage-1 latents.

Every training sequence i has a learned Gaussian N(mu_i, Sigma_i); this trains eps_phi(z_k, k, c, duration)
on z ~ N(mu_i, Sigma_i) with c = one of the sequence's captions (--cond text), its action label (--cond
action) or nothing (--cond none). The checkpoint carries the vocabulary and the stage-1 decoder, so
sample.py needs nothing else.

    python train_diffusion.py                                   # after train_inr.py, ~5.5 min on 2 cores
    python train_diffusion.py --cond action --out runs/diffusion_action.pt
    python train_diffusion.py --steps 100 --out /tmp/d.pt       # a tiny CPU run
    python train_diffusion.py --resume                          # continue from --out

Several GPUs or CPU processes (DistributedDataParallel; --batch is the global batch, split over the processes):

    torchrun --standalone --nproc_per_node=4 train_diffusion.py --batch 256            # 4 GPUs (nccl), 64 each
    torchrun --standalone --nproc_per_node=2 train_diffusion.py --device cpu --steps 100 --out /tmp/d.pt
    torchrun --standalone --nproc_per_node=4 train_diffusion.py --batch 256 --resume   # resume with any count
"""
import argparse
import math
import os
import sys
import time
import warnings
from dataclasses import asdict

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

import checkpoint
import guard
import nerm

CFG = nerm.DiffusionConfig()  # the defaults of the model flags below are the config's own
Int, Float, Path = guard.Int, guard.Float, guard.Path   # each flag's type states its range (guard.py)
parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--inr", type=Path("file"), default="runs/inr.pt", help="stage-1 checkpoint from train_inr.py")
parser.add_argument("--out", type=Path("any"), default="runs/diffusion.pt", help="stage-2 checkpoint (written atomically)")
parser.add_argument("--resume", action="store_true", help="continue training from --out")
parser.add_argument("--force", action="store_true", help="start afresh even if --out exists (only a checkpoint nerm wrote is replaced)")
parser.add_argument("--cond", default="text", choices=["text", "action", "none"], help="what generation is conditioned on")
parser.add_argument("--steps", type=Int(1, 10**8), default=3000, help="optimizer steps")
parser.add_argument("--batch", type=Int(1, 2**16), default=64,
                    help="latents per step, over all processes: under torchrun each of N draws batch/N")
parser.add_argument("--lr", type=Float(0, math.inf, open=True), default=3e-4, help="learning rate (AdamW)")
parser.add_argument("--d-model", type=Int(1, 4096), default=CFG.d_model,
                    help=f"denoiser width, a multiple of its {CFG.n_heads} heads (GPU-scale: 256+)")
parser.add_argument("--layers", type=Int(1, 64), default=CFG.n_layers, help="denoiser blocks")
parser.add_argument("--grad-clip", type=Float(0, 1e6), default=1.0, help="clip the gradient norm to this (0: no clipping)")
parser.add_argument("--cond-drop", type=Float(0, 0.99), default=CFG.cond_drop, help="probability of the null condition in training")
parser.add_argument("--save-every", type=Int(1, 10**8), default=1000, help="steps between checkpoints")
parser.add_argument("--seed", type=Int(0, 2**31 - 1), default=0, help="random seed")
parser.add_argument("--device", type=guard.device, default="cuda" if torch.cuda.is_available() else "cpu",
                    help="cpu | cuda (under torchrun: process k on cuda:LOCAL_RANK)")


# the two trainers share these few lines rather than one importing the other (nanoGPT's trade)
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


def resume_mismatch(ckpt, cfg, stage1):
    """What differs between the run in ckpt and the one these flags define ('' if nothing): the denoiser's
    config, and the stage-1 model whose latents it learns (its decoder must be the very same)."""
    diff = [f"{k}={v!r} (now {asdict(cfg)[k]!r})" for k, v in ckpt["model_args"].items()
            if k != "vocab" and asdict(cfg).get(k) != v]
    same = ckpt["inr"]["decoder"].keys() == stage1["decoder"].keys() and all(
        torch.equal(v, stage1["decoder"][k]) for k, v in ckpt["inr"]["decoder"].items())
    if not same:
        diff.append("--inr is another stage-1 model than the one this run was trained on")
    return "; ".join(diff)


if __name__ == "__main__":
    guard.report_errors()          # a user's mistake or a failing disk: one line, no traceback
    args = parser.parse_args()
    if args.d_model % CFG.n_heads:   # model shapes are checked against each other before anything is read
        parser.error(f"--d-model {args.d_model} must be a multiple of the denoiser's {CFG.n_heads} heads")
    rank, world, device = setup_distributed(args.device)
    if args.batch % world:
        parser.error(f"--batch {args.batch} is not a multiple of the {world} processes")
    batch = args.batch // world
    # each process its own random stream (seed + rank): its own latents, noise levels, condition drops and
    # dropout; DDP copies rank 0's initial weights to all
    torch.manual_seed(args.seed + rank)
    ckpt = checkpoint.load(args.out, stage=2) if args.resume else None   # nerm's own file: --resume replaces it
    if rank == 0:   # one process writes: it claims --out (never --inr, its own input), the others wait
        guard.claim(args.out, force=args.force or args.resume, inputs=[args.inr],
                    remedy="pass --resume to continue it, --force to start afresh, or choose another --out",
                    resumed=ckpt is not None)
    if world > 1:
        dist.barrier()
    inr = checkpoint.load(args.inr, stage=1)
    seqs = inr["sequences"]
    mu, logvar = inr["model"]["latents.mu"], inr["model"]["latents.logvar"]
    variational = inr["model_args"]["variational"]
    duration = seqs["duration"].float()
    captions, action_names = seqs["captions"], sorted(set(seqs["actions"]))
    actions = torch.tensor([action_names.index(a) for a in seqs["actions"]])
    if args.cond == "text" and not all(captions):
        parser.error(f"{args.inr} has sequences without captions; use --cond action or --cond none")
    if args.cond == "action" and action_names == [""]:
        parser.error(f"{args.inr} has no action labels; use --cond text or --cond none")
    if rank == 0:
        print(f"{len(mu)} latents of size {mu.shape[1]} from {args.inr}, cond {args.cond}, "
              f"{len(action_names)} actions, durations {duration.min():.1f}-{duration.max():.1f} s"
              + (f", {world} processes of {batch} latents" if world > 1 else ""))

    vocab = nerm.Vocab.build([c for caps in captions for c in caps]).to_list() if args.cond == "text" else None
    cfg = nerm.DiffusionConfig(latent_dim=mu.shape[1], cond=args.cond, vocab=vocab, num_actions=len(action_names),
                               d_model=args.d_model, n_layers=args.layers, cond_drop=args.cond_drop)
    stage1 = checkpoint.decoder_payload(inr)
    differs = resume_mismatch(ckpt, cfg, stage1) if ckpt is not None else ""
    if differs:
        raise guard.UserError(f"--resume: {args.out} is another run: {differs}. Repeat its flags and --inr, "
                              "or choose another --out")
    model = nerm.LatentDiffusion(cfg).to(device)
    mu, std = mu.to(device), (0.5 * logvar).exp().to(device)   # each latent's posterior mean and sigma
    model.set_latent_stats(mu, std if variational else None)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    step = 0
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        step = ckpt["step"]
        torch.manual_seed(args.seed + step + rank)
        if rank == 0:
            print(f"resumed {args.out} at step {step}")
    # DDP all-reduces the gradients of what runs through forward() (LatentDiffusion.forward is its loss,
    # Algorithm 1). Each process's loss is a mean over its batch/N latents and DDP averages the gradients, so
    # the step (and the gradient clipping, which sees the averaged gradient) is that of one process drawing
    # all --batch latents.
    train_model = DDP(model, device_ids=[device] if device.startswith("cuda") else None) if world > 1 else model
    # the null token's gradient (1, 1, d) comes out of an expand with strides DDP does not expect: it copies
    # that gradient into its buffer instead of sharing the memory, a free copy at this size
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")

    def save():
        checkpoint.save({"stage": 2, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                              "model_args": asdict(cfg), "args": vars(args), "step": step, "actions": action_names,
                              "durations": duration, "inr": stage1}, args.out)

    g = torch.Generator().manual_seed(args.seed + step + rank)
    t0, start = time.time(), step
    pbar = tqdm(total=args.steps, initial=step, disable=None if rank == 0 else True)
    while step < args.steps:
        for group in optimizer.param_groups:
            group["lr"] = get_lr(step, args.lr, args.steps)
        idx = torch.randint(0, len(mu), (batch,), generator=g)
        # train on draws from each sequence's Gaussian, the latent space the variational INR decodes well
        z0 = mu[idx] + (std[idx] * torch.randn(mu[idx].shape, generator=g).to(device) if variational else 0)
        if args.cond == "text":
            pick = torch.randint(0, 1 << 30, (batch,), generator=g)
            cond = [captions[i][p % len(captions[i])] for i, p in zip(idx.tolist(), pick.tolist())]
        else:
            cond = actions[idx].to(device) if args.cond == "action" else None
        loss = train_model(z0, cond, duration[idx].to(device))
        # the mean over the processes (= the loss of the whole batch), so that all of them stop together
        mean_loss = loss.detach().clone()
        if world > 1:
            dist.all_reduce(mean_loss)
            mean_loss /= world
        if not torch.isfinite(mean_loss):
            kept = f"the last good checkpoint is {args.out}" if os.path.exists(args.out) else "no checkpoint was written"
            sys.exit(f"error: loss became {mean_loss.item()} at step {step}; stopping ({kept}). Try a lower --lr.")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if args.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        optimizer.step()
        step += 1
        pbar.update(1)
        if step % 20 == 0:
            pbar.set_postfix(loss=f"{mean_loss.item():.4f}")
        if step % args.save_every == 0 and rank == 0:  # one process writes
            save()
    pbar.close()
    if rank == 0:
        print(f"trained steps {start}..{step} in {time.time() - t0:.0f} s")
        save()
        print(f"wrote {args.out}")
    if dist.is_initialized():
        dist.destroy_process_group()
