"""Dataset loading and clip sampling: python -m pytest -q tests/test_data.py"""
import os
import shutil

import numpy as np
import pytest
import torch

import data


def test_loader_reads_layout_fps_and_texts(small_dataset):
    train = data.load_dataset("synthetic", small_dataset, "train")
    val = data.load_dataset("synthetic", small_dataset, "val")
    assert len(train) + len(val) <= 60 and len(val) > 0
    assert set(train.fps.tolist()) <= {20.0, 30.0, 50.0, 60.0, 100.0, 120.0} and len(set(train.fps.tolist())) >= 3
    assert all(len(c) == 3 for c in train.captions) and all(a for a in train.actions)
    # stored velocity channels are per frame at each file's own rate; loaded ones are per second
    x = np.load(os.path.join(small_dataset, "new_joint_vecs", train.names[0] + ".npy"))
    np.testing.assert_allclose(data.features_per_frame(train.features[0], train.fps[0]), x, rtol=1e-5, atol=1e-6)
    assert train.mean.shape == (263,) and (train.std > 0).all()


def test_sub_segments_become_sequences(small_dataset, tmp_path):
    d = tmp_path / "ds"
    shutil.copytree(small_dataset, d)
    sid = data.load_dataset("synthetic", str(d), "train").names[0]
    with open(d / "texts" / f"{sid}.txt", "a") as f:
        f.write("a person does the first part#a/DET#0.0#1.5\n")
    ms = data.load_dataset("synthetic", str(d), "train")
    k = ms.names.index(f"{sid}#0")
    assert ms.captions[k] == ["a person does the first part"]
    assert abs(ms.durations()[k] - 1.5) < 1.0 / ms.fps[k] + 1e-6


