"""prepare.py: SMPL+H forward kinematics, HumanML3D's cutting/mirroring at native rates, HumanAct12, safe unpickling.

    python -m pytest -q tests/test_prepare.py

Everything is built here: a tiny SMPL+H-shaped body model (52 joints, 2 vertices per joint), AMASS-format npz
files at 120 and 50 fps, HumanML3D's index.csv / texts / splits, and a humanact12poses.pkl.
"""
import codecs
import csv
import os
import pickle
import shutil
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

import data
import guard
import motion
import prepare

RIGHT, LEFT = [2, 5, 8, 11, 14, 17, 19, 21], [1, 4, 7, 10, 13, 16, 18, 20]
REALDATA = Path(os.environ.get("NERM_REALDATA", Path(__file__).resolve().parents[2] / "shared" / "realdata"))
INDEX = REALDATA / "humanml3d" / "EricGuo5513_HumanML3D" / "index.csv"


def make_body_model(path, seed):
    """An SMPL+H-shaped model.npz: SMPL's 22 body joints (+ 30 hand joints on the wrists) in the model's own frame
    (y up, facing +z, +x the body's left), each the mean of 2 vertices; small random shape directions."""
    rng = np.random.default_rng(seed)
    parents = list(motion.SMPL22.parents) + [20] * 15 + [21] * 15
    J = np.zeros((52, 3))
    J[0] = (0.0, 0.95, 0.0)
    off = motion.SMPL22.offsets() + rng.normal(0, 0.01, (22, 3))
    for j in range(1, 52):
        J[j] = J[parents[j]] + (off[j] if j < 22 else rng.normal(0, 0.03, 3))
    e = rng.normal(0, 0.02, (52, 3))
    v_template = np.stack([J + e, J - e], 1).reshape(104, 3)
    J_regressor = np.zeros((52, 104))
    J_regressor[np.arange(52), 2 * np.arange(52)] = J_regressor[np.arange(52), 2 * np.arange(52) + 1] = 0.5
    kintree = np.array([[2 ** 32 - 1] + parents[1:], list(range(52))], dtype=np.uint32)   # AMASS's root marker
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.savez(path, v_template=v_template, shapedirs=rng.normal(0, 0.01, (104, 3, 16)), J_regressor=J_regressor,
             kintree_table=kintree, f=np.zeros((1, 3), dtype=np.int64))


def reference_joints(model_path, poses, trans, betas):
    """Independent SMPL joint regression + LBS chain with 4x4 transforms and torch's matrix exponential."""
    m = np.load(model_path)
    J = m["J_regressor"] @ (m["v_template"] + m["shapedirs"][:, :, :10] @ betas[:10])
    parents = m["kintree_table"][0].astype(np.int64)
    aa = torch.tensor(poses[:, :66].reshape(-1, 22, 3))
    skew = torch.zeros(aa.shape + (3,), dtype=torch.float64)
    skew[..., 0, 1], skew[..., 0, 2], skew[..., 1, 2] = -aa[..., 2], aa[..., 1], -aa[..., 0]
    R = torch.linalg.matrix_exp(skew - skew.transpose(-1, -2)).numpy()      # (T, 22, 3, 3)
    G = np.zeros((len(poses), 22, 4, 4))
    for j in range(22):
        local = np.zeros((len(poses), 4, 4))
        local[:, :3, :3], local[:, 3, 3] = R[:, j], 1.0
        local[:, :3, 3] = J[j] - (J[parents[j]] if j else 0.0)
        G[:, j] = local if j == 0 else G[:, parents[j]] @ local
    return G[:, :, :3, 3] + trans[:, None]


