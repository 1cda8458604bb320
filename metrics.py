"""
The measurements NeRM is judged by, shared by train_inr.py (held-out MRE while training) and eval.py (the
tables): held-out reconstruction error by framerate, T2M's metrics on evaluator embeddings, the clips' joint
acceleration and its spectrum (detail-FD), the band error of a reconstruction's 10-60 Hz band against the
true one, the share of a motion's acceleration above 10 Hz, and that band in its still and its active windows.
Numpy in, floats out, but for those that decode (evaluate_mre, decoded_sequences, band_rows).

    python -m pytest -q tests/test_metrics.py     # each against a closed form or an independent formula

What each figure means and how it was validated: RESULTS.md, "How eval.py measures".
"""
import numpy as np
import torch

import data
import motion
import nerm

EVAL_FPS = (20, 40, 60, 100, 120)  # the paper's framerate columns
EVAL_RATE = 20.0                    # the rate of the 20 fps systems, and of the standard evaluators
R_PRECISION_BATCH = 32              # T2M: R-precision ranks each text among 32 motions


# ---- stage 1: held-out MRE by framerate (train_inr.py reports it while training) ----

def fit_heldout_latents(decoder, ms, n, steps, m, seed=0):
    """Latents (n, Z) of the first n sequences of MotionSet ms, decoder frozen (auto-decoder inference):
    clips of m frames drawn as in training, 64 per step."""
    sampler = data.ClipSampler(ms, decoder.mean.cpu().numpy(), decoder.std.cpu().numpy())
    g, dev = torch.Generator().manual_seed(seed), decoder.mean.device

    def sample_clip():
        k = torch.randint(0, n, (64,), generator=g)
        x, t, s, _ = sampler.sample(k, m, generator=g)
        return k.to(dev), t.to(dev), sampler.duration[k].to(dev), s.to(dev), x.to(dev)

    return nerm.fit_latents(decoder, sample_clip, n, steps=steps)


def evaluate_mre(decoder, fit_set, gt_set, n, fit_steps, m, fps_list=EVAL_FPS, seed=0, compiled=None):
    """MRE (metres) at each framerate on the first n held-out sequences, their latents fitted with the decoder frozen.

    fit_set: what the model may see of them (at its training's fps mode); gt_set: the same sequences at their
    native rate. Each is decoded by nerm.decode for the duration it was fitted on, and compared with the
    native ground truth read at the same instants; both go through the same joint recovery. Returns
    {"mre": {fps: global error}, "local": {fps: error with both roots at the origin}}: the global error
    includes the drift of the integrated root velocity, the local one is the pose alone.
    compiled: nerm.compile_decoder(decoder), used for decoding (fitting trains z through decoder).
    """
    n = min(n, len(gt_set))
    assert fit_set.names[:n] == gt_set.names[:n]
    z = fit_heldout_latents(decoder, fit_set, n, fit_steps, m, seed)
    seconds = fit_set.durations()[:n]
    out = {"mre": {}, "local": {}}
    for f in fps_list:
        x_hat = nerm.decode(compiled or decoder, z, f, torch.from_numpy(seconds)).cpu().numpy()  # (n, T, D)
        errs, local = [], []
        for i in range(n):
            t = np.arange(nerm.num_frames(f, seconds[i])) / f                          # (T_i,) seconds
            x_gt = motion.interpolate(gt_set.features[i], gt_set.fps[i], t)            # (T_i, D) per second
            j_gt = motion.features_to_joints(motion.features_per_frame(x_gt, f), gt_set.skeleton)
            j_hat = motion.features_to_joints(motion.features_per_frame(x_hat[i, :len(t)], f), gt_set.skeleton)
            errs.append(np.linalg.norm(j_gt - j_hat, axis=-1).mean())
            local.append(np.linalg.norm((j_gt - j_gt[:, :1]) - (j_hat - j_hat[:, :1]), axis=-1).mean())
        out["mre"][f], out["local"][f] = float(np.mean(errs)), float(np.mean(local))
    return out


# ---- T2M metrics: evaluator embeddings in (numpy), floats out ----

def fid(real, gen):
    """Frechet distance of two (N, D) embedding sets: ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^1/2) (T2M)."""
    real, gen = np.asarray(real, np.float64), np.asarray(gen, np.float64)
    assert real.ndim == gen.ndim == 2 and real.shape[1] == gen.shape[1] and min(len(real), len(gen)) >= 2
    mu1, mu2 = real.mean(0), gen.mean(0)
    s1, s2 = np.atleast_2d(np.cov(real, rowvar=False)), np.atleast_2d(np.cov(gen, rowvar=False))
    # Tr((S1 S2)^1/2) = Tr((S1^1/2 S2 S1^1/2)^1/2): same eigenvalues, but a symmetric PSD matrix, so eigh
    # suffices where T2M calls scipy.linalg.sqrtm on the non-symmetric product (rounding's tiny negative
    # eigenvalues -> 0)
    w, v = np.linalg.eigh(s1)
    r1 = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T                   # S1^1/2
    m = r1 @ s2 @ r1
    tr_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0.0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2.0 * tr_sqrt)


