"""
Stage 2 (latent DDPM) tests: CPU, offline, a few seconds in all.

    python -m pytest tests/test_diffusion.py -q
"""
import io
import os
import subprocess
import sys
from dataclasses import asdict

import numpy as np
import pytest
import torch

import motion
import nerm
from nerm import DiffusionConfig, LatentDiffusion, Vocab, ddpm_schedule

CAPTIONS = ["A person walks forward, then turns left.", "someone jumps twice!", "a man waves his right hand"]
TINY = dict(latent_dim=32, d_model=32, n_layers=2, n_heads=2, latent_tokens=4, text_layers=1, dropout=0.0)


@pytest.fixture(autouse=True)
def one_thread():
    """These models are tiny: one thread is as fast, and stays fast on a busy machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny(cond, **kw):
    """A small model whose read-out is NOT zero (a fresh one's is, so its eps would ignore k, the duration and
    the condition, and every test of how the denoiser uses them would pass vacuously)."""
    torch.manual_seed(0)
    cfg = DiffusionConfig(cond=cond, vocab=Vocab.build(CAPTIONS).to_list(), num_actions=4, **{**TINY, **kw})
    model = LatentDiffusion(cfg).eval()
    with torch.no_grad():
        model.denoiser.z_out.weight.normal_(0, 0.05)
        model.denoiser.z_out.bias.normal_(0, 0.05)
    return model


def np_alpha_bar(beta1=1e-4, beta2=0.02, T=1000):
    return np.cumprod(1 - np.linspace(beta1, beta2, T))  # independent of torch, float64


# ---------------------------------------------------------------------------------------------- schedule


def test_schedule_is_float64_and_matches_cumprod():
    s = ddpm_schedule(1e-4, 0.02, 1000)
    assert all(v.dtype == torch.float64 and v.shape == (1000,) for v in s.values())
    assert s["betas"][0].item() == pytest.approx(1e-4) and s["betas"][-1].item() == pytest.approx(0.02)
    np.testing.assert_allclose(s["alpha_bar"].numpy(), np_alpha_bar(), rtol=1e-12)
    assert s["posterior_variance"][0].item() == 0.0  # the last reverse step adds no noise


def test_posterior_mean_equals_algorithm2_mean():
    # Algorithm 2's mean (1/sqrt(a_k)) (z_k - b_k / sqrt(1 - abar_k) eps) must equal the posterior mean
    # coef1 z0_hat + coef2 z_k with z0_hat = (z_k - sqrt(1 - abar_k) eps) / sqrt(abar_k) (Ho et al. eq. 7, 11)
    s = ddpm_schedule()
    z, eps = torch.randn(2, 1000, dtype=torch.float64)
    alg2 = (z - s["betas"] / s["sqrt_one_minus_alpha_bar"] * eps) * s["sqrt_recip_alphas"]
    z0 = (z - s["sqrt_one_minus_alpha_bar"] * eps) / s["sqrt_alpha_bar"]
    post = s["posterior_mean_coef1"] * z0 + s["posterior_mean_coef2"] * z
    np.testing.assert_allclose(alg2.numpy(), post.numpy(), rtol=1e-9, atol=1e-9)


def test_q_sample_closed_form():
    model = tiny("none")
    z0, noise = torch.randn(2, 6, 32)
    k = torch.tensor([0, 1, 10, 500, 998, 999])
    abar = np_alpha_bar()[k.numpy()][:, None]
    want = np.sqrt(abar) * z0.double().numpy() + np.sqrt(1 - abar) * noise.double().numpy()
    np.testing.assert_allclose(model.q_sample(z0, k, noise).numpy(), want, rtol=1e-5, atol=1e-5)

# ---------------------------------------------------------------------------------------------- guidance


def count_denoiser(model):
    """Wrap the denoiser's forward: record the rows of each call."""
    rows, forward = [], model.denoiser.forward
    model.denoiser.forward = lambda z, *a: rows.append(z.shape[0]) or forward(z, *a)
    return rows


