"""eval.py (and metrics.py's decoding measurements) against independent computations: the evaluator, the
framerate table's clips, and the inference path (held-out MRE, 20 fps motions, decoded clips) end to end through a
decoder known in closed form:
python -m pytest -q tests/test_eval.py"""
import math
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import data
import eval as ev_mod
import motion
import nerm
from eval import (CLIP_M, COLUMNS, Evaluator, Stage2, clip_plan, decode_motions, decoded_clips, detail_figures,
                  real_clips, replications, to_eval_rate, train_evaluator)
from metrics import SPECTRUM_FLOOR, acceleration_spectrum, band_share, evaluate_mre, joint_acceleration, still_and_active

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def splits(small_dataset):
    return data.load_dataset("synthetic", small_dataset, "train"), data.load_dataset("synthetic", small_dataset, "test")


def test_tiny_evaluator_shapes_reload_and_padding(splits, tmp_path):
    train, test = splits
    payload = train_evaluator(train, steps=3, batch=8, hidden=16, emb=8, log=lambda s: None)
    path = str(tmp_path / "evaluator.pt")
    torch.save(payload, path)
    ev, again = Evaluator(payload), Evaluator(torch.load(path, weights_only=True))
    motions = [to_eval_rate(x, f) for x, f in zip(test.features, test.fps)]
    texts = [c[0] for c in test.captions]
    assert all(len(m) <= 196 for m in motions)
    m, t = ev.embed_motions(motions), ev.embed_texts(texts)
    pred, feats = ev.recognize(motions)
    assert m.shape == t.shape == (len(test), 8) and feats.shape == (len(test), 16) and pred.shape == (len(test),)
    assert set(pred) <= set(range(len(ev.actions))) and ev.actions == sorted(set(train.actions))
    # reloaded from the file (weights_only): the same embeddings, bit for bit
    np.testing.assert_array_equal(again.embed_motions(motions), m)
    np.testing.assert_array_equal(again.embed_texts(texts), t)
    np.testing.assert_array_equal(again.recognize(motions)[1], feats)
    # a motion embeds the same alone as padded in a batch of longer ones
    short = int(np.argmin([len(x) for x in motions]))
    np.testing.assert_allclose(ev.embed_motions([motions[short]])[0], m[short], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ev.recognize([motions[short]])[1][0], feats[short], rtol=1e-5, atol=1e-5)


def tiny_decoder():
    return nerm.INRDecoder(nerm.INRConfig(feature_dim=263, latent_dim=8, hidden=16, n_blocks=1)).eval()


@pytest.mark.parametrize("cond", ["text", "action", "none"])
def test_replications_give_every_figure_of_the_table(splits, cond):
    # untrained tiny models end to end: each figure of the table, once per replication (the train split
    # stands in for the test split: R-precision needs 32 pairs)
    train, _ = splits
    ev = Evaluator(train_evaluator(train, steps=1, batch=8, hidden=16, emb=8, log=lambda s: None))
    motions = [to_eval_rate(x, f) for x, f in zip(train.features, train.fps)]
    refs = {"motion": ev.embed_motions(motions), "recognizer": ev.recognize(motions)[1]}
    vocab = nerm.Vocab.build([c for caps in train.captions for c in caps]).to_list()
    model = nerm.LatentDiffusion(nerm.DiffusionConfig(latent_dim=8, cond=cond, vocab=vocab, num_actions=len(ev.actions),
                                                      d_model=16, n_layers=1)).eval()
    args = SimpleNamespace(reps=2, mm_texts=3, mm_samples=20, guidance=2.5, steps=2, seed=0)
    for gen in (None, Stage2({"actions": ev.actions}, model, tiny_decoder())):
        res = replications(ev, train, refs, cond, args, gen)
        want = set(COLUMNS[cond]) - ({"MModality"} if gen is None else set())
        assert set(res) == want and all(len(v) == 2 and np.isfinite(v).all() for v in res.values())
        if gen is None and cond != "action":
            assert res["FID"][0] == pytest.approx(0.0, abs=1e-6)            # the real motions are the reference


