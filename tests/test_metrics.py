"""metrics.py: the T2M metrics, as T2M (EricGuo5513/text-to-motion) computes them, and the framerate table's figures
(mean acceleration, the band error), against closed forms and independent formulas:
python -m pytest -q tests/test_metrics.py"""
import math

import numpy as np
import pytest
import torch

import data
import motion
from metrics import diversity, fid, matching_distance, mean_ci, multimodality, r_precision


def random_rotation(d, rng):
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


def simplex(n, d, rng):
    """n points in R^d (d >= n), every two distinct ones exactly sqrt(2) apart: shifted basis vectors."""
    return np.eye(n, d) + rng.standard_normal(d)


# ---- FID ----

def test_fid_of_a_set_with_itself_is_zero():
    x = np.random.default_rng(0).standard_normal((500, 16)) @ np.random.default_rng(1).standard_normal((16, 16))
    assert abs(fid(x, x)) <= 1e-6 * np.trace(np.cov(x, rowvar=False))


def test_fid_matches_scipy_sqrtm():
    linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(0)
    real = rng.standard_normal((400, 12)) @ rng.standard_normal((12, 12))
    gen = rng.standard_normal((300, 12)) @ rng.standard_normal((12, 12)) + 0.5
    mu1, mu2 = real.mean(0), gen.mean(0)
    s1, s2 = np.cov(real, rowvar=False), np.cov(gen, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real                     # T2M's calculate_frechet_distance
    ref = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean)
    assert fid(real, gen) == pytest.approx(ref, rel=1e-8)
    assert fid(gen, real) == pytest.approx(ref, rel=1e-8)    # the distance is symmetric


def sqrtm_denman_beavers(a, iters=60):
    """Principal square root of a matrix with positive eigenvalues (Denman & Beavers 1976), no scipy:
    Y <- (Y + Z^-1) / 2, Z <- (Z + Y^-1) / 2 from Y = A, Z = I converges to Y = A^1/2, Z = A^-1/2."""
    y, z = a.copy(), np.eye(len(a))
    for _ in range(iters):
        y, z = (y + np.linalg.inv(z)) / 2, (z + np.linalg.inv(y)) / 2
    return y


