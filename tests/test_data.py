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


def test_clip_sampler_rates_windows_and_interpolation(small_dataset):
    ms = data.load_dataset("synthetic", small_dataset, "train")
    cs = data.ClipSampler(ms, ms.mean, ms.std)
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, len(ms), (400,), generator=g)
    x, tau, s, out_idx = cs.sample(idx, 16, generator=g)
    assert x.shape == (400, 16, 263) and tau.shape == (400, 16) and torch.equal(out_idx, idx)
    assert (s <= cs.fps[idx] + 1e-6).all() and len(set(s.tolist())) >= 4     # up to the native rate, varied
    assert tau.min() >= 0 and (tau <= cs.duration[idx, None] + 1e-6).all()  # seconds, inside the sequence
    t_sec = tau
    inside = t_sec[:, -1] < cs.duration[idx] - 1e-4                          # windows not cut by the end
    gaps = (t_sec[:, 1:] - t_sec[:, :-1])[inside]
    assert torch.allclose(gaps, (1 / s[inside])[:, None].expand_as(gaps), atol=1e-4)
    # interpolation: compare one clip with numpy's interp on the normalized native rows
    i = int(idx[0])
    rows = (ms.features[i] - ms.mean) / ms.std
    grid = np.arange(len(rows)) / ms.fps[i]
    ref = np.interp(t_sec[0].numpy(), grid, rows[:, 5])
    np.testing.assert_allclose(x[0, :, 5].numpy(), ref, atol=1e-4)
    # max_fps caps the rate (the progressive schedule's first phase)
    _, _, s20, _ = cs.sample(idx, 16, generator=g, max_fps=20.0)
    assert s20.max() <= 20.0


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
    with pytest.raises(data.DataError, match=f"{sid}.npy: expected"):
        data.load_dataset("synthetic", str(d), "train")
    shutil.copy(os.path.join(small_dataset, "new_joint_vecs", f"{sid}.npy"), d / "new_joint_vecs" / f"{sid}.npy")
    (d / "texts" / f"{sid}.txt").write_text("a caption without fields\n")
    with pytest.raises(data.DataError, match=f"{sid}.txt:1: expected"):
        data.load_dataset("synthetic", str(d), "train")


def test_clips_at_the_native_rate_read_original_frames(small_dataset):
    """A clip at s = native hits native frames exactly (no interpolated midpoints that blur detail)."""
    ms = data.load_dataset("synthetic", small_dataset, "train")
    cs = data.ClipSampler(ms, ms.mean, ms.std)
    g = torch.Generator().manual_seed(1)
    idx = torch.randint(0, len(ms), (300,), generator=g)
    _, tau, s, _ = cs.sample(idx, 16, generator=g)
    native = s == cs.fps[idx]
    frames = (tau * cs.fps[idx, None])[native]
    assert native.sum() > 20 and torch.allclose(frames, frames.round(), atol=1e-3)


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
