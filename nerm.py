"""
NeRM: Learning Neural Representations for High-Framerate Human Motion Synthesis (Wei et al., ICLR 2024).

All model parts live here:
  stage 1  a variational implicit neural representation (INR): every training sequence i owns a Gaussian
           N(mu_i, Sigma_i) over a latent z, and one MLP decodes (z, encoded time, framerate) to a pose;
  stage 2  a latent DDPM with classifier-free guidance that generates z from text, an action label or nothing.

    python nerm.py        # self-check on random tensors: prints shapes, the KL and a tiny overfit

Shape letters, used in every comment below:
  B batch of sequences, M timestamps per sequence (a clip), D pose feature width (263 for HumanML3D),
  Z latent width, F time-encoding width, H hidden width, C codebook entries, N training sequences;
  stage 2: k diffusion step, L caption words, d model width, Q the tokens the denoiser reads z into.
"""
import math
import re
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

import guard

GATE_WIDTH, GATE_OCTAVES = 64, 6  # the gated decoder's envelope: hidden width; octaves of seconds, 4 Hz and down

# ----------------------------------------------------------------------------------------------
# Stage 1: the variational INR
# ----------------------------------------------------------------------------------------------


@dataclass
class INRConfig:
    """Stage 1. The defaults are the model the quick start trains (train_inr.py takes its flags' defaults
    from here); the paper's is wider (hidden 512, n_blocks 4)."""
    feature_dim: int = 263        # D: pose features per frame (HumanML3D layout)
    num_sequences: int = 1        # N: one Gaussian per training sequence
    latent_dim: int = 256         # Z: the paper's latent size
    hidden: int = 256             # H: MLP width (paper-scale: 512)
    n_blocks: int = 3             # residual blocks of two layers (paper-scale: 4, i.e. 1 + 2*4 + 1 = 10 layers)
    time_enc: str = "codebook"    # none | sinusoidal | codebook: the paper's time-encoding ablation
    n_freqs: int = 10             # coarse octaves of normalized time sin(2^k pi u): 0.5, 1 ... 256 cycles per sequence
    max_hz: float = 8.0           # the band limit: coarse octaves above it (in Hz on this sequence) are switched
                                  # off, and the fine octaves of time in seconds sin(2 pi f t) are f = max_hz, max_hz / 2 ...
    n_hz: int = 7                 # how many fine octaves: 8, 4, 2, 1, 0.5, 0.25, 0.125 Hz
    codebook_size: int = 64       # C: learned codebook vectors the Fourier features attend to
    codebook_dim: int = 64
    variational: bool = True      # False: the plain auto-decoder (one point z_i per sequence)
    kl_weight: float = 1e-4       # lambda_KL of the paper
    init_logvar: float = -4.0     # start with small posterior noise so the decoder can learn first
    time_norm: bool = True        # time divided by the sequence's duration (paper's "time normalization")
    max_fps: float = 120.0        # the highest clip rate seen in training: a higher request is told this one
    gated: bool = False           # True: the sharp part gated by an envelope (INRDecoder); False: the paper's ReLU MLP

    def __post_init__(self):
        check_config(self, feature_dim=(1, 4096), num_sequences=(1, 10**7), latent_dim=(1, 4096), hidden=(1, 8192),
                     n_blocks=(0, 64), n_freqs=(0, 16), max_hz=(0, 1000), n_hz=(0, 16), codebook_size=(1, 4096),
                     codebook_dim=(1, 4096), kl_weight=(0, 1e6), init_logvar=(-30, 10),
                     max_fps=(1, 1000), time_enc=("none", "sinusoidal", "codebook"))


def check_config(cfg, **limits):
    """Every field of a model config in its range (lo, hi) or among its choices, whether it came from flags or
    from a checkpoint: one guard.UserError before anything is built (a width of 0 or 10^5 blocks never starts)."""
    for name, rule in limits.items():
        v = getattr(cfg, name)
        if isinstance(rule[0], str):
            ok = v in rule
        else:
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and rule[0] <= v <= rule[1]
        if not ok:
            raise guard.UserError(f"model setting {name} = {v!r}: expected "
                                  + (" | ".join(rule) if isinstance(rule[0], str) else f"{rule[0]:g} to {rule[1]:g}"))