def test_decoded_motions_have_the_real_motions_frame_count():
    # generated and real motions reach the evaluator on the same 20 fps grid, both cut at 196 frames
    seqs = [(np.zeros((n, 263), np.float32), f) for n, f in ((121, 60.0), (301, 30.0), (1201, 120.0), (47, 20.0))]
    durations = np.array([(len(x) - 1) / f for x, f in seqs])
    out = decode_motions(tiny_decoder(), torch.randn(len(seqs), 8), durations)
    assert [len(x) for x in out] == [len(to_eval_rate(x, f)) for x, f in seqs] == [41, 196, 196, 47]


@pytest.mark.parametrize("fps,rate", [(120.0, 120.0), (120.0, 40.0), (50.0, 20.0), (50.0, 40.0), (100.0, 60.0)])
def test_clips_match_resample_of_the_native_sequence(fps, rate):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((int(7.3 * fps), 263)).astype(np.float32)
    ms = SimpleNamespace(features=[x[:int(0.2 * fps)], x], fps=np.array([fps, fps]))    # 0.2 s: too short
    plan = clip_plan(ms, rate, 50, rng)
    assert len(plan) == 50 and (plan[:, 0] == 1).all()
    full = motion.resample(x, fps, rate)
    assert plan[:, 1].min() >= 0 and plan[:, 1].max() + CLIP_M <= len(full)
    clips = real_clips(ms, plan, rate)
    np.testing.assert_allclose(clips, np.stack([full[c:c + CLIP_M] for c in plan[:, 1]]), rtol=1e-6, atol=1e-6)
    # a sequence recorded below the rate gives no clips at it
    assert len(clip_plan(SimpleNamespace(features=[x], fps=np.array([fps])), fps * 1.5, 5, rng)) == 0


def test_real_clips_via_20fps_lose_what_lies_between_20fps_frames():
    # 120 fps through 20 fps and back: linear interpolation misses a sine of frequency f by at most
    # h^2 (2 pi f)^2 / 8 (h = 1/20 s): 0.049 at 2 Hz, while a 9 Hz one is lost (the bound exceeds 1)
    t = np.arange(601)[:, None] / 120.0
    x = np.concatenate([np.sin(2 * np.pi * 2 * t), np.sin(2 * np.pi * 9 * t)], 1).astype(np.float32)
    ms = SimpleNamespace(features=[x], fps=np.array([120.0]))
    plan = clip_plan(ms, 120.0, 20, np.random.default_rng(0))
    err = np.abs(real_clips(ms, plan, 120.0, via_fps=20.0) - real_clips(ms, plan, 120.0)).max((0, 1))
    assert err[0] <= (1 / 20) ** 2 * (2 * np.pi * 2) ** 2 / 8 + 1e-6 and err[1] > 0.3
    # cubic (Catmull-Rom) misses the 2 Hz sine by less, and loses the 9 Hz one too
    cubic = np.abs(real_clips(ms, plan, 120.0, via_fps=20.0, kind="cubic") - real_clips(ms, plan, 120.0)).max((0, 1))
    assert cubic[0] < 0.5 * err[0] and cubic[1] > 0.3
    # at 20 fps itself, through 20 fps is the identity, whatever the interpolation
    plan20 = clip_plan(ms, 20.0, 20, np.random.default_rng(1))
    for kind in ("linear", "cubic"):
        np.testing.assert_allclose(real_clips(ms, plan20, 20.0, via_fps=20.0, kind=kind), real_clips(ms, plan20, 20.0),
                                   atol=1e-6)


def quadratic_clips(rng, n, first, rate, a, b, c):
    """n random feature clips whose root-relative joints (ric) are a t^2 + b t + c at frames first .. first+m-1
    of the `rate` grid -> (those times (m,), clips (n, m, 263))."""
    tk = (first + np.arange(CLIP_M)) / rate
    clips = rng.standard_normal((n, CLIP_M, 263))
    clips[:, :, motion.feature_slices(22)["ric"]] = a * tk[:, None] ** 2 + b * tk[:, None] + c
    return tk, clips


