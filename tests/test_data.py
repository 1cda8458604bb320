"""Dataset loading and clip sampling: python -m pytest -q tests/test_data.py"""
import os
import shutil

import numpy as np
import pytest
import torch

import data
import motion


def test_loader_reads_layout_fps_and_texts(small_dataset):
    train = data.load_dataset("synthetic", small_dataset, "train")
    val = data.load_dataset("synthetic", small_dataset, "val")
    assert len(train) + len(val) <= 60 and len(val) > 0
    assert set(train.fps.tolist()) <= {20.0, 30.0, 50.0, 60.0, 100.0, 120.0} and len(set(train.fps.tolist())) >= 3
    assert all(len(c) == 3 for c in train.captions) and all(a for a in train.actions)
    # stored velocity channels are per frame at each file's own rate; loaded ones are per second
    x = np.load(os.path.join(small_dataset, "new_joint_vecs", train.names[0] + ".npy"))
    np.testing.assert_allclose(motion.features_per_frame(train.features[0], train.fps[0]), x, rtol=1e-5, atol=1e-6)
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
    y = motion.resample(x, 30.0, 50.0)
    t = np.arange(len(y)) / 50.0
    assert len(y) == 51
    np.testing.assert_allclose(y[:, 1], np.interp(t * 30, np.arange(31), x[:, 1]), rtol=1e-5)
    np.testing.assert_allclose(motion.resample(x, 30.0, 30.0), x)


def test_cubic_interpolation_is_catmull_rom():
    """kind="cubic": the Hermite cubic through the frames with tangents (x[k+1] - x[k-1]) / 2 per frame (end
    frames repeated), here scipy's CubicHermiteSpline; it passes through every frame, reproduces a quadratic
    exactly between the interior frames, and resample(kind=...) is interpolate on the new grid."""
    from scipy.interpolate import CubicHermiteSpline
    rng = np.random.default_rng(0)
    fps, T = 30.0, 25
    x = rng.standard_normal((T, 3)).astype(np.float32)
    padded = np.concatenate([x[:1], x, x[-1:]]).astype(np.float64)
    tangent = (padded[2:] - padded[:-2]) / 2 * fps                      # per second
    ref = CubicHermiteSpline(np.arange(T) / fps, x.astype(np.float64), tangent)
    t = rng.uniform(0, (T - 1) / fps, (7, 40))
    t[0, :3] = [0.0, 1.0 / fps, (T - 1) / fps]                         # a first, an inner and the last frame
    got = motion.interpolate(x, fps, t, "cubic")
    assert got.shape == (7, 40, 3)
    np.testing.assert_allclose(got, ref(t), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(motion.interpolate(x, fps, np.arange(T) / fps, "cubic"), x, atol=1e-6)
    # a quadratic (and so a line) is exact wherever the four frames around a time are real ones
    q = np.stack([0.7 * (np.arange(T) / fps) ** 2 - 2 * np.arange(T) / fps + 0.3, 3 * np.arange(T) / fps], -1)
    inner = rng.uniform(1 / fps, (T - 2) / fps, 200)
    want = np.stack([0.7 * inner ** 2 - 2 * inner + 0.3, 3 * inner], -1)
    np.testing.assert_allclose(motion.interpolate(q.astype(np.float32), fps, inner, "cubic"), want, rtol=1e-5, atol=1e-5)
    anywhere = rng.uniform(0, (T - 1) / fps, 200)                         # linear: exact for a line everywhere
    np.testing.assert_allclose(motion.interpolate(q.astype(np.float32), fps, anywhere)[:, 1], 3 * anywhere, rtol=1e-5)
    # resample with kind: interpolate on the new grid (27 fps: 0 .. 0.8 s, 22 frames)
    r = motion.resample(x, fps, 27.0, "cubic")
    assert len(r) == 22
    np.testing.assert_allclose(r, ref(np.arange(22) / 27.0), rtol=1e-5, atol=1e-5)


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
    native = torch.from_numpy(ms.fps[idx.numpy()])
    k = native / s.double()                                        # every rate is native / k, k whole
    assert (k - k.round()).abs().max() < 1e-4 and (k.round() >= 1).all()
    assert (s.double() >= torch.clamp(native, max=data.MIN_CLIP_FPS) - 1e-4).all()
    assert t.min() >= 0 and (t <= cs.duration[idx, None] + 1e-6).all()


# ---- ClipSampler against closed forms -----------------------------------------------------------------------
# Hand-made sequences whose channels are known functions of time, so every gathered value has an exact
# expected value: the stored frame.

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
                          [""] * n, motion.SMPL22, np.array([0.5, -1.0, 2.0]), np.array([2.0, 0.5, 3.0]))


