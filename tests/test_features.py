"""
Tests of the HumanML3D feature pipeline in data.py (CPU, offline, a few seconds).

    python -m pytest -q tests/test_features.py          # add -s to print the per-file error table

The reference tests compare against HumanML3D files published by upstream and by a fork that re-ran its pipeline:
tests/fixtures/humanml3d (in the repository, always run) and, when present, the larger set in
../shared/realdata/humanml3d (NERM_REALDATA=<dir> points elsewhere; a missing folder only skips that part).
"""
import os
from pathlib import Path

import numpy as np
import pytest

import motion  # noqa: E402
from motion import KIT21, SMPL22  # noqa: E402

FIXTURES = Path(__file__).resolve().parent / "fixtures"
REALDATA = Path(os.environ.get("NERM_REALDATA", Path(__file__).resolve().parents[2] / "shared" / "realdata"))
REF_JOINTS = (sorted((FIXTURES / "humanml3d").glob("*/new_joints/*.npy"))
              + sorted((REALDATA / "humanml3d").glob("*/new_joints/*.npy")))
UPSTREAM = FIXTURES / "humanml3d" / "EricGuo5513_HumanML3D" / "new_joints" / "012314.npy"


def _ref_pair(path):
    return np.load(path), np.load(path.parent.parent / "new_joint_vecs" / path.name)


def _ref_id(path):
    where = "fixtures" if FIXTURES in path.parents else "realdata"
    return f"{where}/{path.parts[-3]}/{path.stem}"


def test_the_fixture_pairs_are_there():
    """The golden files travel with the repository: a clone without them would silently test less."""
    assert UPSTREAM.exists() and len([p for p in REF_JOINTS if FIXTURES in p.parents]) >= 2


# ----------------------------------------------------------------------------------------------
# synthetic motion: forward_kinematics of smooth random rotations, a turning root and a curved path


def _rodrigues(aa):
    """(..., 3) axis-angle -> (..., 3, 3) rotation matrices, written independently of data.py's quaternions."""
    angle = np.linalg.norm(aa, axis=-1, keepdims=True)[..., None]          # (..., 1, 1)
    k = aa / np.maximum(np.linalg.norm(aa, axis=-1, keepdims=True), 1e-12)
    K = np.zeros(aa.shape + (3,))
    K[..., 0, 1], K[..., 0, 2], K[..., 1, 2] = -k[..., 2], k[..., 1], -k[..., 0]
    K = K - np.swapaxes(K, -1, -2)
    return np.eye(3) + np.sin(angle) * K + (1 - np.cos(angle)) * K @ K


def _synthetic_joints(skeleton, seconds=4.0, fps=20.0, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * fps)) / fps                                 # (T,) seconds
    J = skeleton.num_joints
    # per joint and axis, three sinusoids of 0.3-1.5 Hz, at most 0.45 rad in all: a busy but human-like body
    amp = rng.uniform(-0.15, 0.15, (3, J, 3))
    freq, phase = rng.uniform(0.3, 1.5, (3, J, 3)), rng.uniform(0, 2 * np.pi, (3, J, 3))
    aa = (amp * np.sin(2 * np.pi * freq * t[:, None, None, None] + phase)).sum(1)   # (T, 3, J, 3) -> (T, J, 3)
    aa[:, 0] *= 0.3                                                         # a mild root tilt ...
    yaw = 0.7 + 1.3 * t                                                     # ... under a turn past 180°
    local = _rodrigues(aa)
    local[:, 0] = _rodrigues(yaw[:, None] * np.array([0.0, 1.0, 0.0])) @ local[:, 0]
    root = np.stack([0.8 * np.sin(0.5 * t), 0.95 + 0.03 * np.sin(4 * np.pi * t), 1.1 * t], axis=-1)
    return motion.forward_kinematics(local, root, skeleton)                   # (T, J, 3)


def _normalized(joints, skeleton):
    """Step 2 of HumanML3D's process_file written with angles: floor, frame-0 root at the xz origin, frame 0
    facing +Z."""
    p = joints - np.array([0.0, joints[..., 1].min(), 0.0])
    p = p - p[0, 0] * np.array([1.0, 0.0, 1.0])
    r_hip, l_hip, r_sdr, l_sdr = skeleton.face_joints
    across = p[0, r_hip] - p[0, l_hip] + p[0, r_sdr] - p[0, l_sdr]
    forward = np.cross([0.0, 1.0, 0.0], across)
    a = np.arctan2(forward[0], forward[2])                                  # yaw of forward from +Z
    Ry = np.array([[np.cos(a), 0, -np.sin(a)], [0, 1, 0], [np.sin(a), 0, np.cos(a)]])   # rotates by -a
    return p @ Ry.T


# ----------------------------------------------------------------------------------------------
# reference files


@pytest.mark.parametrize("path", REF_JOINTS, ids=_ref_id)
def test_features_to_joints_matches_reference(path):
    joints, vecs = _ref_pair(path)
    assert joints.shape == (len(vecs), 22, 3)   # published joints were recovered from the vecs: same T
    rec = motion.features_to_joints(vecs)
    assert rec.shape == joints.shape
    err = np.abs(rec - joints).max()
    print(f"\n{_ref_id(path)}: features_to_joints max abs {err:.2e}")
    assert err < 1e-4


