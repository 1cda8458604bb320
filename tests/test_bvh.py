"""
BVH reader/writer tests (CPU, offline, a few seconds):

    python -m pytest -q tests/test_bvh.py

Closed forms on a hand-written file, exact round trips (raw channels and joint positions), and real BVH clips
against their manifest.csv: the slices in tests/fixtures/bvh (CMU at 120 fps, GAMES-105 at 100 fps) always, and
every clip of ../shared/realdata when that folder is present (NERM_REALDATA=<dir> points elsewhere).
"""
import csv
import os
from pathlib import Path

import numpy as np
import pytest

import bvh
import data
import motion
from motion import SMPL22, forward_kinematics, quat_to_matrix

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "bvh"
REALDATA = Path(os.environ.get("NERM_REALDATA", Path(__file__).resolve().parents[2] / "shared" / "realdata"))


def _clips(root):
    """[(path, manifest row)] of the BVH clips root/manifest.csv lists; [] without a manifest."""
    if not (root / "manifest.csv").exists():
        return []
    with (root / "manifest.csv").open(newline="") as f:
        return [(root / row["path"], row) for row in csv.DictReader(f) if row["format"] == "bvh"]


CLIPS = _clips(FIXTURES) + _clips(REALDATA)
clip_ids = [("fixtures/" if FIXTURES in p.parents else "realdata/") + p.name for p, _ in CLIPS]
# positions round trips: the fixtures, and with realdata Bandai's translating Hips and the whole CMU and GAMES-105 files
ROUND_TRIP = [p for p, _ in CLIPS if FIXTURES in p.parents
              or p.name in ("dataset-1_walk_normal_001.bvh", "131_01.bvh", "walk_forward.bvh")]
round_trip_ids = [("fixtures/" if FIXTURES in p.parents else "realdata/") + p.name for p in ROUND_TRIP]

# a root, a child and a grandchild with position channels; CRLF endings, tabs, a name on End Site, '.5' time
TINY = """HIERARCHY
ROOT root
{
\tOFFSET 0 0 0
\tCHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation
\tJOINT child
\t{
\t\tOFFSET 0 1 0
\t\tCHANNELS 3 Zrotation Xrotation Yrotation
\t\tJOINT tip
\t\t{
\t\t\tOFFSET 0 2 0
\t\t\tCHANNELS 6 Xposition Yposition Zposition Xrotation Yrotation Zrotation
\t\t\tEnd Site tip_end
\t\t\t{
\t\t\t\tOFFSET 0 1 0
\t\t\t}
\t\t}
\t}
}
MOTION
Frames: 3
Frame Time: .5
0 0 0 90 0 0 0 0 0 0 2 0 0 0 0
1 2 3 0 0 0 90 90 0 0 2 0 0 0 0
0 0 0 0 0 0 0 0 0 5 0 0 0 0 0
""".replace("\n", "\r\n")


def tiny_file(tmp_path, text=TINY):
    path = tmp_path / "tiny.bvh"
    path.write_bytes(text.encode())
    return path


def test_tiny_file_matches_closed_form(tmp_path):
    x, skel, fps = bvh.read_bvh(tiny_file(tmp_path), scale=1.0)
    assert skel.joint_names == ("root", "child", "tip") and skel.parents == (-1, 0, 1) and fps == 2.0
    expected = np.array([
        # frame 0: root Rz(90) turns the child's +Y offset to -X; the tip follows, 2 further along -X
        [[0, 0, 0], [-1, 0, 0], [-3, 0, 0]],
        # frame 1: root moved; child 'Zrotation Xrotation' = Rz(90) Rx(90): Rx takes +Y to +Z, Rz keeps +Z
        # (the other order, Rx Rz, would give -X)
        [[1, 2, 3], [1, 3, 3], [1, 3, 5]],
        # frame 2: the tip's position channels (5, 0, 0) replace its OFFSET (0, 2, 0)
        [[0, 0, 0], [0, 1, 0], [5, 1, 0]]], dtype=np.float64)
    np.testing.assert_allclose(x, expected, atol=1e-12)
    np.testing.assert_allclose(skel.bone_lengths, [0, 1, 0])      # the tip translates: no fixed bone
    assert skel.chains == ((0, 1, 2),) and skel.face_joints == () and skel.feet_left == ()


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace("MOTION", "MOTON"), "no MOTION"),
    (lambda t: t.replace("0 0 0 0 0 0 0 0 0 5 0 0 0 0 0", "0 0 0 0 0 0 0 0 5 0 0 0 0 0"), "line 26: 14 values"),
    (lambda t: t.replace("1 2 3 0", "1 2 x 0"), "line 25: 'x' is not a number"),
    (lambda t: t[:-12], "line 26: 10 values"),                                         # cut mid-line
    (lambda t: t.replace("Frames: 3", "Frames: 4"), "'Frames: 4' but 3 frame lines"),  # cut at a line end
    (lambda t: t.replace("Frame Time: .5", "Frame Time: fast"), "line 23: expected 'Frame Time"),
    (lambda t: t.replace("OFFSET 0 1 0\r\n\t\tCHANNELS", "OFFSET 0 one 0\r\n\t\tCHANNELS"), "line 8: OFFSET"),
    (lambda t: t.replace("Zrotation Xrotation Yrotation", "Zrotation Xrotation Wrotation"), "line 5: bad CHANNELS"),
    (lambda t: t.replace("\t}\r\n}\r\nMOTION", "\t}\r\nMOTION"), "unclosed"),
])
def test_malformed_files_raise_one_clear_error(tmp_path, edit, message):
    path = tiny_file(tmp_path, edit(TINY))
    with pytest.raises(data.DataError) as err:
        bvh.read_bvh(path)
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value), str(err.value)