def draw(ms, m, n, seed):
    """n clips of m frames from every sequence of ms -> idx (B,), values in the curve's units (B, m, 3) float64,
    native frame indices (B, m) (checked to be whole numbers), steps k (B,) (checked to be whole numbers)."""
    cs = data.ClipSampler(ms, ms.mean, ms.std)
    idx = torch.arange(len(ms)).repeat(n)
    x, t, s, _ = cs.sample(idx, m, generator=torch.Generator().manual_seed(seed))
    native = ms.fps[idx.numpy()]
    pos, k = t.double().numpy() * native[:, None], native / s.double().numpy()
    frame, step = np.round(pos).astype(int), np.round(k).astype(int)
    np.testing.assert_allclose(pos, frame, atol=1e-3)
    np.testing.assert_allclose(k, step, rtol=1e-5)
    assert (t.double().numpy() <= ms.durations()[idx.numpy(), None] + 1e-6).all()   # nothing past the end
    return idx.numpy(), x.double().numpy() * ms.std + ms.mean, frame, step


def allowed_steps(native):
    """k = 1 .. K with native / K >= 20 fps (k = 1 always)."""
    return set(range(1, max(1, int(np.floor(native / 20.0 + 1e-9))) + 1))


def test_clip_values_are_the_stored_frames():
    """Every value is the curve at a stored frame's time, frames k apart, the window inside the sequence (no
    repeated frame), whatever the native rate (29.97 and 45 fps give no whole step but 1 and 1, 2)."""
    natives, seconds = (45.0, 50.0, 120.0, 29.97, 20.0), (1.3, 2.0, 4.1, 3.0, 2.5)
    ms = curve_set(natives, seconds)
    idx, x, frame, k = draw(ms, 16, 150, seed=0)
    last = np.array([len(f) - 1 for f in ms.features])[idx]
    for b, i in enumerate(idx):
        np.testing.assert_allclose(x[b], curve(i, frame[b] / natives[i]), atol=1e-5, err_msg=f"clip {b}, seq {i}")
    np.testing.assert_array_equal(np.diff(frame, axis=1), np.broadcast_to(k[:, None], (len(k), 15)))
    assert frame.min() >= 0 and (frame[:, -1] <= last).all()
    assert (frame[:, -1] == last).sum() > 5                                  # windows reach the last frame
    # exactly the stored (normalized) rows, no arithmetic on them
    cs = data.ClipSampler(ms, ms.mean, ms.std)
    ref = [torch.from_numpy((f - ms.mean) / ms.std).float() for f in ms.features]
    x2, t2, _, _ = cs.sample(torch.tensor([4, 2]), 16, generator=torch.Generator().manual_seed(5))
    for b, i in enumerate((4, 2)):
        assert torch.equal(x2[b], ref[i][torch.round(t2[b].double() * natives[i]).long()])


def test_every_step_is_drawn_and_first_frames_cover_their_range():
    """k is uniform over 1 .. K (native 120: 120, 60, 40, 30, 24, 20 fps; 45: 45, 22.5; 20: 20 only) and the
    first frame is uniform over 0 .. last - (m - 1) k, both ends included."""
    natives, m = (120.0, 45.0, 20.0), 8
    ms = curve_set(natives, (1.0, 2.0, 3.0))                 # short, so both ends of each range come up often
    idx, _, frame, k = draw(ms, m, 3000, seed=1)
    want = {120.0: {120, 60, 40, 30, 24, 20}, 45.0: {45, 22.5}, 20.0: {20}}
    for i, native in enumerate(natives):
        mine = idx == i
        assert {native / j for j in set(k[mine].tolist())} == want[native] == {native / j for j in allowed_steps(native)}
        counts = np.bincount(k[mine])[1:]
        assert (counts > 0.7 * mine.sum() / len(counts)).all(), counts       # uniform over the steps
        last = len(ms.features[i]) - 1
        room = last - (m - 1) * k[mine]                                       # the latest first frame
        first = frame[mine, 0]
        assert (first >= 0).all() and (first <= room).all()
        assert (first == 0).sum() > 10 and (first == room).sum() > 10, native  # both ends
        hist = np.histogram(first / room, bins=10, range=(0, 1 + 1e-9))[0]
        assert (hist > 0.06 * mine.sum()).all(), hist                          # and everywhere between