@pytest.mark.parametrize("path", REF_JOINTS, ids=_ref_id)
def test_joints_to_features_matches_reference(path):
    joints, vecs = _ref_pair(path)
    feats = motion.joints_to_features(joints)
    assert feats.shape == (len(joints) - 1, SMPL22.feature_dim) and feats.dtype == np.float32
    # the last ~60 rows depend, through the σ = 20 smoothing, on the frame the published file dropped
    n = len(joints) - 61
    if n <= 0:
        pytest.skip(f"{len(joints)} frames: no row is free of the dropped frame's influence")
    errs = {k: np.abs(feats[:n, s] - vecs[:n, s]).max() for k, s in motion.feature_slices(SMPL22).items()}
    print(f"\n{_ref_id(path)} rows [0, {n}): " + "  ".join(f"{k} {e:.1e}" for k, e in errs.items()))
    assert np.array_equal(feats[:n, motion.feature_slices(SMPL22)["contact"]], vecs[:n, -4:])
    for group in ("root", "ric", "rot6d", "vel"):
        assert errs[group] < 1e-3, (group, errs[group])


def test_right_minus_left_hips_in_ik_would_not_match_reference(monkeypatch):
    # why inverse_kinematics keeps HumanML3D's swapped hips: the unswapped vector is far from the published data
    joints, vecs = _ref_pair(UPSTREAM)
    facing = motion._facing
    monkeypatch.setattr(motion, "_facing", lambda j, s, swap_hips=False: facing(j, s, swap_hips=False))
    n = len(joints) - 61
    rot6d = motion.feature_slices(SMPL22)["rot6d"]
    assert np.abs(motion.joints_to_features(joints)[:n, rot6d] - vecs[:n, rot6d]).max() > 0.1


# ----------------------------------------------------------------------------------------------
# round trips and framerates


@pytest.mark.parametrize("fps", [20.0, 60.0, 120.0])
def test_round_trip_smpl22(fps):
    joints = _synthetic_joints(SMPL22, fps=fps)
    feats = motion.joints_to_features(joints, SMPL22, fps=fps)
    assert feats.shape == (len(joints) - 1, 263)
    rec = motion.features_to_joints(feats, SMPL22)
    # velocities are per frame at every fps, so integrating the rows needs no framerate
    np.testing.assert_allclose(rec, _normalized(joints, SMPL22)[:-1], atol=1e-5)


def test_round_trip_kit21():
    joints = _synthetic_joints(KIT21, fps=KIT21.fps, seed=1)
    feats = motion.joints_to_features(joints, KIT21)
    assert feats.shape == (len(joints) - 1, 251)
    np.testing.assert_allclose(motion.features_to_joints(feats, KIT21), _normalized(joints, KIT21)[:-1], atol=1e-5)


@pytest.mark.parametrize("fps", [20.0, 60.0, 120.0])
def test_contact_threshold_is_a_foot_speed(fps):
    # a body gliding at constant speed: contacts at 0.85 m/s, none at 0.95 m/s (threshold √0.002·20 ≈ 0.894 m/s)
    rest = motion.forward_kinematics(np.tile(np.eye(3), (1, 22, 1, 1)), np.array([[0.0, 0.9, 0.0]]), SMPL22)
    for speed, expected in ((0.85, 1.0), (0.95, 0.0)):
        t = np.arange(int(2 * fps)) / fps
        joints = rest + (speed * t)[:, None, None] * np.array([0.0, 0.0, 1.0])
        contact = motion.joints_to_features(joints, SMPL22, fps=fps)[:, motion.feature_slices(SMPL22)["contact"]]
        assert np.all(contact == expected), (fps, speed)


def test_velocity_mask_and_rate_conversion():
    mask = motion.velocity_mask(SMPL22)
    assert mask.shape == (263,) and mask.sum() == 3 + 66
    assert mask[:3].all() and not mask[3:193].any() and mask[193:259].all() and not mask[259:].any()
    assert motion.velocity_mask(KIT21).sum() == 3 + 63
    feats = motion.joints_to_features(_synthetic_joints(SMPL22, fps=60.0), SMPL22, fps=60.0)
    per_s = motion.features_per_second(feats, 60.0)
    np.testing.assert_allclose(per_s[:, mask], 60.0 * feats[:, mask], rtol=1e-6)
    np.testing.assert_array_equal(per_s[:, ~mask], feats[:, ~mask])
    np.testing.assert_allclose(motion.features_per_frame(per_s, 60.0), feats, rtol=1e-6, atol=1e-8)


def test_feature_slices_cover_the_row():
    for skel in (SMPL22, KIT21):
        s = motion.feature_slices(skel)
        widths = {k: v.stop - v.start for k, v in s.items()}
        J = skel.num_joints
        assert widths == {"root": 4, "ric": 3 * (J - 1), "rot6d": 6 * (J - 1), "vel": 3 * J, "contact": 4}
        assert s["contact"].stop == skel.feature_dim