def diversity(x, pairs=300, seed=0):
    """Mean distance between `pairs` random pairs of rows of (N, D) embeddings (T2M: 300; 200 for actions)."""
    x = np.asarray(x, np.float64)
    assert x.ndim == 2 and len(x) >= pairs, f"diversity needs at least {pairs} rows, got {x.shape}"
    rng = np.random.default_rng(seed)
    first = rng.choice(len(x), pairs, replace=False)    # T2M: two independent draws without replacement
    second = rng.choice(len(x), pairs, replace=False)
    return float(np.linalg.norm(x[first] - x[second], axis=1).mean())


def multimodality(x, pairs=10, seed=0):
    """Mean distance between `pairs` random pairs of samples per text of (M texts, S samples, D) embeddings,
    averaged over texts (T2M: 100 texts x 30 samples, 10 pairs; 20 for actions)."""
    x = np.asarray(x, np.float64)
    assert x.ndim == 3 and x.shape[1] >= pairs, f"multimodality needs at least {pairs} samples per text, got {x.shape}"
    rng = np.random.default_rng(seed)
    first = rng.choice(x.shape[1], pairs, replace=False)  # T2M draws one set of pairs, shared by all texts
    second = rng.choice(x.shape[1], pairs, replace=False)
    return float(np.linalg.norm(x[:, first] - x[:, second], axis=2).mean())


def r_precision(text_emb, motion_emb, k=3):
    """Top-1..top-k retrieval accuracy, (k,): in each batch of 32 aligned (text, motion) rows, the share of
    texts whose own motion is among its j nearest of the 32 (T2M; the last incomplete batch is dropped)."""
    t, m = np.asarray(text_emb, np.float64), np.asarray(motion_emb, np.float64)
    assert t.shape == m.shape and t.ndim == 2
    n = len(t) // R_PRECISION_BATCH * R_PRECISION_BATCH
    assert n > 0, f"r_precision needs at least {R_PRECISION_BATCH} pairs, got {len(t)}"
    hits = np.zeros(k)
    for i in range(0, n, R_PRECISION_BATCH):
        tb, mb = t[i:i + R_PRECISION_BATCH], m[i:i + R_PRECISION_BATCH]
        dist = np.linalg.norm(tb[:, None] - mb[None], axis=-1)            # (32 texts, 32 motions)
        order = np.argsort(dist, axis=1, kind="stable")                 # ties: lower motion index first
        rank = (order == np.arange(len(tb))[:, None]).argmax(1)          # position of each text's own motion
        hits += (rank[:, None] < np.arange(1, k + 1)).sum(0)
    return hits / n


def matching_distance(text_emb, motion_emb):
    """MM-Dist (T2M's matching score): mean distance between each text's and its own motion's embedding."""
    t, m = np.asarray(text_emb, np.float64), np.asarray(motion_emb, np.float64)
    assert t.shape == m.shape and t.ndim == 2
    return float(np.linalg.norm(t - m, axis=1).mean())


# Student's t quantile t_{0.975, df} for df = 1..30; above, the normal's 1.96 is within 2%
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def mean_ci(values):
    """(mean, 95% half-width t_{0.975, R-1} s / sqrt(R)) over R replications, s the sample std (ddof=1).
    T2M reports 1.96 sigma / sqrt(R) with R = 20; with the few replications a CPU affords that is far too
    narrow (at R = 3 the t quantile is 4.30, not 1.96). One replication has no interval (0)."""
    v = np.asarray(values, np.float64)
    if len(v) < 2:
        return float(v.mean()), 0.0
    t = T975[len(v) - 2] if len(v) - 1 <= len(T975) else 1.96
    return float(v.mean()), float(t * v.std(ddof=1) / np.sqrt(len(v)))


# ---- detail: joint acceleration and its spectrum (detail-FD compares the spectra) ----

SPECTRUM_FLOOR = 1e-2   # (m/s^2)^2 per frequency bin: accelerations below ~0.1 m/s^2 count as stillness