def random_smpl22(T=40, seed=0):
    """SMPL22 joints from forward kinematics with random local rotations and a wandering root."""
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(T, 22, 4))
    rot = quat_to_matrix(q / np.linalg.norm(q, axis=-1, keepdims=True))
    root = np.cumsum(rng.normal(scale=0.05, size=(T, 3)), axis=0) + [0, 0.9, 0]
    return forward_kinematics(rot, root, SMPL22)


@pytest.mark.parametrize("fps", [20, 60, 120, 29.97])
def test_smpl22_positions_round_trip(tmp_path, fps):
    x = random_smpl22()
    path = tmp_path / "smpl.bvh"
    written = bvh.write_bvh(path, x, SMPL22, fps)
    y, skel, fps_read = bvh.read_bvh(path)
    idx = [skel.joint_names.index(n) for n in SMPL22.joint_names]
    assert np.abs(y[:, idx] - x).max() < 1e-5
    assert abs(fps_read - fps) < 1e-6 * fps and f"Frame Time: {1 / fps:.8f}".rstrip("0") in path.read_text()
    # the children of the two branching joints (pelvis, spine3) carry positions, everything else 3 angles
    six = {n for n, c in zip(written.names, written.channels) if len(c) == 6}
    assert six == {"pelvis", "l_hip", "r_hip", "spine1", "neck", "l_collar", "r_collar"}
    # the guesses rebuild SMPL22's facing joints, feet and chains from the names and the tree
    names = lambda js: tuple(skel.joint_names[j] for j in js)
    assert names(skel.face_joints) == tuple(SMPL22.joint_names[j] for j in SMPL22.face_joints)
    assert names(skel.feet_left) == ("l_ankle", "l_foot") and names(skel.feet_right) == ("r_ankle", "r_foot")
    assert {names(c) for c in skel.chains} == {tuple(SMPL22.joint_names[j] for j in c) for c in SMPL22.chains}


def test_degenerate_poses_round_trip(tmp_path):
    """Bones turned exactly against their rest direction (no unique shortest arc) and Euler gimbal lock
    (y = ±90°) still come back exactly."""
    def rot(axis, deg):
        c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
        i, k = (axis + 1) % 3, (axis + 2) % 3
        m = np.eye(3)
        m[i, i], m[i, k], m[k, i], m[k, k] = c, -s, s, c
        return m
    turns = [np.eye(3), rot(0, 180), rot(1, 90), rot(1, -90), rot(0, 180) @ rot(1, 90), rot(1, 180)]
    local = np.stack([[turns[(t + j) % len(turns)] for j in range(22)] for t in range(12)])   # (12, 22, 3, 3)
    x = forward_kinematics(local, np.zeros((12, 3)), SMPL22)
    bvh.write_bvh(tmp_path / "g.bvh", x, SMPL22, 20)
    y, skel, _ = bvh.read_bvh(tmp_path / "g.bvh", scale=1.0)
    assert np.abs(y[:, [skel.joint_names.index(n) for n in SMPL22.joint_names]] - x).max() < 1e-5


