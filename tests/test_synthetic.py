"""
Tests of the embedded synthetic dataset and of writing it (CPU, a few seconds):

    python -m pytest tests/test_synthetic.py -q
"""
import os

import numpy as np
import pytest

import data
import guard
import motion
import prepare
import synthetic
import writer
from motion import SMPL22
from synthetic import ACTIONS, FRAMERATES, HELD_OUT_RATES, generate_motions


@pytest.fixture(scope="module")
def motions():
    return generate_motions(60, seed=0)


def _interp_error(joints, step):
    """Max joint error (m) of rebuilding every frame by linear interpolation from every `step`-th frame."""
    keep = np.arange(0, len(joints), step)
    frames = np.arange(keep[-1] + 1)
    lo = np.minimum(frames // step, len(keep) - 2)
    w = ((frames - keep[lo]) / step)[:, None, None]
    rebuilt = (1 - w) * joints[keep[lo]] + w * joints[keep[lo + 1]]
    return np.linalg.norm(rebuilt - joints[frames], axis=-1).max()


def test_deterministic(motions):
    again = generate_motions(60, seed=0)
    for a, b in zip(motions, again):
        assert a["name"] == b["name"] and a["captions"] == b["captions"] and a["split"] == b["split"]
        np.testing.assert_array_equal(a["joints"], b["joints"])
    other = generate_motions(len(ACTIONS), seed=1)
    assert any(a["joints"].shape != b["joints"].shape or not np.array_equal(a["joints"], b["joints"])
               for a, b in zip(motions, other))
    # sequence i does not depend on how many are generated
    np.testing.assert_array_equal(generate_motions(3, seed=0)[2]["joints"], motions[2]["joints"])


def test_actions_framerates_and_splits():
    metas = generate_motions(200, seed=0)
    assert set(m["action"] for m in metas) == set(ACTIONS) and len(ACTIONS) >= 10
    rates = set(m["fps"] for m in metas if m["split"] == "train")
    assert rates == set(FRAMERATES)
    # held-out sequences are all recorded at a high rate, both rates present (the high-rate reference sets)
    assert set(m["fps"] for m in metas if m["split"] != "train") == set(HELD_OUT_RATES)
    splits = [m["split"] for m in metas]
    assert set(splits) == {"train", "val", "test"} and 0.7 < splits.count("train") / len(splits) < 0.9
    assert len(set(m["name"] for m in metas)) == len(metas)


def test_shapes_durations_and_floor(motions):
    for m in motions:
        T = len(m["joints"])
        assert m["joints"].shape == (T, 22, 3) and m["joints"].dtype == np.float32
        assert 2.0 <= m["duration"] <= 10.0 and T == round(m["duration"] * m["fps"])
        assert np.isfinite(m["joints"]).all()
        # grounded: the lowest joint of every frame touches the floor, but in the flight of a jump
        lowest = m["joints"][..., 1].min(axis=1)
        airborne = m["action"] in ("jump", "jumping_jacks")
        assert np.abs(lowest).min() < 1e-5 and lowest.min() > -1e-5 and (airborne or lowest.max() < 1e-5)


def test_bone_lengths_are_the_skeletons(motions):
    lengths = np.asarray(SMPL22.bone_lengths)
    for m in motions:
        j = m["joints"].astype(np.float64)
        for c, p in enumerate(SMPL22.parents):
            if p >= 0:
                np.testing.assert_allclose(np.linalg.norm(j[:, c] - j[:, p], axis=-1), lengths[c], atol=1e-5)


def test_same_motion_at_every_rate():
    # the motion is a function of time: frame k at 60 fps is frame 2k at 120 fps
    slow, fast = generate_motions(len(ACTIONS), seed=3, fps=60), generate_motions(len(ACTIONS), seed=3, fps=120)
    for a, b in zip(slow, fast):
        n = min(len(a["joints"]), (len(b["joints"]) + 1) // 2)
        np.testing.assert_allclose(a["joints"][:n], b["joints"][: 2 * n : 2], atol=1e-5)


def test_framerate_matters_for_fast_motions():
    # punches (60-100 ms extensions) and 6-12 Hz hand shakes: 20 fps loses them, 60 fps nearly keeps them
    fast = [m for m in generate_motions(6 * len(ACTIONS), seed=0, fps=120)
            if m["action"] == "punch" or (m["action"] == "shake" and m["params"]["part"] != "head")]
    assert len(fast) >= 6
    errors = np.array([(_interp_error(m["joints"], 6), _interp_error(m["joints"], 2)) for m in fast])  # 20, 60 fps
    assert (errors[:, 0] > 2.5 * errors[:, 1]).all() and (errors[:, 0] > 0.03).all()
    assert errors[:, 0].max() > 0.05 and np.median(errors[:, 1]) < 0.02


def test_captions(motions):
    for m in motions:
        caps = m["captions"]
        assert len(caps) == 3 and len(set(caps)) == 3
        assert all(c and c == c.strip() and c.endswith(".") and "{" not in c and "  " not in c for c in caps)
    texts = " ".join(c for m in motions for c in m["captions"])
    for word in ("left", "right", "slowly", "twice", "walks", "punches"):
        assert word in texts


# ----------------------------------------------------------------------------------------------
# the dataset on disk: synthetic.write_dataset through writer.DatasetWriter


def test_written_dataset_loads_and_its_statistics_are_the_train_rows(small_dataset):
    """small_dataset is synthetic.write_dataset(out, 60, seed=0): every generated sequence is there, at its own
    rate, and Mean/Std are the per-second statistics of the train rows (two passes here, one in the writer)."""
    motions = {m["name"]: m for m in generate_motions(60, seed=0)}
    train = data.load_dataset("synthetic", small_dataset, "train")
    assert sorted(train.names) == sorted(n for n, m in motions.items() if m["split"] == "train" and
                                         (len(m["joints"]) - 2) / m["fps"] >= 1.0)
    for name, fps in zip(train.names, train.fps):
        assert fps == motions[name]["fps"]
    np.testing.assert_array_equal(np.load(os.path.join(small_dataset, "new_joints", "000000.npy")),
                                  motions["000000"]["joints"])
    ids = open(os.path.join(small_dataset, "train.txt")).read().split()
    allx = np.concatenate([motion.features_per_second(np.load(os.path.join(small_dataset, "new_joint_vecs", i + ".npy")),
                                                    motions[i]["fps"]).astype(np.float64) for i in ids])
    mean = motion.features_per_frame(allx.mean(0)[None], 20.0)[0]
    std = motion.features_per_frame(data.group_std(allx.std(0), SMPL22)[None], 20.0)[0]
    np.testing.assert_allclose(np.load(os.path.join(small_dataset, "Mean.npy")), mean, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.load(os.path.join(small_dataset, "Std.npy")), std, rtol=1e-5, atol=1e-7)


def test_existing_output_is_refused_and_failures_leave_nothing(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "keep.txt").write_text("someone's data")
    with pytest.raises(guard.OutputError, match="already exists"):
        synthetic.write_dataset(str(out), num=3)
    with pytest.raises(guard.UserError) as e:                 # the CLI: one line (guard.report_errors prints it)
        prepare.main(["synthetic", "--out", str(out), "--num", "10"])
    assert "already exists" in str(e.value) and "\n" not in str(e.value)
    assert os.listdir(out) == ["keep.txt"] and os.listdir(tmp_path) == ["mine"]
    # an error while writing (here: no train sequence to take Mean/Std from) removes the temporary folder
    with pytest.raises(data.DataError, match="no sequence of the train split"):
        with writer.DatasetWriter(str(tmp_path / "new"), SMPL22) as w:
            m = generate_motions(1, seed=0)[0]
            x = motion.joints_to_features(m["joints"], SMPL22, fps=m["fps"])
            w.add("a", x, m["joints"], m["fps"], ["a person walks#a/DET person/NOUN walk/VERB#0.0#0.0"])
            w.finish({"train": [], "val": ["a"], "test": []})
    assert [p for p in os.listdir(tmp_path) if not p.startswith(".nerm-lock")] == ["mine"]   # held until exit
    prepare.main(["synthetic", "--out", str(tmp_path / "new"), "--num", "10"])
    assert "wrote 10 sequences" in capsys.readouterr().out and len(os.listdir(tmp_path / "new" / "texts")) == 10
    guard.release()
    assert sorted(os.listdir(tmp_path)) == ["mine", "new"]


def test_actions_are_named_functions():
    assert list(synthetic._ACTION_FNS) == list(ACTIONS) and all(f.__name__ == "_" + a
                                                               for a, f in synthetic._ACTION_FNS.items())