def test_a_short_sequence_gets_only_the_steps_that_fit():
    """120 fps, m = 16: 48 frames fit k <= 3 (45 frame intervals), 46 frames too (the window then fills the
    sequence), 45 frames only k <= 2; under m frames: the native rate, the last frame held."""
    m = 16
    ms = curve_set((120.0, 120.0, 120.0, 60.0), (47 / 120, 45 / 120, 44 / 120, 9 / 60))
    cs = data.ClipSampler(ms, ms.mean, ms.std)
    assert cs.frame_steps(torch.arange(4), m).tolist() == [3, 3, 2, 1]
    idx, x, frame, k = draw(ms, m, 400, seed=2)
    for i, ks in enumerate(({1, 2, 3}, {1, 2, 3}, {1, 2}, {1})):
        assert set(k[idx == i].tolist()) == ks, i
    full = (idx == 1) & (k == 3)                               # 46 frames, k = 3: frames 0, 3 ... 45 exactly
    assert full.sum() > 50 and (frame[full] == 3 * np.arange(m)).all()
    np.testing.assert_array_equal(frame[idx == 3], np.broadcast_to(np.minimum(np.arange(m), 9), (400, m)))
    for b in np.nonzero(idx == 3)[0][:5]:
        np.testing.assert_allclose(x[b], curve(3, np.minimum(np.arange(m), 9) / 60.0), atol=1e-5)
    assert (np.diff(frame[idx < 3], axis=1) == k[idx < 3, None]).all()     # no repeated frame where it fits


def kit_joints(T, seed):
    """(T, 21, 3) KIT joints from forward kinematics: smooth swings of every joint, the root walking."""
    rng = np.random.default_rng(seed)
    t = np.arange(T)[:, None, None] / 12.5
    angle = rng.uniform(0.1, 0.3, (21, 3)) * np.sin(2 * np.pi * rng.uniform(0.3, 1.0, (21, 3)) * t
                                                    + rng.uniform(0.5, 2.5, (21, 3)))   # never the exact rest pose
    norm = np.linalg.norm(angle, axis=-1, keepdims=True) + 1e-12
    q = np.concatenate([np.cos(norm / 2), np.sin(norm / 2) * angle / norm], axis=-1)
    root = np.concatenate([0.5 * t[:, 0], 1.0 + 0.0 * t[:, 0], 0.2 * t[:, 0]], axis=-1)
    return motion.forward_kinematics(motion.quat_to_matrix(q), root, motion.KIT21)


def test_kit_standard_layout(tmp_path):
    """KIT-ML as HumanML3D's scripts write it: (T-1, 251) features per frame at 12.5 fps, texts, splits,
    Mean/Std per frame; no meta.csv, so 12.5 fps is assumed."""
    d = tmp_path / "KIT-ML"
    for sub in ("new_joint_vecs", "new_joints", "texts"):
        (d / sub).mkdir(parents=True)
    feats = {}
    for k, sid in enumerate(["00001", "00002", "00003", "M00001"]):
        j = kit_joints(40 + 5 * k, seed=k)
        feats[sid] = motion.joints_to_features(j, motion.KIT21, fps=12.5)        # KIT's own conventions (frame 0 jump)
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
    assert ms.skeleton is motion.KIT21 and (ms.fps == 12.5).all() and ms.features[0].shape[1] == 251
    assert ms.names == ["00001", "00001#0", "00002", "00002#0", "M00001", "M00001#0"]
    assert ms.captions[:2] == [["a person walks 0"], ["first part 0"]] and len(ms.features[1]) == 15   # 1.2 s
    np.testing.assert_allclose(ms.features[0], motion.features_per_second(feats["00001"], 12.5), rtol=1e-6)
    np.testing.assert_allclose(ms.mean, motion.features_per_second(train_rows.mean(0)[None], 12.5)[0], rtol=1e-5)
    np.testing.assert_allclose(ms.std, np.abs(motion.features_per_second((train_rows.std(0) + 0.01)[None], 12.5)[0]),
                               rtol=1e-5)
    # the features give back the joints HumanML3D's new_joints would hold (root-relative, any facing)
    rec = motion.features_to_joints(feats["00002"], motion.KIT21)
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
