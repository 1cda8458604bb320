"""Stage-1 model tests: python -m pytest -q tests/test_inr.py"""
import math
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import checkpoint
import data
import motion
import nerm


def test_kl_matches_torch_distributions():
    torch.manual_seed(0)
    mu, logvar = torch.randn(5, 16), torch.randn(5, 16)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    ref = torch.distributions.kl_divergence(q, p).sum(-1)
    assert torch.allclose(nerm.gaussian_kl(mu, logvar), ref, atol=1e-5)


def test_reparameterized_sample_has_the_table_statistics():
    cfg = nerm.INRConfig(num_sequences=1, latent_dim=4, init_logvar=0.0)
    table = nerm.LatentTable(cfg)
    with torch.no_grad():
        table.mu.fill_(2.0)
        table.logvar.fill_(2 * torch.log(torch.tensor(0.5)))
    z = torch.cat([table(torch.zeros(1000, dtype=torch.long))[0] for _ in range(20)])
    assert abs(z.mean().item() - 2.0) < 0.02 and abs(z.std().item() - 0.5) < 0.02
    # the plain auto-decoder returns mu itself
    plain = nerm.LatentTable(nerm.INRConfig(num_sequences=1, latent_dim=4, variational=False))
    assert torch.equal(plain(torch.zeros(3, dtype=torch.long))[0], plain.mu[[0, 0, 0]])


CFG = nerm.INRConfig()
NC, NH = CFG.n_freqs, CFG.n_hz                     # coarse and fine octaves of the default time encoding


def test_time_encodings_shapes():
    u, t, scale = torch.rand(2, 7), torch.rand(2, 7) * 3, torch.tensor([3.0, 2.0])
    # u itself, then a sin and a cos of each coarse and each fine octave
    for kind, width in (("none", 1), ("sinusoidal", 1 + 2 * (NC + NH)), ("codebook", 1 + 2 * (NC + NH) + 64)):
        enc = nerm.TimeEncoding(nerm.INRConfig(time_enc=kind))
        assert enc(u, t, scale).shape == (2, 7, width) and enc.out_dim == width
    assert torch.equal(nerm.TimeEncoding(nerm.INRConfig(time_enc="none"))(u, t, scale)[..., 0], u)
    no_fine = nerm.TimeEncoding(nerm.INRConfig(time_enc="sinusoidal", max_hz=0.0))
    assert no_fine(u, t, scale).shape == (2, 7, 1 + 2 * NC)


def fourier_reference(t, duration, time_norm, n_freqs=NC, max_hz=16.0, n_hz=NH):
    """The sinusoidal encoding written out in numpy: [u, sin, cos] of the coarse angles 2^k pi u (u = t / duration
    with time normalization, else t), each 0 where its 2^(k-1) cycles per unit of u are more than max_hz Hz on
    this sequence (max_hz = 0: no limit and no fine band), and of the fine angles 2 pi f t, f = max_hz / 2^j Hz."""
    t, duration = (np.asarray(a, np.float64) for a in (t, duration))
    scale = duration if time_norm else np.ones_like(duration)
    u = t / scale[:, None]
    k, j = np.arange(n_freqs), np.arange(n_hz if max_hz > 0 else 0)
    hz = np.concatenate([2.0 ** (k - 1) / scale[:, None], np.broadcast_to(max_hz / 2.0 ** j, (len(t), len(j)))], -1)
    angles = np.concatenate([2.0 ** k * np.pi * u[..., None], 2 * np.pi * (max_hz / 2.0 ** j) * t[..., None]], -1)
    keep = (hz <= max_hz * (1 + 1e-9)) if max_hz > 0 else np.ones_like(hz)
    gain = keep[:, None, :]                                                # (B, 1, K)
    return np.concatenate([u[..., None], np.sin(angles) * gain, np.cos(angles) * gain], -1)


def sinusoidal(**kw):
    return nerm.TimeEncoding(nerm.INRConfig(time_enc="sinusoidal", **{"max_hz": 16.0, **kw})).double()


def encode(enc, t, duration, time_norm=True):
    """TimeEncoding called as INRDecoder.forward calls it."""
    scale = duration if time_norm else torch.ones_like(duration)
    return enc(t / scale[:, None], t, scale)


