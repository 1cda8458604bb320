"""Stage-1 model tests: python -m pytest -q tests/test_inr.py"""
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
    t = torch.linspace(0, 1, 600)[None]                       # 5 s at 120 fps, normalized time
    x = torch.stack([torch.sin(2 * torch.pi * (k + 1) * 5 * 12 * t / 5) for k in range(8)], -1) # (1, 600, 8)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    idx, fps = torch.zeros(1, dtype=torch.long), torch.tensor([120.0])
    for _ in range(600):
        k = torch.randint(0, 600, (64,))
        _, loss, recon, _ = model(idx, t[:, k], fps, x[:, k])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    err = F.mse_loss(nerm.decode(model.decoder, model.latents.mu[:1], t, fps), x).item()
    assert err < 0.02, err  # the variance of the target is 0.5


def test_fit_latents_recovers_a_known_latent():
    """Auto-decoder inference: with the decoder frozen, fitting z to its own output finds a z that decodes
    to the same poses."""
    torch.manual_seed(0)
    cfg = nerm.INRConfig(feature_dim=6, num_sequences=1, hidden=64, n_blocks=1, latent_dim=8)
    dec = nerm.INRDecoder(cfg)
    z_true = torch.randn(2, 8)
    t = torch.rand(2, 50)
    fps = torch.tensor([30.0, 30.0])
    with torch.no_grad():
        x = dec(z_true, t, fps)

    def clip():
        return torch.tensor([0, 1]), t, fps, x

    z = nerm.fit_latents(dec, clip, 2, 8, steps=400, lr=0.05, kl_weight=0.0)
    with torch.no_grad():
        assert F.mse_loss(dec(z, t, fps), x).item() < 1e-3 * x.var().item()
    assert all(p.requires_grad for p in dec.parameters())


def test_chunked_decode_equals_one_pass():
    cfg = nerm.INRConfig(feature_dim=5, num_sequences=2, hidden=32, n_blocks=1)
    dec = nerm.INRDecoder(cfg).eval()
    z, t, fps = torch.randn(2, 256), torch.rand(2, 333), torch.tensor([20.0, 120.0])
    with torch.no_grad():
        assert torch.allclose(nerm.decode(dec, z, t, fps, chunk=64), dec(z, t, fps), atol=1e-6)