class TimeEncoding(nn.Module):
    """Encode time: raw, Fourier features, or Fourier features + codebook attention.

    Two bands of Fourier features, both limited to max_hz. Coarse: octaves of u (time over the sequence's
    duration, or seconds without time normalization), where in the sequence a frame lies. An octave of u is
    a different number of Hz on every sequence (256 cycles: 26 Hz over 10 s, 128 Hz over 2 s), and those far
    above what motion holds jitter at 120 fps, so an octave above max_hz on this sequence is switched off
    (max_hz = 0: the paper's plain octaves). Fine: octaves of seconds, max_hz, max_hz / 2 ..., alike in every
    sequence."""

    def __init__(self, cfg):
        super().__init__()
        self.kind = cfg.time_enc
        assert self.kind in ("none", "sinusoidal", "codebook"), self.kind
        self.register_buffer("coarse", 2.0 ** torch.arange(cfg.n_freqs) * math.pi, persistent=False)  # rad per unit of u
        self.max_w = 2 * math.pi * cfg.max_hz if cfg.max_hz > 0 else math.inf                          # rad per second
        fine = cfg.max_hz / 2.0 ** torch.arange(cfg.n_hz) if cfg.max_hz > 0 else torch.zeros(0)
        self.register_buffer("fine", 2 * math.pi * fine, persistent=False)                           # rad per second
        fourier_dim = 1 + 2 * (cfg.n_freqs + len(fine))
        self.out_dim = 1 if self.kind == "none" else fourier_dim
        if self.kind == "codebook":
            # CoCo-INR style: the Fourier features query a learned codebook (cross-attention) and the
            # attended vector is concatenated with them (the paper's codebook time encoding, after CoCo-INR)
            self.codebook = nn.Parameter(torch.randn(cfg.codebook_size, cfg.codebook_dim) / math.sqrt(cfg.codebook_dim))
            self.query = nn.Linear(fourier_dim, cfg.codebook_dim)
            self.key = nn.Linear(cfg.codebook_dim, cfg.codebook_dim, bias=False)
            self.value = nn.Linear(cfg.codebook_dim, cfg.codebook_dim, bias=False)
            self.out_dim = fourier_dim + cfg.codebook_dim

    def forward(self, u, t, scale):
        """u (B, M) the coarse coordinate, t (B, M) seconds, scale (B,) seconds per unit of u -> (B, M, F)."""
        if self.kind == "none":
            return u[..., None]
        w = torch.cat([self.coarse / scale[:, None], self.fine.expand(len(t), -1)], -1)[:, None, :]  # (B, 1, K) rad/s
        angles = t[..., None] * w                                # (B, M, K), K = n_freqs + n_hz
        sin, cos = angles.sin(), angles.cos()
        if self.max_w < math.inf:                                # the band limit, in Hz of this sequence
            keep = (w <= self.max_w * (1 + 1e-6)).to(sin.dtype)
            sin, cos = sin * keep, cos * keep
        fourier = torch.cat([u[..., None], sin, cos], -1)        # (B, M, 1 + 2K)
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
    """Pre-LayerNorm residual block told the latent: x + W2 act(W1 LN(x) + U z)."""

    def __init__(self, h, z_dim, act=F.relu):
        super().__init__()
        self.act = act
        self.norm = nn.LayerNorm(h)
        self.fc1 = nn.Linear(h, h)
        self.fc2 = nn.Linear(h, h)
        self.from_z = nn.Linear(z_dim, h, bias=False)

    def forward(self, x, z):
        # z enters every block (as DeepSDF re-injects its latent), once per sequence: (B, 1, H)
        return x + self.fc2(self.act(self.fc1(self.norm(x)) + self.from_z(z)[:, None, :]))