@pytest.mark.parametrize("time_norm", [True, False])
def test_sinusoidal_encoding_is_the_closed_form(time_norm):
    g = torch.Generator().manual_seed(0)
    dur = torch.cat([torch.rand(5, generator=g, dtype=torch.float64) * 8 + 0.5, torch.tensor([0.3, 12.0], dtype=torch.float64)])
    t = torch.rand(7, 11, generator=g, dtype=torch.float64) * dur[:, None]
    for kw in ({}, {"n_freqs": 4, "max_hz": 10.0, "n_hz": 3}, {"max_hz": 0.0}):   # defaults, other bands, the paper's
        # float32 constants (pi): angles up to ~1600 rad for 1e-4, so unlimited octaves of seconds read t < 1 s
        tt = t if time_norm or kw.get("max_hz") != 0.0 else t.remainder(1.0)
        got = encode(sinusoidal(**kw), tt, dur, time_norm)
        want = fourier_reference(tt, dur, time_norm, **kw)
        np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-4, err_msg=str(kw))


@pytest.mark.parametrize("time_norm", [True, False])
def test_decoder_hands_the_encoding_u_seconds_and_scale(time_norm, monkeypatch):
    """INRDecoder.forward: u = t / duration (time_norm) or t, scale = duration or 1; the encoding it gets equals
    the closed form (float32)."""
    dec = nerm.INRDecoder(nerm.INRConfig(feature_dim=4, latent_dim=8, hidden=16, n_blocks=1, time_enc="sinusoidal",
                                         time_norm=time_norm, max_fps=60.0, max_hz=16.0)).eval()
    seen = []
    real = dec.time_enc.forward
    monkeypatch.setattr(dec.time_enc, "forward", lambda *a: seen.append((a, real(*a))) or seen[-1][1])
    dur, fps = torch.tensor([2.5, 1.2, 4.0]), torch.tensor([20.0, 60.0, 120.0])
    t = torch.rand(3, 9) * dur[:, None]
    with torch.no_grad():
        dec(torch.randn(3, 8), t, dur, fps)
    (u, t_in, scale), gamma = seen[0]
    scale_want = dur if time_norm else torch.ones(3)
    torch.testing.assert_close(u, t / scale_want[:, None])
    assert torch.equal(t_in, t) and torch.equal(scale, scale_want)
    np.testing.assert_allclose(gamma.numpy(), fourier_reference(t, dur, time_norm), atol=1e-4)


def test_decoder_is_told_the_rate_up_to_the_highest_it_was_trained_on():
    """The clip rate enters as log10(fps / 20), clamped at max_fps: 120 fps decodes as 60 fps on a model trained
    up to 60 (a rate it never saw would be extrapolation), 20 and 60 fps differ."""
    torch.manual_seed(0)
    dec = nerm.INRDecoder(nerm.INRConfig(feature_dim=4, latent_dim=8, hidden=16, n_blocks=1, max_fps=60.0)).eval()
    z, t, dur = torch.randn(1, 8), torch.rand(1, 9), torch.ones(1)
    with torch.no_grad():
        out = {f: dec(z, t, dur, torch.tensor([f])) for f in (20.0, 60.0, 120.0)}
    assert torch.equal(out[120.0], out[60.0]) and not torch.allclose(out[20.0], out[60.0])


