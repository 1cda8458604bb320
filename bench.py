"""
Speed and memory of NeRM, measured on this machine; prints a table and writes JSON.

    python bench.py                      # every section, a few minutes on 2 CPU cores
    python bench.py --only train         # stage-1 step: time and peak memory by clip framerate
    python bench.py --device cuda --json runs/bench_gpu.json

Peak memory: on CUDA torch.cuda.max_memory_allocated; on the CPU the sum of the allocation and free
events the PyTorch profiler records during the step (tensors only, not the Python heap).
"""
import argparse
import json
import os
import platform
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

import nerm

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--only", default="all", help="all | train")
parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu | cuda")
parser.add_argument("--json", default="runs/bench.json", help="where to write the figures")
parser.add_argument("--batch", type=int, default=32, help="sequences per training step")
parser.add_argument("--seconds", type=float, default=10.0, help="sequence duration for the frame-space model")
parser.add_argument("--hidden", type=int, default=256, help="NeRM decoder width (train_inr.py's default)")
parser.add_argument("--blocks", type=int, default=3, help="NeRM residual blocks (train_inr.py's default)")
parser.add_argument("--repeats", type=int, default=5, help="timed repetitions per figure")


def machine():
    if torch.cuda.is_available() and parser.parse_known_args()[0].device == "cuda":
        return torch.cuda.get_device_name()
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"


def peak_memory(fn, device):
    """Peak bytes allocated by tensors while fn() runs (beyond what was allocated before)."""
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]")
    current = peak = 0
    for _, nbytes in events:  # allocations are positive, frees negative
        current += nbytes
        peak = max(peak, current)
    return peak


def timed(fn, device, repeats):
    fn()  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / repeats


class FrameSpaceModel(nn.Module):
    """A frame-space denoiser in MDM's style: a transformer that must see every frame of the sequence."""

    def __init__(self, feature_dim=263, d=256, layers=4, heads=4):
        super().__init__()
        self.inp = nn.Linear(feature_dim, d)
        layer = nn.TransformerEncoderLayer(d, heads, 4 * d, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers)
        self.out = nn.Linear(d, feature_dim)

    def forward(self, x):
        return self.out(self.encoder(self.inp(x)))


def bench_train(args, results):
    """One stage-1 step at clip framerates 20/60/120 vs the frame-space model on whole sequences."""
    dev, B, D, m = args.device, args.batch, 263, 32
    cfg = nerm.INRConfig(feature_dim=D, num_sequences=B, hidden=args.hidden, n_blocks=args.blocks)
    model = nerm.NeRM(cfg).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    frame_model = FrameSpaceModel(D).to(dev)
    frame_opt = torch.optim.Adam(frame_model.parameters(), lr=1e-4)
    n_inr = sum(p.numel() for p in model.decoder.parameters())
    n_frame = sum(p.numel() for p in frame_model.parameters())
    print(f"\n## Training step (batch {B} sequences of {args.seconds:g} s; NeRM decoder {n_inr / 1e6:.2f} M params, "
          f"frame-space transformer {n_frame / 1e6:.2f} M params) on {machine()}")
    print("| clip fps | NeRM frames/seq | NeRM step (ms) | NeRM peak MB | frame-space frames/seq | frame-space step (ms) | frame-space peak MB |")
    print("|---|---|---|---|---|---|---|")
    rows = []
    for fps in (20, 60, 120):
        idx = torch.arange(B, device=dev)
        # a clip of m frames at rate fps: the time span shrinks as the rate grows, the work does not
        t = (torch.rand(B, 1, device=dev) * 0.5 + torch.arange(m, device=dev) / (fps * args.seconds))
        s = torch.full((B,), float(fps), device=dev)
        x = torch.randn(B, m, D, device=dev)
        L = int(fps * args.seconds)
        xf = torch.randn(B, L, D, device=dev)

        def inr_step():
            _, loss, _, _ = model(idx, t, s, x)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        def frame_step():
            loss = F.mse_loss(frame_model(xf), xf)
            frame_opt.zero_grad(set_to_none=True)
            loss.backward()
            frame_opt.step()

        row = {"fps": fps, "nerm_frames": m, "nerm_ms": 1e3 * timed(inr_step, dev, args.repeats),
               "nerm_peak_mb": peak_memory(inr_step, dev) / 2**20, "frame_frames": L,
               "frame_ms": 1e3 * timed(frame_step, dev, max(1, args.repeats // 2)),
               "frame_peak_mb": peak_memory(frame_step, dev) / 2**20}
        rows.append(row)
        print(f"| {fps} | {m} | {row['nerm_ms']:.1f} | {row['nerm_peak_mb']:.1f} | {L} | {row['frame_ms']:.0f} | "
              f"{row['frame_peak_mb']:.0f} |")
    ratio = rows[-1]["nerm_peak_mb"] / rows[0]["nerm_peak_mb"]
    print(f"NeRM peak memory 120 fps / 20 fps = {ratio:.3f} (target <= 1.1); "
          f"frame-space: {rows[-1]['frame_peak_mb'] / rows[0]['frame_peak_mb']:.1f}x")
    results["train"] = {"machine": machine(), "rows": rows, "nerm_ratio_120_20": ratio}


if __name__ == "__main__":
    args = parser.parse_args()
    torch.manual_seed(0)
    results = {"machine": machine(), "device": args.device}
    if args.only in ("all", "train"):
        bench_train(args, results)
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(results, f, indent=1)
    print(f"\nwrote {args.json}")