class INRDecoder(nn.Module):
    """f_theta(z, gamma(t), s) -> pose features: a residual MLP applied to every (sequence, timestamp) pair.

    The paper's is a ReLU MLP, whose kinks put acceleration above 10 Hz at every frame, where the motion is still
    too. Gated (cfg.gated): the trunk is smooth (SiLU), and the sharp part comes from a ReLU head times an
    envelope in (0, 1) of z and slow time (u, 4 ... 0.125 Hz), so it is there only where this motion is active.

    The decoder carries everything needed to use it: its config (how time is normalized, the rates it was
    trained on) and the feature statistics (buffers mean/std, filled by the trainer), so decode() below is
    the only place where its input and output are converted."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.time_enc = TimeEncoding(cfg)
        # the first layer is split by input so z's part is computed once per sequence, not once per timestamp
        self.in_z = nn.Linear(cfg.latent_dim, cfg.hidden)
        self.in_t = nn.Linear(self.time_enc.out_dim + 1, cfg.hidden, bias=False)  # +1: the clip framerate s
        act = F.silu if cfg.gated else F.relu
        self.blocks = nn.ModuleList(ResBlock(cfg.hidden, cfg.latent_dim, act) for _ in range(cfg.n_blocks))
        self.norm = nn.LayerNorm(cfg.hidden)
        self.out = nn.Linear(cfg.hidden, cfg.feature_dim)
        if cfg.gated:
            self.detail_in = nn.Linear(cfg.hidden, cfg.hidden)
            self.detail_out = nn.Linear(cfg.hidden, cfg.feature_dim)
            self.register_buffer("slow", 2 * math.pi * 4.0 / 2.0 ** torch.arange(GATE_OCTAVES), persistent=False)  # rad/s
            self.gate_t = nn.Linear(1 + 2 * len(self.slow), GATE_WIDTH)
            self.gate_z = nn.Linear(cfg.latent_dim, GATE_WIDTH, bias=False)
            self.gate_out = nn.Linear(GATE_WIDTH, cfg.feature_dim)
        # the train split's feature statistics (velocities per second): the decoder works in normalized units
        self.register_buffer("mean", torch.zeros(cfg.feature_dim))
        self.register_buffer("std", torch.ones(cfg.feature_dim))

    def forward(self, z, t, duration, fps):
        """z (B, Z), t (B, M) seconds from the sequence's start, duration (B,) seconds, fps (B,) the clip's
        framerate -> (B, M, D) normalized features."""
        # the decoder is told the clip's framerate (paper), never above the highest it saw in training
        fps = fps.clamp(max=self.cfg.max_fps)
        # time normalization (paper): the coarse coordinate u spans [0, 1] over the whole sequence
        scale = duration if self.cfg.time_norm else torch.ones_like(duration)
        u = t / scale[:, None]                                  # (B, M)
        gamma = self.time_enc(u, t, scale)                      # (B, M, F)
        # the rate as log10(fps / 20): 20 -> 0, 120 -> 0.78
        rate = torch.log(fps / 20.0).div(math.log(10.0))[:, None, None].expand(-1, t.shape[1], 1)  # (B, M, 1)
        h = self.in_z(z)[:, None, :] + self.in_t(torch.cat([gamma, rate], -1))  # (B, M, H)
        for block in self.blocks:
            h = block(h, z)
        h = self.norm(h)
        if not self.cfg.gated:
            return self.out(F.relu(h))                          # (B, M, D)
        a = t[..., None] * self.slow                            # (B, M, GATE_OCTAVES)
        slow = torch.cat([u[..., None], a.sin(), a.cos()], -1)
        envelope = torch.sigmoid(self.gate_out(F.silu(self.gate_t(slow) + self.gate_z(z)[:, None, :])))  # (B, M, D)
        return self.out(F.silu(h)) + envelope * self.detail_out(F.relu(self.detail_in(h)))


class NeRM(nn.Module):
    """Stage 1: the latent table and the INR decoder, trained together (auto-decoding)."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.latents = LatentTable(cfg)
        self.decoder = INRDecoder(cfg)

    def forward(self, idx, t, duration, fps, target):
        """Clips of sequences idx (B,) at times t (B, M) seconds, their durations (B,) and rates fps (B,),
        against target (B, M, D) normalized features -> (x_hat, loss, recon, prior).

        L^i = ||x_hat - x||^2 + lambda_KL KL(N(mu_i, Sigma_i) || N(0, I))   (paper, stage 1)
        with the squared error summed over the clip's M frames and D channels, as the paper writes it. The
        loss returned is L^i / (M D), averaged over the batch: recon is the mean squared error per element,
        and the KL (summed over latent dims) enters with lambda_KL / (M D). (Weighting the KL by lambda_KL
        against the per-element mean instead would make it M D = 8,416 times stronger than the paper's.)
        """
        z, prior = self.latents(idx, sample=self.training)
        x_hat = self.decoder(z, t, duration, fps)
        recon = F.mse_loss(x_hat, target)
        prior = prior.mean()
        loss = recon + self.cfg.kl_weight / target[0].numel() * prior
        return x_hat, loss, recon, prior


def fit_latents(decoder, sample_clip, n, steps=200, lr=0.03):
    """Auto-decoder inference: find z for n new sequences with the decoder frozen.

    sample_clip() -> (k (B,) which of the n sequences, t (B, M) seconds, duration (B,), fps (B,),
    x (B, M, D) normalized features) draws training-like clips from the new sequences. Only z (n, Z) is
    optimized, under the same N(0, I) prior (and weight) as training.
    """
    cfg = decoder.cfg
    z = torch.zeros(n, cfg.latent_dim, device=decoder.mean.device, requires_grad=True)
    opt = torch.optim.Adam([z], lr=lr)
    was_training = decoder.training
    decoder.eval()
    for p in decoder.parameters():
        p.requires_grad_(False)
    try:
        for _ in range(steps):
            k, t, duration, fps, x = sample_clip()
            prior = 0.5 * z[k].pow(2).sum(-1).mean()            # weighted as in training (NeRM.forward)
            loss = F.mse_loss(decoder(z[k], t, duration, fps), x) + cfg.kl_weight / x[0].numel() * prior
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    finally:
        for p in decoder.parameters():
            p.requires_grad_(True)
        decoder.train(was_training)
    return z.detach()


def num_frames(fps, seconds):
    """Frames of a motion of `seconds` at `fps`: k/fps for k = 0 .. floor(seconds * fps)."""
    return int(math.floor(seconds * fps + 1e-6)) + 1