# ----------------------------------------------------------------------------------------------
# building blocks against independent formulas


def test_gaussian_smooth_equals_scipy():
    ndimage = pytest.importorskip("scipy.ndimage")
    x = np.random.default_rng(0).normal(size=(90, 3))
    for sigma in (0.7, 3.0, 20.0, 60.0):   # 60: the window is wider than the sequence
        np.testing.assert_allclose(motion.gaussian_smooth(x, sigma),
                                   ndimage.gaussian_filter1d(x, sigma, axis=0, mode="nearest"), atol=1e-12)


def test_quaternion_helpers_against_rotation_matrices():
    rng = np.random.default_rng(0)
    q = motion._normalize(rng.normal(size=(50, 4)))
    r = motion._normalize(rng.normal(size=(50, 4)))
    v = rng.normal(size=(50, 3))
    M = motion.quat_to_matrix(q)
    np.testing.assert_allclose(M @ np.swapaxes(M, -1, -2), np.tile(np.eye(3), (50, 1, 1)), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(M), 1.0, atol=1e-12)
    np.testing.assert_allclose(motion.qrot(q, v), (M @ v[..., None])[..., 0], atol=1e-12)
    np.testing.assert_allclose(motion.quat_to_matrix(motion.qmul(q, r)), M @ motion.quat_to_matrix(r), atol=1e-12)
    np.testing.assert_allclose(motion.qrot(motion.qinv(q), motion.qrot(q, v)), v, atol=1e-12)
    # 6D = the first two columns, column 0 first
    np.testing.assert_allclose(motion.quat_to_6d(q), np.concatenate([M[..., :, 0], M[..., :, 1]], -1))
    # between takes u's direction to v's and is the shortest arc (its axis is perpendicular to both)
    u, w = rng.normal(size=(2, 50, 3))
    b = motion.qbetween(u, w)
    np.testing.assert_allclose(motion._normalize(motion.qrot(b, u)), motion._normalize(w), atol=1e-12)
    np.testing.assert_allclose((b[:, 1:] * u).sum(-1), 0.0, atol=1e-12)
    # qfix removes sign flips without changing the rotations
    flipped = q[:1] * np.where(np.arange(10)[:, None] % 3 == 1, -1.0, 1.0)
    np.testing.assert_allclose(motion.qfix(flipped), np.tile(q[:1], (10, 1)))


def test_inverse_kinematics_reproduces_positions():
    joints = _synthetic_joints(SMPL22, seconds=1.0)
    quat = motion.inverse_kinematics(joints, SMPL22, smooth_sigma_frames=20.0)
    np.testing.assert_allclose(quat[0, 0], [1.0, 0.0, 0.0, 0.0])
    np.testing.assert_allclose(np.linalg.norm(quat, axis=-1), 1.0, atol=1e-12)
    # the root rotation is a yaw (about y only) whatever the smoothing
    np.testing.assert_allclose(quat[:, 0, [1, 3]], 0.0, atol=1e-12)
    np.testing.assert_allclose(motion._chain_fk(quat, joints[:, 0], SMPL22), joints, atol=1e-9)


def test_uniform_skeleton_sets_bone_lengths_and_keeps_directions():
    # a 10 % taller body with different proportions, retargeted to SMPL22's bone lengths
    rng = np.random.default_rng(2)
    src = motion.Skeleton(**{**SMPL22.__dict__,
                           "bone_lengths": tuple(np.array(SMPL22.bone_lengths) * rng.uniform(1.0, 1.2, 22))})
    joints = _synthetic_joints(src, seconds=1.0)
    out = motion.uniform_skeleton(joints, SMPL22)
    parents = np.array(SMPL22.parents[1:])
    bones_in, bones_out = joints[:, 1:] - joints[:, parents], out[:, 1:] - out[:, parents]
    lengths = np.broadcast_to(SMPL22.bone_lengths[1:], bones_out.shape[:-1])
    np.testing.assert_allclose(np.linalg.norm(bones_out, axis=-1), lengths, atol=1e-9)
    np.testing.assert_allclose(motion._normalize(bones_out), motion._normalize(bones_in), atol=1e-9)
    ratio = sum(SMPL22.bone_lengths[j] for j in (5, 8)) / sum(src.bone_lengths[j] for j in (5, 8))
    np.testing.assert_allclose(out[:, 0], joints[:, 0] * ratio, atol=1e-12)


def test_rate_conversion_works_for_any_skeleton_width():
    """features_per_second needs only the width D = 12 J - 1: a 31-joint (CMU BVH) layout scales 3 + 31*3 channels."""
    x = np.ones((2, 12 * 31 - 1), dtype=np.float32)
    y = motion.features_per_second(x, 60.0)
    assert (y == 60.0).sum() == 2 * (3 + 31 * 3) and (y == 1.0).sum() == 2 * (12 * 31 - 1 - 3 - 93)
    with pytest.raises(AssertionError):
        motion.features_per_second(np.ones((2, 100), np.float32), 60.0)
