"""
Speed and memory of NeRM, measured on this machine; prints a markdown table per section and writes JSON.
The two long runs, never part of the default: the README quick start, and the paper's stage-1 ablations.

    python bench.py                      # decode, train and sample sections, ~2 min on 2 CPU cores
    python bench.py --only decode        # decoder frames/s at 20-240 fps, eager vs torch.compile, GFLOP/s vs matmul
    python bench.py --only train         # stage-1 step: time and peak memory by clip framerate
    python bench.py --only sample        # seconds per 10 s, 120 fps motion from text: DDPM-1000 and DDIM-50
    python bench.py --only quickstart    # the README quick start from scratch, timed step by step (~10 min)
    python bench.py --only memory --data-dir data/synthetic data/synthetic_20k   # training's peak memory by data size
    python bench.py --only ablations     # 6 stage-1 variants trained and evaluated, the paper's tables (~45 min)
    python bench.py --only ablations --ablation-steps 200 --ablation-dir /tmp/abl   # a tiny CPU run of the same
    python bench.py --device cuda --json runs/bench_gpu.json

Peak memory: on CUDA torch.cuda.max_memory_allocated; on the CPU the sum of the allocation and free
events the PyTorch profiler records during the step (tensors only, not the Python heap).
Decoder FLOPs are counted analytically from the config (matmuls only, 2 per multiply-add, the frames
asked for, not the padding); the ceiling is this machine's rate on one large dense fp32 matmul.
Scripts run as subprocesses (bench.py imports only the base layer, nerm.py and data.py).
"""
import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict

import torch
import torch.nn as nn
import torch.nn.functional as F

import checkpoint
import guard
import motion
import nerm

ROOT = os.path.dirname(os.path.abspath(__file__))   # where the scripts are
Int, Float, Path = guard.Int, guard.Float, guard.Path   # each flag's type states its range (guard.py)
parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--only", default="all", choices=["all", "decode", "train", "sample", "quickstart", "ablations", "memory"],
                    help="one section only (quickstart and ablations are never part of 'all': they train models)")
parser.add_argument("--device", type=guard.device, default="cuda" if torch.cuda.is_available() else "cpu", help="cpu | cuda")
parser.add_argument("--json", type=Path("any"), default="runs/bench.json", help="where to write the figures")
parser.add_argument("--force", action="store_true", help="replace a --json file that nerm wrote")
parser.add_argument("--batch", type=Int(1, 4096), default=32, help="sequences per training step")
parser.add_argument("--seconds", type=Float(0, 600, open=True), default=10.0, help="sequence duration for the frame-space model")
parser.add_argument("--hidden", type=Int(1, 8192), default=nerm.INRConfig.hidden, help="NeRM decoder width (the trained model's)")
parser.add_argument("--blocks", type=Int(0, 64), default=nerm.INRConfig.n_blocks, help="NeRM residual blocks (the trained model's)")
parser.add_argument("--repeats", type=Int(1, 1000), default=5, help="timed repetitions per figure")
parser.add_argument("--diffusion", type=Path("any"), default="runs/diffusion.pt",
                    help="stage-2 checkpoint for the sampling section (random weights when absent)")
parser.add_argument("--data", default="synthetic", choices=["synthetic", "humanml3d", "kit", "bvh"],
                    help="ablations: the dataset to train and evaluate on")
parser.add_argument("--data-dir", type=Path("any"), nargs="+", default=None,
                    help="ablations: its directory (default: data/<name>); memory: one or more embedded datasets")
parser.add_argument("--scripts", type=Path("folder"), default=None,
                    help="memory: the checkout whose train_inr.py is measured (default: this one; an older commit's to compare)")
parser.add_argument("--memory-steps", type=Int(1, 10**6), default=600, help="memory: training steps of each run")
parser.add_argument("--processes", type=Int(1, 64), nargs="+", default=[1, 2],
                    help="memory: the process counts to run (1: plain python; N > 1: torchrun, one thread each)")