def joint_acceleration(clips, rate, skeleton):
    """(K, m, D) clips at `rate` -> (K, m - 2, J - 1, 3) root-relative joint accelerations, m/s^2, by second
    differences at this rate."""
    ric = clips[..., motion.feature_slices(skeleton)["ric"]]
    acc = np.diff(ric, n=2, axis=1) * rate * rate
    return acc.reshape(*acc.shape[:2], -1, 3)


def mean_acceleration(clips, rate, skeleton):
    """The mean norm of the clips' root-relative joint accelerations, m/s^2."""
    return float(np.linalg.norm(joint_acceleration(clips, rate, skeleton), axis=-1).mean())


def acceleration_power(clips, rate, skeleton):
    """(K, m, D) clips at `rate` -> (K, (m - 2) // 2 + 1, J - 1, 3): |DFT|^2 of each joint's root-relative
    acceleration, its mean taken off and Hann-windowed, in the bins k * rate / (m - 2) Hz, k = 0 .. (m - 2) / 2
    (not divided by the window's energy). What detail-FD's spectrum and the share above 10 Hz both read."""
    acc = joint_acceleration(clips, rate, skeleton)
    acc = (acc - acc.mean(1, keepdims=True)) * np.hanning(acc.shape[1])[None, :, None, None]
    return np.abs(np.fft.rfft(acc, axis=1)) ** 2


def acceleration_spectrum(clips, rate, skeleton):
    """(K, m, D) clips at `rate` -> (K, (m - 2) // 2) detail features: per clip, the log10 power of its
    root-relative joint acceleration in each frequency bin k * rate / (m - 2) Hz, k = 1 .. (m - 2) / 2
    (acceleration_power over the window's energy, mean over joints and axes, in (m/s^2)^2 per bin, plus
    SPECTRUM_FLOOR). The bins reach rate / 2: at 120 fps they cover 4 .. 60 Hz, the band a 20 fps system
    cannot hold (above 10 Hz)."""
    power = acceleration_power(clips, rate, skeleton) / (np.hanning(clips.shape[1] - 2) ** 2).sum()
    return np.log10(power.mean((2, 3))[:, 1:] + SPECTRUM_FLOOR)


# ---- band error: the decoded 10-60 Hz band against the true one, frame by frame ----

BAND_HZ = (10.0, 60.0)   # above what a 20 fps system can hold (its Nyquist, 10 Hz), up to what 120 fps holds
BAND_RATES = tuple(r for r in EVAL_FPS if r >= 100)   # the rates whose frames hold most of that band


def band_pass(x, rate, lo=BAND_HZ[0], hi=BAND_HZ[1]):
    """(T, ...) a signal sampled at `rate` -> (T, ...) its part from lo to hi Hz, frame by frame (T >= 3).

    The line through the first and last frames is taken off, the rest is written as a sine series,
    sum_k b_k sin(pi k t / t_end) (DST-I, computed as the FFT of its odd extension, period 2 (T - 1) frames),
    and the terms at lo <= k rate / (2 (T - 1)) <= hi Hz are kept. Why not the FFT of the sequence itself,
    even after taking off a least-squares line: the FFT wraps the last frame onto the first, and a motion
    that ends moving breaks there in slope, which leaks into the band (~1/f^2): on the embedded data's
    100-120 fps sequences that leak is a third of the band energy of the root-relative joint positions and
    98% of the global ones'. The odd extension is continuous in value and in slope at both ends; only its
    break in acceleration leaks (~1/f^3; under 1% there). Why not the signal minus a smooth low-pass: the
    band starts at lo exactly (the terms are 1 / (2 t_end) Hz apart), where a filter's skirt would keep part
    of 5-10 Hz and drop part of 10-15 Hz. Defined on any clip of 3 frames or more; the price is that the band
    is 0 at the two end frames (the odd extension's zeros), for the truth and the prediction alike."""
    T = len(x)
    assert T >= 3, T
    clip = torch.from_numpy(np.asarray(x, np.float64).reshape(1, T, -1))          # (1, T, C)
    return clip_band_pass(clip, torch.tensor([rate], dtype=torch.float64), lo, hi)[0].numpy().reshape(x.shape)


def clip_band_pass(x, fps, lo=BAND_HZ[0], hi=BAND_HZ[1]):
    """band_pass in torch, on a batch: clips x (B, m, C), each at its own rate fps (B,) -> (B, m, C). The one
    implementation: band_pass (numpy, one sequence) calls it, and train_inr.py's band loss differentiates it."""
    m = x.shape[1]
    s = torch.arange(m, device=x.device, dtype=x.dtype)[None, :, None] / (m - 1)   # (1, m, 1) from 0 to 1
    y = x - (x[:, :1] + (x[:, -1:] - x[:, :1]) * s)                                # 0 at both end frames
    ext = torch.cat([y, -y.flip(1)[:, 1:-1]], 1)                       # (B, 2 (m - 1), C) odd about both ends
    spec = torch.fft.rfft(ext, dim=1)
    f = torch.arange(spec.shape[1], device=x.device)[None, :] * fps[:, None] / (2 * (m - 1))   # (B, K) Hz
    keep = ((f >= lo) & (f <= hi)).to(x.dtype)[..., None]
    return torch.fft.irfft(spec * keep, ext.shape[1], dim=1)[:, :m]