@torch.no_grad()
def decode(decoder, z, fps, seconds, chunk=8192, row=256, dtype=None):
    """Any fps, any duration: latents z (B, Z) -> features (B, T, D) in real units (velocities per second).

    The one decoding path of the project (train_inr.py's held-out MRE, sample.py, eval.py): frame k is at
    exactly k / fps seconds, k = 0 .. T-1 with T = num_frames(fps, seconds), so the last frame falls at
    `seconds` or less than one frame interval before it; `seconds` is also the duration the decoder's time
    normalization divides by. seconds: a float, or (B,) floats for sequences of different lengths, each
    then valid on its first num_frames(fps, seconds_i) rows (the rest is padding). decoder may be
    compile_decoder(...)'s output; dtype=torch.bfloat16 runs it under autocast (fp32 output).

    The (sequence, timestamp) pairs are cut into rows of `row` timestamps (each sequence's last row padded with
    t = 0 and dropped), decoded in groups of 1, 2, 4 ... chunk // row rows: so few shapes that a compiled
    decoder compiles at most log2(chunk / row) + 1 times, whatever the fps, duration or batch.

    INRDecoder.forward gets, per group of n rows, z (n, Z), t (n, row) seconds, duration (n,) = `seconds` (so a
    4 s decode is the whole motion in 4 s, not the first half of an 8 s one) and fps (n,).
    """
    dev = decoder.mean.device
    B = z.shape[0]
    # frame counts from float64 seconds, as callers count them (float32 would lose a frame at times)
    seconds = torch.as_tensor(seconds, dtype=torch.float64).to(dev).expand(B)
    M = num_frames(fps, float(seconds.max()))
    t = (torch.arange(M, device=dev, dtype=torch.float64) / fps).float().expand(B, M)  # (B, M) seconds
    row = min(row, chunk)
    R = -(-M // row)                                             # rows per sequence
    t = F.pad(t, (0, R * row - M)).reshape(B * R, row)           # (B, R*row) -> (B*R, row); pad t = 0
    z = z.repeat_interleave(R, 0)                                # (B*R, Z): each row carries its z,
    dur = seconds.float().repeat_interleave(R, 0)                # (B*R,)   its sequence's duration
    rate = torch.full((B * R,), float(fps), device=dev)          # (B*R,)   and the framerate
    outs, i, most = [], 0, max(1, chunk // row)
    with torch.autocast(dev.type, dtype=dtype or torch.float32, enabled=dtype not in (None, torch.float32)):
        while i < len(t):
            n = min(most, 1 << ((len(t) - i).bit_length() - 1))  # the largest power of two that is left
            outs.append(decoder(z[i:i + n], t[i:i + n], dur[i:i + n], rate[i:i + n]).float())  # (n, row, D)
            i += n
    x = torch.cat(outs).reshape(B, R * row, -1)[:, :M]          # (B*R, row, D) -> (B, M, D)
    return x * decoder.std + decoder.mean


def compile_decoder(decoder):
    """The decoder through torch.compile (inductor: C++ on the CPU, Triton on a GPU), static shapes, for decode().

    Time encoding, residual MLP and read-out become one compiled graph per input shape; .compiles counts
    the graphs compiled (the backend runs once per graph), the figure bench.py and the tests report.
    """
    def backend(gm, example_inputs):
        from torch._inductor.compile_fx import compile_fx  # imported here: `import nerm` stays light
        compiled.compiles += 1
        return compile_fx(gm, example_inputs)

    # each shape decode() uses is its own graph (dynamic=False); raise dynamo's per-function limit (8)
    # so several decoders in one process (bench.py: two models, 6 shapes each) stay compiled
    # (named cache_size_limit before torch 2.7)
    limit = "recompile_limit" if hasattr(torch._dynamo.config, "recompile_limit") else "cache_size_limit"
    setattr(torch._dynamo.config, limit, max(getattr(torch._dynamo.config, limit), 64))
    compiled = torch.compile(decoder, backend=backend, dynamic=False)
    compiled.compiles = 0
    return compiled


# ----------------------------------------------------------------------------------------------
# Stage 2, text: a word vocabulary and a small transformer encoder (no pretrained weights can be had here)
# ----------------------------------------------------------------------------------------------


class Vocab:
    """Word-level vocabulary built from training captions; PAD = 0, UNK = 1."""
    PAD, UNK = 0, 1
    SPECIALS = ["<pad>", "<unk>"]

    def __init__(self, words):
        assert words[:2] == self.SPECIALS, "a vocabulary list starts with <pad>, <unk>"
        self.words = list(words)
        self.index = {w: i for i, w in enumerate(self.words)}

    @staticmethod
    def normalize(text):
        """Lowercase, drop apostrophes ("don't" -> "dont"), other punctuation -> space; a list of words."""
        return re.sub(r"[^\w\s]", " ", text.lower().replace("'", "")).split()

    @classmethod
    def build(cls, captions, min_count=1):
        counts = {}
        for c in captions:
            for w in cls.normalize(c):
                counts[w] = counts.get(w, 0) + 1
        # most frequent first, ties alphabetical: the same captions always give the same ids
        kept = sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))
        return cls(cls.SPECIALS + kept)

    def to_list(self):
        return list(self.words)  # a plain list of str: loads with torch.load(weights_only=True)

    def __len__(self):
        return len(self.words)

    def encode(self, texts, max_words=32):
        """list of B strings -> LongTensor (B, L), L = longest caption (<= max_words), padded with PAD."""
        ids = []
        for t in texts:
            words = self.normalize(t)
            if not words:
                raise ValueError("empty text")
            ids.append([self.index.get(w, self.UNK) for w in words[:max_words]])
        out = torch.full((len(ids), max(len(i) for i in ids)), self.PAD, dtype=torch.long)
        for b, i in enumerate(ids):
            out[b, :len(i)] = torch.tensor(i)
        return out


