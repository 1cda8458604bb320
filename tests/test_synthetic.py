"""
Tests of the embedded synthetic dataset (CPU, a few seconds):

    python -m pytest tests/test_synthetic.py -q
"""
import numpy as np
import pytest

from data import SMPL22
from synthetic import ACTIONS, FRAMERATES, generate_motions


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
    rates = set(m["fps"] for m in metas)
    assert rates <= set(FRAMERATES) and len(rates) >= 4
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