def amass_motion(T, fps, seed):
    """AMASS-like poses: the root turns the y-up model to z-up (+90° about x) and yaws; joints swing smoothly."""
    rng = np.random.default_rng(seed)
    t = np.arange(T)[:, None] / fps
    poses = 0.3 * np.sin(2 * np.pi * rng.uniform(0.3, 2.0, 156) * t + rng.uniform(0, 6, 156))
    yaw = 0.4 * np.sin(t[:, 0])
    poses[:, :3] = 0.0
    for k in range(T):   # axis-angle of Rz(yaw) · Rx(90°)
        R = prepare.rodrigues(np.array([0.0, 0.0, yaw[k]])) @ prepare.rodrigues(np.array([np.pi / 2, 0.0, 0.0]))
        angle = np.arccos((np.trace(R) - 1) / 2)
        axis = np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]]) / (2 * np.sin(angle))
        poses[k, :3] = axis * angle
    trans = np.concatenate([0.8 * t, 0.2 * np.sin(t), np.zeros_like(t)], 1)
    return poses, trans, rng.normal(0, 1, 16)


def to_y_up(p):
    """HumanML3D: p @ [[1,0,0],[0,0,1],[0,1,0]] then x negated, written out."""
    return np.stack([-p[..., 0], p[..., 2], p[..., 1]], -1)


def mirrored(p):
    out = p.copy()
    out[:, RIGHT], out[:, LEFT] = p[:, LEFT], p[:, RIGHT]
    out[..., 0] *= -1
    return out


# ----------------------------------------------------------------------------------------------
# forward kinematics


def test_rodrigues_matches_matrix_exponential():
    aa = np.random.default_rng(0).normal(0, 1.5, (50, 3))
    aa[0] = 0.0
    skew = np.zeros((50, 3, 3))
    skew[:, 0, 1], skew[:, 0, 2], skew[:, 1, 2] = -aa[:, 2], aa[:, 1], -aa[:, 0]
    ref = torch.linalg.matrix_exp(torch.tensor(skew - skew.transpose(0, 2, 1))).numpy()
    np.testing.assert_allclose(prepare.rodrigues(aa), ref, atol=1e-12)


def test_fk_zero_pose_is_the_regressed_rest_pose_and_axis_change(tmp_path):
    path = str(tmp_path / "male" / "model.npz")
    make_body_model(path, 0)
    m, model = np.load(path), prepare.load_body_model(path)
    betas, trans = np.random.default_rng(1).normal(0, 1, 16), np.array([[0.5, -1.0, 0.2], [0.0, 0.0, 0.0]])
    got = prepare.smplh_joints(np.zeros((2, 156)), trans, betas, model)
    rest = m["J_regressor"] @ (m["v_template"] + m["shapedirs"][:, :, :10] @ betas[:10])
    np.testing.assert_allclose(got, rest[None, :22] + trans[:, None], atol=1e-12)
    np.testing.assert_allclose(prepare.z_up_to_y_up(got), to_y_up(got), atol=0)


def test_fk_rotating_the_left_knee_moves_only_its_children(tmp_path):
    path = str(tmp_path / "model.npz")
    make_body_model(path, 0)
    model = prepare.load_body_model(path)
    poses = np.zeros((1, 156))
    poses[0, 3 * 4] = np.pi / 2                               # l_knee (4): +90° about x
    got = prepare.smplh_joints(poses, np.zeros((1, 3)), np.zeros(16), model)[0]
    J = model["J"][:22]
    Rx = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])
    want = J.copy()
    want[[7, 10]] = J[4] + (J[[7, 10]] - J[4]) @ Rx.T             # l_ankle, l_foot swing about the knee
    np.testing.assert_allclose(got, want, atol=1e-12)


def test_fk_matches_an_independent_lbs_chain(tmp_path):
    path = str(tmp_path / "model.npz")
    make_body_model(path, 3)
    poses, trans, betas = amass_motion(40, 60.0, seed=4)
    got = prepare.smplh_joints(poses, trans, betas, prepare.load_body_model(path))
    np.testing.assert_allclose(got, reference_joints(path, poses, trans, betas), atol=1e-10)