class TextEncoder(nn.Module):
    """Token + learned position embeddings, a transformer encoder; per-token embeddings (B, L, d)."""

    def __init__(self, config):
        super().__init__()
        d = config.d_model
        self.tok = nn.Embedding(config.vocab_size, d, padding_idx=Vocab.PAD)
        self.pos = nn.Parameter(torch.randn(1, config.max_words, d) * 0.02)
        layer = nn.TransformerEncoderLayer(d, config.n_heads, 4 * d, config.dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        # nested tensors would drop trailing padding from the output: keep (B, L, d) as given
        self.encoder = nn.TransformerEncoder(layer, config.text_layers, enable_nested_tensor=False)
        self.ln = nn.LayerNorm(d)

    def forward(self, tokens):
        mask = tokens == Vocab.PAD                                     # (B, L) True at padding
        x = self.tok(tokens) + self.pos[:, :tokens.shape[1]]           # (B, L, d)
        return self.ln(self.encoder(x, src_key_padding_mask=mask)), mask

# ----------------------------------------------------------------------------------------------
# The denoiser eps_phi(z_k, k, c, duration)
# ----------------------------------------------------------------------------------------------


def sinusoidal(x, dim, max_period=10000.0):
    """(B,) real positions -> (B, dim) sin/cos features (Vaswani et al.; Ho et al.'s timestep embedding)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=x.device) / half)  # (dim/2,)
    angles = x.float()[:, None] * freqs[None]                                               # (B, dim/2)
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class Denoiser(nn.Module):
    """Transformer over [k token, duration token, Q tokens read from z_k], cross-attending to the condition."""

    def __init__(self, config):
        super().__init__()
        d, self.Q, self.d = config.d_model, config.latent_tokens, config.d_model
        # every token reads all of z_k and the read-out sees all tokens, so a condition vector (the same
        # in every token) maps linearly onto any z; with z cut into Q pieces, each piece had to decode its
        # own part of the class mean from it and sampled classes came out wrong after minutes of training
        self.z_in = nn.Linear(config.latent_dim, self.Q * d)
        self.time_mlp = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.dur_mlp = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.pos = nn.Parameter(torch.randn(1, self.Q + 2, d) * 0.02)
        layer = nn.TransformerDecoderLayer(d, config.n_heads, 4 * d, config.dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerDecoder(layer, config.n_layers)
        self.z_out = nn.Linear(self.Q * d, config.latent_dim)  # no final LayerNorm: keeps z_k's scale
        nn.init.zeros_(self.z_out.weight)  # so the network starts as the Gaussian eps below
        nn.init.zeros_(self.z_out.bias)
        # for z_0 ~ N(0, I) (what set_latent_stats aims at) the optimal eps is sqrt(1 - abar_k) z_k: the
        # network only learns the correction. Still the paper's eps-objective; without this term
        # the eps error at high noise, magnified 1/sqrt(abar_k) ~ 150x in the predicted z_0, sent DDIM astray
        skip = ddpm_schedule(config.beta1, config.beta2, config.timesteps)["sqrt_one_minus_alpha_bar"]
        self.register_buffer("skip", skip.float(), persistent=False)

    def forward(self, z, k, cond, cond_mask, duration):
        B = z.shape[0]
        zt = self.z_in(z).view(B, self.Q, self.d)                       # (B, Z) -> (B, Q, d)
        kt = self.time_mlp(sinusoidal(k, self.d))[:, None]              # (B, 1, d)
        # log-duration, so 2 s vs 4 s differs as much as 5 s vs 10 s; x100 spreads ~[-1, 3] over the
        # frequencies the way timesteps 0..999 are spread
        dt = self.dur_mlp(sinusoidal(100 * torch.log(duration), self.d))[:, None]  # (B, 1, d)
        x = torch.cat([kt, dt, zt], dim=1) + self.pos                   # (B, Q+2, d)
        x = self.blocks(x, cond, memory_key_padding_mask=cond_mask)     # cross-attends to (B, L, d)
        return self.skip[k, None] * z + self.z_out(x[:, 2:].reshape(B, -1))  # (B, Q*d) -> (B, Z)

# ----------------------------------------------------------------------------------------------
# DDPM (Ho et al. 2020) on z, with classifier-free guidance (Ho & Salimans 2022)
# ----------------------------------------------------------------------------------------------


def ddpm_schedule(beta1=1e-4, beta2=0.02, T=1000):
    """Linear schedule and every derived coefficient, float64; index k = 0..T-1 is Ho et al.'s t = k+1."""
    betas = torch.linspace(beta1, beta2, T, dtype=torch.float64)
    alphas = 1 - betas
    alpha_bar = torch.cumprod(alphas, dim=0)
    alpha_bar_prev = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar[:-1]])
    return {
        "betas": betas, "alphas": alphas, "alpha_bar": alpha_bar, "alpha_bar_prev": alpha_bar_prev,
        "sqrt_alpha_bar": alpha_bar.sqrt(), "sqrt_one_minus_alpha_bar": (1 - alpha_bar).sqrt(),
        "sqrt_recip_alphas": alphas.rsqrt(),
        # q(z_{k-1} | z_k, z_0) = N(coef1 z_0 + coef2 z_k, posterior_variance)   (Ho et al. eq. 6-7)
        "posterior_variance": betas * (1 - alpha_bar_prev) / (1 - alpha_bar),
        "posterior_mean_coef1": betas * alpha_bar_prev.sqrt() / (1 - alpha_bar),
        "posterior_mean_coef2": (1 - alpha_bar_prev) * alphas.sqrt() / (1 - alpha_bar),
    }