def test_fine_octaves_are_in_hz_whatever_the_duration():
    """The same instants in seconds: the fine band (16 .. 0.25 Hz) is the same for a 2 s and a 7 s sequence, the
    coarse band (where in the sequence) is not; coarse octaves above 16 Hz on a sequence are off (0) there."""
    enc = sinusoidal()
    t = torch.linspace(0, 2, 41, dtype=torch.float64)[None].expand(2, -1)
    a = encode(enc, t, torch.tensor([2.0, 2.0], dtype=torch.float64))[1]     # (41, F)
    b = encode(enc, t, torch.tensor([2.0, 7.0], dtype=torch.float64))[1]
    sin_c, sin_f = 1 + np.arange(NC), 1 + NC + np.arange(NH)                      # columns
    cos_c, cos_f = sin_c + NC + NH, sin_f + NC + NH
    fine = np.concatenate([sin_f, cos_f])
    torch.testing.assert_close(a[:, fine], b[:, fine], rtol=0, atol=1e-12)
    torch.testing.assert_close(b[:, sin_f[0]], torch.sin(2 * math.pi * 16 * t[1]), rtol=0, atol=1e-5)         # 16 Hz
    torch.testing.assert_close(b[:, sin_f[NH - 1]], torch.sin(2 * math.pi * 16 / 2 ** (NH - 1) * t[1]), rtol=0, atol=1e-5)
    # coarse octave k: 2^(k-1) / d Hz, on while <= 16 Hz: k <= 6 on 2 s, k <= 7 on 7 s
    for d, on in ((2.0, 6), (7.0, 7)):
        x = a if d == 2.0 else b
        assert (x[:, sin_c[:on + 1]].abs().amax(0) > 0.5).all() and (x[:, cos_c[:on + 1]].abs().amax(0) > 0.5).all()
        assert (x[:, sin_c[on + 1:]] == 0).all() and (x[:, cos_c[on + 1:]] == 0).all()
    assert ((a[:, sin_c[:7]] - b[:, sin_c[:7]]).abs().amax(0) > 0.1).all()          # every coarse octave on in both moved


def test_no_encoding_frequency_exceeds_max_hz():
    """With time normalization, coarse octave k turns at 2^(k-1) cycles per duration; those above max_hz (16 Hz)
    on a sequence are off, so no feature turns faster than 16 Hz whatever the duration, and the coarse band's top
    is the fastest octave at or under 16 Hz (16 Hz exactly on a 1 s sequence). Measured as the largest
    |d feature / dt| / 2 pi, by differences on a dense grid (a sin(2 pi f t) reaches 2 pi f). Without the limit
    (max_hz = 0, the paper's plain octaves) the top octave is 2^(n_freqs - 2) / duration Hz."""
    limited, plain = sinusoidal(), sinusoidal(max_hz=0.0)
    for seconds in (0.3, 1.0, 1.7, 8.0, 30.0):
        t = torch.linspace(0, seconds, 40001, dtype=torch.float64)[None]
        d = torch.tensor([seconds], dtype=torch.float64)
        hz = (encode(limited, t, d)[0, :, 1:].diff(dim=0) / t[0].diff()[:, None]).abs().amax(0) / (2 * math.pi)
        octaves = 2.0 ** (np.arange(NC) - 1) / seconds
        top = octaves[octaves <= 16.0 * (1 + 1e-9)].max()
        assert hz.max().item() == pytest.approx(16.0, rel=2e-3), seconds                # the 16 Hz fine octave
        assert hz[:NC].max().item() == pytest.approx(top, rel=2e-3), seconds
        hz = (encode(plain, t, d)[0, :, 1:].diff(dim=0) / t[0].diff()[:, None]).abs().amax(0) / (2 * math.pi)
        assert hz.max().item() == pytest.approx(2.0 ** (NC - 2) / seconds, rel=2e-3), seconds


def test_loss_is_the_papers_two_terms():
    """NeRM.forward: the mean squared error over the clip's B M D elements plus lambda_KL / (M D) times the
    batch mean of KL(N(mu_i, Sigma_i) || N(0, I)), the KL written out here in numpy from the latent table (eval
    mode decodes z = mu, so the reconstruction term is deterministic)."""
    torch.manual_seed(0)
    cfg = nerm.INRConfig(feature_dim=5, num_sequences=3, hidden=16, n_blocks=1, latent_dim=4, kl_weight=0.3)
    model = nerm.NeRM(cfg).eval()
    with torch.no_grad():
        model.latents.mu.normal_()
        model.latents.logvar.uniform_(-2, 1)
    idx, t = torch.tensor([0, 2, 2]), torch.rand(3, 9)
    dur, fps, x = torch.full((3,), 2.0), torch.tensor([20.0, 60.0, 120.0]), torch.randn(3, 9, 5)
    x_hat, loss, recon, prior = model(idx, t, dur, fps, x)
    mu, logvar = model.latents.mu.detach().double().numpy()[idx], model.latents.logvar.detach().double().numpy()[idx]
    kl = 0.5 * (mu ** 2 + np.exp(logvar) - 1 - logvar).sum(-1).mean()
    mse = ((x_hat.detach().double().numpy() - x.double().numpy()) ** 2).mean()
    assert recon.item() == pytest.approx(mse, rel=1e-5) and prior.item() == pytest.approx(kl, rel=1e-5)
    assert loss.item() == pytest.approx(mse + 0.3 / (9 * 5) * kl, rel=1e-5)