def test_body_model_that_needs_pickle_is_refused(tmp_path):
    path = str(tmp_path / "model.npz")
    make_body_model(path, 0)
    arrays = dict(np.load(path))
    arrays["J_regressor"] = np.array([object()] * 3, dtype=object)     # as a scipy sparse matrix would be stored
    np.savez(path, **arrays)
    with pytest.raises(data.DataError, match="needs pickle"):
        prepare.load_body_model(path)


# ----------------------------------------------------------------------------------------------
# HumanML3D conventions


def test_segments_follow_humanml3d_frames_times_its_stride():
    assert prepare.hml3d_segment("./pose_data/CMU/01/01_01_poses.npy", 20, 60, 120.0) == (120, 360)   # 2.0 s
    assert prepare.hml3d_segment("./pose_data/KIT/3/a_poses.npy", 20, 60, 100.0) == (100, 300)
    # HumanML3D's strides: SSM_synced 59.99999 fps -> 2 (its clips hold 30 fps), Eyes_Japan 250 fps -> 12, 3 s trimmed
    assert prepare.hml3d_segment("./pose_data/SSM_synced/a.npy", 10, 20, 59.9999885559082) == (20, 40)
    assert prepare.hml3d_segment("./pose_data/Eyes_Japan_Dataset/k/a.npy", 0, 20, 250.0) == (720, 960)
    assert prepare.hml3d_segment("./pose_data/Transitions_mocap/a.npy", 0, 20, 120.0) == (60, 180)


def test_mirror_swaps_sides_and_is_an_involution():
    p = np.random.default_rng(0).normal(size=(5, 22, 3))
    np.testing.assert_array_equal(prepare.mirror(p), mirrored(p))
    np.testing.assert_array_equal(prepare.mirror(prepare.mirror(p)), p)
    line = "Left foot turns clockwise, then right.#left/ADJ foot/NOUN#0.0#0.0"
    assert prepare.mirror_text(line) == "Right foot turns counterclockwise, then left.#right/ADJ foot/NOUN#0.0#0.0"