# the default classifier-free guidance scale r of sample.py and eval.py: of 1.0, 1.5, 2.0, 2.5 and 3.5, the one
# with the lowest FID on the embedded data's val split (RESULTS.md); stronger guidance smooths the motion
GUIDANCE = 1.5


@dataclass
class DiffusionConfig:
    latent_dim: int = 256      # Z, the stage-1 latent
    cond: str = "text"         # 'text' | 'action' | 'none'
    vocab: list = None         # Vocab.to_list() when cond == 'text': the checkpoint rebuilds the tokenizer
    num_actions: int = 0       # action labels when cond == 'action'
    d_model: int = 128         # 128 trains in minutes on 2 CPU cores; 256 costs ~2x per step (GPU: use 256+)
    n_layers: int = 4          # denoiser blocks (self-attention, cross-attention, MLP)
    n_heads: int = 4
    latent_tokens: int = 8     # Q: tokens the denoiser reads z_k into
    text_layers: int = 2
    max_words: int = 32
    timesteps: int = 1000      # T
    beta1: float = 1e-4
    beta2: float = 0.02
    cond_drop: float = 0.1     # probability of training on the null condition (classifier-free guidance)
    dropout: float = 0.1

    def __post_init__(self):
        check_config(self, latent_dim=(1, 4096), num_actions=(0, 10**5), d_model=(1, 4096), n_layers=(1, 64),
                     n_heads=(1, 64), latent_tokens=(1, 256), text_layers=(1, 16), max_words=(1, 1024),
                     timesteps=(2, 10**4), beta1=(1e-8, 0.5), beta2=(1e-8, 0.5), cond_drop=(0, 0.99),
                     dropout=(0, 0.99), cond=("text", "action", "none"))
        if self.d_model % self.n_heads or self.beta1 >= self.beta2:
            raise guard.UserError(f"model settings: d_model {self.d_model} must be a multiple of n_heads "
                                  f"{self.n_heads}, and beta1 {self.beta1:g} below beta2 {self.beta2:g}")

    @property
    def vocab_size(self):
        return len(self.vocab)


