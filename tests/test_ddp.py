"""Both trainers as torchrun runs them, 2 CPU processes (gloo): python -m pytest -q tests/test_ddp.py

Two processes get torchrun's environment (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT); on each a small
driver runs the real scripts (runpy) and saves that rank's weights and optimizer state after each. Checked:
(a) both ranks hold the same decoder, latent table and Adam moments, also after a fresh start where each
rank built its own (different) initial weights, so DDP's copy of rank 0's weights is tested; (b) one DDP
step, each rank drawing half of --batch, equals one single-process step on the two halves put together:
the gradient convention stated in train_inr.py (DDP averages; each latent row gets exactly its whole-batch
gradient). Adam's step barely depends on the gradient's scale, its moments do: comparing the moments is
what tells "averaged" from "summed over ranks".
"""
import json
import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import data
import nerm
import train_inr

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INR = ["--batch", "8", "--clip-len", "8", "--hidden", "32", "--blocks", "1", "--latent-dim", "16", "--eval-seqs",
       "2", "--fit-steps", "2", "--eval-every", "0", "--lr", "0.01", "--latent-lr", "0.1", "--device", "cpu"]
# no gradient clipping: a clipped step hides the loss scale (a sum over ranks instead of a mean would pass)
DIFFUSION = ["--batch", "8", "--d-model", "32", "--layers", "1", "--lr", "0.01", "--grad-clip", "0", "--device", "cpu"]
# what torchrun would run on each rank, given the same environment (RANK, WORLD_SIZE, MASTER_ADDR...):
# each command line in turn as __main__, saving this rank's state after command i into <dump>.<i>.rank<r>.
# One launch imports torch once per rank; each command gets its own port, so that a rank starting the next
# command while the other is still finishing (rank 0 evaluates and writes) cannot meet the old group.
DRIVER = """
import json, os, runpy, sys, torch
dump, commands, ports = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
for i, (argv, port) in enumerate(zip(commands, ports)):
    os.environ["MASTER_PORT"], sys.argv = str(port), argv
    env = runpy.run_path(argv[0], run_name="__main__")
    torch.save({"model": env["model"].state_dict(), "optimizer": env["optimizer"].state_dict()},
               f"{dump}.{i}.rank{os.environ['RANK']}")
"""


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.fixture(scope="module")
def runs(small_dataset, tmp_path_factory):
    """2 CPU processes (gloo): train_inr.py 2 steps from scratch, then 1 more step resumed; train_diffusion.py
    1 step from scratch on that stage 1, then 1 more resumed. Returns (stdout of rank 0 and rank 1, paths,
    states) with states[i] = [rank 0's, rank 1's] state after command i."""
    tmp = tmp_path_factory.mktemp("ddp")
    inr, diffusion, dump = str(tmp / "inr.pt"), str(tmp / "diffusion.pt"), str(tmp / "state")
    train_inr_py, train_diffusion_py = os.path.join(ROOT, "train_inr.py"), os.path.join(ROOT, "train_diffusion.py")
    # the first also evaluates after step 1 (rank 0 alone, with the decoder frozen meanwhile) before step 2
    commands = [[train_inr_py, "--data-dir", small_dataset, "--out", inr, "--steps", "2", *INR, "--eval-every", "1"],
                [train_inr_py, "--data-dir", small_dataset, "--out", inr, "--resume", "--steps", "3", *INR],
                [train_diffusion_py, "--inr", inr, "--out", diffusion, "--steps", "1", *DIFFUSION],
                [train_diffusion_py, "--inr", inr, "--out", diffusion, "--resume", "--steps", "2", *DIFFUSION]]
    (tmp / "driver.py").write_text(DRIVER)
    argv = [sys.executable, str(tmp / "driver.py"), dump, json.dumps(commands), json.dumps(free_ports(len(commands)))]
    procs, logs = [], [(tmp / f"out{k}.txt", tmp / f"err{k}.txt") for k in range(2)]
    for rank in range(2):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ROOT, "MASTER_ADDR": "127.0.0.1",
               "WORLD_SIZE": "2", "RANK": str(rank), "LOCAL_RANK": str(rank)}
        with open(logs[rank][0], "w") as out, open(logs[rank][1], "w") as err:
            procs.append(subprocess.Popen(argv, stdout=out, stderr=err, text=True, cwd=ROOT, env=env))
    try:
        codes = [p.wait(timeout=300) for p in procs]
    finally:
        for p in procs:  # a hung rank must not outlive the test
            if p.poll() is None:
                p.kill()
    stdout = [out.read_text() for out, _ in logs]
    assert codes == [0, 0], "\n".join(stdout + [err.read_text() for _, err in logs])
    states = [[torch.load(f"{dump}.{i}.rank{k}", weights_only=True) for k in range(2)] for i in range(len(commands))]
    return stdout, {"inr": inr, "diffusion": diffusion}, states


def assert_same_on_both_ranks(states):
    a, b = states
    assert a["model"].keys() == b["model"].keys()
    for name in a["model"]:
        assert torch.equal(a["model"][name], b["model"][name]), name
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys() and len(sa) > 0
    for i in sa:
        for key in sa[i]:
            assert torch.equal(sa[i][key], sb[i][key]), (i, key)