def test_written_file_has_blenders_line_layout(tmp_path):
    """Blender's importer reads the lines after JOINT/End Site by position and wants 'Frames: N' as 2 words."""
    path = tmp_path / "smpl.bvh"
    bvh.write_bvh(path, random_smpl22(T=3), SMPL22, 20, units="cm")
    lines = [line.split() for line in path.read_text().splitlines()]
    for i, words in enumerate(lines):
        if words[0] in ("ROOT", "JOINT"):
            assert lines[i + 1] == ["{"] and lines[i + 2][0] == "OFFSET" and lines[i + 3][0] == "CHANNELS"
        if words[:2] == ["End", "Site"]:
            assert lines[i + 1] == ["{"] and lines[i + 2][0] == "OFFSET"
    m = lines.index(["MOTION"])
    assert lines[m + 1] == ["Frames:", "3"] and lines[m + 2] == ["Frame", "Time:", "0.05"]
    x, _, _ = bvh.read_bvh(path)                                # the unit guess finds centimetres
    assert np.ptp(x[..., 1], axis=1).max() < 3.0


def test_round_fps():
    assert [motion.round_fps(1 / t) for t in (0.0083333, 0.016667, 0.0333333, 0.01, 0.0333667)] == \
        [120.0, 60.0, 30.0, 100.0, 29.97]


def test_the_fixture_clips_are_there():
    """The golden slices travel with the repository: a clone without them would silently test less."""
    assert len(_clips(FIXTURES)) == 2 and all(p.exists() for p, _ in _clips(FIXTURES))


@pytest.mark.parametrize("path, row", CLIPS, ids=clip_ids)
def test_real_clip_reads(path, row):
    x, skel, fps = bvh.read_bvh(path)
    assert x.shape == (int(row["frames"]), int(row["joints"]), 3)
    assert fps == 1 / float(row["frame_time_raw"]) and abs(fps - float(row["fps_declared"])) < 1e-4 * fps
    # metres whatever the file's unit: joints span 1.2-1.9 m upright (the head joint sits ~0.2 m below the
    # crown, so a 1.7 m actor measures ~1.4), no bone longer than a thigh
    assert 1.2 < np.ptp(x[..., 1], axis=1).max() < 1.9 and 0.3 < max(skel.bone_lengths) < 0.6
    assert len(skel.face_joints) == 4 and len(skel.feet_left) == len(skel.feet_right) == 2


@pytest.mark.parametrize("path, row", CLIPS, ids=clip_ids)
def test_real_raw_round_trip_is_exact(tmp_path, path, row):
    src = bvh.read_bvh_channels(path)
    bvh.write_bvh_channels(tmp_path / "copy.bvh", src)
    back = bvh.read_bvh_channels(tmp_path / "copy.bvh")
    assert back.names == src.names and back.parents == src.parents and back.channels == src.channels
    assert back.frame_time == src.frame_time and np.array_equal(back.motion, src.motion)
    assert np.array_equal(back.offsets, src.offsets)
    assert np.array_equal(bvh.bvh_positions(back), bvh.bvh_positions(src))


@pytest.mark.parametrize("path", ROUND_TRIP, ids=round_trip_ids)
def test_real_positions_round_trip(tmp_path, path):
    """write_bvh on a skeleton read from a file (Bandai's translating Hips, CMU's zero-length hip joints)."""
    x, skel, fps = bvh.read_bvh(path)
    bvh.write_bvh(tmp_path / "out.bvh", x, skel, fps)
    y, skel2, fps2 = bvh.read_bvh(tmp_path / "out.bvh")
    assert skel2.joint_names == skel.joint_names and abs(fps2 - fps) < 1e-6 * fps
    assert np.abs(y - x).max() < 1e-5


@pytest.mark.parametrize("path", ROUND_TRIP, ids=round_trip_ids)
def test_real_pruned_skeleton_round_trip(tmp_path, path):
    """The skeleton a BVH folder trains on (bvh.prune_skeleton: no static root, no joint sitting on its parent)
    is what sample.py writes with: its positions come back through write_bvh -> read_bvh."""
    x, skel, fps = bvh.read_bvh(path)
    keep, pruned = bvh.prune_skeleton(x, skel)
    assert pruned.joint_names == tuple(skel.joint_names[j] for j in keep) and len(pruned.face_joints) == 4
    bvh.write_bvh(tmp_path / "out.bvh", x[:, keep], pruned, fps)
    y, back, _ = bvh.read_bvh(tmp_path / "out.bvh")
    assert np.abs(y[:, [back.joint_names.index(n) for n in pruned.joint_names]] - x[:, keep]).max() < 1e-5