parser.add_argument("--ablation-steps", type=Int(1, 10**7), default=3000, help="ablations: training steps of each variant")
parser.add_argument("--ablation-dir", type=Path("any"), default="runs/ablations",
                    help="ablations: where the checkpoints and eval.json go (finished variants are kept: a rerun resumes)")


def cpu_name():
    """The CPU's model name (/proc/cpuinfo on Linux; platform's answer elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine():
    if torch.cuda.is_available() and parser.parse_known_args()[0].device == "cuda":
        return torch.cuda.get_device_name()
    return f"{cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}"


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


def best_of(fn, device, repeats):
    """Fastest of `repeats` timed calls after one warm-up: the least disturbed by other processes."""
    fn()
    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return min(times)


def matmul_gflops(device, n=2048):
    """The ceiling: this machine's fp32 rate on one n x n x n dense matmul."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    return 2 * n**3 / best_of(lambda: a @ b, device, 5) / 1e9


def decoder_flops(cfg, frames, rows):
    """Matmul FLOPs (2 per multiply-add) of decoding `frames` (sequence, timestamp) pairs held in `rows` rows."""
    H, Z, fourier = cfg.hidden, cfg.latent_dim, 1 + 2 * (cfg.n_freqs + (cfg.n_hz if cfg.max_hz > 0 else 0))
    enc = {"none": 1, "sinusoidal": fourier, "codebook": fourier + cfg.codebook_dim}[cfg.time_enc]
    per_pair = (enc + 1) * H + 2 * cfg.n_blocks * H * H + H * cfg.feature_dim  # in_t, blocks, out
    if cfg.time_enc == "codebook":
        per_pair += fourier * cfg.codebook_dim + 2 * cfg.codebook_size * cfg.codebook_dim  # query, q k^T, attn v
    per_row = (1 + cfg.n_blocks) * Z * H  # in_z and each block's from_z, once per row of timestamps
    if cfg.gated:  # the detail head, and the envelope (its slow time: u and 6 octaves; its z part once per row)
        G = nerm.GATE_WIDTH
        per_pair += H * H + H * cfg.feature_dim + (1 + 2 * nerm.GATE_OCTAVES) * G + G * cfg.feature_dim
        per_row += Z * G
    return 2 * (frames * per_pair + rows * per_row)


