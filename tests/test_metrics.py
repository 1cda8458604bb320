"""eval.py's T2M metrics, as T2M (EricGuo5513/text-to-motion) computes them, against closed forms and
independent formulas: python -m pytest -q tests/test_metrics.py"""
import math

import numpy as np
import pytest

from eval import diversity, fid, matching_distance, mean_ci, multimodality, r_precision


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
    from eval import T975
    for df, t in enumerate(T975, 1):
        assert t == pytest.approx(stats.t.ppf(0.975, df), abs=6e-4), df


# ---- the framerate table's mean joint acceleration ----

def test_mean_acceleration_of_sinusoids_is_the_closed_form():
    """eval.mean_acceleration: the mean over clips, frames and joints of the norm of each root-relative joint's
    acceleration, by second differences at the rate. Joint j moving along a unit direction u_j as
    A_j u_j sin(w t + phi_j) has the second difference -(2 sin(w h / 2) / h)^2 A_j u_j sin(w t + phi_j) exactly
    (h = 1 / rate), whose norm is w^2 A_j |sin(w t + phi_j)| times the discretization factor
    sinc^2 = (sin(w h / 2) / (w h / 2))^2, within (w h)^2 / 12 of 1. The directions are oblique, so a norm over
    the wrong axis, a mean of |components| or a sum instead of a mean is far off; the factor separates the rates."""
    from eval import mean_acceleration
    import data
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
        clips[..., data.feature_slices(data.SMPL22)["ric"]] = (ric[..., None] * u).reshape(K, m, 3 * J1)
        sinc2 = (math.sin(w * h / 2) / (w * h / 2)) ** 2
        assert 1 - (w * h) ** 2 / 12 <= sinc2 <= 1
        want = (w ** 2 * sinc2 * A * np.abs(np.sin(w * t[:, 1:-1] + phi))).mean()  # at the middle frames 1 .. m-2
        assert mean_acceleration(clips, rate, data.SMPL22) == pytest.approx(want, rel=1e-9), rate
        if rate == 20.0:                                          # 3 Hz at 20 fps: 7% below the true acceleration
            assert sinc2 == pytest.approx(0.9281, abs=1e-4)