@pytest.mark.skipif(not INDEX.exists(), reason=f"no HumanML3D index.csv under {INDEX.parent}")
def test_real_index_csv_subsets_and_trims():
    with open(INDEX, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 14616
    subsets = {r["source_path"].split("pose_data/")[1].split("/")[0] for r in rows}
    assert set(prepare.TRIM_HML_FRAMES) <= subsets               # every trim names a subset that index.csv uses
    assert sum("humanact12" in r["source_path"] for r in rows) == 1191


# ----------------------------------------------------------------------------------------------
# the AMASS pipeline end to end


@pytest.fixture(scope="module")
def amass_inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    amass, hml, bm = root / "amass", root / "HumanML3D", root / "smplh"
    make_body_model(str(bm / "male" / "model.npz"), 0)
    make_body_model(str(bm / "female" / "model.npz"), 1)
    sources = {"CMU/01/01_01_poses": (600, 120.0, "male", 10),
               "MPI_HDM05/dg/HDM_dg_01_poses": (900, 120.0, "female", 11),
               "SSM_synced/s1/walk_poses": (200, 50.0, "male", 12)}
    motions = {}
    for rel, (T, fps, gender, seed) in sources.items():
        poses, trans, betas = amass_motion(T, fps, seed)
        os.makedirs(amass / os.path.dirname(rel), exist_ok=True)
        g = np.array(gender.encode()) if gender == "female" else np.array(gender)   # AMASS has both
        np.savez(amass / (rel + ".npz"), poses=poses, trans=trans, betas=betas, mocap_framerate=np.array(fps),
                 gender=g, dmpls=np.zeros((T, 8)))
        motions[rel] = to_y_up(reference_joints(str(bm / gender / "model.npz"), poses, trans, betas))
    ha12 = hml / "pose_data" / "humanact12" / "humanact12"
    os.makedirs(ha12)
    p, tr, b = amass_motion(50, 15.0, 13)
    p[:, :3] = 0.0                                             # no root turn: the model's own frame is y-up
    ha = reference_joints(str(bm / "male" / "model.npz"), p, tr[:, [0, 2, 1]], b)
    ha = np.concatenate([ha, ha[:, 20:22]], 1)                 # (T, 24, 3) like HumanAct12, used as it is
    np.save(ha12 / "P01G01R01F0001T0050A0101.npy", ha.astype(np.float32))
    rows = [("./pose_data/CMU/01/01_01_poses.npy", 20, 60, "000000"),
            ("./pose_data/MPI_HDM05/dg/HDM_dg_01_poses.npy", 0, 40, "000001"),
            ("./pose_data/SSM_synced/s1/walk_poses.npy", 20, 60, "000002"),
            ("./pose_data/humanact12/humanact12/P01G01R01F0001T0050A0101.npy", 0, -1, "000003"),
            ("./pose_data/KIT/3/not_downloaded_poses.npy", 0, 50, "000004"),
            ("./pose_data/CMU/01/01_01_poses.npy", 0, 100, "000005")]
    with open(hml / "index.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["source_path", "start_frame", "end_frame", "new_name"])
        w.writerows([(s, a, b, n + ".npy") for s, a, b, n in rows])
    os.makedirs(hml / "HumanML3D" / "texts")
    texts = {"000000": "a person walks to the left#a/DET person/NOUN walk/VERB to/ADP the/DET left/NOUN#0.0#0.0",
             "000001": "a person waves#a/DET person/NOUN wave/VERB#0.0#0.0",
             "M000001": "the mirrored caption as HumanML3D wrote it#x/X#0.0#0.0",
             "000002": "someone steps#someone/PRON step/VERB#0.0#0.0\nthen turns right#turn/VERB right/ADV#1.0#1.5",
             "000003": "a person drinks#a/DET person/NOUN drink/VERB#0.0#0.0",
             "000004": "never made#x/X#0.0#0.0", "000005": "walks on#walk/VERB on/ADP#0.0#0.0"}
    for sid, text in texts.items():
        (hml / "HumanML3D" / "texts" / f"{sid}.txt").write_text(text + "\n")
    ids = [r[3] for r in rows]
    split = {"train": ids[:2] + ids[3:5], "val": ids[2:3], "test": ids[5:]}
    for s, keep in split.items():
        (hml / "HumanML3D" / f"{s}.txt").write_text("".join(f"{i}\nM{i}\n" for i in keep))
    argv = ["amass", "--amass", str(amass), "--humanml3d", str(hml), "--body-model", str(bm)]
    return {"argv": argv, "motions": motions, "ha12": ha.astype(np.float32).astype(np.float64), "root": root}


@pytest.fixture(scope="module")
def amass_out(amass_inputs):
    out = str(amass_inputs["root"] / "out")
    prepare.main(amass_inputs["argv"] + ["--out", out])
    return out


def _vecs(out, sid):
    return np.load(os.path.join(out, "new_joint_vecs", sid + ".npy"))


def test_amass_segments_are_cut_by_time_at_the_native_rate(amass_out, amass_inputs):
    m = amass_inputs["motions"]
    cases = {"000000": (m["CMU/01/01_01_poses"][120:360], 120.0),            # 20..60 at 20 fps = 2.0 s: 240 frames
             "000005": (m["CMU/01/01_01_poses"][0:600], 120.0),              # a second segment of the same source
             "000001": (m["MPI_HDM05/dg/HDM_dg_01_poses"][360:600], 120.0),  # 3 s of T-pose trimmed, then 0..40
             "000002": (m["SSM_synced/s1/walk_poses"][40:120], 50.0),        # stride int(50/20) = 2: 80 frames
             "000003": (amass_inputs["ha12"], 15.0)}                          # HumanAct12: whole, as is, 15 fps
    for sid, (joints, fps) in cases.items():
        want = prepare.sequence_features(joints, fps)[0]
        got = _vecs(amass_out, sid)
        assert got.shape == (len(joints) - 1, 263), sid
        np.testing.assert_allclose(got, want, atol=2e-4, err_msg=sid)
        np.testing.assert_allclose(_vecs(amass_out, "M" + sid), prepare.sequence_features(mirrored(joints), fps)[0],
                                   atol=2e-4, err_msg="M" + sid)
        rec = np.load(os.path.join(amass_out, "new_joints", sid + ".npy"))
        np.testing.assert_allclose(rec, motion.features_to_joints(got), atol=1e-5)      # HumanML3D's new_joints
    with open(os.path.join(amass_out, "meta.csv"), newline="") as f:
        fps = {r["id"]: float(r["fps"]) for r in csv.DictReader(f)}
    assert fps == {**{s: f for s, (_, f) in cases.items()}, **{"M" + s: f for s, (_, f) in cases.items()}}


def test_amass_mirror_turns_the_other_way(amass_out):
    # the yaw rate (feature 0) and the sideways root velocity (1) change sign in the mirrored copy; not exactly,
    # as HumanML3D's target skeleton (uniform_skeleton) is itself not symmetric (hips 0.103 m left, 0.110 m right)
    o, mir = _vecs(amass_out, "000005"), _vecs(amass_out, "M000005")
    np.testing.assert_allclose(mir[:, :2], -o[:, :2], atol=0.1 * np.abs(o[:, :2]).max())
    assert np.abs(mir[:, :2] - o[:, :2]).max() > 0.5 * np.abs(o[:, :2]).max()


def test_amass_captions_splits_and_loader(amass_out):
    t = lambda sid: Path(amass_out, "texts", sid + ".txt").read_text()  # noqa: E731
    assert t("M000000") == "a person walks to the right#a/DET person/NOUN walk/VERB to/ADP the/DET right/NOUN#0.0#0.0\n"
    assert t("M000001") == "the mirrored caption as HumanML3D wrote it#x/X#0.0#0.0\n"
    # sub-segment times: HumanML3D's 20 fps seconds -> native seconds, 20·2/50 = 0.8 for a 50 fps source (stride 2)
    assert t("000002").splitlines()[1] == "then turns right#turn/VERB right/ADV#0.8#1.2"
    assert not Path(amass_out, "new_joint_vecs", "000004.npy").exists()
    ids = ["000000", "M000000", "000001", "M000001", "000003", "M000003"]      # 000004's source is missing
    assert Path(amass_out, "train.txt").read_text().split() == ids
    train = data.load_dataset("humanml3d", amass_out, "train")
    assert sorted(train.names) == sorted(ids)
    k = train.names.index("000001")
    assert train.fps[k] == 120.0 and train.captions[k] == ["a person waves"]
    np.testing.assert_allclose(motion.features_per_frame(train.features[k], 120.0), _vecs(amass_out, "000001"), atol=1e-6)
    # Mean/Std: per-second statistics of the train files, stored per frame at 20 fps
    allx = np.concatenate([motion.features_per_second(_vecs(amass_out, s), f) for s, f in zip(train.names, train.fps)])
    np.testing.assert_allclose(np.load(os.path.join(amass_out, "Mean.npy")),
                               motion.features_per_frame(allx.mean(0)[None], 20.0)[0], rtol=1e-4, atol=1e-6)
    std = motion.features_per_frame(data.group_std(allx.std(0), motion.SMPL22)[None], 20.0)[0]
    np.testing.assert_allclose(np.load(os.path.join(amass_out, "Std.npy")), std, rtol=1e-3, atol=1e-6)


def new_process():
    """What the next command starts with: guard's locks released, nothing written by this process yet."""
    guard.reset()


def test_existing_output_is_not_overwritten_and_missing_inputs_say_what_is_expected(amass_inputs, tmp_path):
    out, argv = str(tmp_path / "out"), amass_inputs["argv"]
    prepare.main(argv + ["--out", out, "--limit", "1"])
    new_process()
    before = _vecs(out, "000000")
    with pytest.raises(guard.OutputError, match="already exists"):
        prepare.main(argv + ["--out", out, "--limit", "2"])
    new_process()
    assert os.listdir(tmp_path) == ["out"]                                     # no temporary folder left behind
    assert sorted(os.listdir(os.path.join(out, "new_joint_vecs"))) == ["000000.npy", "M000000.npy"]
    np.testing.assert_array_equal(_vecs(out, "000000"), before)
    prepare.main(argv + ["--out", out, "--limit", "2", "--force"])             # replaced on request
    new_process()
    assert len(os.listdir(os.path.join(out, "new_joint_vecs"))) == 4 and os.listdir(tmp_path) == ["out"]
    bad = argv.copy()
    bad[bad.index("--humanml3d") + 1] = str(tmp_path / "empty")              # a folder without HumanML3D's files
    (tmp_path / "empty").mkdir()
    with pytest.raises(data.DataError, match="(?s)index.csv not found\n.*amass.is.tue.mpg.de") as e:
        prepare.main(bad + ["--out", str(tmp_path / "other")])
    assert "EricGuo5513/HumanML3D" in str(e.value) and "model.npz" in str(e.value)


def with_index(amass_inputs, tmp_path, edit):
    """argv for a HumanML3D folder in tmp_path whose index.csv is the fixture's after edit(rows) (rows[0] is its
    header; the texts and splits are the fixture's, linked)."""
    hml = tmp_path / "HumanML3D"
    (hml / "HumanML3D").mkdir(parents=True)
    for f in ("texts", "train.txt", "val.txt", "test.txt"):
        src = amass_inputs["root"] / "HumanML3D" / "HumanML3D" / f
        (hml / "HumanML3D" / f).symlink_to(src, target_is_directory=src.is_dir())
    with open(amass_inputs["root"] / "HumanML3D" / "index.csv", newline="") as f:
        rows = list(csv.reader(f))
    edit(rows)
    with open(hml / "index.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    argv = amass_inputs["argv"].copy()
    argv[argv.index("--humanml3d") + 1] = str(hml)
    return argv


@pytest.mark.parametrize("name, says", [
    ("../../x.npy", r"index.csv:3 \(new_name\): '\.\./\.\./x' is not a plain file name"),
    ("000000.npy", r"index.csv:3: new_name 000000 appears twice \(also on line 2\)"),
])
def test_a_new_name_with_a_path_or_given_twice_is_refused_before_anything_is_written(amass_inputs, tmp_path, name,
                                                                                       says):
    """index.csv's new_name becomes a file name under --out: '../../x' would write outside it, a second 000000
    over the first."""
    argv = with_index(amass_inputs, tmp_path, lambda rows: rows[2].__setitem__(3, name))   # the second source
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    out = tmp_path / "a" / "b" / "out"
    with pytest.raises(data.DataError, match=says):
        prepare.main(argv + ["--out", str(out)])
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before          # no out, no temp folder, no x.npy
    assert not list(amass_inputs["root"].rglob("x.npy"))


@pytest.mark.parametrize("source, listed", [
    ("./pose_data/../secret/x_poses.npy", "../secret/x_poses.npy"),
    ("{secret}/x_poses.npy", "{secret}/x_poses.npy"),
    ("./pose_data/humanact12/../../secret/x_poses.npy", "humanact12/../../secret/x_poses.npy"),
])
def test_an_index_source_outside_its_folder_is_refused(amass_inputs, tmp_path, source, listed):
    """index.csv's source_path names the file read: with '..' or as a full path it would read outside --amass
    (here an AMASS file beside it, which would be converted as sequence 000004)."""
    amass, secret = tmp_path / "amass", tmp_path / "secret"
    shutil.copytree(amass_inputs["root"] / "amass", amass)
    secret.mkdir()
    shutil.copy(amass / "CMU" / "01" / "01_01_poses.npz", secret / "x_poses.npz")
    argv = with_index(amass_inputs, tmp_path, lambda rows: rows[5].__setitem__(0, source.format(secret=secret)))
    argv[argv.index("--amass") + 1] = str(amass)
    with pytest.raises(data.DataError, match=rf"index.csv:6 \(source_path\): '{listed.format(secret=secret)}' is "
                                             r"not a path inside"):
        prepare.main(argv + ["--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


def test_a_damaged_source_stops_prepare_with_nothing_written(amass_inputs, tmp_path):
    """A NaN in the second AMASS source: one line naming the file, and the sequences of the first one, already
    converted, never reach --out (the writer's temporary folder goes)."""
    amass = tmp_path / "amass"
    shutil.copytree(amass_inputs["root"] / "amass", amass)
    bad = amass / "MPI_HDM05" / "dg" / "HDM_dg_01_poses.npz"
    arrays = dict(np.load(bad))
    arrays["poses"][500, 7] = np.nan
    np.savez(bad, **arrays)
    argv = amass_inputs["argv"].copy()
    argv[argv.index("--amass") + 1] = str(amass)
    with pytest.raises(data.DataError, match=r"HDM_dg_01_poses.npz: non-finite values \(NaN or inf\) in poses, "
                                             r"frame 500"):
        prepare.main(argv + ["--out", str(tmp_path / "out")])
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".nerm-lock")] == ["amass"]   # no out, no
    # temporary folder (the lock on out is held until the process ends)


# ----------------------------------------------------------------------------------------------
# HumanAct12


def make_humanact12(n_per_action=12, actions=(3, 10), seed=0, y_down=False):
    rng = np.random.default_rng(seed)
    base = motion.SMPL22.offsets()
    joints, labels = [], []
    for k in range(n_per_action * len(actions)):
        T = int(rng.integers(30, 45))
        t = np.arange(T)[:, None, None] / 15.0
        rest = np.zeros((22, 3))
        for j, p in enumerate(motion.SMPL22.parents):
            rest[j] = (rest[p] if p >= 0 else (0, 0.95, 0)) + base[j]
        j24 = np.concatenate([rest, rest[20:22]])[None] + 0.05 * np.sin(3 * t + rng.uniform(0, 6, (1, 24, 3)))
        j24[:, :, 0] += 0.5 * t[:, :, 0]
        joints.append(j24 * ([1, -1, -1] if y_down else 1))
        labels.append(np.int64(actions[k % len(actions)]))
    return {"poses": [rng.normal(size=(len(j), 72)) for j in joints], "joints3D": joints, "y": labels}


@pytest.mark.parametrize("protocol", [2, 4])
def test_humanact12_pickle_of_numpy_arrays_loads(tmp_path, protocol):
    d = make_humanact12()
    path = tmp_path / "humanact12poses.pkl"
    path.write_bytes(pickle.dumps(d, protocol=protocol))
    joints, labels = prepare.load_humanact12(str(path))
    assert labels == [int(y) for y in d["y"]]
    for a, b in zip(joints, d["joints3D"]):
        np.testing.assert_array_equal(a, b[:, :22])


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("call", ["os.system", "builtins.eval", "_codecs.encode"])
def test_humanact12_pickle_with_a_forbidden_global_is_refused_unexecuted(tmp_path, call):
    marker = tmp_path / "pwned"
    evil = _Evil()
    evil.marker = marker
    payload = pickle.dumps({"joints3D": [np.zeros((3, 24, 3))], "y": [evil]}, protocol=2)
    if call == "builtins.eval":
        payload = b"cbuiltins\neval\n(S'open(" + repr(str(marker)).encode() + b", \"w\")'\ntR."
    if call == "_codecs.encode":     # allowed for latin-1 array bytes only: no other codec is looked up
        payload = b"c_codecs\nencode\n(S'x'\nS'rot13'\ntR."
    path = tmp_path / "humanact12poses.pkl"
    path.write_bytes(payload)
    with pytest.raises(data.DataError, match=r"refusing to unpickle ((posix|os|nt)\.system|builtins\.eval|_codecs)"):
        prepare.load_humanact12(str(path))
    assert not marker.exists()


class _Asks:
    """Pickles as the call `reduce` (a function, its arguments[, the state BUILD gives the result]): what a crafted
    file may ask the allowed functions for."""

    def __init__(self, *reduce):
        self.reduce = reduce

    def __reduce__(self):
        return self.reduce


_EMPTY = np.ndarray(0).__reduce__()[:2]    # numpy's own first step of every array: _reconstruct(ndarray, (0,), 'b')


@pytest.mark.parametrize("asks, says", [
    (lambda: _Asks(bytes, (10 ** 11,)), "more than"),
    (lambda: _Asks(bytearray, (10 ** 9,)), "more than"),
    (lambda: _Asks(np.ndarray, ((10 ** 11,),)), r"numpy\.ndarray\(\.\.\.\)"),
    (lambda: _Asks(_EMPTY[0], (np.ndarray, (10 ** 11,), b"b")), r"_reconstruct\(\.\.\.\) of anything but an empty"),
    (lambda: _Asks(*_EMPTY, (1, (2,), np.dtype("O"), False, [1.0, 2.0])), r"dtype\('O'\): only numbers"),
    (lambda: [_Asks(codecs.encode, (s, "latin1")) for s in ["x" * 10 ** 5] for _ in range(10 ** 4)], "more than"),
])
def test_humanact12_pickle_asking_for_absurd_sizes_is_refused(tmp_path, asks, says):
    """A pickle of a few bytes may ask an allowed call for 10^11 bytes (bytes(n), an array of a shape), copy one
    string 10^4 times, or give an object array a state numpy trusts (a list shorter than its shape crashes it):
    what the unpickler makes is bounded by the file's size, and its arrays hold numbers."""
    path = tmp_path / "humanact12poses.pkl"
    path.write_bytes(pickle.dumps({"joints3D": [asks()], "y": [0]}, protocol=2))
    tracemalloc.start()
    try:
        with pytest.raises(data.DataError, match=rf"^{path}: refusing to unpickle .*{says}"):
            prepare.load_humanact12(str(path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50e6, peak


def test_humanact12_dataset_actions_split_and_up_axis(tmp_path):
    for name, y_down in (("up", False), ("down", True)):
        (tmp_path / f"{name}.pkl").write_bytes(pickle.dumps(make_humanact12(y_down=y_down)))
        prepare.main(["humanact12", "--pkl", str(tmp_path / f"{name}.pkl"), "--out", str(tmp_path / name)])
    out = str(tmp_path / "up")
    # per action, its 9th of every 10 sequences goes to val, its 10th to test: 16, 17 (jump, boxing) and 18, 19
    assert Path(out, "val.txt").read_text().split() == ["0016", "0017"]
    assert Path(out, "test.txt").read_text().split() == ["0018", "0019"]
    train = data.load_dataset("humanml3d", out, "train")
    assert len(train) == 20 and set(train.actions) == {"jump", "boxing"} and (train.fps == 15.0).all()
    k = train.actions.index("boxing")
    assert train.captions[k] == ["boxing"]
    with open(os.path.join(out, "meta.csv"), newline="") as f:
        assert next(csv.DictReader(f)) == {"id": "0000", "fps": "15.0", "action": "jump"}
    # a y-down copy is turned upright: the same features
    np.testing.assert_allclose(_vecs(str(tmp_path / "down"), "0005"), _vecs(out, "0005"), atol=1e-5)