def assert_matches(state, model, optimizer, atol):
    """The DDP rank's weights and Adam moments equal the single-process reference's."""
    for name, v in model.state_dict().items():
        assert torch.allclose(state["model"][name], v, rtol=1e-5, atol=atol), name
    ref = optimizer.state_dict()["state"]
    for i in ref:
        for key in ("exp_avg", "exp_avg_sq"):
            # to 0.1% of the moment's scale: far above rounding (sums in another order), far below the factor 2
            # (or 1/2) that summing over the ranks instead of averaging, or a wrong loss scale, would give
            scale = ref[i][key].abs().max()
            assert torch.allclose(state["optimizer"]["state"][i][key], ref[i][key], rtol=0, atol=1e-3 * scale), (i, key)


def test_only_rank_0_reports_and_writes(runs):
    (stdout, stdout1), paths, states = runs
    assert stdout1 == ""
    assert stdout.count("held-out MRE") == 3 and stdout.count("resumed") == 2 and stdout.count("wrote") == 4
    assert "2 processes of 4 clips" in stdout and "2 processes of 4 latents" in stdout
    inr = torch.load(paths["inr"], weights_only=True)
    assert inr["step"] == 3 and torch.equal(inr["model"]["latents.mu"], states[1][0]["model"]["latents.mu"])
    assert torch.load(paths["diffusion"], weights_only=True)["step"] == 2


def test_ranks_stay_identical(runs):
    # after a fresh start too, where rank 1 seeded (so initialised) differently: DDP gave it rank 0's weights,
    # latent table included
    for states in runs[2]:
        assert_same_on_both_ranks(states)


def test_inr_ddp_step_equals_one_process_on_both_batches(runs, small_dataset):
    _, paths, states = runs
    start, after = states[0][0], states[1][0]  # rank 0 at step 2 and after the resumed step
    cfg = nerm.INRConfig(**torch.load(paths["inr"], weights_only=True)["model_args"])
    model = nerm.NeRM(cfg)
    model.load_state_dict(start["model"])
    optimizer = torch.optim.Adam([{"params": [model.latents.mu, model.latents.logvar]},
                                  {"params": model.decoder.parameters()}])
    optimizer.load_state_dict(start["optimizer"])
    for group, base in zip(optimizer.param_groups, (0.1, 0.01)):
        group["lr"] = train_inr.get_lr(2, base, 3)
    # rank r's 4 clips and latent noise (its seeds: seed + step + r), concatenated into one batch of 8
    train_set = data.load_dataset("synthetic", small_dataset, "train", "native")
    sampler = data.ClipSampler(train_set, train_set.mean, train_set.std)
    parts = []
    for rank in range(2):
        g = torch.Generator().manual_seed(0 + 2 + rank)
        with torch.random.fork_rng():  # seeds the global generator as rank r did; restored afterwards
            torch.manual_seed(0 + 2 + rank)
            x, t, s, idx = sampler.sample(torch.randint(0, len(sampler), (4,), generator=g), 8, generator=g)
            z, prior = model.latents(idx)  # (4, Z), (4,): this rank's reparameterization noise
        parts.append((z, t, sampler.duration[idx], s, x, prior))
    z, t, dur, s, x, prior = (torch.cat(p) for p in zip(*parts))
    loss = F.mse_loss(model.decoder(z, t, dur, s), x) + cfg.kl_weight / x[0].numel() * prior.mean()  # NeRM.forward's
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    moved = after["model"]["latents.mu"] - start["model"]["latents.mu"]
    assert moved.abs().max() > 1e-4  # the step is large next to the tolerance below
    assert_matches(after, model, optimizer, atol=1e-6)


def test_diffusion_ddp_step_equals_one_process_on_both_batches(runs):
    _, paths, states = runs
    start, after = states[2][0], states[3][0]  # rank 0 at step 1 and after the resumed step
    inr = torch.load(paths["inr"], weights_only=True)
    mu, std = inr["model"]["latents.mu"], (0.5 * inr["model"]["latents.logvar"]).exp()
    captions, duration = inr["sequences"]["captions"], inr["sequences"]["duration"].float()
    cfg = nerm.DiffusionConfig(**torch.load(paths["diffusion"], weights_only=True)["model_args"])
    model = nerm.LatentDiffusion(cfg)
    model.load_state_dict(start["model"])
    optimizer = torch.optim.AdamW(model.parameters(), weight_decay=0.0)
    optimizer.load_state_dict(start["optimizer"])
    optimizer.param_groups[0]["lr"] = train_inr.get_lr(1, 0.01, 2)
    losses = []
    for rank in range(2):  # train_diffusion.py's draw with rank r's seeds (seed + step + r)
        g = torch.Generator().manual_seed(0 + 1 + rank)
        idx = torch.randint(0, len(mu), (4,), generator=g)
        z0 = mu[idx] + std[idx] * torch.randn(mu[idx].shape, generator=g)
        pick = torch.randint(0, 1 << 30, (4,), generator=g)
        cond = [captions[i][p % len(captions[i])] for i, p in zip(idx.tolist(), pick.tolist())]
        with torch.random.fork_rng():  # noise levels, condition drops and dropout as rank r drew them
            torch.manual_seed(0 + 1 + rank)
            losses.append(model(z0, cond, duration[idx]))
    # a mean over equal halves: the loss of the 8 latents together (its noise levels and drops are drawn
    # inside forward, so the halves are computed apart, each with its rank's random stream)
    optimizer.zero_grad()
    ((losses[0] + losses[1]) / 2).backward()
    optimizer.step()
    moved = after["model"]["denoiser.z_out.weight"] - start["model"]["denoiser.z_out.weight"]
    assert moved.abs().max() > 1e-4  # the step is large next to the tolerance below
    assert_matches(after, model, optimizer, atol=1e-6)