def test_inr_overfits_one_sequence():
    """A sequence with sharp detail (a 12 Hz wiggle over 5 s at 120 fps) is learned by the decoder."""
    torch.manual_seed(0)
    cfg = nerm.INRConfig(feature_dim=8, num_sequences=1, hidden=128, n_blocks=2, latent_dim=16)
    model = nerm.NeRM(cfg)
    t = torch.arange(600)[None] / 120.0                       # (1, 600) seconds: 5 s at 120 fps
    dur = torch.tensor([599 / 120.0])
    x = torch.stack([torch.sin(2 * torch.pi * (k + 1) * 12 * t / 5) for k in range(8)], -1)  # (1, 600, 8)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    idx, fps = torch.zeros(1, dtype=torch.long), torch.tensor([120.0])
    for _ in range(600):
        k = torch.randint(0, 600, (64,))
        _, loss, recon, _ = model(idx, t[:, k], dur, fps, x[:, k])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    err = F.mse_loss(nerm.decode(model.decoder, model.latents.mu[:1], 120.0, float(dur)), x).item()
    assert err < 0.02, err  # the variance of the target is 0.5


def test_fit_latents_recovers_a_known_latent():
    """Auto-decoder inference: with the decoder frozen, fitting z to its own output finds a z that decodes
    to the same poses."""
    torch.manual_seed(0)
    cfg = nerm.INRConfig(feature_dim=6, num_sequences=1, hidden=64, n_blocks=1, latent_dim=8, kl_weight=0.0)
    dec = nerm.INRDecoder(cfg)
    z_true = torch.randn(2, 8)
    t, dur = torch.rand(2, 50) * 3, torch.tensor([3.0, 3.0])
    fps = torch.tensor([30.0, 30.0])
    with torch.no_grad():
        x = dec(z_true, t, dur, fps)

    def clip():
        return torch.tensor([0, 1]), t, dur, fps, x

    z = nerm.fit_latents(dec, clip, 2, steps=400, lr=0.05)
    with torch.no_grad():
        assert F.mse_loss(dec(z, t, dur, fps), x).item() < 1e-3 * x.var().item()
    assert all(p.requires_grad for p in dec.parameters())


def random_decoder(**kw):
    """A decoder whose output depends on all its inputs (random read-out), with non-trivial statistics."""
    torch.manual_seed(0)
    dec = nerm.INRDecoder(nerm.INRConfig(feature_dim=5, num_sequences=2, hidden=32, n_blocks=1, **kw)).eval()
    dec.mean.copy_(torch.randn(5))
    dec.std.copy_(torch.rand(5) + 0.5)
    return dec


def test_decode_is_the_decoder_on_the_frame_grid_in_real_units():
    """decode(z, fps, seconds) = std * f(z, k / fps, seconds, fps) + mean for k = 0 .. floor(fps * seconds),
    computed here independently, for sequences of different durations in one batch and in small chunks."""
    dec = random_decoder()
    z, seconds = torch.randn(2, 256), torch.tensor([2.5, 1.7])
    for fps in (20.0, 29.97, 120.0):
        out = nerm.decode(dec, z, fps, seconds, chunk=64, row=32)
        assert out.shape[1] == int(2.5 * fps + 1e-6) + 1
        for i in range(2):
            T = int(float(seconds[i]) * fps + 1e-6) + 1
            assert nerm.num_frames(fps, float(seconds[i])) == T
            t = torch.arange(T)[None].double() / fps               # exactly k / fps
            with torch.no_grad():
                ref = dec(z[i:i + 1], t.float(), seconds[i:i + 1], torch.tensor([fps]))[0] * dec.std + dec.mean
            torch.testing.assert_close(out[i, :T], ref, atol=1e-5, rtol=1e-5)