def band_error(pred, true, rate, lo=BAND_HZ[0], hi=BAND_HZ[1], boot=0, seed=0):
    """How far pred's lo..hi Hz band (band_pass) is from true's, frame by frame, phase included: per joint,
    the energy of band(pred) - band(true) over the energy of band(true), each summed over frames and axes;
    then the mean over joints. 0: the true band. 1: no band at all, what a decoder without detail scores.
    The true band delayed by a phase phi: 2 - 2 cos(phi); a band of the true energy but unrelated to it: 2.
    Above 1, what the band holds adds more error than it removes: noise, not detail.

    pred, true: (T, J, 3) positions in metres at `rate`, aligned frame by frame, or two lists of such
    sequences, whose energies are then summed per joint before the ratio (a sequence that hardly moves
    weighs little, rather than dividing by almost nothing). A joint without true band energy (one that
    never moves) is left out. At 100 fps the band stops at 50 Hz, the rate's Nyquist.
    boot > 0: (figure, lo, hi) with the 95% bootstrap interval over the sequences (boot resamplings of the
    list, with replacement): how much the figure depends on which sequences were drawn."""
    if isinstance(true, np.ndarray):
        pred, true = [pred], [true]
    err, ref = [], []                                   # per sequence, (J,) each
    for p, q in zip(pred, true, strict=True):
        assert p.shape == q.shape, (p.shape, q.shape)
        band = band_pass(q, rate, lo, hi)
        miss = band_pass(p - q, rate, lo, hi)          # = band(p) - band(q): the band-pass is linear
        err.append((miss ** 2).sum((0, 2)))
        ref.append((band ** 2).sum((0, 2)))
    err, ref = np.array(err), np.array(ref)            # (n, J)

    def figure(e, r):
        keep = r > 0
        return float(np.mean(e[keep] / r[keep]))

    value = figure(err.sum(0), ref.sum(0))
    if not boot:
        return value
    pick = np.random.default_rng(seed).integers(0, len(err), (boot, len(err)))      # (boot, n) resampled lists
    lo_hi = np.percentile([figure(err[k].sum(0), ref[k].sum(0)) for k in pick], [2.5, 97.5])
    return value, float(lo_hi[0]), float(lo_hi[1])


def ric_positions(x, skeleton):
    """(T, D) features -> (T, J - 1, 3) the joints' positions relative to the root in its facing frame, metres."""
    return x[:, motion.feature_slices(skeleton)["ric"]].reshape(len(x), -1, 3).astype(np.float64)


def recorded_at(ms, rate):
    """Indices of the sequences of MotionSet ms recorded at `rate`."""
    return [i for i, f in enumerate(ms.fps) if abs(f - rate) <= 1e-6 * rate]


def through_20fps(seqs, rate):
    """(T_i, D) sequences at `rate` resampled to 20 fps and interpolated back: {"linear": [...], "cubic": [...]}."""
    return {kind: [motion.interpolate(motion.resample(x, rate, EVAL_RATE), EVAL_RATE, np.arange(len(x)) / rate, kind)
                   for x in seqs] for kind in ("linear", "cubic")}


def decoded_sequences(decoder, z, seconds, rate, chunk=32):
    """Latents z (N, Z) decoded for `seconds` (N,) at `rate`, directly and at 20 fps then interpolated up as 20 fps
    systems do: {"direct": [...], "linear": [...], "cubic": [...]}, each a list of (num_frames(rate, s_i), D)."""
    out = {"direct": [], "linear": [], "cubic": []}
    for c in range(0, len(z), chunk):
        zp, sp = z[c:c + chunk], np.asarray(seconds[c:c + chunk], np.float64)
        direct = nerm.decode(decoder, zp, rate, torch.from_numpy(sp)).cpu().numpy()      # (B, T, D) padded
        low = nerm.decode(decoder, zp, EVAL_RATE, torch.from_numpy(sp)).cpu().numpy()    # (B, T20, D) padded
        for x, x20, si in zip(direct, low, sp):
            T = nerm.num_frames(rate, si)
            out["direct"].append(x[:T])
            for kind in ("linear", "cubic"):
                out[kind].append(motion.interpolate(x20[:nerm.num_frames(EVAL_RATE, si)], EVAL_RATE,
                                                    np.arange(T) / rate, kind))
    return out


