"""
NeRM: Learning Neural Representations for High-Framerate Human Motion Synthesis (Wei et al., ICLR 2024).

All model parts live here:
  stage 1  a variational implicit neural representation (INR): every training sequence i owns a Gaussian
           N(mu_i, Sigma_i) over a latent z, and one MLP decodes (z, encoded time, framerate) to a pose;
  stage 2  a latent DDPM with classifier-free guidance that generates z from text, an action label or nothing.

    python nerm.py        # self-check on random tensors: prints shapes, the KL and a tiny overfit

Shape letters, used in every comment below:
  B batch of sequences, M timestamps per sequence (a clip), D pose feature width (263 for HumanML3D),
  Z latent width, F time-encoding width, H hidden width, C codebook entries, N training sequences.
"""
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

# ----------------------------------------------------------------------------------------------
# Stage 1: the variational INR
# ----------------------------------------------------------------------------------------------


@dataclass
class INRConfig:
    feature_dim: int = 263        # D: pose features per frame (HumanML3D layout)
    num_sequences: int = 1        # N: one Gaussian per training sequence
    latent_dim: int = 256         # Z: the paper's latent size
    hidden: int = 512             # H: MLP width
    n_blocks: int = 4             # residual blocks of two layers: 1 + 2*4 + 1 = 10 linear layers (paper: ~9)
    time_enc: str = "codebook"    # none | sinusoidal | codebook (seed ablation, DESIGN.md §1)
    n_freqs: int = 10             # Fourier octaves 1, 2, 4 ... 512 cycles per unit of time
    codebook_size: int = 64       # C: learned codebook vectors the Fourier features attend to
    codebook_dim: int = 64
    variational: bool = True      # False: the plain auto-decoder (one point z_i per sequence)
    kl_weight: float = 1e-4       # lambda_KL of the paper
    init_logvar: float = -4.0     # start with small posterior noise so the decoder can learn first


class TimeEncoding(nn.Module):
    """Encode a time coordinate: raw, Fourier features, or Fourier features + codebook attention."""

    def __init__(self, cfg):
        super().__init__()
        self.kind = cfg.time_enc
        assert self.kind in ("none", "sinusoidal", "codebook"), self.kind
        # octave-spaced frequencies: a 10 s sequence at 120 fps has 1200 frames per unit of normalized time,
        # so the highest octave (512 cycles) reaches per-frame detail at high framerates
        self.register_buffer("freqs", 2.0 ** torch.arange(cfg.n_freqs) * math.pi, persistent=False)
        fourier_dim = 1 + 2 * cfg.n_freqs
        self.out_dim = 1 if self.kind == "none" else fourier_dim
        if self.kind == "codebook":
            # CoCo-INR style: the Fourier features query a learned codebook (cross-attention) and the
            # attended vector is concatenated with them (DESIGN.md §1)
            self.codebook = nn.Parameter(torch.randn(cfg.codebook_size, cfg.codebook_dim) / math.sqrt(cfg.codebook_dim))
            self.query = nn.Linear(fourier_dim, cfg.codebook_dim)
            self.key = nn.Linear(cfg.codebook_dim, cfg.codebook_dim, bias=False)
            self.value = nn.Linear(cfg.codebook_dim, cfg.codebook_dim, bias=False)
            self.out_dim = fourier_dim + cfg.codebook_dim

    def forward(self, t):
        t = t.unsqueeze(-1)                                      # (B, M, 1)
        if self.kind == "none":
            return t
        angles = t * self.freqs                                  # (B, M, n_freqs)
        fourier = torch.cat([t, angles.sin(), angles.cos()], -1)  # (B, M, 1 + 2 n_freqs)
        if self.kind == "sinusoidal":
            return fourier
        q = self.query(fourier)                                  # (B, M, Cd)
        k, v = self.key(self.codebook), self.value(self.codebook)  # (C, Cd)
        attn = torch.softmax(q @ k.T / math.sqrt(k.shape[-1]), dim=-1)  # (B, M, C)
        return torch.cat([fourier, attn @ v], -1)                # (B, M, F)


class LatentTable(nn.Module):
    """Per-sequence Gaussians N(mu_i, diag(exp(logvar_i))): the auto-decoder's learned latents."""

    def __init__(self, cfg):
        super().__init__()
        self.variational = cfg.variational
        self.mu = nn.Parameter(torch.randn(cfg.num_sequences, cfg.latent_dim) * 0.01)
        # the plain auto-decoder keeps the tensor (same checkpoint shape) but never uses it
        self.logvar = nn.Parameter(torch.full((cfg.num_sequences, cfg.latent_dim), cfg.init_logvar),
                                   requires_grad=cfg.variational)

    def forward(self, idx, sample=True):
        """Return z (B, Z) and the prior term (B,) for sequence indices idx (B,)."""
        mu = self.mu[idx]
        if not self.variational:
            # DeepSDF-style auto-decoder: a point estimate with the Gaussian prior's ||mu||^2 / 2 only
            return mu, 0.5 * mu.pow(2).sum(-1)
        logvar = self.logvar[idx]
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if sample else mu  # reparameterization
        return z, gaussian_kl(mu, logvar)