def test_time_is_normalized_by_the_duration_inside_the_decoder():
    """With time_norm (and nothing that reads seconds in both: no fine band, no gate), f(z, t, duration) equals the
    same network reading t / duration as raw time."""
    dec, raw = random_decoder(max_hz=0.0, gated=False), random_decoder(max_hz=0.0, time_norm=False, gated=False)
    raw.load_state_dict(dec.state_dict())
    z, t, dur, fps = torch.randn(2, 256), torch.rand(2, 9) * 4, torch.tensor([4.0, 2.5]), torch.tensor([30.0, 60.0])
    with torch.no_grad():
        torch.testing.assert_close(dec(z, t, dur, fps), raw(z, t / dur[:, None], torch.ones(2), fps))
        assert not torch.allclose(dec(z, t, dur, fps), dec(z, t, dur * 2, fps), atol=1e-4)  # duration matters
        assert not torch.allclose(dec(z, t, dur, fps), dec(z, t, dur, fps * 2), atol=1e-4)  # so does the rate


def test_frames_are_one_over_fps_apart_at_every_rate():
    """The same z at 20 and 40 fps: every second 40 fps frame is the 20 fps frame at the same instant. The
    decoder is told at most 20 fps here (max_fps), so nothing but the time grid differs; a grid spaced by
    seconds / (T - 1) instead of 1 / fps would drift apart more and more with time."""
    dec = random_decoder(max_fps=20.0)
    z = torch.randn(3, 256)
    a, b = nerm.decode(dec, z, 20.0, 3.0), nerm.decode(dec, z, 40.0, 3.0)
    assert a.shape[1] == 61 and b.shape[1] == 121
    torch.testing.assert_close(b[:, ::2], a, atol=1e-5, rtol=1e-5)
    # above max_fps the decoder is told max_fps: 120 fps decoding equals what 20 fps tells it
    dec120 = random_decoder(max_fps=120.0)
    c = nerm.decode(dec120, z, 40.0, 3.0)
    assert not torch.allclose(c[:, ::2], nerm.decode(dec120, z, 20.0, 3.0), atol=1e-4)


def test_chunked_decode_equals_one_pass():
    dec = random_decoder()
    z = torch.randn(2, 256)
    torch.testing.assert_close(nerm.decode(dec, z, 120.0, 2.7, chunk=64, row=16), nerm.decode(dec, z, 120.0, 2.7),
                               atol=1e-6, rtol=1e-6)


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    """A crash in the middle of writing (here: torch.save raising after half the bytes) leaves the previous
    checkpoint intact and no temp file; a successful write replaces it whole."""
    import guard
    path = tmp_path / "inr.pt"
    guard.claim(str(path))
    checkpoint.save({"step": 1}, str(path))
    real_save = torch.save

    def crash(obj, f, *a, **k):
        with open(f, "wb") as fh:
            fh.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save({"step": 2}, str(path))
    monkeypatch.setattr(torch, "save", real_save)
    left = sorted(p for p in os.listdir(tmp_path) if not p.startswith(".nerm-lock"))
    assert checkpoint.load_file(str(path))["step"] == 1 and left == [".nerm-manifest", "inr.pt"]
    checkpoint.save({"step": 3}, str(path))
    assert checkpoint.load_file(str(path))["step"] == 3
    guard.release()
    assert sorted(os.listdir(tmp_path)) == [".nerm-manifest", "inr.pt"]


def test_decode_counts_frames_as_its_callers_do():
    """Durations of real sequences, (T - 1) / native fps, read at another rate: decode's frame count equals
    num_frames on the float64 duration (a float32 duration loses the last frame of some, e.g. 954 / 120 s)."""
    dec = random_decoder()
    z = torch.randn(1, 256)
    for native in (30.0, 120.0):
        for frames in (199, 955):
            seconds = (frames - 1) / native
            for fps in (20, 40, 60, 100, 120):
                assert nerm.decode(dec, z, fps, seconds, row=4096).shape[1] == nerm.num_frames(fps, seconds)
                assert nerm.decode(dec, z, fps, torch.tensor([seconds], dtype=torch.float64),
                                   row=4096).shape[1] == nerm.num_frames(fps, seconds)


# ---- the codebook time encoding, the clip sampler's durations, latent inference under the prior ----------------