def band_share(seqs, rate, skeleton, lo=BAND_HZ[0]):
    """The share of whole motions' acceleration power above lo Hz: per (T_i, D) sequence at `rate`, the power
    spectrum of its root-relative joint acceleration (second differences, mean taken off, Hann window), summed
    over joints, axes and sequences; the power in the bins above lo Hz over that in every bin but 0. What a
    20 fps system holds none of; unlike the band error it needs no truth, so samples have it too. It says how
    much, not whether it is the right detail."""
    band = total = 0.0
    for x in seqs:
        power = acceleration_power(x[None], rate, skeleton)[0].sum((1, 2))     # (bins,)
        f = np.arange(len(power)) * rate / (len(x) - 2)
        band, total = band + power[f > lo].sum(), total + power[1:].sum()
    return float(band / total)


def still_and_active(seqs, rate, skeleton, m=32, lo=BAND_HZ[0]):
    """Noise and detail told apart, without the truth: (still, active), the RMS root-relative joint
    acceleration above lo Hz (m/s^2, over joints and frames) in the stillest half and in the most active quarter
    of the motions' windows. Each (T_i, D) sequence at `rate` is cut into consecutive windows of m frames from
    frame 0 (a remainder is dropped); a window's spectrum is acceleration_power's (m - 2 accelerations, mean
    taken off, Hann window), its mean square in a set of bins sum_k c_k |X_k|^2 / ((m - 2) sum_n w_n^2), c_k = 2
    (1 at the Nyquist bin). Windows are ranked, over all sequences, by their power in the bins from 1 to lo Hz:
    the motion's own activity below lo. Windows, not a band-pass of the whole sequence, because a sharp band
    edge rings for ~1 s around every impact, and that ringing alone would fill the still windows. Real motion
    has little above lo Hz where it is still; what a decoder puts there is noise, however real its share of
    power (band_share) looks; in the active quarter a decoder with the real detail has real motion's figure."""
    wins = [x[c:c + m] for x in seqs for c in range(0, len(x) - m + 1, m)]
    power = acceleration_power(np.stack(wins), rate, skeleton).sum(-1).mean(-1)       # (K, bins): per joint, summed xyz
    n = m - 2
    f = np.arange(power.shape[1]) * rate / n
    power = power * np.where(np.arange(power.shape[1]) * 2 == n, 1, 2) / (n * (np.hanning(n) ** 2).sum())
    slow, band = power[:, (f > 0) & (f <= lo)].sum(1), power[:, f > lo].sum(1)
    order = np.argsort(slow, kind="stable")
    still, active = order[:len(order) // 2], order[len(order) - len(order) // 4:]
    return float(np.sqrt(band[still].mean())), float(np.sqrt(band[active].mean()))


def band_rows(ms, rate, decoder=None, z=None, seconds=None, chunk=32, boot=0):
    """Band errors at `rate` over the sequences of MotionSet ms recorded at that rate (so the truth is their own
    frames, never an interpolation), on root-relative joint positions (ric_positions, what detail-FD reads):
    a fitted decoder's global positions also carry the drift of its integrated root velocity and heading
    (its global MRE is ~5x the root-relative one), slow errors that would turn the true band with them.
    Without a decoder, the real motion through 20 fps (resampled to 20 fps, interpolated back):
    {"linear": e, "cubic": e}. With one, latents z (len(ms), Z) decoded for `seconds` (len(ms),), directly at
    the rate and at 20 fps then interpolated: {"direct": e, "linear": e, "cubic": e}; a decoded motion
    shorter than its sequence (a fixed-20-fps fit) is compared on its own frames. {} if none is at the rate.
    boot > 0: each figure is (e, lo, hi) with its bootstrap interval over the sequences (band_error)."""
    idx = recorded_at(ms, rate)
    if not idx:
        return {}
    if decoder is None:
        preds = through_20fps([ms.features[i] for i in idx], rate)
    else:
        preds = decoded_sequences(decoder, z[torch.tensor(idx)], seconds[idx], rate, chunk)
        preds = {k: [x[:len(ms.features[q])] for x, q in zip(p, idx)] for k, p in preds.items()}
    sk = ms.skeleton
    return {k: band_error([ric_positions(x, sk) for x in p],
                          [ric_positions(ms.features[q][:len(x)], sk) for x, q in zip(p, idx)], rate, boot=boot)
            for k, p in preds.items()}