class LatentDiffusion(nn.Module):
    """eps-prediction DDPM on z with a text / action / null condition, DDPM and DDIM samplers."""

    def __init__(self, config):
        super().__init__()
        assert config.cond in ("text", "action", "none"), config.cond
        self.config = config
        d = config.d_model
        if config.cond == "text":
            assert config.vocab, "cond='text' needs DiffusionConfig(vocab=Vocab.build(captions).to_list())"
            self.vocab = Vocab(config.vocab)
            self.text_encoder = TextEncoder(config)
        elif config.cond == "action":
            assert config.num_actions > 0, "cond='action' needs num_actions"
            self.action_emb = nn.Embedding(config.num_actions, d)
        self.null = nn.Parameter(torch.randn(1, 1, d) * 0.02)  # the learned null condition
        self.denoiser = Denoiser(config)
        for name, v in ddpm_schedule(config.beta1, config.beta2, config.timesteps).items():
            self.register_buffer(name, v.float())  # computed in float64, kept as float32
        # z is standardised for the DDPM: per-dim mean, one global std (LDM's scale factor), which
        # does not blow up dimensions that the KL term collapsed; set_latent_stats fills them
        self.register_buffer("z_mean", torch.zeros(config.latent_dim))
        self.register_buffer("z_std", torch.ones(()))

    @torch.no_grad()
    def set_latent_stats(self, mu, sigma=None):
        """Standardise what the DDPM trains on: the latents mu (N, Z), or with sigma (N, Z) the draws
        mu + sigma * eps from the variational posteriors, whose spread adds mean(sigma^2) to the variance."""
        self.z_mean.copy_(mu.mean(0))
        var = (mu - mu.mean(0)).pow(2).mean() + (0 if sigma is None else sigma.pow(2).mean())
        self.z_std.copy_(var.sqrt())

    # ---- conditions: (B, L, d) memory and (B, L) padding mask, True = ignore ----

    def encode_text(self, texts):
        """B strings -> (emb (B, L, d), mask (B, L)). A local pretrained encoder (projected to d) can
        replace this one function: the denoiser only sees (emb, mask)."""
        tokens = self.vocab.encode(texts, self.config.max_words).to(self.null.device)
        return self.text_encoder(tokens)

    def condition(self, B, text=None, action=None):
        """(B, L, d) condition tokens and mask; with neither text nor action, the null condition."""
        if self.config.cond == "text" and text is not None:
            return self.encode_text([text] * B if isinstance(text, str) else list(text))
        if self.config.cond == "action" and action is not None:
            action = torch.as_tensor(action, device=self.null.device).long().expand(B)
            return self.action_emb(action)[:, None], torch.zeros(B, 1, dtype=torch.bool, device=action.device)
        return self.null.expand(B, 1, -1), torch.zeros(B, 1, dtype=torch.bool, device=self.null.device)

    def drop_condition(self, cond, mask, drop):
        """Replace the condition of rows where drop (B,) is True by the null token (then padding)."""
        null = torch.cat([self.null, cond.new_zeros(1, cond.shape[1] - 1, cond.shape[2])], dim=1)  # (1, L, d)
        null_mask = torch.ones_like(mask[:1])
        null_mask[:, 0] = False
        return (torch.where(drop[:, None, None], null, cond), torch.where(drop[:, None], null_mask, mask))

    # ---- training ----

    def q_sample(self, z0, k, noise):
        """z_k = sqrt(abar_k) z_0 + sqrt(1 - abar_k) eps   (Ho et al. eq. 4)."""
        return self.sqrt_alpha_bar[k, None] * z0 + self.sqrt_one_minus_alpha_bar[k, None] * noise

    def forward(self, z0, cond, duration):
        """The training loss, Algorithm 1: E ||eps - eps_phi(z_k, k, c)||^2. cond: B captions, (B,) action ids
        or None. (forward, so that DistributedDataParallel, which syncs what runs through it, can wrap it.)"""
        B = z0.shape[0]
        duration = torch.as_tensor(duration, dtype=torch.float32, device=z0.device).expand(B)
        z0 = (z0 - self.z_mean) / self.z_std
        k = torch.randint(0, self.config.timesteps, (B,), device=z0.device)
        noise = torch.randn_like(z0)
        c, mask = self.condition(B, text=cond, action=cond)
        if self.config.cond != "none":  # the same network learns eps(c) and eps(null)
            c, mask = self.drop_condition(c, mask, torch.rand(B, device=z0.device) < self.config.cond_drop)
        return F.mse_loss(self.denoiser(self.q_sample(z0, k, noise), k, c, mask, duration), noise)

    # ---- sampling ----

    def guided_eps(self, z, k, cond, mask, duration, guidance):
        """eps_hat = r eps(c) + (1 - r) eps(null) = uncond + r (cond - uncond)   (paper, classifier-free guidance)."""
        if guidance == 1 or self.config.cond == "none":
            return self.denoiser(z, k, cond, mask, duration)  # one forward pass, no null branch
        B = z.shape[0]
        u, umask = self.drop_condition(cond, mask, torch.ones(B, dtype=torch.bool, device=z.device))
        eps = self.denoiser(torch.cat([z, z]), torch.cat([k, k]), torch.cat([cond, u]),
                            torch.cat([mask, umask]), torch.cat([duration, duration]))  # (2B, Z)
        eps_c, eps_u = eps.chunk(2)
        return eps_u + guidance * (eps_c - eps_u)

    def ddpm_sample(self, eps_fn, z, generator=None):
        """Algorithm 2 (ancestral, all T steps), sigma_k^2 = the posterior variance; z (B, Z) = z_T."""
        for k in reversed(range(self.config.timesteps)):
            kk = torch.full((z.shape[0],), k, dtype=torch.long, device=z.device)
            eps = eps_fn(z, kk)
            z = self.sqrt_recip_alphas[k] * (z - self.betas[k] / self.sqrt_one_minus_alpha_bar[k] * eps)
            if k > 0:
                noise = torch.randn(z.shape, generator=generator, device=z.device)
                z = z + self.posterior_variance[k].sqrt() * noise
        return z

    def ddim_sample(self, eps_fn, z, steps=50):
        """DDIM with eta = 0 (Song et al. eq. 12): deterministic, on `steps` evenly spaced timesteps."""
        ks = torch.linspace(self.config.timesteps - 1, 0, steps).round().long().tolist()
        for k, k_prev in zip(ks, ks[1:] + [-1]):
            kk = torch.full((z.shape[0],), k, dtype=torch.long, device=z.device)
            eps = eps_fn(z, kk)
            z0 = (z - self.sqrt_one_minus_alpha_bar[k] * eps) / self.sqrt_alpha_bar[k]  # predicted z_0
            abar_prev = self.alpha_bar[k_prev] if k_prev >= 0 else torch.ones_like(self.alpha_bar[0])
            z = abar_prev.sqrt() * z0 + (1 - abar_prev).sqrt() * eps
        return z

    @torch.no_grad()
    def sample(self, n, text=None, action=None, duration=4.0, guidance=GUIDANCE, sampler="ddim", steps=50,
               generator=None):
        """n latents (n, Z) for a caption (str or n strs), an action id, or nothing; duration in seconds."""
        if sampler not in ("ddim", "ddpm"):
            raise ValueError(f"sampler must be 'ddim' or 'ddpm', not {sampler!r}")
        was_training, dev = self.training, self.null.device
        self.eval()  # no dropout while sampling
        try:
            cond, mask = self.condition(n, text=text, action=action)  # encoded once, not per step
            duration = torch.as_tensor(duration, dtype=torch.float32, device=dev).expand(n)
            z = torch.randn((n, self.config.latent_dim), generator=generator, device=dev)  # z_T ~ N(0, I)
            eps_fn = lambda z, k: self.guided_eps(z, k, cond, mask, duration, guidance)  # noqa: E731
            if sampler == "ddpm":
                z = self.ddpm_sample(eps_fn, z, generator)
            else:
                z = self.ddim_sample(eps_fn, z, steps)
        finally:
            self.train(was_training)
        return z * self.z_std + self.z_mean  # back to the stage-1 latent's scale


