"""
Stage 2 of NeRM: a latent DDPM with classifier-free guidance that generates the INR's latent z from
text, an action label, or nothing (DESIGN §1). To be pasted into nerm.py: torch and the standard library.

    python stage2_wip.py          # self-check on random tensors, prints shapes and timings

Shape letters (besides nerm.py's): Z latent width, M latent tokens (Z = M * Z/M), L words, d model width.
How a condition enters: the denoiser is a transformer over [timestep, duration, z's M pieces] that
cross-attends to the condition tokens (L text tokens, 1 action token or 1 learned null token).
Cross-attention keeps long captions cheap (they are only keys and values) and lets the null condition
be one token in any batch's memory.
"""
import math
import re
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

# ----------------------------------------------------------------------------------------------
# Text: a word vocabulary and a small transformer encoder (no pretrained weights can be had here)
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

    @classmethod
    def from_list(cls, words):
        return cls(words)

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

    def decode(self, ids):
        return " ".join(self.words[i] for i in ids.tolist() if i != self.PAD)


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
    """Transformer over [k token, duration token, M pieces of z_k] that cross-attends to the condition."""

    def __init__(self, config):
        super().__init__()
        d, self.M = config.d_model, config.latent_tokens
        assert config.latent_dim % self.M == 0, "latent_dim must split into latent_tokens pieces"
        self.d = d
        self.z_in = nn.Linear(config.latent_dim // self.M, d)
        self.time_mlp = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.dur_mlp = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.pos = nn.Parameter(torch.randn(1, self.M + 2, d) * 0.02)
        layer = nn.TransformerDecoderLayer(d, config.n_heads, 4 * d, config.dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerDecoder(layer, config.n_layers)
        # no final LayerNorm: at high noise eps ~ z_k, and a linear read-out of the residual stream keeps
        # z_k's scale (with a final LN, DDIM drifted away from the data in the overfit test)
        self.z_out = nn.Linear(d, config.latent_dim // self.M)

    def forward(self, z, k, cond, cond_mask, duration):
        B = z.shape[0]
        zt = self.z_in(z.view(B, self.M, -1))                          # (B, M, d)
        kt = self.time_mlp(sinusoidal(k, self.d))[:, None]              # (B, 1, d)
        # log-duration, so 2 s vs 4 s differs as much as 5 s vs 10 s; x100 spreads ~[-1, 3] over the
        # frequencies the way timesteps 0..999 are spread
        dt = self.dur_mlp(sinusoidal(100 * torch.log(duration), self.d))[:, None]  # (B, 1, d)
        x = torch.cat([kt, dt, zt], dim=1) + self.pos                   # (B, M+2, d)
        x = self.blocks(x, cond, memory_key_padding_mask=cond_mask)     # cross-attends to (B, L, d)
        return self.z_out(x[:, 2:]).reshape(B, -1)                     # (B, M, Z/M) -> (B, Z)

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


@dataclass
class DiffusionConfig:
    latent_dim: int = 256      # Z, the stage-1 latent
    cond: str = "text"         # 'text' | 'action' | 'none'
    vocab: list = None         # Vocab.to_list() when cond == 'text': the checkpoint rebuilds the tokenizer
    num_actions: int = 0       # action labels when cond == 'action'
    d_model: int = 128         # 128 trains in minutes on 2 CPU cores; 256 costs ~2x per step (GPU: use 256+)
    n_layers: int = 4          # denoiser blocks (self-attention, cross-attention, MLP)
    n_heads: int = 4
    latent_tokens: int = 8     # M: z is read as M pieces of Z/M (256 -> 8 x 32)
    text_layers: int = 2
    max_words: int = 32
    timesteps: int = 1000      # T
    beta1: float = 1e-4
    beta2: float = 0.02
    cond_drop: float = 0.1     # probability of training on the null condition (classifier-free guidance)
    dropout: float = 0.1

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
            self.vocab = Vocab.from_list(config.vocab)
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
    def set_latent_stats(self, z):
        self.z_mean.copy_(z.mean(0))
        self.z_std.copy_((z - z.mean(0)).std())

    # ---- conditions: (B, L, d) memory and (B, L) padding mask, True = ignore ----

    def encode_text(self, texts):
        """B strings -> (emb (B, L, d), mask (B, L)). A local pretrained encoder (projected to d) can
        replace this one function: the denoiser only sees (emb, mask)."""
        tokens = self.vocab.encode(texts, self.config.max_words).to(self.null.device)
        return self.text_encoder(tokens)

    def condition(self, B, text=None, action=None):
        if self.config.cond == "text":
            if text is None:
                raise ValueError("this model is text-conditioned: give text")
            return self.encode_text([text] * B if isinstance(text, str) else list(text))
        if self.config.cond == "action":
            if action is None:
                raise ValueError("this model is action-conditioned: give an action label")
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

    def loss(self, z0, cond, duration):
        """Algorithm 1: E ||eps - eps_phi(z_k, k, c)||^2. cond: B captions, (B,) action ids or None."""
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
        """eps_hat = r eps(c) + (1 - r) eps(null) = uncond + r (cond - uncond)   (DESIGN §1)."""
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
    def sample(self, n, text=None, action=None, duration=4.0, guidance=2.5, sampler="ddim", steps=50,
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


if __name__ == "__main__":
    import time
    torch.manual_seed(0)
    torch.set_num_threads(2)
    captions = ["A person walks forward, then turns left.", "someone jumps twice", "a man waves his hand"]
    vocab = Vocab.build(captions)
    print("vocab", len(vocab), "| tokens", tuple(vocab.encode(captions).shape))
    for cond in ("text", "action", "none"):
        cfg = DiffusionConfig(cond=cond, vocab=vocab.to_list(), num_actions=12)
        model = LatentDiffusion(cfg)
        B, z0 = 64, torch.randn(64, cfg.latent_dim)
        c = [captions[i % 3] for i in range(B)] if cond == "text" else torch.randint(0, 12, (B,))
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        t0 = time.time()
        for _ in range(5):
            loss = model.loss(z0, c if cond != "none" else None, torch.rand(B) * 8 + 1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        step = (time.time() - t0) / 5
        g = torch.Generator().manual_seed(0)
        t0 = time.time()
        z = model.sample(1, text=captions[0], action=3, duration=3.0, guidance=2.5, generator=g)
        params = sum(p.numel() for p in model.parameters()) / 1e6
        print(f"{cond:6s} params {params:.2f}M | loss {loss.item():.3f}"
              f" | train step (B={B}) {step * 1e3:.0f} ms | 50-step DDIM sample {tuple(z.shape)}"
              f" {(time.time() - t0) * 1e3:.0f} ms")