def test_codebook_attention_is_written_out_softmax_attention():
    """time_enc="codebook": [fourier, softmax(q K^T / sqrt(Cd)) V], q = W_q fourier + b_q (one row per timestamp),
    K = C W_k^T, V = C W_v^T for the C codebook vectors, the softmax over the codebook entries. Recomputed here in
    numpy from the module's own parameters; the fourier part is the closed form of fourier_reference. The query
    is scaled up so the attention is neither uniform nor one-hot: a missing 1/sqrt(Cd), a softmax over the
    timestamps instead of the entries, or an added residual each move the result."""
    torch.manual_seed(0)
    cfg = nerm.INRConfig(time_enc="codebook", codebook_size=12, codebook_dim=6)
    enc = nerm.TimeEncoding(cfg).double()
    with torch.no_grad():
        enc.query.weight.mul_(15.0)
    g = torch.Generator().manual_seed(2)
    dur = torch.tensor([1.5, 4.0, 9.0], dtype=torch.float64)
    t = torch.rand(3, 11, generator=g, dtype=torch.float64) * dur[:, None]
    with torch.no_grad():
        got = encode(enc, t, dur).numpy()                                        # (B, M, F + Cd)
    fourier = fourier_reference(t, dur, True, max_hz=cfg.max_hz)                # (B, M, F)
    F_ = fourier.shape[-1]
    np.testing.assert_allclose(got[..., :F_], fourier, rtol=0, atol=1e-5)
    P = {k: v.detach().numpy() for k, v in enc.named_parameters()}
    q = fourier @ P["query.weight"].T + P["query.bias"]                         # (B, M, Cd)
    keys, values = P["codebook"] @ P["key.weight"].T, P["codebook"] @ P["value.weight"].T   # (C, Cd)
    scores = q @ keys.T / np.sqrt(cfg.codebook_dim)                             # (B, M, C)
    w = np.exp(scores - scores.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)                                               # over the C entries
    top = w.max(-1)
    assert 0.2 < top.mean() < 0.9, top.mean()                                   # a real mixture of entries
    np.testing.assert_allclose(got[..., F_:], w @ values, rtol=0, atol=1e-5)


def test_clip_sampler_duration_is_the_datasets_and_bounds_every_clip():
    """ClipSampler.duration (what train_inr.py hands the decoder as each clip's sequence duration) is
    MotionSet.durations(), (T_i - 1) / fps_i, for sequences of different rates and lengths (one shorter than
    a clip); every clip time lies in [0, duration], and the clips that end on the last frame reach it exactly."""
    lengths, natives = [25, 9, 13, 3, 241], [60.0, 20.0, 30.0, 50.0, 120.0]
    rng = np.random.default_rng(0)
    feats = [rng.standard_normal((n, 3)).astype(np.float32) for n in lengths]
    ms = data.MotionSet([f"s{i}" for i in range(5)], feats, np.array(natives), [[""]] * 5, [""] * 5, motion.SMPL22)
    want = np.array([(n - 1) / f for n, f in zip(lengths, natives)])            # 0.4, 0.4, 0.4, 0.04, 2.0 s
    np.testing.assert_array_equal(ms.durations(), want)
    cs = data.ClipSampler(ms, np.zeros(3), np.ones(3))
    np.testing.assert_array_equal(cs.duration.numpy(), want.astype(np.float32))
    idx = torch.arange(5).repeat(400)
    _, t, _, _ = cs.sample(idx, 4, generator=torch.Generator().manual_seed(0))
    dur = cs.duration[idx, None]
    assert t.min() == 0 and (t <= dur * (1 + 1e-6)).all()
    last = torch.zeros(5).scatter_reduce(0, idx, t.amax(1), "amax")             # the latest time of each sequence
    torch.testing.assert_close(last, cs.duration, rtol=1e-6, atol=0)


class LinearDecoder(torch.nn.Module):
    """x_hat(z, t) = (1 + t) W z at every timestamp: a decoder linear in z, so the fit under the prior has a
    closed form. It carries what fit_latents reads of an INRDecoder: cfg, the buffer mean, parameters."""

    def __init__(self, cfg, W):
        super().__init__()
        self.cfg = cfg
        self.W = torch.nn.Parameter(W)                                         # (D, Z)
        self.register_buffer("mean", torch.zeros(W.shape[0]))

    def forward(self, z, t, duration, fps):
        return (1 + t)[..., None] * (z @ self.W.T)[:, None, :]                 # (B, M, D)