# ----------------------------------------------------------------------------------------------
# Self-check
# ----------------------------------------------------------------------------------------------

if __name__ == "__main__":
    torch.manual_seed(0)
    cfg = INRConfig(feature_dim=263, num_sequences=4, hidden=128, n_blocks=2)
    model = NeRM(cfg)
    idx = torch.tensor([0, 1, 2, 3])
    t = torch.rand(4, 16)                       # (B, M) times in seconds
    fps = torch.tensor([20.0, 60.0, 100.0, 120.0])
    x = torch.randn(4, 16, 263)
    dur = torch.full((4,), 1.0)                 # (B,) sequence durations, s
    x_hat, loss, recon, kl = model(idx, t, dur, fps, x)
    print(f"stage 1: t {tuple(t.shape)} -> x_hat {tuple(x_hat.shape)}, loss {loss.item():.4f}, "
          f"recon {recon.item():.4f}, KL {kl.item():.2f}")
    # a tiny overfit: one sequence, a smooth target, the loss must fall
    target = torch.sin(6.0 * t[:1, :, None] + torch.arange(263) * 0.1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for i in range(200):
        _, loss, recon, _ = model(idx[:1], t[:1], dur[:1], fps[:1], target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    print(f"overfit one sequence: recon {recon.item():.5f} after 200 steps")
    z = model.latents.mu[:2].detach()
    for rate in (20, 120):                      # any fps, any duration: the same z at two rates
        print(f"decode z {tuple(z.shape)} for 2.5 s at {rate:3d} fps -> {tuple(decode(model.decoder, z, rate, 2.5).shape)}")
    # stage 2: a few training steps and a 50-step DDIM sample for each kind of condition
    captions = ["A person walks forward, then turns left.", "someone jumps twice", "a man waves his hand"]
    vocab = Vocab.build(captions)
    for cond in ("text", "action", "none"):
        dcfg = DiffusionConfig(cond=cond, vocab=vocab.to_list(), num_actions=12)
        diffusion = LatentDiffusion(dcfg)
        z0 = torch.randn(64, dcfg.latent_dim)
        c = [captions[i % 3] for i in range(64)] if cond == "text" else torch.randint(0, 12, (64,))
        opt = torch.optim.AdamW(diffusion.parameters(), lr=1e-4)
        for _ in range(3):
            loss = diffusion(z0, c if cond != "none" else None, torch.rand(64) * 8 + 1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        z = diffusion.sample(1, text=captions[0] if cond == "text" else None, action=3 if cond == "action" else None,
                             duration=3.0, generator=torch.Generator().manual_seed(0))
        print(f"stage 2 ({cond:6s}): {sum(p.numel() for p in diffusion.parameters()) / 1e6:.2f}M params, "
              f"loss {loss.item():.3f}, sampled z {tuple(z.shape)}")
