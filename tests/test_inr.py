"""Stage-1 model tests: python -m pytest -q tests/test_inr.py"""
import os

import pytest
import torch
import torch.nn.functional as F

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


def test_time_encodings_shapes_and_frequencies():
    t = torch.rand(2, 7)
    for kind, width in (("none", 1), ("sinusoidal", 21), ("codebook", 21 + 64)):
        enc = nerm.TimeEncoding(nerm.INRConfig(time_enc=kind))
        assert enc(t).shape == (2, 7, width) and enc.out_dim == width
    enc = nerm.TimeEncoding(nerm.INRConfig(time_enc="sinusoidal"))
    # column 1 + k is sin(2^k pi t): compare with the closed form
    assert torch.allclose(enc(t)[..., 1 + 3], torch.sin(8 * torch.pi * t), atol=1e-5)


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
    """With time_norm, f(z, t, duration) equals the same network reading t / duration as raw time."""
    dec, raw = random_decoder(), random_decoder(time_norm=False)
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
    path = tmp_path / "inr.pt"
    nerm.save_checkpoint({"step": 1}, str(path))
    real_save = torch.save

    def crash(obj, f, *a, **k):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        nerm.save_checkpoint({"step": 2}, str(path))
    monkeypatch.setattr(torch, "save", real_save)
    assert nerm.load_file(str(path))["step"] == 1 and os.listdir(tmp_path) == ["inr.pt"]
    nerm.save_checkpoint({"step": 3}, str(path))
    assert nerm.load_file(str(path))["step"] == 3 and os.listdir(tmp_path) == ["inr.pt"]


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