def test_fixed_mode_resamples_to_20fps(small_dataset):
    native = data.load_dataset("synthetic", small_dataset, "train")
    fixed = data.load_dataset("synthetic", small_dataset, "train", fps_mode="fixed")
    assert (fixed.fps == 20).all()
    for xn, xf, f in zip(native.features[:5], fixed.features[:5], native.fps[:5]):
        if f % 20 == 0:  # 20 fps rows are every (f/20)-th native row exactly
            np.testing.assert_allclose(xf, xn[::int(f // 20)][:len(xf)], atol=1e-5)


def test_resample_is_linear_interpolation():
    x = np.stack([np.arange(31.0), np.arange(31.0) ** 2], -1).astype(np.float32)   # 1 s at 30 fps
    y = data.resample(x, 30.0, 50.0)
    t = np.arange(len(y)) / 50.0
    assert len(y) == 51
    np.testing.assert_allclose(y[:, 1], np.interp(t * 30, np.arange(31), x[:, 1]), rtol=1e-5)
    np.testing.assert_allclose(data.resample(x, 30.0, 30.0), x)


def test_bad_directories_get_one_clear_message(tmp_path, small_dataset):
    with pytest.raises(data.DataError, match="not found.*\n.*expected layout"):
        data.load_dataset("humanml3d", str(tmp_path / "nope"), "train")
    with pytest.raises(data.DataError, match="has no new_joint_vecs"):
        data.load_dataset("humanml3d", str(tmp_path), "train")
    with pytest.raises(data.DataError, match="unknown dataset"):
        data.load_dataset("amass2", str(tmp_path), "train")
    d = tmp_path / "ds"
    shutil.copytree(small_dataset, d)
    sid = (d / "train.txt").read_text().split()[0]
    (d / "new_joint_vecs" / f"{sid}.npy").write_bytes(b"not a numpy file")
    with pytest.raises(data.DataError, match=f"{sid}.npy: cannot read"):
        data.load_dataset("synthetic", str(d), "train")
    np.save(d / "new_joint_vecs" / f"{sid}.npy", np.zeros((10, 100), np.float32))
    with pytest.raises(data.DataError, match=rf"{sid}.npy: got shape \(10, 100\); expected a \(T, 263\)"):
        data.load_dataset("synthetic", str(d), "train")
    shutil.copy(os.path.join(small_dataset, "new_joint_vecs", f"{sid}.npy"), d / "new_joint_vecs" / f"{sid}.npy")
    (d / "texts" / f"{sid}.txt").write_text("a caption without fields\n")
    with pytest.raises(data.DataError, match=f"{sid}.txt:1: expected"):
        data.load_dataset("synthetic", str(d), "train")


def test_clip_sampler_on_the_embedded_data(small_dataset):
    ms = data.load_dataset("synthetic", small_dataset, "train")
    cs = data.ClipSampler(ms, ms.mean, ms.std)
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, len(ms), (400,), generator=g)
    x, t, s, out_idx = cs.sample(idx, 16, generator=g)
    assert x.shape == (400, 16, 263) and t.shape == (400, 16) and torch.equal(out_idx, idx)
    assert (s <= cs.fps[idx] + 1e-6).all() and t.min() >= 0 and (t <= cs.duration[idx, None] + 1e-6).all()
    # max_fps caps the rate (the progressive schedule's first phase)
    _, _, s20, _ = cs.sample(idx, 16, generator=g, max_fps=20.0)
    assert s20.max() <= 20.0


# ---- ClipSampler against closed forms -----------------------------------------------------------------------
# Hand-made sequences whose channels are known functions of time, so every gathered value has an exact
# expected value; rates outside FPS_CHOICES (45, 29.97) are reachable only as "the native rate".

OMEGA = np.array([1.3, 4.1, 9.7])          # rad/s, one per channel


def curve(i, t):
    """Channel c of sequence i at times t (s): sin(ω_c t + i) + (0.3 + 0.1 i) t², smooth and not linear."""
    t = np.asarray(t, dtype=np.float64)[..., None]
    return np.sin(OMEGA * t + i) + (0.3 + 0.1 * i) * t ** 2


def curve_set(natives, seconds):
    """A MotionSet of curve(i, ·) sampled at natives[i] for seconds[i] (a whole number of frames), with
    statistics that are not 0 and 1, so the normalization is checked too."""
    feats = [curve(i, np.arange(round(d * f) + 1) / f).astype(np.float32)
             for i, (f, d) in enumerate(zip(natives, seconds))]
    n = len(natives)
    return data.MotionSet([f"s{i}" for i in range(n)], feats, np.array(natives, dtype=np.float64), [[""]] * n,
                          [""] * n, data.SMPL22, np.array([0.5, -1.0, 2.0]), np.array([2.0, 0.5, 3.0]))


def expected_clip(i, fps, T, t):
    """What linear interpolation between the two native frames around each time t gives: (1-w) f(k0) + w f(k1)."""
    pos = np.asarray(t, dtype=np.float64) * fps
    k0 = np.minimum(np.floor(pos), T - 1)
    k1 = np.minimum(k0 + 1, T - 1)
    w = (pos - k0)[..., None]
    return (1 - w) * curve(i, k0 / fps) + w * curve(i, k1 / fps), pos - k0


def test_clip_values_are_the_interpolated_closed_form():
    """Every gathered value equals the linear interpolation of the curve between its two native frames, at
    fractional weights (not only 0 and 1/2) and in windows that reach the end of the sequence."""
    natives, seconds = (45.0, 50.0, 120.0, 29.97), (1.3, 2.0, 4.1, 3.0)
    ms = curve_set(natives, seconds)
    cs = data.ClipSampler(ms, ms.mean, ms.std)
    idx = torch.arange(len(ms)).repeat(150)
    x, t, s, _ = cs.sample(idx, 16, generator=torch.Generator().manual_seed(0))
    x = x.double().numpy() * ms.std + ms.mean                      # back to the curve's units
    weights, at_end = [], 0
    for b, i in enumerate(idx.tolist()):
        T = len(ms.features[i])
        want, w = expected_clip(i, natives[i], T, t[b].numpy())
        np.testing.assert_allclose(x[b], want, atol=1e-4, err_msg=f"clip {b}: sequence {i} at {s[b]:g} fps")
        weights.append(w)
        at_end += bool(t[b, -1] > ms.durations()[i] - 1 / natives[i])   # the last native interval is used
    w = np.concatenate(weights)
    assert ((w > 0.05) & (w < 0.45) | (w > 0.55) & (w < 0.95)).sum() > 500   # genuinely fractional weights
    assert at_end > 20


def test_rates_and_window_starts_cover_their_whole_range():
    """Each allowed rate, the native one included, is drawn; window starts spread over all of
    [0, duration - span], its two ends included; no time leaves the sequence and no window is cut."""
    natives, m = (45.0, 120.0), 8
    ms = curve_set(natives, (6.0, 6.0))
    cs = data.ClipSampler(ms, ms.mean, ms.std)
    idx = torch.arange(2).repeat_interleave(3000)
    _, t, s, _ = cs.sample(idx, m, generator=torch.Generator().manual_seed(1))
    dur = cs.duration[idx].double()
    t, s = t.double(), s.double()
    assert t.min() >= 0 and (t <= dur[:, None] + 1e-6).all()
    np.testing.assert_allclose((t[:, 1:] - t[:, :-1]).numpy(), (1 / s[:, None]).expand(-1, m - 1).numpy(), atol=1e-5)
    for i, native in enumerate(natives):
        mine = idx == i
        assert set(s[mine].tolist()) == {f for f in data.FPS_CHOICES if f <= native} | {native}, native
        room = dur[mine] - (m - 1) / s[mine]                       # the latest start that keeps the window inside
        u = (t[mine, 0] / room).numpy()                            # start as a fraction of its range
        assert (u >= 0).all() and (u <= 1 + 1e-5).all()
        assert (u == 0).sum() > 10                                  # windows at the start ...
        assert (u >= 1 - 1 / (native * room.numpy()) - 1e-6).sum() > 10   # ... and at the end (start on the grid)
        counts = np.histogram(u, bins=10, range=(0, 1 + 1e-5))[0]
        assert (counts > 0.05 * len(u)).all(), counts               # and everywhere between (~9% expected per bin)


def test_clips_at_the_native_rate_read_original_frames():
    """At s = native (and native / k) every time is an original frame, so the clip holds stored rows exactly."""
    natives = (45.0, 29.97, 120.0)
    ms = curve_set(natives, (3.0, 3.0, 3.0))
    cs = data.ClipSampler(ms, ms.mean, ms.std)
    idx = torch.arange(3).repeat(400)
    x, t, s, _ = cs.sample(idx, 16, generator=torch.Generator().manual_seed(2))
    fps = cs.fps[idx].double()
    on_grid = (fps / s.double() - (fps / s.double()).round()).abs() < 1e-6   # native / s is a whole number
    native = s == cs.fps[idx]
    assert native.sum() > 150 and (on_grid & ~native).sum() > 100
    frames = (t.double() * fps[:, None])[on_grid]
    np.testing.assert_allclose(frames.numpy(), frames.round().numpy(), atol=1e-3)
    x = x.double().numpy() * ms.std + ms.mean
    for b in torch.nonzero(native)[:, 0].tolist():
        i = int(idx[b])
        np.testing.assert_allclose(x[b], curve(i, np.round(t[b].double().numpy() * natives[i]) / natives[i]),
                                   atol=1e-4)


def kit_joints(T, seed):
    """(T, 21, 3) KIT joints from forward kinematics: smooth swings of every joint, the root walking."""
    rng = np.random.default_rng(seed)
    t = np.arange(T)[:, None, None] / 12.5
    angle = rng.uniform(0.1, 0.3, (21, 3)) * np.sin(2 * np.pi * rng.uniform(0.3, 1.0, (21, 3)) * t
                                                    + rng.uniform(0.5, 2.5, (21, 3)))   # never the exact rest pose
    norm = np.linalg.norm(angle, axis=-1, keepdims=True) + 1e-12
    q = np.concatenate([np.cos(norm / 2), np.sin(norm / 2) * angle / norm], axis=-1)
    root = np.concatenate([0.5 * t[:, 0], 1.0 + 0.0 * t[:, 0], 0.2 * t[:, 0]], axis=-1)
    return data.forward_kinematics(data.quat_to_matrix(q), root, data.KIT21)


def test_kit_standard_layout(tmp_path):
    """KIT-ML as HumanML3D's scripts write it: (T-1, 251) features per frame at 12.5 fps, texts, splits,
    Mean/Std per frame; no meta.csv, so 12.5 fps is assumed."""
    d = tmp_path / "KIT-ML"
    for sub in ("new_joint_vecs", "new_joints", "texts"):
        (d / sub).mkdir(parents=True)
    feats = {}
    for k, sid in enumerate(["00001", "00002", "00003", "M00001"]):
        j = kit_joints(40 + 5 * k, seed=k)
        feats[sid] = data.joints_to_features(j, data.KIT21, fps=12.5)        # KIT's own conventions (frame 0 jump)
        np.save(d / "new_joint_vecs" / f"{sid}.npy", feats[sid])
        np.save(d / "new_joints" / f"{sid}.npy", j[:-1].astype(np.float32))
        (d / "texts" / f"{sid}.txt").write_text(f"a person walks {k}#a/DET person/NOUN walk/VERB#0.0#0.0\n"
                                                f"first part {k}#first/ADJ part/NOUN#0.0#1.2\n")
    (d / "train.txt").write_text("00001\n00002\nM00001\n")
    (d / "val.txt").write_text("00003\n")
    (d / "test.txt").write_text("00003\n")
    train_rows = np.concatenate([feats[s] for s in ("00001", "00002", "M00001")])
    np.save(d / "Mean.npy", train_rows.mean(0))
    np.save(d / "Std.npy", train_rows.std(0) + 0.01)
    ms = data.load_dataset("kit", str(d), "train")
    assert ms.skeleton is data.KIT21 and (ms.fps == 12.5).all() and ms.features[0].shape[1] == 251
    assert ms.names == ["00001", "00001#0", "00002", "00002#0", "M00001", "M00001#0"]
    assert ms.captions[:2] == [["a person walks 0"], ["first part 0"]] and len(ms.features[1]) == 15   # 1.2 s
    np.testing.assert_allclose(ms.features[0], data.features_per_second(feats["00001"], 12.5), rtol=1e-6)
    np.testing.assert_allclose(ms.mean, data.features_per_second(train_rows.mean(0)[None], 12.5)[0], rtol=1e-5)
    np.testing.assert_allclose(ms.std, np.abs(data.features_per_second((train_rows.std(0) + 0.01)[None], 12.5)[0]),
                               rtol=1e-5)
    # the features give back the joints HumanML3D's new_joints would hold (root-relative, any facing)
    rec = data.features_to_joints(feats["00002"], data.KIT21)
    j = np.load(d / "new_joints" / "00002.npy")
    rel = lambda x: np.linalg.norm(x - x[:, :1], axis=-1)
    np.testing.assert_allclose(rel(rec), rel(j), atol=1e-4)
    assert len(data.load_dataset("kit", str(d), "val", min_seconds=1.0)) == 2


def test_missing_kit_folder_says_what_kit_is(tmp_path):
    with pytest.raises(data.DataError) as err:
        data.load_dataset("kit", str(tmp_path / "KIT-ML"), "train")
    msg = str(err.value)
    assert "not found" in msg and "new_joint_vecs" in msg and "251" in msg and "12.5 fps" in msg
    assert "KIT Motion-Language Dataset" in msg and "https://github.com/EricGuo5513/HumanML3D" in msg