def matmul_share(fn):
    """Fraction of the profiled CPU time spent in matmul kernels (aten mm/addmm/bmm, mkldnn linear)."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    mm = sum(e.self_cpu_time_total for e in events if e.key in ("aten::mm", "aten::addmm", "aten::bmm",
                                                                 "mkldnn::_linear_pointwise"))
    return mm / max(total, 1e-9)


def bench_decode(args, results):
    """Decoder frames/s at 20/60/120/240 fps for 1 and 32 motions of --seconds, eager vs torch.compile."""
    dev, D = args.device, 263
    cfg = nerm.INRConfig(feature_dim=D, hidden=args.hidden, n_blocks=args.blocks)
    decoder = nerm.INRDecoder(cfg).to(dev).eval()
    compiled = nerm.compile_decoder(decoder)
    ceiling = matmul_gflops(dev)
    a, w = torch.randn(8192, args.hidden, device=dev), torch.randn(args.hidden, args.hidden, device=dev)
    shaped = 2 * 8192 * args.hidden**2 / best_of(lambda: a @ w, dev, 10) / 1e9
    print(f"\n## Decoding throughput ({args.seconds:g} s motions; decoder {args.hidden} wide x {args.blocks} blocks, "
          f"{sum(p.numel() for p in decoder.parameters()) / 1e6:.2f} M params; chunks of 8192 pairs in rows of 256) "
          f"on {machine()}")
    print(f"dense fp32 matmul 2048^3: {ceiling:.0f} GFLOP/s (the ceiling); "
          f"decoder-shaped 8192x{args.hidden}x{args.hidden}: {shaped:.0f} GFLOP/s")
    print("| fps | batch | frames | eager frames/s | compiled frames/s | compiled / eager | eager GFLOP/s | "
          "compiled GFLOP/s | best / ceiling | first compiled call (s) | graphs compiled |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for B in (1, 32):
        for fps in (20, 60, 120, 240):
            T = nerm.num_frames(fps, args.seconds)
            z = torch.randn(B, cfg.latent_dim, device=dev)
            repeats = 3 if B * T > 20000 else 10
            before = compiled.compiles
            t0 = time.perf_counter()
            nerm.decode(compiled, z, fps, args.seconds)  # compiles any shape not seen yet
            first = time.perf_counter() - t0
            new = compiled.compiles - before
            t_eager = best_of(lambda: nerm.decode(decoder, z, fps, args.seconds), dev, repeats)
            t_comp = best_of(lambda: nerm.decode(compiled, z, fps, args.seconds), dev, repeats)
            assert compiled.compiles == before + new, "the timed calls recompiled"
            flops = decoder_flops(cfg, B * T, B * math.ceil(T / 256))
            row = {"fps": fps, "batch": B, "frames": B * T, "eager_fps": B * T / t_eager, "compiled_fps": B * T / t_comp,
                   "speedup": t_eager / t_comp, "eager_gflops": flops / t_eager / 1e9,
                   "compiled_gflops": flops / t_comp / 1e9, "first_call_s": first, "new_graphs": new}
            row["ceiling_ratio"] = max(row["eager_gflops"], row["compiled_gflops"]) / ceiling
            rows.append(row)
            print(f"| {fps} | {B} | {B * T:,} | {row['eager_fps']:,.0f} | {row['compiled_fps']:,.0f} | "
                  f"{row['speedup']:.2f} | {row['eager_gflops']:.1f} | {row['compiled_gflops']:.1f} | "
                  f"{row['ceiling_ratio']:.0%} | {first:.1f} | {new} |")
    # where the time goes, batch 32 at 120 fps
    B, T = 32, nerm.num_frames(120, args.seconds)
    z = torch.randn(B, cfg.latent_dim, device=dev)
    share = {"eager": matmul_share(lambda: nerm.decode(decoder, z, 120, args.seconds)),
             "compiled": matmul_share(lambda: nerm.decode(compiled, z, 120, args.seconds))}
    # bf16 autocast against fp32 (random weights, outputs of unit scale)
    ref = nerm.decode(decoder, z, 120, args.seconds)
    fp32_graphs, bf16 = compiled.compiles, {}
    for name, dec in (("eager", decoder), ("compiled", compiled)):
        out = nerm.decode(dec, z, 120, args.seconds, dtype=torch.bfloat16)
        sec = best_of(lambda: nerm.decode(dec, z, 120, args.seconds, dtype=torch.bfloat16), dev, 3)
        bf16[name] = {"frames_per_s": B * T / sec, "max_abs_err": (out - ref).abs().max().item(),
                      "rel_rms_err": ((out - ref).norm() / ref.norm()).item()}
    print(f"graphs compiled: {fp32_graphs} for the 8 fp32 settings (rows of 256 timestamps in groups of 1, 2, 4 ... 32), "
          f"{compiled.compiles - fp32_graphs} more for bf16 autocast")
    print(f"batch 32 @ 120 fps, share of time in matmul kernels: eager {share['eager']:.0%}, compiled {share['compiled']:.0%}")
    print(f"bf16 autocast, batch 32 @ 120 fps: eager {bf16['eager']['frames_per_s']:,.0f} frames/s, compiled "
          f"{bf16['compiled']['frames_per_s']:,.0f} frames/s; error vs fp32: max |d| {bf16['compiled']['max_abs_err']:.3g}, "
          f"relative RMS {bf16['compiled']['rel_rms_err']:.2%}")
    target = next(r for r in rows if r["batch"] == 32 and r["fps"] == 120)
    print(f"targets: batch 32 @ 120 fps at {target['ceiling_ratio']:.0%} of the matmul ceiling (>= 50%); "
          f"compiled / eager {target['speedup']:.2f} (>= 1.5)")
    results["decode"] = {"machine": machine(), "config": asdict(cfg), "matmul_gflops": ceiling,
                         "decoder_shaped_matmul_gflops": shaped, "rows": rows, "graphs_compiled_fp32": fp32_graphs,
                         "graphs_compiled_bf16": compiled.compiles - fp32_graphs,
                         "matmul_share": share, "bf16": bf16}


def bench_sample(args, results):
    """Seconds per sentence (batch 1) for a 10 s, 120 fps motion: DDPM-1000 and DDIM-50, denoising vs decoding."""
    dev, text, seconds, fps = args.device, "a person walks to the right slowly", 10.0, 120.0
    if os.path.exists(args.diffusion):
        model, decoder, ckpt = checkpoint.load_diffusion(args.diffusion, dev)
        skeleton, source = ckpt["inr"]["skeleton"], f"trained weights from {args.diffusion}"
    else:
        vocab = nerm.Vocab.build([text, "someone jumps twice", "a man waves his hand"])
        model = nerm.LatentDiffusion(nerm.DiffusionConfig(cond="text", vocab=vocab.to_list())).to(dev).eval()
        cfg = nerm.INRConfig(feature_dim=263, hidden=args.hidden, n_blocks=args.blocks)
        decoder = checkpoint.load_decoder({"model_args": asdict(cfg), "decoder": nerm.INRDecoder(cfg).state_dict()}, dev)
        skeleton, source = motion.skeleton_to_dict(motion.SMPL22), f"random weights ({args.diffusion} not found)"
    compiled, skeleton = nerm.compile_decoder(decoder), motion.resolve_skeleton(skeleton)

    def motion(z):  # what sample.py does with a latent: decode, velocities per frame, joints
        x = nerm.decode(decoder, z[None], fps, seconds)[0].cpu().numpy()
        return motion.features_to_joints(motion.features_per_frame(x, fps), skeleton)
    print(f"\n## Sampling: one {seconds:g} s motion at {fps:g} fps from text, batch 1, guidance {nerm.GUIDANCE} ({source}; "
          f"denoiser d={model.config.d_model} x {model.config.n_layers}) on {machine()}")
    g = torch.Generator(device=dev).manual_seed(0)
    sample = lambda sampler, steps=50: model.sample(1, text=text, duration=seconds, sampler=sampler, steps=steps,  # noqa: E731
                                                    generator=g)
    z = sample("ddim")[0]
    dec = {name: best_of(lambda: nerm.decode(d, z[None], fps, seconds), dev, args.repeats)
           for name, d in (("eager", decoder), ("compiled", compiled))}
    whole = best_of(lambda: motion(z), dev, args.repeats)  # INR + features -> joints
    joints = max(0.0, whole - dec["eager"])
    denoise = {"ddim": best_of(lambda: sample("ddim"), dev, args.repeats)}
    t0 = time.perf_counter()
    sample("ddpm")  # one run: 1000 steps x 2 (guidance) denoiser passes
    denoise["ddpm"] = time.perf_counter() - t0
    print("| sampler | steps (batch 2: cond + null) | denoising (s) | INR decoding, eager (s) | INR decoding, compiled (s) | "
          "features -> joints (s) | total (s) |")
    print("|---|---|---|---|---|---|---|")
    rows = []
    for sampler, steps in (("ddpm", model.config.timesteps), ("ddim", 50)):
        total = denoise[sampler] + min(dec.values()) + joints
        rows.append({"sampler": sampler, "steps": steps, "denoise_s": denoise[sampler], "decode_eager_s": dec["eager"],
                     "decode_compiled_s": dec["compiled"], "joints_s": joints, "total_s": total})
        print(f"| {sampler} | {steps} | {denoise[sampler]:.2f} | {dec['eager']:.3f} | {dec['compiled']:.3f} | "
              f"{joints:.3f} | {total:.2f} |")
    print(f"target: DDIM-50 sentence -> 10 s at 120 fps in {rows[1]['total_s']:.2f} s (<= 1 s); "
          f"compiled decoder graphs: {compiled.compiles}")
    results["sample"] = {"machine": machine(), "source": source, "rows": rows, "graphs_compiled": compiled.compiles}


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
        # a clip of m frames at rate fps (seconds): the time span shrinks as the rate grows, the work does not
        t = torch.rand(B, 1, device=dev) * 0.5 * args.seconds + torch.arange(m, device=dev) / fps
        s, dur = torch.full((B,), float(fps), device=dev), torch.full((B,), args.seconds, device=dev)
        x = torch.randn(B, m, D, device=dev)
        L = int(fps * args.seconds)
        xf = torch.randn(B, L, D, device=dev)

        def inr_step():
            _, loss, _, _ = model(idx, t, dur, s, x)
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


def run_script(script, *flags, quiet=False):
    """python <script> <flags> in a subprocess -> its standard output (quiet: kept back, else shown as it
    comes); on failure, exit with its error (quiet: the end of its output is shown then)."""
    r = subprocess.run([sys.executable, os.path.join(ROOT, script), *flags], capture_output=quiet, text=True)
    if r.returncode != 0:
        tail = "\n" + "\n".join((r.stdout + r.stderr).splitlines()[-20:]) if quiet else " (above)"
        sys.exit(f"error: python {script} {' '.join(flags)} failed{tail}")
    return r.stdout or ""


def bench_quickstart(args, results):
    """Wall time of each README quick-start command, from a fresh dataset directory to eval.py."""
    tmp = tempfile.mkdtemp(prefix="nerm_quickstart_")
    d, inr, dif = os.path.join(tmp, "synthetic"), os.path.join(tmp, "inr.pt"), os.path.join(tmp, "diffusion.pt")
    # the README's commands, with every file they write (dataset, checkpoints, samples, evaluator) in tmp
    steps = [("train_inr.py (incl. writing the dataset)", ["train_inr.py", "--data-dir", d, "--out", inr]),
             ("train_diffusion.py", ["train_diffusion.py", "--inr", inr, "--out", dif]),
             ("sample.py, 60 fps", ["sample.py", "--ckpt", dif, "--text", "a person walks to the right slowly",
                                    "--fps", "60", "--out", os.path.join(tmp, "samples")]),
             ("eval.py (incl. training the evaluator)", ["eval.py", "--ckpt", dif, "--data-dir", d,
                                                         "--evaluator", os.path.join(tmp, "evaluator.pt")])]
    print(f"\n## Quick start from scratch on {machine()} (in {tmp})")
    print("| command | wall time (s) |\n|---|---|")
    rows = []
    try:
        for name, cmd in steps:
            t0 = time.perf_counter()
            out = run_script(*cmd, quiet=True)
            rows.append({"command": name, "seconds": time.perf_counter() - t0, "stdout": out})
            print(f"| {name} | {rows[-1]['seconds']:.0f} |", flush=True)
    finally:  # the dataset and checkpoints are ~1 GB: leave nothing in the temp dir
        shutil.rmtree(tmp, ignore_errors=True)
    total = sum(r["seconds"] for r in rows)
    print(f"| total | {total:.0f} |")
    for r in rows:   # what each command printed: the README's quick-start blocks
        print(f"\n### {r['command']}\n{r['stdout'].rstrip()}")
    results["quickstart"] = {"machine": machine(), "rows": rows, "total_s": total}


def tree_rss(pid):
    """Resident memory (bytes) of process pid and all its descendants, from /proc (Linux)."""
    kids = {}
    for p in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{p}/stat") as f:
                kids.setdefault(int(f.read().rsplit(")", 1)[1].split()[1]), []).append(int(p))
        except OSError:
            continue
    total, todo = 0, [pid]
    while todo:
        q = todo.pop()
        todo += kids.get(q, [])
        try:
            with open(f"/proc/{q}/status") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) * 1024
        except (OSError, StopIteration):
            pass
    return total


def peak_rss(cmd, env):
    """Run cmd -> (its output, the peak over its run of the summed resident memory of it and its descendants,
    polled every 50 ms, bytes)."""
    with tempfile.TemporaryFile("w+") as out:
        p, peak = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, text=True, env=env), 0
        while p.poll() is None:
            peak = max(peak, tree_rss(p.pid))
            time.sleep(0.05)
        out.seek(0)
        text = out.read()
    if p.returncode:
        sys.exit(f"error: {' '.join(cmd)} failed:\n" + "\n".join(text.splitlines()[-15:]))
    return text, peak


def bench_memory(args, results):
    """Peak resident memory and steps/s of train_inr.py (one process, and torchrun with two of one thread each)
    on each embedded dataset of --data-dir (made with train_inr.py --num-synthetic N --data-dir DIR)."""
    scripts = args.scripts or ROOT
    rows, tmp = [], tempfile.mkdtemp(prefix="nerm_memory_")
    flags = ["--steps", str(args.memory_steps), "--eval-every", "0", "--eval-seqs", "4", "--fit-steps", "5",
             "--save-every", str(10**6), "--device", "cpu"]
    print(f"\n## train_inr.py peak memory on {machine()} ({scripts}, {args.memory_steps} steps)")
    print("| data | processes | train frames | peak RSS, all processes (GB) | steps/s | store built (s) |\n|---|---|---|---|---|---|")
    try:
        for k, d in enumerate(args.data_dir or [os.path.join("data", "synthetic")]):
            for n in args.processes:
                launch = [sys.executable] + (["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}"]
                                             if n > 1 else [])
                out = os.path.join(tmp, f"inr_{k}_{n}.pt")     # one per run: tmp (all of them) goes at the end
                env = {**os.environ, "OMP_NUM_THREADS": "1" if n > 1 else os.environ.get("OMP_NUM_THREADS", "2")}
                text, peak = peak_rss(launch + [os.path.join(scripts, "train_inr.py"), "--data-dir", d, "--out", out,
                                                *flags], env)
                trained = [line.split() for line in text.splitlines() if line.startswith("trained steps")][-1]
                frames = [line for line in text.splitlines() if "train sequences," in line][-1].split(", ")[1]
                built = [float(line.rsplit(" in ", 1)[1].split()[0]) for line in text.splitlines() if line.startswith("stored ")]
                rows.append({"data": d, "processes": n, "frames": frames, "peak_rss_gb": peak / 1e9,
                             "steps_per_s": args.memory_steps / float(trained[4]), "store_build_s": sum(built)})
                r = rows[-1]
                print(f"| {d} | {n} | {frames} | {r['peak_rss_gb']:.2f} | {r['steps_per_s']:.1f} | "
                      f"{r['store_build_s']:.0f} |", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    results["memory"] = {"machine": machine(), "scripts": scripts, "rows": rows}


# the paper's stage-1 ablations: (name, train_inr.py flags)
VARIANTS = [("codebook", []), ("sinusoidal", ["--time-enc", "sinusoidal"]), ("none", ["--time-enc", "none"]),
            ("no_variational", ["--no-variational"]), ("no_time_norm", ["--no-time-norm"]),
            ("fixed", ["--fps-mode", "fixed"])]


def bench_ablations(args, results):
    """Train the six stage-1 variants (train_inr.py; a finished one is skipped, an unfinished one resumed),
    measure them with eval.py --mre --by-fps, and print the paper's tables from eval.py's JSON."""
    t0, paths = time.time(), {}
    data_flags = ["--data", args.data] + (["--data-dir", args.data_dir[0]] if args.data_dir else [])
    for name, flags in VARIANTS:
        paths[name] = path = os.path.join(args.ablation_dir, name + ".pt")
        if os.path.exists(path) and checkpoint.load(path, stage=1)["step"] >= args.ablation_steps:
            print(f"{path}: trained, skipped")
            continue
        cmd = ["train_inr.py", *data_flags, "--steps", str(args.ablation_steps), "--eval-every", "0",
               "--eval-seqs", "4", "--out", path, *flags] + (["--resume"] if os.path.exists(path) else [])
        print("$ python " + " ".join(cmd), flush=True)
        t1 = time.time()
        run_script(*cmd)
        print(f"  {name}: {time.time() - t1:.0f} s", flush=True)
    t1, out = time.time(), os.path.join(args.ablation_dir, "eval.json")
    cmd = ["eval.py", *data_flags, "--mre", *paths.values(), "--by-fps", *paths.values(), "--json", out, "--force"]
    print("$ python " + " ".join(cmd), flush=True)
    run_script(*cmd)
    with open(out) as f:
        ev = json.load(f)
    print(f"evaluated in {time.time() - t1:.0f} s: MRE (m) on {ev['mre'][paths['codebook']]['sequences']} val "
          f"sequences; detail-FD mean ± its 95% t-interval")

    def m(name, f, kind="mre"):
        return f"{ev['mre'][paths[name]][kind][str(f)]:.4f}"

    def c(name, f, row="fit", key="detail_fd"):  # a variant's row, or one of the real floors
        cell = ev[key][f"{paths[name]} ({row})" if name in paths else name][str(f)]
        return f"{round(cell['mean'], 3) + 0.0:.3f} ± {cell['ci']:.3f}"

    def table(title, head, lines):
        print(f"\n{title}\n\n| " + " | ".join(head) + " |\n|" + "---|" * len(head))
        for line in lines:
            print("| " + " | ".join(line) + " |")

    eval_fps = (20, 40, 60, 100, 120)
    table("Time encoding (native rates, variational, time normalized)",
          ["time encoding", "MRE@20", "MRE@120", "detail-FD@20", "detail-FD@120"],
          [[n, m(n, 20), m(n, 120), c(n, 20), c(n, 120)] for n in ("none", "sinusoidal", "codebook")])
    table("Variational vs the plain auto-decoder (fit: val latents fitted; prior: z from the training latents' Gaussian)",
          ["latent", "MRE@20", "MRE@120", "detail-FD@20 fit", "detail-FD@120 fit", "detail-FD@20 prior", "detail-FD@120 prior"],
          [[label, m(n, 20), m(n, 120), c(n, 20), c(n, 120), c(n, 20, "prior"), c(n, 120, "prior")]
           for label, n in (("variational", "codebook"), ("plain (--no-variational)", "no_variational"))])
    table("Time normalization", ["time", "MRE@20", "MRE@120", "detail-FD@20", "detail-FD@120"],
          [[label, m(n, 20), m(n, 120), c(n, 20), c(n, 120)]
           for label, n in (("normalized to [0, 1]", "codebook"), ("seconds (--no-time-norm)", "no_time_norm"))])
    both = (("native", "codebook"), ("fixed 20 fps", "fixed"))
    table("Framerates: native-rate training vs every sequence resampled to 20 fps first, by the fps decoded at",
          ["training", "figure"] + [f"@{f}" for f in eval_fps],
          [[label, name] + [m(n, f, kind) for f in eval_fps] for kind, name in (("mre", "MRE"), ("local", "local MRE"))
           for label, n in both]
          + [[label, f"detail-FD {row}"] + [c(n, f, row) for f in eval_fps] for row in ("fit", "prior", "fit @20 + linear")
             for label, n in both]
          + [[label, "detail-FD"] + [c(label, f) for f in eval_fps] for label in ("real via 20 fps, linear", "real (test)")])
    print(f"\nablations: {time.time() - t0:.0f} s in all ({args.ablation_steps} steps per variant)")
    results["ablations"] = {"machine": machine(), "steps": args.ablation_steps, "seconds": time.time() - t0, **ev}


if __name__ == "__main__":
    guard.report_errors()          # a user's mistake or a failing disk: one line, no traceback
    args = parser.parse_args()
    guard.claim(args.json, force=args.force, inputs=[args.diffusion])   # before any minutes of work
    torch.manual_seed(0)
    results = {"machine": machine(), "device": args.device}
    if args.only in ("all", "decode"):
        bench_decode(args, results)
    if args.only in ("all", "train"):
        bench_train(args, results)
    if args.only in ("all", "sample"):
        bench_sample(args, results)
    if args.only == "quickstart":
        bench_quickstart(args, results)
    if args.only == "ablations":
        bench_ablations(args, results)
    if args.only == "memory":
        bench_memory(args, results)
    guard.write_text(args.json, json.dumps(results, indent=1))
    print(f"\nwrote {args.json}")