def gaussian_kl(mu, logvar):
    """KL(N(mu, diag(exp(logvar))) || N(0, I)) in closed form, summed over the last dim."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1)


class ResBlock(nn.Module):
    """Pre-LayerNorm residual block: x + W2 relu(W1 LN(x))."""

    def __init__(self, h):
        super().__init__()
        self.norm = nn.LayerNorm(h)
        self.fc1 = nn.Linear(h, h)
        self.fc2 = nn.Linear(h, h)

    def forward(self, x):
        return x + self.fc2(F.relu(self.fc1(self.norm(x))))


class INRDecoder(nn.Module):
    """f_theta(z, gamma(t), s) -> pose features: a residual MLP applied to every (sequence, timestamp) pair."""

    def __init__(self, cfg):
        super().__init__()
        self.time_enc = TimeEncoding(cfg)
        # the first layer is split by input so z's part is computed once per sequence, not once per timestamp
        self.in_z = nn.Linear(cfg.latent_dim, cfg.hidden)
        self.in_t = nn.Linear(self.time_enc.out_dim + 1, cfg.hidden, bias=False)  # +1: the clip framerate s
        self.blocks = nn.ModuleList(ResBlock(cfg.hidden) for _ in range(cfg.n_blocks))
        self.norm = nn.LayerNorm(cfg.hidden)
        self.out = nn.Linear(cfg.hidden, cfg.feature_dim)

    def forward(self, z, t, fps):
        """z (B, Z), t (B, M) time coordinates, fps (B,) clip framerates -> (B, M, D)."""
        gamma = self.time_enc(t)                                 # (B, M, F)
        # the decoder is told the clip's framerate (paper); log scale so 20 -> 0, 120 -> 0.78
        s = torch.log(fps / 20.0).div(math.log(10.0))[:, None, None].expand(-1, t.shape[1], 1)  # (B, M, 1)
        h = self.in_z(z)[:, None, :] + self.in_t(torch.cat([gamma, s], -1))  # (B, M, H)
        for block in self.blocks:
            h = block(h)
        return self.out(F.relu(self.norm(h)))                   # (B, M, D)


class NeRM(nn.Module):
    """Stage 1: the latent table and the INR decoder, trained together (auto-decoding)."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.latents = LatentTable(cfg)
        self.decoder = INRDecoder(cfg)

    def forward(self, idx, t, fps, target=None):
        """Decode clips of sequences idx (B,) at times t (B, M); with target (B, M, D) also return the loss.

        L^i = ||x_hat - x||^2 + lambda_KL KL(N(mu_i, Sigma_i) || N(0, I))   (paper, stage 1)
        The reconstruction term is a mean over frames and channels of the normalized features, the KL a
        mean over the batch of its sum over latent dims.
        """
        z, prior = self.latents(idx, sample=self.training)
        x_hat = self.decoder(z, t, fps)
        if target is None:
            return x_hat
        recon = F.mse_loss(x_hat, target)
        prior = prior.mean()
        return x_hat, recon + self.cfg.kl_weight * prior, recon, prior


def fit_latents(decoder, sample_clip, n, latent_dim, steps=200, lr=0.03, kl_weight=1e-4, generator=None):
    """Auto-decoder inference: find z for n new sequences with the decoder frozen.

    sample_clip() -> (k (B,) which of the n sequences, t (B, M), fps (B,), x (B, M, D)) draws training-like
    clips from the new sequences. Only z (n, Z) is optimized, under the same N(0, I) prior as training.
    """
    z = torch.zeros(n, latent_dim, requires_grad=True)
    opt = torch.optim.Adam([z], lr=lr)
    was_training = decoder.training
    decoder.eval()
    for p in decoder.parameters():
        p.requires_grad_(False)
    try:
        for _ in range(steps):
            k, t, fps, x = sample_clip()
            loss = F.mse_loss(decoder(z[k], t, fps), x) + kl_weight * 0.5 * z[k].pow(2).sum(-1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    finally:
        for p in decoder.parameters():
            p.requires_grad_(True)
        decoder.train(was_training)
    return z.detach()


@torch.no_grad()
def decode(decoder, z, t, fps, chunk=8192):
    """Decode z (B, Z) at times t (B, M) in chunks of timestamps so memory stays bounded -> (B, M, D)."""
    outs = []
    step = max(1, chunk // max(1, z.shape[0]))
    for i in range(0, t.shape[1], step):
        outs.append(decoder(z, t[:, i:i + step], fps))
    return torch.cat(outs, 1)


# ----------------------------------------------------------------------------------------------
# Self-check
# ----------------------------------------------------------------------------------------------

if __name__ == "__main__":
    torch.manual_seed(0)
    cfg = INRConfig(feature_dim=263, num_sequences=4, hidden=128, n_blocks=2)
    model = NeRM(cfg)
    idx = torch.tensor([0, 1, 2, 3])
    t = torch.rand(4, 16)                       # (B, M) normalized times
    fps = torch.tensor([20.0, 60.0, 100.0, 120.0])
    x = torch.randn(4, 16, 263)
    x_hat, loss, recon, kl = model(idx, t, fps, x)
    print(f"stage 1: t {tuple(t.shape)} -> x_hat {tuple(x_hat.shape)}, loss {loss.item():.4f}, "
          f"recon {recon.item():.4f}, KL {kl.item():.2f}")
    for kind in ("none", "sinusoidal", "codebook"):
        enc = TimeEncoding(INRConfig(time_enc=kind))
        print(f"time encoding {kind:10s}: {tuple(t.shape)} -> {tuple(enc(t).shape)}")
    # a tiny overfit: one sequence, a smooth target, the loss must fall
    target = torch.sin(6.0 * t[:1, :, None] + torch.arange(263) * 0.1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for i in range(200):
        _, loss, recon, _ = model(idx[:1], t[:1], fps[:1], target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    print(f"overfit one sequence: recon {recon.item():.5f} after 200 steps")