def test_joint_acceleration_of_a_quadratic_is_2a():
    # root-relative joints p = a t^2 + b t + c, a different a per joint and axis: second differences at the rate
    # are 2a exactly, laid out (clip, frame, joint, axis) in the order of the ric channels
    rng = np.random.default_rng(0)
    a, b, c = rng.standard_normal((3, 63))
    for rate in (20.0, 120.0):
        _, clips = quadratic_clips(rng, 2, 3, rate, a, b, c)
        acc = joint_acceleration(clips, rate, motion.SMPL22)
        assert acc.shape == (2, CLIP_M - 2, 21, 3)
        np.testing.assert_allclose(acc, np.broadcast_to(2 * a.reshape(21, 3), acc.shape), atol=2e-8 * rate ** 2)


def hann(n):
    """The symmetric Hann window: 0.5 - 0.5 cos(2 pi k / (n - 1))."""
    return 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / (n - 1))


def dft(x, k):
    """X_k = sum_n x[n] exp(-2 pi i k n / N) of x (N, C) along its first axis, summed term by term: (C,)."""
    N = len(x)
    return sum(x[n] * np.exp(-2j * np.pi * k * n / N) for n in range(N))


@pytest.mark.parametrize("rate,bin_", [(120.0, 5), (20.0, 3), (60.0, 11)])
def test_acceleration_spectrum_of_a_sinusoid(rate, bin_):
    """Joints moving as A_c sin(2 pi f t + phi_c), f on a bin (f = bin * rate / (m - 2)): the spectrum is
    log10(power + floor) of the exact second-difference acceleration, -4 A sin^2(pi f / rate) rate^2 sin(2 pi f
    t_mid + phi), its mean removed, Hann-windowed, by a DFT summed here term by term; it peaks at f, at the height
    (A_acc sum(w) / 2)^2 / sum(w^2) of a windowed sinusoid. A constant acceleration (positions + g t^2) does not
    count; still joints sit at the floor."""
    rng = np.random.default_rng(0)
    sl, N = motion.feature_slices(22), CLIP_M - 2
    f = bin_ * rate / N
    A, phi = rng.uniform(0.02, 0.1, 63), rng.uniform(0, 2 * np.pi, 63)
    t = (7 + np.arange(CLIP_M)) / rate
    clips = rng.standard_normal((2, CLIP_M, 263))
    g = rng.uniform(-3, 3, 63)                                              # a constant acceleration 2 g, m/s^2
    clips[0, :, sl["ric"]] = A * np.sin(2 * np.pi * f * t[:, None] + phi) + g * t[:, None] ** 2
    clips[1, :, sl["ric"]] = 0.3                                           # joints that do not move
    got = acceleration_spectrum(clips, rate, motion.SMPL22)
    assert got.shape == (2, N // 2)
    # the reference, term by term
    amp = -4 * A * np.sin(np.pi * f / rate) ** 2 * rate ** 2                # (63,) acceleration amplitudes, m/s^2
    acc = amp * np.sin(2 * np.pi * f * t[1:-1, None] + phi) + 2 * g         # (N, 63) at the middle frames
    acc = acc - acc.mean(0)
    w = hann(N)
    want = []
    for k in range(1, N // 2 + 1):
        X = dft(acc * w[:, None], k)                                         # (63,)
        want.append(np.mean(np.abs(X) ** 2) / np.sum(w ** 2))
    np.testing.assert_allclose(got[0], np.log10(np.array(want) + SPECTRUM_FLOOR), rtol=1e-6, atol=1e-6)
    assert np.argmax(got[0]) + 1 == bin_                                    # the peak at f Hz
    peak = np.mean(amp ** 2) * w.sum() ** 2 / 4 / np.sum(w ** 2)
    assert got[0, bin_ - 1] == pytest.approx(np.log10(peak + SPECTRUM_FLOOR), abs=0.05)   # ~ the leakage of the window
    np.testing.assert_allclose(got[1], np.log10(SPECTRUM_FLOOR), atol=1e-9)


@pytest.mark.parametrize("flag", ["--ckpt", "--by-fps", "--mre"])
def test_missing_checkpoint_is_one_error_line(flag, tmp_path):
    missing = str(tmp_path / "nope.pt")
    r = subprocess.run([sys.executable, os.path.join(ROOT, "eval.py"), flag, missing], capture_output=True, text=True,
                       cwd=str(tmp_path), timeout=120)
    assert r.returncode == 2 and r.stderr.strip().endswith(f"error: argument {flag}: {missing} not found")


# ---- the inference path end to end, through a decoder whose output is known in closed form ----

# seconds: <= 256 frames at 120 fps, so each motion is one row of nerm.decode and every row the decoder sees
# starts with two timestamps (AnalyticDecoder reads the rate from them); 2.05 s in float32 is 2.04999995 s,
# one frame short at some rates if a frame count were taken from it
DURATIONS, NATIVE = (1.5, 2.05), 120.0


def motion_g(u):
    """G(u): normalized features (..., 263) of the test motions at normalized time u (a float64 tensor):
    sines of 1-3 cycles per motion, no turning (channel 0, the yaw rate, is 0 in real units)."""
    c = torch.arange(263, dtype=torch.float64)
    g = 0.5 * torch.sin(2 * math.pi * (1 + c % 3) * u[..., None] + 0.1 * c)
    g[..., 0] = 0.0
    return g


class AnalyticDecoder(torch.nn.Module):
    """An INRDecoder stand-in (same forward, buffers and config fields) that returns G(t / duration), plus
    (the rate it is told - the rate its timestamps are spaced at) in every channel, plus delta m/s on the root's
    x velocity: exact only when told time in seconds, the motion's duration and the true framerate."""

    def __init__(self, mean, std, delta=0.0):
        super().__init__()
        self.cfg = nerm.INRConfig(feature_dim=263, latent_dim=4)
        self.register_buffer("mean", torch.from_numpy(mean).float())
        self.register_buffer("std", torch.from_numpy(std).float())
        self.delta = delta

    def forward(self, z, t, duration, fps):
        spaced = torch.round(1.0 / (t[:, 1] - t[:, 0]))                    # (B,) the rate of the timestamps
        x = motion_g((t / duration[:, None]).double()).float() + (fps - spaced)[:, None, None]   # (B, M, D)
        x[..., 1] += self.delta / self.std[1]
        return x + 0.0 * z[:, None, :1]          # z is in the graph (fit_latents differentiates) but never moves


@pytest.fixture(scope="module")
def analytic():
    """Two motions recorded at 120 fps whose per-second features are mean + std G(t / duration), and their statistics."""
    rng = np.random.default_rng(0)
    mean, std = rng.normal(0, 0.3, 263).astype(np.float32), rng.uniform(0.5, 1.5, 263).astype(np.float32)
    mean[0] = 0.0
    feats = []
    for d in DURATIONS:
        u = torch.arange(nerm.num_frames(NATIVE, d), dtype=torch.float64) / (d * NATIVE)
        feats.append((mean + std * motion_g(u).numpy()).astype(np.float32))
    ms = data.MotionSet(["a", "b"], feats, np.full(2, NATIVE), [["a"], ["b"]], ["", ""], motion.SMPL22, mean, std)
    return ms, mean, std


def test_heldout_mre_is_zero_through_an_exact_decoder_and_the_drift_otherwise(analytic):
    # fails if evaluate_mre compared the ground truth with itself (no drift), if the decoder were told another
    # rate, normalized time or another duration, or if velocities were converted at another rate than decoded
    ms, mean, std = analytic
    rates = (20, 40, 60, 120)   # grids of the 120 fps recordings, so the ground truth reads recorded frames
    exact = evaluate_mre(AnalyticDecoder(mean, std), ms, ms, 2, fit_steps=3, m=8, fps_list=rates)
    for f in rates:
        assert exact["mre"][f] < 1e-5 and exact["local"][f] < 1e-5, (f, exact)
    # the root drifts by delta m/s: at frame k (k / f s) every joint is k delta / f off, so the mean over
    # frames 0 .. D f is delta D / 2 whatever the rate, and the root-relative (local) error stays 0
    delta = 0.1
    drift = evaluate_mre(AnalyticDecoder(mean, std, delta), ms, ms, 2, fit_steps=3, m=8, fps_list=rates)
    for f in rates:
        assert drift["mre"][f] == pytest.approx(delta * np.mean(DURATIONS) / 2, rel=1e-4), (f, drift)
        assert drift["local"][f] < 1e-5


def test_t2m_motions_and_clips_through_an_exact_decoder_are_the_real_ones(analytic):
    ms, mean, std = analytic
    decoder, z, seconds = AnalyticDecoder(mean, std), torch.zeros(2, 4), ms.durations()
    # the 20 fps motions the T2M evaluator sees: decoded as the real ones are resampled
    for got, x in zip(decode_motions(decoder, z, seconds), ms.features):
        np.testing.assert_allclose(got, to_eval_rate(x, NATIVE), atol=1e-5)
    # clip-FID's clips, cut from motions decoded at each rate, at the places the real clips are cut
    rng = np.random.default_rng(0)
    for rate in (20, 40, 60, 100, 120):
        plan = clip_plan(ms, rate, 5, rng)
        np.testing.assert_allclose(decoded_clips(decoder, z, seconds, plan, rate), real_clips(ms, plan, rate),
                                   atol=1e-5 if 120 % rate == 0 else 2e-3)   # 100 fps: linear interpolation's error


def test_t2m_detail_columns_through_an_exact_decoder_are_the_real_ones(analytic):
    """detail_figures: a generator whose decoder reproduces the real motions scores what the real motions
    score, directly at 120 fps and through 20 fps; the two differ (linear interpolation's impulses)."""
    ms, mean, std = analytic
    gen = Stage2(None, None, AnalyticDecoder(mean, std))
    real = detail_figures(ms, ms, np.random.default_rng(3))
    generated = detail_figures(ms, ms, np.random.default_rng(3), gen, torch.zeros(2, 4))
    assert real.keys() == generated.keys() == {"detail@120", "detail@120 via 20"}
    for key in real:
        assert generated[key] == pytest.approx(real[key], rel=1e-3, abs=1e-3), key
    assert real["detail@120 via 20"] > real["detail@120"] + 1.0
    slow = data.MotionSet(["a"], [motion.resample(ms.features[0], NATIVE, 60.0)], np.array([60.0]), [["a"]], [""],
                          motion.SMPL22, mean, std)
    assert detail_figures(slow, slow, np.random.default_rng(0)) == {}    # nothing recorded at 120 fps: no columns


def test_clips_via_20fps_interpolate_the_20fps_decoding(analytic):
    """decoded_clips via 20 fps: the motion decoded at 20 fps (here known in closed form: mean + std G(k / (20 d))),
    interpolated up to the plan's clips at `rate` by np.interp (linear) or scipy's Catmull-Rom Hermite spline
    (cubic); with an exact decoder it equals the real clips through 20 fps."""
    from scipy.interpolate import CubicHermiteSpline
    ms, mean, std = analytic
    decoder, z, seconds = AnalyticDecoder(mean, std), torch.zeros(2, 4), ms.durations()
    rng = np.random.default_rng(0)
    for rate in (40, 100, 120):
        plan = clip_plan(ms, rate, 6, rng)
        for kind in ("linear", "cubic"):
            got = decoded_clips(decoder, z, seconds, plan, rate, 20.0, kind)
            assert got.shape == (len(plan), CLIP_M, 263)
            for r, (q, c) in enumerate(plan):
                T = nerm.num_frames(20.0, seconds[q])
                k = np.arange(T)
                x20 = mean + std * motion_g(torch.from_numpy(k / (20.0 * seconds[q]))).numpy()   # (T, D)
                t = (c + np.arange(CLIP_M)) / rate
                if kind == "linear":
                    want = np.stack([np.interp(t, k / 20.0, x20[:, d]) for d in range(263)], -1)
                else:
                    padded = np.concatenate([x20[:1], x20, x20[-1:]])
                    want = CubicHermiteSpline(k / 20.0, x20, (padded[2:] - padded[:-2]) / 2 * 20.0)(t)
                np.testing.assert_allclose(got[r], want, atol=2e-5, err_msg=f"{rate} fps, {kind}, clip {r}")
            np.testing.assert_allclose(got, real_clips(ms, plan, rate, via_fps=20.0, kind=kind), atol=2e-5)


@pytest.mark.parametrize("rate", [120.0, 60.0])
def test_band_share_is_the_power_above_10_hz_over_all(rate):
    """band_share against the spectra written out term by term: per sequence the second-difference
    acceleration of every joint, its mean removed, Hann-windowed, a DFT summed here on that sequence's own bins
    (k rate / (T - 2) Hz), power summed over joints, axes and sequences (a longer sequence weighs more); the
    share is the power in the bins strictly above 10 Hz over that in all bins but k = 0. At 60 fps with T - 2 =
    60 a bin lies on 10 Hz itself (k = 10), which does not count. Joints moving at one low and one high bin with
    equal acceleration amplitudes share about half, less what the window leaks."""
    rng = np.random.default_rng(1)
    sl = motion.feature_slices(22)
    seqs = []
    for T in (62, 95, 120):   # with T - 2 = 118 a bin lies at 10.17 Hz, just above 10
        x = rng.standard_normal((T, 263))
        x[:, sl["ric"]] = rng.standard_normal((T, 63)).cumsum(0) * 0.01        # broadband: power in every bin
        seqs.append(x)
    band = total = 0.0
    for x in seqs:
        N = len(x) - 2
        acc = np.diff(x[:, sl["ric"]], n=2, axis=0) * rate ** 2                  # (N, 63)
        acc = (acc - acc.mean(0)) * hann(N)[:, None]
        for k in range(1, N // 2 + 1):
            p = np.sum(np.abs(dft(acc, k)) ** 2)
            total += p
            band += p * (k * rate / N > 10)
    assert band_share(seqs, rate, motion.SMPL22) == pytest.approx(band / total, rel=1e-9)
    T, N = 62, 60
    t = np.arange(T) / rate
    lo_f, hi_f = 2 * rate / N, 20 * rate / N                      # one joint axis at two bins, equal accelerations
    two = np.zeros((T, 263))
    two[:, sl["ric"].start] = (np.sin(2 * np.pi * lo_f * t) / np.sin(np.pi * lo_f / rate) ** 2
                               + np.sin(2 * np.pi * hi_f * t) / np.sin(np.pi * hi_f / rate) ** 2) * 1e-3
    assert 0.4 < band_share([two], rate, motion.SMPL22) < 0.6


@pytest.mark.parametrize("rate", [100.0, 120.0])
def test_still_and_active_against_the_dft_written_out(rate):
    """still_and_active against its definition written out term by term: windows of m frames from frame 0 of each
    sequence, per window the second-difference acceleration of every joint, its mean removed, Hann-windowed, a DFT
    summed here for k = 0 .. N/2 (N = m - 2); mean square in a set of bins sum c_k |X_k|^2 / (N sum w^2), c_k = 2
    but 1 at N/2, summed over axes, averaged over joints; windows ranked by the bins in (0, 10] Hz, the still half
    and the active quarter averaged, then the square root. At 100 fps a bin lies on 10 Hz itself (k = 3): slow.
    Then units: a joint axis whose acceleration is a sine of amplitude A on a bin above 10 Hz scores about
    A / sqrt(2) over sqrt(21) (21 joints), what the Hann window leaks to the next bins included."""
    rng, m = np.random.default_rng(2), 32
    sl, N = motion.feature_slices(22), m - 2
    seqs = []
    for T, scale in ((70, 0.01), (100, 0.001), (131, 0.003)):       # 2, 3, 4 windows, different activity
        x = rng.standard_normal((T, 263))
        x[:, sl["ric"]] = rng.standard_normal((T, 63)).cumsum(0) * scale
        seqs.append(x)
    w = hann(N)
    slow, band = [], []
    for x in seqs:
        for c in range(0, len(x) - m + 1, m):
            acc = np.diff(x[c:c + m, sl["ric"]], n=2, axis=0) * rate ** 2               # (N, 63)
            acc = (acc - acc.mean(0)) * w[:, None]
            s_ = b_ = 0.0
            for k in range(1, N // 2 + 1):
                p = np.sum(np.abs(dft(acc, k)) ** 2) / 21
                p *= (1 if 2 * k == N else 2) / (N * np.sum(w ** 2))
                if k * rate / N > 10:
                    b_ += p
                else:
                    s_ += p
            slow.append(s_)
            band.append(b_)
    order = np.argsort(slow)
    K = len(order)
    want = (np.sqrt(np.mean(np.array(band)[order[:K // 2]])), np.sqrt(np.mean(np.array(band)[order[K - K // 4:]])))
    assert still_and_active(seqs, rate, motion.SMPL22, m) == pytest.approx(want, rel=1e-9)
    T, f = 4 * m, 5 * rate / N                                    # one joint axis, a sine on bin 5 (> 10 Hz)
    one = np.zeros((T, 263))
    amp = 3.0                                                      # m/s^2
    one[:, sl["ric"].start] = -amp * np.sin(2 * np.pi * f * np.arange(T) / rate) / (2 * rate * np.sin(np.pi * f / rate)) ** 2
    still, active = still_and_active([one], rate, motion.SMPL22, m)
    assert still == pytest.approx(amp / np.sqrt(2 * 21), rel=0.05) and active == pytest.approx(still, rel=0.05)


def test_framerate_table_rows(analytic, monkeypatch):
    """by_fps_table through an exact decoder, with a stand-in for the data: two tables (detail_fd,
    acceleration) and the share above 10 Hz at 100-120 fps (band_share); at rates on the 120 fps grid the
    decoded rows equal the real ones (FD 0, the same acceleration) and each decoded-at-20-fps row equals the
    real-through-20-fps row."""
    ms, mean, std = analytic
    decoder = AnalyticDecoder(mean, std)
    monkeypatch.setattr(ev_mod.data, "open_split", lambda *a, **k: ms)
    monkeypatch.setattr(ev_mod, "checkpoint_rows",
                        lambda path, val, args: [("fit", decoder, lambda rep: (torch.zeros(2, 4), val.durations()))])
    args = SimpleNamespace(data="synthetic", data_dir=None, reps=2, seed=0, clips_per_seq=6, by_fps=["ck"])
    res = ev_mod.by_fps_table(args)
    assert set(res) == {"detail_fd", "acceleration", "band_share", "band_still", "band_active", "spectrum"}
    labels = {"real (test)", "real via 20 fps, linear", "real via 20 fps, cubic", "ck (fit)", "ck (fit @20 + linear)",
              "ck (fit @20 + cubic)"}
    assert set(res["detail_fd"]) == labels and set(res["acceleration"]) == labels | {"real (val)"}
    for key in ev_mod.BY_FPS:
        for label, by_rate in res[key].items():
            assert set(by_rate) == {str(r) for r in ev_mod.EVAL_FPS} and all(len(v["values"]) == 2 for v in by_rate.values())
    for r in ("20", "40", "60", "120"):
        assert abs(res["detail_fd"]["ck (fit)"][r]["mean"]) < 1e-2, r   # float32 rounding x rate^2; via 20 fps: 30+
        for kind in ("linear", "cubic"):
            assert res["detail_fd"][f"ck (fit @20 + {kind})"][r]["values"] == pytest.approx(
                res["detail_fd"][f"real via 20 fps, {kind}"][r]["values"], rel=1e-4, abs=1e-3), (r, kind)
        assert res["acceleration"]["ck (fit)"][r]["values"] == pytest.approx(res["acceleration"]["real (val)"][r]["values"],
                                                                             rel=1e-4)
    # the share above 10 Hz of whole motions at 120 fps (the stand-in has no 100 fps sequence): the exact fit's is
    # the real one's, directly and through 20 fps
    share = res["band_share"]
    assert set(share) == labels - {"real (test)"} | {"real (val)"} and all(set(d) == {"120"} for d in share.values())
    assert share["ck (fit)"]["120"] == pytest.approx(share["real (val)"]["120"], abs=1e-6)   # ~0: smooth motion
    for kind in ("linear", "cubic"):
        want = share[f"real via 20 fps, {kind}"]["120"]
        assert share[f"ck (fit @20 + {kind})"]["120"] == pytest.approx(want, rel=1e-5)
    assert share["real via 20 fps, linear"]["120"] > share["real via 20 fps, cubic"]["120"] > 0.01   # the 20 fps kinks
    for key in ("band_still", "band_active"):     # the band's acceleration, still and active: the exact fit's is real's
        assert set(res[key]) == set(share)
        assert res[key]["ck (fit)"]["120"] == pytest.approx(res[key]["real (val)"]["120"], rel=1e-4, abs=1e-6)
        for kind in ("linear", "cubic"):
            assert res[key][f"ck (fit @20 + {kind})"]["120"] == pytest.approx(res[key][f"real via 20 fps, {kind}"]["120"],
                                                                               rel=1e-4)
    assert res["band_active"]["real via 20 fps, linear"]["120"] > 0.01        # the kinks again, where it moves
    # through 20 fps, what lies between the 20 fps frames is lost: the detail-FD sees it at 120 fps, least with cubic
    fd = {kind: res["detail_fd"][f"real via 20 fps, {kind}"]["120"]["mean"] for kind in ("linear", "cubic")}
    assert fd["linear"] > fd["cubic"] > 10.0
    # the mean spectra: one per row and rate, (m - 2) / 2 bins; the exact decoder's are the real ones, and
    # against a direct recomputation from the first replication's plan (seed 0), the average of two replications
    spec = res["spectrum"]
    assert set(spec) == labels | {"real (val)"}
    for r in ("20", "40", "60", "120"):
        assert len(spec["ck (fit)"][r]) == (CLIP_M - 2) // 2
        np.testing.assert_allclose(spec["ck (fit)"][r], spec["real (val)"][r], atol=1e-2)   # float32 x rate^2
        for kind in ("linear", "cubic"):
            np.testing.assert_allclose(spec[f"ck (fit @20 + {kind})"][r], spec[f"real via 20 fps, {kind}"][r], atol=1e-2)
    def plan120(rep):                 # the table's draws: per rate a val plan, then a test plan, from one stream
        rng = np.random.default_rng(rep)
        for rate in ev_mod.EVAL_FPS:
            plan, _ = clip_plan(ms, rate, 6, rng), clip_plan(ms, rate, 6, rng)
            if rate == 120:
                return plan
    want = np.mean([acceleration_spectrum(real_clips(ms, plan120(rep), 120.0), 120.0, ms.skeleton).mean(0)
                    for rep in range(2)], 0)
    np.testing.assert_allclose(spec["real (val)"]["120"], want, rtol=1e-6)


@pytest.mark.parametrize("split, other", [("test", "val"), ("val", "test")])
def test_t2m_table_scores_the_chosen_split_against_the_other(split, other, monkeypatch):
    """--split: the T2M table's motions, captions and FID reference come from that split, the detail columns'
    real reference from the other held-out one (so choosing --guidance on val never reads test)."""
    class Split(SimpleNamespace):
        def __len__(self):
            return 1
    sets = {name: Split(name=name, features=[np.full((30, 263), i, np.float32)], fps=np.array([20.0]))
            for i, name in enumerate(("train", "val", "test"))}
    monkeypatch.setattr(ev_mod.data, "open_split", lambda data_name, data_dir, name, *a: sets[name])
    gen = SimpleNamespace(model=SimpleNamespace(config=SimpleNamespace(cond="text")),
                          decoder=SimpleNamespace(cfg=SimpleNamespace(max_fps=120.0)))
    monkeypatch.setattr(ev_mod, "load_stage2", lambda path: gen)
    embedded = []
    monkeypatch.setattr(ev_mod, "get_evaluator", lambda args, train: SimpleNamespace(
        actions=None, embed_motions=lambda motions: embedded.append(motions[0][0, 0]) or np.zeros((1, 2))))
    seen = []
    monkeypatch.setattr(ev_mod, "replications",
                        lambda ev, held, refs, cond, args, g=None, val=None: seen.append((held.name, val.name)) or {})
    monkeypatch.setattr(ev_mod, "print_table", lambda *a: None)
    args = SimpleNamespace(ckpt=["ck"], mm_samples=30, mm_texts=10, reps=1, data="synthetic", data_dir=None, split=split,
                           guidance=2.5, steps=50)
    ev_mod.t2m_tables(args)
    assert seen == [(split, other)] * 2                        # the Real row and the checkpoint's row
    assert embedded == [("train", "val", "test").index(split)]  # the FID reference: the chosen split's motions