def test_fid_matches_a_direct_matrix_square_root():
    # T2M's formula with (S1 S2)^1/2 of the non-symmetric product itself, computed by another method
    rng = np.random.default_rng(1)
    real = rng.standard_normal((400, 12)) @ rng.standard_normal((12, 12))
    gen = rng.standard_normal((300, 12)) @ rng.standard_normal((12, 12)) * 0.7 + 0.3
    s1, s2 = np.cov(real, rowvar=False), np.cov(gen, rowvar=False)
    root = sqrtm_denman_beavers(s1 @ s2)
    np.testing.assert_allclose(root @ root, s1 @ s2, rtol=1e-9, atol=1e-9 * np.abs(s1 @ s2).max())
    ref = ((real.mean(0) - gen.mean(0)) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(root)
    assert fid(real, gen) == pytest.approx(ref, rel=1e-8)


def test_fid_diagonal_covariances_closed_form():
    # sample sets whose np.cov is exactly diagonal: centred orthonormal columns, scaled per column
    rng = np.random.default_rng(0)
    n, d = 200, 6

    def with_diagonal_cov(scale, mu):
        a = rng.standard_normal((n, d))
        q, _ = np.linalg.qr(a - a.mean(0))                 # columns orthonormal and still centred
        return mu + q * scale, scale ** 2 / (n - 1)        # samples, their per-dimension variances

    real, va = with_diagonal_cov(rng.uniform(1, 20, d), rng.standard_normal(d))
    gen, vb = with_diagonal_cov(rng.uniform(1, 20, d), rng.standard_normal(d))
    np.testing.assert_allclose(np.cov(real, rowvar=False), np.diag(va), atol=1e-12)
    # diagonal S1, S2: Tr(S1 + S2 - 2 (S1 S2)^1/2) = sum_i (sqrt(a_i) - sqrt(b_i))^2
    ref = ((real.mean(0) - gen.mean(0)) ** 2).sum() + ((np.sqrt(va) - np.sqrt(vb)) ** 2).sum()
    assert fid(real, gen) == pytest.approx(ref, rel=1e-9)


def test_fid_of_gaussian_samples_approaches_the_closed_form():
    # two Gaussians with full (non-diagonal) but commuting covariances U diag(a) U^T, U diag(b) U^T:
    # then FID = |mu1 - mu2|^2 + sum_i (sqrt(a_i) - sqrt(b_i))^2
    rng = np.random.default_rng(0)
    d = 4
    u = random_rotation(d, rng)
    a, b = np.array([1.0, 2.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0, 2.0])
    mu1, mu2 = np.zeros(d), np.array([1.0, -0.5, 0.0, 0.5])
    real = rng.multivariate_normal(mu1, u @ np.diag(a) @ u.T, 200_000)
    gen = rng.multivariate_normal(mu2, u @ np.diag(b) @ u.T, 200_000)
    ref = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert fid(real, gen) == pytest.approx(ref, abs=0.1)                # ~4 sigma of the sampling noise


# ---- R-precision ----

def test_r_precision_when_text_equals_motion():
    x = np.random.default_rng(0).standard_normal((64, 8))
    np.testing.assert_array_equal(r_precision(x, x, k=3), [1.0, 1.0, 1.0])


def test_r_precision_own_motion_second_nearest_and_last_batch_dropped():
    # motions 10 apart on a line; each text sits 6 from its own motion and 4 from a neighbour's
    rng = np.random.default_rng(0)
    direction = random_rotation(5, rng)[0]
    pos = 10.0 * np.arange(32)
    text_pos = pos + np.where(np.arange(32) < 31, 6.0, -6.0)          # the last one's neighbour is below it
    motion = np.concatenate([pos, pos])[:, None] * direction + 3.0      # two full batches of 32
    text = np.concatenate([text_pos, text_pos])[:, None] * direction + 3.0
    # 7 more exact matches: a partial batch, which would raise top-1 if it were counted
    extra = rng.standard_normal((7, 5))
    got = r_precision(np.concatenate([text, extra]), np.concatenate([motion, extra]), k=3)
    np.testing.assert_array_equal(got, [0.0, 1.0, 1.0])


def test_r_precision_random_is_chance_and_matches_ranks():
    rng = np.random.default_rng(0)
    n, k = 32 * 300, 5
    text, motion = rng.standard_normal((n, 8)), rng.standard_normal((n, 8))
    got = r_precision(text, motion, k=k)
    # independent: a text's own motion is in the top j when fewer than j motions of its batch are closer
    hits = np.zeros(k)
    for i in range(n):
        b = i // 32 * 32
        dist = np.sqrt(((text[i] - motion[b:b + 32]) ** 2).sum(1))
        hits += (dist < dist[i - b]).sum() < np.arange(1, k + 1)
    np.testing.assert_allclose(got, hits / n, atol=1e-12)
    np.testing.assert_allclose(got, np.arange(1, k + 1) / 32, atol=0.01)   # chance: j / 32


# ---- diversity and multimodality ----

def t2m_diversity(x, pairs, seed):
    """T2M's calculate_diversity, written out with loops (same draws: two choices without replacement)."""
    rng = np.random.default_rng(seed)
    first, second = rng.choice(len(x), pairs, replace=False), rng.choice(len(x), pairs, replace=False)
    return sum(math.dist(x[i], x[j]) for i, j in zip(first, second)) / pairs


def test_diversity_known_distances():
    rng = np.random.default_rng(0)
    assert diversity(np.tile(rng.standard_normal(7), (400, 1))) == 0.0     # all rows identical
    # vertices of a regular simplex, all sqrt(2) apart; the draws are independent, so c of the 300 pairs
    # may be one motion twice (distance 0) and the mean is sqrt(2) (300 - c) / 300 for a small integer c
    c = 300 - diversity(simplex(400, 400, rng) * 3.0) / (3.0 * math.sqrt(2)) * 300
    assert abs(c - round(c)) < 1e-9 and 0 <= round(c) <= 5
    x = rng.standard_normal((500, 16))
    assert diversity(x, pairs=300, seed=3) == pytest.approx(t2m_diversity(x, 300, 3), rel=1e-12)
    with pytest.raises(AssertionError):
        diversity(x[:100], pairs=300)                    # T2M needs more motions than pairs


def test_multimodality_known_distances():
    rng = np.random.default_rng(0)
    # samples identical within each text but not across texts: no spread within a text
    assert multimodality(np.repeat(rng.standard_normal((20, 1, 6)), 30, axis=1)) == 0.0
    # text m's 30 samples on a simplex scaled by r_m: pair distances r_m sqrt(2), or 0 for a repeated sample
    r = rng.uniform(0.5, 3.0, 20)
    x = np.stack([simplex(30, 32, rng) * rm for rm in r])                # (M texts, S samples, D)
    c = 10 - multimodality(x, pairs=10) / (r.mean() * math.sqrt(2)) * 10
    assert abs(c - round(c)) < 1e-9 and 0 <= round(c) <= 3
    # T2M's calculate_multimodality, with loops: one draw of pairs shared by all texts
    x = rng.standard_normal((100, 30, 8))
    g = np.random.default_rng(5)
    first, second = g.choice(30, 10, replace=False), g.choice(30, 10, replace=False)
    ref = np.mean([[math.dist(xm[i], xm[j]) for i, j in zip(first, second)] for xm in x])
    assert multimodality(x, pairs=10, seed=5) == pytest.approx(ref, rel=1e-12)


# ---- matching distance and the report format ----

def test_matching_distance_closed_form():
    rng = np.random.default_rng(0)
    text = rng.standard_normal((50, 8))
    u = rng.standard_normal((50, 8))
    r = rng.uniform(0, 5, 50)
    motion = text + r[:, None] * u / np.linalg.norm(u, axis=1, keepdims=True)   # each exactly r_i away
    assert matching_distance(text, motion) == pytest.approx(r.mean(), rel=1e-12)


def test_mean_ci_by_hand():
    # values 1..4: mean 2.5, population variance (2.25 + 0.25 + 0.25 + 2.25) / 4 = 1.25
    mean, ci = mean_ci([1.0, 2.0, 3.0, 4.0])      # s = sqrt(5/3), t_{0.975, 3} = 3.182
    assert mean == 2.5 and ci == pytest.approx(3.182 * math.sqrt(5 / 3) / 2.0, rel=1e-12)
    assert mean_ci([0.7] * 20) == pytest.approx((0.7, 0.0), abs=1e-12)
    assert mean_ci([0.3]) == (0.3, 0.0)


def test_t_quantiles_match_scipy():
    stats = pytest.importorskip("scipy.stats")
    from metrics import T975
    for df, t in enumerate(T975, 1):
        assert t == pytest.approx(stats.t.ppf(0.975, df), abs=6e-4), df


# ---- the framerate table's mean joint acceleration ----

def test_mean_acceleration_of_sinusoids_is_the_closed_form():
    """metrics.mean_acceleration: the mean over clips, frames and joints of the norm of each root-relative joint's
    acceleration, by second differences at the rate. Joint j moving along a unit direction u_j as
    A_j u_j sin(w t + phi_j) has the second difference -(2 sin(w h / 2) / h)^2 A_j u_j sin(w t + phi_j) exactly
    (h = 1 / rate), whose norm is w^2 A_j |sin(w t + phi_j)| times the discretization factor
    sinc^2 = (sin(w h / 2) / (w h / 2))^2, within (w h)^2 / 12 of 1. The directions are oblique, so a norm over
    the wrong axis, a mean of |components| or a sum instead of a mean is far off; the factor separates the rates."""
    from metrics import mean_acceleration
    rng = np.random.default_rng(0)
    K, m, J1, w = 5, 40, 21, 2 * math.pi * 3.0                    # 3 Hz
    A = rng.uniform(0.05, 0.3, J1)                                # m
    u = rng.standard_normal((J1, 3))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    phi = rng.uniform(0, 2 * math.pi, (K, 1, J1))
    for rate in (20.0, 60.0, 120.0):
        h = 1 / rate
        t = (np.arange(m) * h)[None, :, None] + rng.uniform(0, 1, (K, 1, 1))      # (K, m, 1) each clip its own start
        ric = A * np.sin(w * t + phi)                             # (K, m, J-1) distance along u_j
        clips = rng.standard_normal((K, m, 263))                  # other channels: never read
        clips[..., motion.feature_slices(motion.SMPL22)["ric"]] = (ric[..., None] * u).reshape(K, m, 3 * J1)
        sinc2 = (math.sin(w * h / 2) / (w * h / 2)) ** 2
        assert 1 - (w * h) ** 2 / 12 <= sinc2 <= 1
        want = (w ** 2 * sinc2 * A * np.abs(np.sin(w * t[:, 1:-1] + phi))).mean()  # at the middle frames 1 .. m-2
        assert mean_acceleration(clips, rate, motion.SMPL22) == pytest.approx(want, rel=1e-9), rate
        if rate == 20.0:                                          # 3 Hz at 20 fps: 7% below the true acceleration
            assert sinc2 == pytest.approx(0.9281, abs=1e-4)


# ---- the band error: the 10-60 Hz band against the true one (metrics.band_pass, metrics.band_error) ----

def burst_motion(t, t_end, a, u, b, v, phase, f_lo=3.0, f_hi=25.0):
    """(T, J, 3): joint j moves along u_j as a_j sin(2 pi f_lo t), a term of the sine series itself (2 f_lo t_end
    whole), plus along v_j a burst b_j sin^4(pi t / t_end) sin(2 pi f_hi t + phase_j): its band, at any phase,
    since the envelope stops it at both ends (value and three derivatives 0), so the odd extension hardly
    breaks there. Only the burst lies in 10-60 Hz (its frequencies: f_hi +- 2 / t_end)."""
    w = np.sin(np.pi * t / t_end) ** 4
    low = a[:, None] * u * np.sin(2 * np.pi * f_lo * t)[:, None, None]                       # (T, J, 3)
    burst = b[:, None] * v * (w[:, None] * np.sin(2 * np.pi * f_hi * t[:, None] + phase))[..., None]
    return low + burst


def test_band_error_of_a_phase_shifted_band_is_two_minus_two_cos_phi():
    """The true band delayed by phi_j in joint j: each joint's error energy is |b_j (e^{i phi_j} - 1)|^2 / |b_j|^2
    = 2 - 2 cos(phi_j) of its band's, whatever b_j; the figure is their mean over joints (an energy-weighted
    mean, or a measure blind to phase, is far off). Missing the band: 1; a band scaled by g: (1 - g)^2;
    anything added below 10 Hz (a 3 Hz term, a line): 0; the truth: 0."""
    from metrics import band_error
    rng = np.random.default_rng(0)
    rate, t_end, J = 120.0, 2.0, 6
    t = np.arange(int(t_end * rate) + 1) / rate
    a, b = rng.uniform(0.05, 0.3, J), rng.uniform(0.002, 0.05, J)              # m: a slow swing, a 25 Hz burst
    u, v = rng.standard_normal((J, 3)), rng.standard_normal((J, 3))
    psi = rng.uniform(0, 2 * math.pi, J)
    true = burst_motion(t, t_end, a, u, b, v, psi)
    assert band_error(true, true, rate) == 0.0
    for phi in (0.3, math.pi / 3, 2.0, math.pi):
        assert band_error(burst_motion(t, t_end, a, u, b, v, psi + phi), true, rate) == pytest.approx(
            2 - 2 * math.cos(phi), abs=1e-9), phi
    phi = rng.uniform(0, math.pi, J)
    assert band_error(burst_motion(t, t_end, a, u, b, v, psi + phi), true, rate) == pytest.approx(
        np.mean(2 - 2 * np.cos(phi)), abs=1e-9)
    assert band_error(burst_motion(t, t_end, a, u, 0 * b, v, psi), true, rate) == pytest.approx(1.0, abs=1e-9)
    for g in (0.5, 1.5, 3.0):
        assert band_error(burst_motion(t, t_end, a, u, g * b, v, psi), true, rate) == pytest.approx((1 - g) ** 2, abs=1e-9)
    slow = burst_motion(t, t_end, 2 * a, -u, b, v, psi) + rng.standard_normal((J, 3)) * (1 + 0.4 * t[:, None, None])
    assert band_error(slow, true, rate) < 1e-18


def test_band_pass_is_the_sine_series_of_the_sequence_less_its_end_line():
    """metrics.band_pass against its definition written out: y = x less the line through its end frames;
    y_n = sum_k c_k sin(pi k n / (T - 1)) with c_k = 2 / (T - 1) sum_n y_n sin(pi k n / (T - 1)), k = 1 .. T - 2
    (the sines are orthogonal on n = 1 .. T - 2); keep the terms at lo <= k rate / (2 (T - 1)) <= hi Hz."""
    from metrics import band_pass
    rng = np.random.default_rng(1)
    for T, rate, lo, hi in ((50, 120.0, 10.0, 60.0), (37, 100.0, 10.0, 60.0), (64, 60.0, 5.0, 20.0), (3, 120.0, 0.0, 60.0)):
        x = rng.standard_normal((T, 4, 3)).cumsum(0)                              # a random walk: ends apart
        n = np.arange(T)
        y = x - x[0] - (x[-1] - x[0]) * (n / (T - 1))[:, None, None]
        k = np.arange(1, T - 1)
        S = np.sin(np.pi * np.outer(n, k) / (T - 1))                              # (T, T - 2)
        c = 2 / (T - 1) * np.einsum("nk,nja->kja", S, y)
        np.testing.assert_allclose(np.einsum("nk,kja->nja", S, c), y, atol=1e-9)   # the series is the sequence
        f = k * rate / (2 * (T - 1))
        keep = (f >= lo) & (f <= hi)
        want = np.einsum("nk,kja->nja", S[:, keep], c[keep])
        np.testing.assert_allclose(band_pass(x, rate, lo, hi), want, atol=1e-9, err_msg=f"T {T}, rate {rate}")


def test_band_error_edges_and_rate():
    """Terms of the sine series at k rate / (2 (T - 1)) Hz, k / 4 Hz on 2 s: the band holds lo and hi themselves,
    nothing beyond; the frequencies are in Hz whatever the rate, and at 100 fps the band stops at 49.75 Hz."""
    from metrics import band_error
    for rate in (100.0, 120.0):
        t = np.arange(int(2.0 * rate) + 1) / rate
        term = lambda f: np.sin(2 * np.pi * f * t)[:, None, None] * np.ones((1, 2, 3))   # noqa: E731
        true = term(9.75) + term(10.0) + term(rate / 2 - 0.25)                   # below, at lo, at the top
        assert band_error(true - term(9.75), true, rate) < 1e-20                  # 9.75 Hz: not in the band
        assert band_error(true - term(10.0), true, rate) == pytest.approx(0.5, abs=1e-9)
        assert band_error(true - term(rate / 2 - 0.25), true, rate) == pytest.approx(0.5, abs=1e-9)
        true = term(19.75) + term(20.0) + term(30.0) + term(30.25)
        for f, share in ((19.75, 0.0), (20.0, 0.5), (30.0, 0.5), (30.25, 0.0)):
            assert band_error(true - term(f), true, rate, lo=20.0, hi=30.0) == pytest.approx(share, abs=1e-9), f


def test_band_error_sums_sequences_before_the_ratio_and_skips_still_joints():
    """Two sequences: one misses its band (error energy E_1), the other has it exactly (0); the figure is
    E_1 / (E_1 + E_2), not the mean of 1 and 0, the energy of a band term b sin(2 pi f t) over T frames being
    b^2 (T - 1) / 2 (2 f t_end whole). A joint that never moves has no band to miss and is left out (0 / 0)."""
    from metrics import band_error
    rate = 120.0

    def motion(seconds, b):                   # (T, 3, 3): joint 0 swings at 2 Hz with a 30 Hz band b, joint 1 at 40 Hz 2b
        t = np.arange(int(seconds * rate) + 1) / rate
        x = np.zeros((len(t), 3, 3))
        x[:, 0, 0] = 0.3 * np.sin(2 * np.pi * 2 * t) + b * np.sin(2 * np.pi * 30 * t)
        x[:, 1, 2] = 2 * b * np.sin(2 * np.pi * 40 * t)
        x[:, 2] = [0.1, 0.9, 0.2]                                                # joint 2 stands still
        return x

    x1, x2, missing = motion(1.0, 0.02), motion(3.0, 0.01), motion(1.0, 0.0)
    e1, e2 = 0.02 ** 2 * (len(x1) - 1) / 2, 0.01 ** 2 * (len(x2) - 1) / 2          # joint 0's; joint 1's are 4x both
    assert band_error([missing, x2], [x1, x2], rate) == pytest.approx(e1 / (e1 + e2), rel=1e-9)
    assert band_error(missing, x1, rate) == pytest.approx(1.0, rel=1e-9)
    # the bootstrap over the two sequences draws (x1, x1) -> 1, (x2, x2) -> 0 a quarter of the time each, else
    # the figure itself: its 95% interval is [0, 1] exactly; two copies of one sequence leave no spread
    assert band_error([missing, x2], [x1, x2], rate, boot=1000) == pytest.approx((e1 / (e1 + e2), 0.0, 1.0), rel=1e-9)
    assert band_error([missing, missing], [x1, x1], rate, boot=200) == pytest.approx((1.0, 1.0, 1.0), rel=1e-9)


def test_band_error_of_white_noise_in_the_band():
    """The band replaced by white noise of its own energy (per joint and axis): 2 + a cross term of mean 0,
    so above 1: noise, not detail. The truth plus band noise of r times the band's energy: exactly r."""
    from metrics import band_error, band_pass
    rng = np.random.default_rng(2)
    rate, J = 120.0, 8
    t = np.arange(int(4.0 * rate) + 1) / rate
    true = (rng.uniform(0.1, 0.3, (J, 3)) * np.sin(2 * np.pi * 1.5 * t[:, None, None] + rng.uniform(0, 6, (J, 3)))
            + band_pass(rng.standard_normal((len(t), J, 3)), rate) * rng.uniform(0.001, 0.01, (J, 3)))
    band = band_pass(true, rate)
    noise = band_pass(rng.standard_normal(true.shape), rate)                   # white from 10 to 60 Hz
    noise *= np.sqrt((band ** 2).sum(0) / (noise ** 2).sum(0))                 # the band's energy, per joint and axis
    assert 1.8 < band_error(true - band + noise, true, rate) < 2.2
    for r in (0.1, 1.0, 4.0):
        assert band_error(true + math.sqrt(r) * noise, true, rate) == pytest.approx(r, rel=1e-9)


class Replay(torch.nn.Module):
    """A decoder stand-in (nerm.decode's interface) whose latent z[:, 0] names a recording of a MotionSet that it
    reads at the times asked (linear between frames, exact on them): a decoder that knows the truth."""

    def __init__(self, ms):
        super().__init__()
        self.ms = ms
        self.register_buffer("mean", torch.zeros(ms.features[0].shape[1]))
        self.register_buffer("std", torch.ones(ms.features[0].shape[1]))

    def forward(self, z, t, duration, fps):
        return torch.stack([torch.from_numpy(motion.interpolate(self.ms.features[int(q)], self.ms.fps[int(q)],
                                                              ti.double().numpy())) for q, ti in zip(z[:, 0], t)])


def test_band_rows_of_an_exact_decoder_and_of_real_motion_through_20fps():
    """metrics.band_rows, the framerate table's band error: motions whose root-relative joints stand still but for a
    30 Hz term b_j sin(2 pi 30 t), which is 0 at every 20 fps frame (sin(3 pi k)): through 20 fps, linear or
    cubic, they keep no band at all, so real motion through 20 fps scores exactly 1. A decoder replaying the
    recordings scores 0 directly and, decoded at 20 fps then interpolated, what real motion through 20 fps
    scores; replaying them with half the band, (1 - 1/2)^2 = 1/4; only the sequences recorded at the rate count."""
    from metrics import band_rows
    rng = np.random.default_rng(3)
    sk, ric = motion.SMPL22, motion.feature_slices(motion.SMPL22)["ric"]
    v, offset = rng.standard_normal((21, 3)), rng.uniform(-0.5, 1.5, (21, 3))

    def moving(fps, seconds, b):
        t = np.arange(int(seconds * fps) + 1) / fps
        x = rng.standard_normal((len(t), 263)).astype(np.float32)       # other channels: never read
        x[:, ric] = (offset + b * v * np.sin(2 * np.pi * 30 * t)[:, None, None]).reshape(len(t), -1)
        return x

    specs = [(120.0, 2.0), (100.0, 2.0), (120.0, 1.5), (60.0, 2.0)]
    feats = [moving(f, s, 0.01) for f, s in specs]
    ms = data.MotionSet(list("abcd"), feats, np.array([f for f, _ in specs]), [[""]] * 4, [""] * 4, sk)
    half = data.MotionSet(list("abcd"), [x.copy() for x in feats], ms.fps, [[""]] * 4, [""] * 4, sk)
    for x in half.features:
        x[:, ric] = (x[:, ric] + offset.reshape(-1)) / 2                 # offset + b v sin / 2
    z, seconds = torch.arange(4.0)[:, None], ms.durations()
    for rate in (100.0, 120.0):
        real = band_rows(ms, rate)
        assert real == pytest.approx({"linear": 1.0, "cubic": 1.0}, abs=1e-6), rate
        exact = band_rows(ms, rate, Replay(ms), z, seconds)
        assert exact["direct"] < 1e-9 and exact["linear"] == pytest.approx(1.0, abs=1e-6), (rate, exact)
        assert exact["cubic"] == pytest.approx(1.0, abs=1e-6), (rate, exact)
        assert band_rows(ms, rate, Replay(half), z, seconds)["direct"] == pytest.approx(0.25, abs=1e-5)   # float32 times
        # a fit 1/40 s shorter than its sequence (fixed-rate training sees its 20 fps frames): compared on its frames
        assert band_rows(ms, rate, Replay(ms), z, seconds - 1 / 40)["direct"] < 1e-9
    assert band_rows(ms, 50.0) == {} and band_rows(ms, 50.0, Replay(ms), z, seconds) == {}