def test_fit_latents_shrinks_as_the_prior_weight_says():
    """fit_latents minimizes, per sequence, the training loss ||x_hat - x||^2 / (M D) + lambda_KL / (M D) ||z||^2 / 2
    (NeRM.forward's weighting). For x_hat_m = a_m W z (a_m = 1 + t_m) its minimum solves
    (sum_m a_m^2 W^T W + lambda_KL / 2 I) z = W^T sum_m a_m x_m: with lambda_KL comparable to sum a^2 W^T W, the
    fitted z lies well inside the least-squares one. A prior weighted without 1/(M D), without the 1/2, or
    none at all misses this closed form."""
    torch.manual_seed(0)
    D, Z, M = 6, 4, 10
    W = torch.randn(D, Z, dtype=torch.float64)
    t = torch.rand(2, M, dtype=torch.float64) * 2
    z_true, noise = torch.randn(2, Z, dtype=torch.float64), 0.3 * torch.randn(2, M, D, dtype=torch.float64)
    x = (1 + t)[..., None] * (z_true @ W.T)[:, None] + noise                    # (B, M, D) targets
    a2 = ((1 + t) ** 2).sum(1).numpy()                                         # (2,) sum_m a_m^2
    WtW = (W.T @ W).numpy()
    lam = 2.0 * a2.mean() * np.trace(WtW) / Z                                   # halves a typical direction
    dec = LinearDecoder(nerm.INRConfig(latent_dim=Z, kl_weight=lam), W.float())
    clip = lambda: (torch.tensor([0, 1]), t.float(), torch.ones(2), torch.full((2,), 20.0), x.float())  # noqa: E731
    z = nerm.fit_latents(dec, clip, 2, steps=300, lr=0.05).double().numpy()
    rhs = np.einsum("dz,bmd,bm->bz", W.numpy(), x.numpy(), (1 + t).numpy())     # W^T sum_m a_m x_m
    want = np.stack([np.linalg.solve(a2[b] * WtW + lam / 2 * np.eye(Z), rhs[b]) for b in range(2)])
    least_squares = np.stack([np.linalg.solve(a2[b] * WtW, rhs[b]) for b in range(2)])
    assert (np.linalg.norm(want, axis=1) < 0.8 * np.linalg.norm(least_squares, axis=1)).all()  # the prior matters
    np.testing.assert_allclose(z, want, rtol=0, atol=1e-4 * np.abs(want).max())
    assert dec.W.requires_grad


def kink_ratio(decoder, dt=1e-4):
    """max over a 1 s grid of |f(t + dt) - 2 f(t) + f(t - dt)| / dt^2, at dt / 2 over at dt: -> 1 for a smooth f(t)
    (it tends to max |f''|), ~2 where f has a kink (there it is ~ the slope's jump / dt)."""
    torch.manual_seed(0)
    z = torch.randn(1, decoder.cfg.latent_dim, dtype=torch.float64)
    peaks = []
    for h in (dt, dt / 2):
        t = (0.3 + torch.arange(round(1.0 / h), dtype=torch.float64) * h)[None]
        with torch.no_grad():
            x = decoder(z, t, torch.ones(1, dtype=torch.float64), torch.full((1,), 120.0, dtype=torch.float64))[0]
        peaks.append(((x[2:] - 2 * x[1:-1] + x[:-2]).abs().max(0).values / h**2).max().item())
    return peaks[1] / peaks[0]


def test_gated_decoder_is_smooth_where_its_envelope_is_closed_and_sharp_where_open():
    """The gate's point: with the envelope shut the decoded motion has no kinks at all (a smooth trunk), so no
    acceleration above the band where the motion is still; open, the ReLU head's kinks (sharp onsets) pass."""
    torch.manual_seed(0)
    plain = nerm.INRDecoder(nerm.INRConfig(feature_dim=6, latent_dim=8, hidden=32, n_blocks=2)).double()
    assert kink_ratio(plain) > 1.5                                   # the paper's ReLU MLP: kinks everywhere
    dec = nerm.INRDecoder(nerm.INRConfig(feature_dim=6, latent_dim=8, hidden=32, n_blocks=2, gated=True)).double()
    for bias, smooth in ((-60.0, True), (60.0, False)):             # envelope sigmoid(-60) ~ 0, sigmoid(60) = 1
        with torch.no_grad():
            dec.gate_out.bias.fill_(bias)
        r = kink_ratio(dec)
        assert (r < 1.1) if smooth else (r > 1.5), (bias, r)