@pytest.mark.parametrize("cond", ["text", "action"])
def test_guidance(cond):
    model = tiny(cond)
    B = 3
    z, k, dur = torch.randn(B, 32), torch.tensor([5, 400, 999]), torch.tensor([1.0, 4.0, 9.5])
    c, mask = model.condition(B, text=CAPTIONS, action=torch.arange(B))
    with torch.no_grad():
        eps_c = model.denoiser(z, k, c, mask, dur)
        eps_u = model.denoiser(z, k, *model.drop_condition(c, mask, torch.ones(B, dtype=torch.bool)), dur)
        rows = count_denoiser(model)
        # r = 1: exactly the conditional prediction, in one forward pass of B rows
        assert torch.equal(model.guided_eps(z, k, c, mask, dur, 1.0), eps_c) and rows == [B]
        rows.clear()
        # r = 3: uncond + r (cond - uncond), in one batched pass of 2B rows
        got = model.guided_eps(z, k, c, mask, dur, 3.0)
        assert rows == [2 * B]
        assert (eps_c - eps_u).abs().max() > 1e-2   # the condition matters, so the formula below is a real check
        torch.testing.assert_close(got, eps_u + 3.0 * (eps_c - eps_u), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cond", ["text", "action"])
def test_every_input_of_the_denoiser_changes_eps(cond):
    """eps_phi(z_k, k, c, duration) reads each of its inputs: changing only one changes the prediction."""
    model = tiny(cond)
    z, k, dur = torch.randn(2, 32), torch.tensor([100, 100]), torch.tensor([3.0, 3.0])
    c, mask = model.condition(2, text=CAPTIONS[:2], action=torch.arange(2))
    with torch.no_grad():
        eps = model.denoiser(z, k, c, mask, dur)
        assert not torch.allclose(eps[0], eps[1], atol=1e-3)                              # condition (and z)
        z1 = z[:1].expand(2, -1)
        same_z = model.denoiser(z1, k, c, mask, dur)
        assert (same_z[0] - same_z[1]).abs().max() > 1e-3                                # condition alone
        # the step k, in the learned part: the Gaussian skip sqrt(1 - abar_k) z_k alone would change with k too
        learned = lambda k_: model.denoiser(z, k_, c, mask, dur) - model.denoiser.skip[k_, None] * z  # noqa: E731
        assert (learned(k + 500) - learned(k)).abs().max() > 1e-3
        assert (model.denoiser(z, k, c, mask, dur * 2) - eps).abs().max() > 1e-3         # the duration
        null, null_mask = model.drop_condition(c, mask, torch.ones(2, dtype=torch.bool))
        assert (model.denoiser(z, k, null, null_mask, dur) - eps).abs().max() > 1e-3     # null vs condition


def test_text_padding_mask_is_used():
    """Padding tokens are masked: unmasking them (as a model that ignored the mask would) changes eps."""
    model = tiny("text")
    z, k, dur = torch.randn(2, 32), torch.tensor([300, 300]), torch.tensor([3.0, 3.0])
    c, mask = model.encode_text(CAPTIONS[1:2] + CAPTIONS[:1])                 # the first row is padded
    assert mask[0].any() and not mask[1].any()
    with torch.no_grad():
        eps = model.denoiser(z, k, c, mask, dur)
        unmasked = model.denoiser(z, k, c, torch.zeros_like(mask), dur)
    assert (eps[0] - unmasked[0]).abs().max() > 1e-3 and torch.allclose(eps[1], unmasked[1], atol=1e-6)


def test_unconditional_model_ignores_guidance():
    model = tiny("none")
    rows = count_denoiser(model)
    model.sample(2, guidance=5.0, steps=7)
    assert rows == [2] * 7

# ---------------------------------------------------------------------------------------------- samplers
# The samplers are tested with the exact eps of a known data distribution instead of a network: a
# correct sampler must then reproduce that distribution. For data N(mu, s^2 I),
# z_k ~ N(sqrt(abar) mu, (abar s^2 + 1 - abar) I) and the optimal
# eps = sqrt(1 - abar) (z_k - sqrt(abar) mu) / (abar s^2 + 1 - abar).
# s = 0 (a single point z*) must give z* exactly; s > 0 checks the mean and the spread, which a wrong
# coefficient (off-by-one abar, missing sqrt(alpha), wrong noise scale) moves. DDIM with eta = 0 is not
# the ancestral sampler step for step, so the two are compared on the distribution they produce.


def gaussian_eps(model, mu, s):
    def eps_fn(z, k):
        abar = model.alpha_bar[k][:, None]
        return (1 - abar).sqrt() * (z - abar.sqrt() * mu) / (abar * s ** 2 + 1 - abar)
    return eps_fn


def run_sampler(model, sampler, eps_fn, zT, g):
    if sampler == "ddpm":
        return model.ddpm_sample(eps_fn, zT, g)
    return model.ddim_sample(eps_fn, zT, steps=int(sampler[4:]))


def ddim_spread(steps, s):
    """std of DDIM's output / s for N(mu, s^2) data, in float64: each eta = 0 step with the exact eps is
    z' = g z + const, g = sqrt(abar'/abar) (1 - sqrt(1 - abar) c) + sqrt(1 - abar') c."""
    abar = np_alpha_bar()
    ks = np.round(np.linspace(999, 0, steps)).astype(int)
    gain = 1.0
    for k, k_prev in zip(ks, list(ks[1:]) + [-1]):
        a, a_prev = abar[k], (abar[k_prev] if k_prev >= 0 else 1.0)
        c = np.sqrt(1 - a) / (a * s ** 2 + 1 - a)
        gain *= np.sqrt(a_prev / a) * (1 - np.sqrt(1 - a) * c) + np.sqrt(1 - a_prev) * c
    return gain / s  # z_T has std 1


@pytest.mark.parametrize("sampler", ["ddpm", "ddim50", "ddim1000"])
def test_samplers_recover_a_point(sampler):
    model, g = tiny("none"), torch.Generator().manual_seed(0)
    z_star = torch.randn(5, 32) * 2
    zT = torch.randn(5, 32, generator=g)
    z = run_sampler(model, sampler, gaussian_eps(model, z_star, 0.0), zT, g)
    torch.testing.assert_close(z, z_star, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim1000", "ddim50"])
def test_samplers_recover_a_gaussian(sampler):
    model, g = tiny("none"), torch.Generator().manual_seed(0)
    mu, s, n = torch.linspace(-2, 2, 32), 0.5, 4000
    zT = torch.randn(n, 32, generator=g)
    z = run_sampler(model, sampler, gaussian_eps(model, mu, s), zT, g)
    # Ancestral DDPM samples the data distribution. DDIM (eta = 0) is a first-order ODE solver: it
    # narrows the spread, by 5.6% with 50 steps (over the tolerance) and 0.3% with 1000: see ddim_spread
    spread = 1.0 if sampler == "ddpm" else ddim_spread(int(sampler[4:]), s)
    # 4000 x 32 draws: the sample mean is within ~0.01 of mu, the overall std within ~0.5% of s
    assert (z.mean(0) - mu).abs().max() < 0.05
    assert abs((z - mu).std().item() / (s * spread) - 1) < 0.02


def ddpm_spread(s):
    """std of ancestral DDPM's output / s for N(mu, s^2) data with the exact eps, in float64. Each step of
    Algorithm 2 is then z' = g z + const + sigma_k n, g = (1 - beta_k c / sqrt(1 - abar_k)) / sqrt(alpha_k) with c
    as in ddim_spread, sigma_k^2 = beta_tilde_k = beta_k (1 - abar_{k-1}) / (1 - abar_k) and no noise at k = 0: the
    variance goes Var' = g^2 Var + sigma_k^2 from Var(z_T) = 1. It is below s^2 for narrow data (0.82 s at
    s = 0.02): beta_tilde is the reverse variance given z_0, and leaves out the spread of z_0 given z_k."""
    betas, abar = np.linspace(1e-4, 0.02, 1000), np_alpha_bar()
    abar_prev = np.concatenate([[1.0], abar[:-1]])
    var = 1.0
    for k in reversed(range(1000)):
        c = np.sqrt(1 - abar[k]) / (abar[k] * s ** 2 + 1 - abar[k])
        g = (1 - betas[k] / np.sqrt(1 - abar[k]) * c) / np.sqrt(1 - betas[k])
        var = g * g * var + (betas[k] * (1 - abar_prev[k]) / (1 - abar[k]) if k > 0 else 0.0)
    return np.sqrt(var) / s


@pytest.mark.parametrize("s", [0.02, 0.05])
def test_ddpm_variance_on_narrow_data(s):
    """On data far narrower than the noise every step's variance shows: N(mu, s^2) with s = 0.02 is 1/25 of
    test_samplers_recover_a_gaussian's spread, and the last steps' sigma_k (0.01 for beta_1 at k = 0) is half
    of it. The sample spread must be ddpm_spread(s), the closed form of Algorithm 2 with sigma_k^2 = beta_tilde_k;
    at s = 0.02, noise at the last step, beta_k for beta_tilde_k, the noise of step k - 1 at step k or none at
    k = 1 each move it by 6% or more, 30 times the standard error of 4000 x 32 draws (0.2%)."""
    model, g = tiny("none"), torch.Generator().manual_seed(0)
    mu, n = torch.linspace(-2, 2, 32), 4000
    z = model.ddpm_sample(gaussian_eps(model, mu, s), torch.randn(n, 32, generator=g), g).double()
    spread = ddpm_spread(s)
    assert (z.mean(0) - mu).abs().max() < 5 * s * spread / np.sqrt(n)          # 5 standard errors of a mean
    assert abs((z - mu).std().item() / (s * spread) - 1) < 0.015


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_seeds_repeat(sampler):
    model = tiny("action", timesteps=100)  # ancestral sampling runs all T steps
    draw = lambda seed: model.sample(3, action=1, guidance=1.0, sampler=sampler,  # noqa: E731
                                     generator=torch.Generator().manual_seed(seed))
    a, b, c = draw(0), draw(0), draw(1)
    assert a.shape == (3, 32) and torch.equal(a, b) and not torch.allclose(a, c)

# ---------------------------------------------------------------------------------------------- text


def test_vocab():
    v = Vocab.build(CAPTIONS + ["a person doesn't walk"])
    assert v.words[:2] == ["<pad>", "<unk>"] and v.words[2] == "a"  # most frequent first
    ids = v.encode(["Walks, FORWARD!!", "a zebra walks forward slowly"], max_words=32)
    assert ids.shape == (2, 5) and ids[0, 2:].tolist() == [Vocab.PAD] * 3
    words = lambda row: " ".join(v.words[i] for i in row.tolist() if i != Vocab.PAD)  # noqa: E731
    assert words(ids[0]) == "walks forward"
    assert words(ids[1]) == "a <unk> walks forward <unk>"
    assert words(v.encode(["doesn't"])[0]) == "doesnt"
    assert v.encode(["a b c d e f"], max_words=4).shape == (1, 4)
    for empty in ["", "   ", "?!.,"]:
        with pytest.raises(ValueError, match="empty text"):
            v.encode(["a person walks", empty])
    # a checkpoint keeps the vocabulary as a plain list of strings
    buf = io.BytesIO()
    torch.save({"vocab": v.to_list()}, buf)
    buf.seek(0)
    w = Vocab(torch.load(buf, weights_only=True)["vocab"])
    assert torch.equal(w.encode(CAPTIONS), v.encode(CAPTIONS))


def test_text_padding_does_not_change_the_prediction():
    model = tiny("text")
    z, k, dur = torch.randn(1, 32), torch.tensor([300]), torch.tensor([3.0])
    with torch.no_grad():
        alone = model.denoiser(z, k, *model.encode_text(CAPTIONS[1:2]), dur)      # 3 words, no padding
        c, mask = model.encode_text(CAPTIONS[1:2] + CAPTIONS[:1])                 # padded to 7 words
        batched = model.denoiser(z.expand(2, -1), k.expand(2), c, mask, dur.expand(2))[:1]
    torch.testing.assert_close(alone, batched, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="empty text"):
        model.sample(1, text="...")

# ---------------------------------------------------------------------------------------------- training


def test_overfits_four_action_latents():
    model = tiny("action", d_model=64).train()
    z_class = torch.randn(4, 32) * 3 + 5                  # far from N(0, I): exercises set_latent_stats
    model.set_latent_stats(z_class)
    steps = 500
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1 - i / steps)
    for _ in range(steps):
        a = torch.randint(0, 4, (64,))
        loss = model(z_class[a], a, torch.full((64,), 2.0))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    labels = torch.arange(4).repeat_interleave(4)         # 4 samples per class
    for sampler in ("ddim", "ddpm"):
        g = torch.Generator().manual_seed(0)
        z = model.sample(16, action=labels, duration=2.0, guidance=2.0, sampler=sampler, generator=g)
        dist = torch.cdist(z, z_class)                    # (16, 4)
        assert torch.equal(dist.argmin(1), labels), sampler
        # typical samples sit far closer to their class latent than the class latents to each other (~20):
        # medians ~0.06 (DDPM) and ~0.1 (DDIM) of it over 12 data seeds. A few seconds of training leave
        # DDIM's deterministic paths from the noise's tails less exact: the worst samples are not tested
        assert dist.min(1).values.median() < 0.25 * torch.pdist(z_class).min(), sampler


@pytest.mark.parametrize("cond", ["text", "action", "none"])
def test_rebuild_from_checkpoint(cond):
    model = tiny(cond).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    z0 = torch.randn(3, 32)
    c = {"text": CAPTIONS, "action": torch.arange(3), "none": None}[cond]
    model(z0, c, torch.tensor([1.0, 2.0, 3.0])).backward()
    opt.step()
    model.set_latent_stats(z0)
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "model_args": asdict(model.config)}, buf)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    rebuilt = LatentDiffusion(DiffusionConfig(**ckpt["model_args"]))
    rebuilt.load_state_dict(ckpt["model"])
    draw = lambda m: m.sample(2, text=CAPTIONS[0], action=2, duration=2.5,  # noqa: E731
                              steps=10, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(draw(rebuilt), draw(model), rtol=0, atol=0)
    assert model.training  # sample() restores the training flag


def test_fresh_denoiser_is_the_gaussian_optimum():
    """With the read-out at zero, eps_phi(z_k, k) = sqrt(1 - abar_k) z_k: the optimal eps for z_0 ~ N(0, I)."""
    model = LatentDiffusion(DiffusionConfig(cond="none", latent_dim=16, latent_tokens=4, d_model=32, n_layers=1))
    z, k = torch.randn(5, 16), torch.tensor([0, 10, 500, 900, 999])
    cond, mask = model.condition(5)
    eps = model.denoiser(z, k, cond, mask, torch.full((5,), 3.0))
    assert torch.allclose(eps, model.sqrt_one_minus_alpha_bar[k, None] * z, atol=1e-6)


def test_latent_stats_include_the_posterior_spread():
    """set_latent_stats(mu, sigma) standardises what stage 2 trains on, draws mu + sigma * eps: its z_std
    matches the spread of many such draws (about the per-dimension mean), and sigma = None gives mu's alone."""
    g = torch.Generator().manual_seed(0)
    mu, sigma = torch.randn(64, 8, generator=g) * 0.3 + 1.0, torch.rand(64, 8, generator=g) * 0.5
    model = LatentDiffusion(DiffusionConfig(latent_dim=8, cond="none"))
    model.set_latent_stats(mu, sigma)
    draws = mu + sigma * torch.randn(4000, 64, 8, generator=g)           # (draws, N, Z)
    torch.testing.assert_close(model.z_mean, mu.mean(0))
    assert model.z_std.item() == pytest.approx((draws - mu.mean(0)).pow(2).mean().sqrt().item(), rel=5e-3)
    model.set_latent_stats(mu)
    assert model.z_std.item() == pytest.approx((mu - mu.mean(0)).pow(2).mean().sqrt().item(), rel=1e-6)


def stage1_checkpoint(path, mu, logvar):
    """A stage-1 checkpoint as train_inr.py writes it, around a variational latent table with mu, logvar (N, Z)."""
    N, Z = mu.shape
    cfg = nerm.INRConfig(num_sequences=N, latent_dim=Z, hidden=8, n_blocks=1, time_enc="sinusoidal")
    model = nerm.NeRM(cfg)
    with torch.no_grad():
        model.latents.mu.copy_(mu)
        model.latents.logvar.copy_(logvar)
    sequences = {"names": [f"s{i}" for i in range(N)], "fps": torch.full((N,), 20.0, dtype=torch.float64),
                 "duration": torch.linspace(2.0, 5.0, N, dtype=torch.float64),
                 "captions": [["a person walks"]] * N, "actions": [""] * N}
    # torch.save, not checkpoint.save: this file is the test's input, not a run's claimed output
    torch.save({"stage": 1, "model": model.state_dict(), "optimizer": {}, "model_args": asdict(cfg), "args": {},
                "step": 0, "history": [], "skeleton": motion.skeleton_to_dict(motion.SMPL22), "sequences": sequences}, path)


def test_train_diffusion_standardises_by_the_posterior_draws(tmp_path):
    """train_diffusion.py's z_mean / z_std, from a variational stage-1 checkpoint with known mu and logvar, against
    numpy: z_mean = the per-dimension mean of mu, z_std^2 = the mean squared deviation of mu from it plus the
    mean posterior variance mean(exp(logvar)) (the draws mu + exp(logvar / 2) eps it trains on). exp(logvar)
    spans 0.05 .. 1, so passing exp(logvar) or logvar itself as sigma, or no sigma, is far off. (How
    set_latent_stats combines them is test_latent_stats_include_the_posterior_spread; this is what reaches it.)"""
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(12, 8, generator=g) * 0.5 + torch.linspace(-1, 1, 8)
    logvar = torch.rand(12, 8, generator=g) * 3 - 3
    stage1_checkpoint(str(tmp_path / "inr.pt"), mu, logvar)
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "train_diffusion.py")
    r = subprocess.run([sys.executable, script, "--inr", str(tmp_path / "inr.pt"), "--out", str(tmp_path / "d.pt"),
                        "--cond", "none", "--steps", "1", "--batch", "4", "--d-model", "32", "--layers", "1",
                        "--device", "cpu"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    state = torch.load(tmp_path / "d.pt", weights_only=True)["model"]
    m, lv = mu.double().numpy(), logvar.double().numpy()
    var = ((m - m.mean(0)) ** 2).mean() + np.exp(lv).mean()
    np.testing.assert_allclose(state["z_mean"].numpy(), m.mean(0), rtol=1e-5, atol=1e-6)
    assert state["z_std"].item() == pytest.approx(np.sqrt(var), rel=1e-5)
