"""A folder of BVH files as a dataset (bvh.load_bvh_folder, --data bvh) and the skeleton a checkpoint carries
(CPU, offline, ~15 s):

    python -m pytest -q tests/test_bvh_folder.py

Folders are written in the test with write_bvh (smooth motions at 30, 60 and 120 fps on SMPL's skeleton) and
compared with features computed directly from the joints. Real folders: the slices in tests/fixtures/bvh always,
the whole ../shared/realdata folders when present (NERM_REALDATA=<dir> points elsewhere).
"""
import csv
import os
import signal
import subprocess
import sys
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import checkpoint
import bvh
import data
import motion
from motion import SMPL22

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "bvh"
REALDATA = Path(os.environ.get("NERM_REALDATA", ROOT.parent / "shared" / "realdata"))
HAS_REALDATA = (REALDATA / "manifest.csv").exists()
FILES = {"walk30": 30, "kick60": 60, "wave120": 120, "jump30": 30, "turn60": 60, "spin120": 120}


def smooth_motion(fps, seconds=1.5, seed=0, skeleton=SMPL22):
    """(T, J, 3) joints: every joint swings smoothly (sinusoids of time, arms hanging down), the root walks."""
    rng = np.random.default_rng(seed)
    J = skeleton.num_joints
    t = np.arange(int(round(fps * seconds)) + 1)[:, None, None] / fps                      # (T, 1, 1)
    angle = rng.uniform(0.1, 0.4, (J, 3)) * np.sin(2 * np.pi * rng.uniform(0.5, 2, (J, 3)) * t
                                                   + rng.uniform(0, 2 * np.pi, (J, 3)))    # (T, J, 3) axis-angle
    if skeleton is SMPL22 or skeleton.joint_names == SMPL22.joint_names:
        angle[:, 16, 2] -= 1.2                    # upper arms down from the rest T-pose
        angle[:, 17, 2] += 1.2
    norm = np.linalg.norm(angle, axis=-1, keepdims=True)
    q = np.concatenate([np.cos(norm / 2), np.sin(norm / 2) * angle / norm], axis=-1)
    root = np.concatenate([0.8 * t[:, 0], 0.9 + 0.02 * np.sin(6 * t[:, 0]), 0.1 * t[:, 0]], axis=-1)
    return motion.forward_kinematics(motion.quat_to_matrix(q), root, skeleton)


def expected_features(joints, fps, names):
    """The loader's features (per frame) computed directly: SMPL joints in the file's order, no BVH in between."""
    order = [SMPL22.joint_names.index(n) for n in names]
    return motion.joints_to_features(joints[:, order], _file_skeleton(names), fps, hml3d_frame0=False)


def _file_skeleton(names):
    """SMPL22 re-indexed in the given joint order (what read_bvh rebuilds from a written file)."""
    idx = [SMPL22.joint_names.index(n) for n in names]
    parents = [idx.index(SMPL22.parents[j]) if SMPL22.parents[j] >= 0 else -1 for j in idx]
    return bvh._bvh_skeleton("x", names, parents, SMPL22.offsets()[idx], 30.0)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """6 BVH files at 30/60/120 fps with texts/ captions (HumanML3D lines and plain lines); -> (dir, joints)."""
    d = tmp_path_factory.mktemp("bvh")
    (d / "texts").mkdir()
    joints = {}
    for k, (stem, fps) in enumerate(FILES.items()):
        joints[stem] = smooth_motion(fps, seed=k)
        bvh.write_bvh(d / f"{stem}.bvh", joints[stem], SMPL22, fps)
    (d / "texts" / "walk30.txt").write_text("a person walks forward#a/DET person/NOUN#0.0#0.0\nsomeone strolls\n")
    (d / "texts" / "kick60.txt").write_text("a person kicks\n")
    return d, joints


def all_files(d):
    return sorted(os.path.join(r, f) for r, _, fs in os.walk(d) for f in fs)


def test_folder_loads_with_native_fps_captions_and_crc_split(folder):
    d, joints = folder
    before = all_files(d)
    sets = {s: bvh.load_bvh_folder(str(d), s) for s in ("train", "val", "test")}
    assert all_files(d) == before                                    # nothing written into the folder
    # the documented split: files ordered by CRC-32 of the stem, the last one test, the one before val
    order = sorted(FILES, key=lambda s: (zlib.crc32(s.encode()), s))
    assert [sets[s].names for s in ("train", "val", "test")] == [order[:4], order[4:5], order[5:]]
    skel = sets["train"].skeleton
    assert skel.num_joints == 22 and skel.feature_dim == 263 and skel.joint_names[0] == "pelvis"
    captions = {"walk30": ["a person walks forward", "someone strolls"], "kick60": ["a person kicks"]}
    for ms in sets.values():
        for name, x, fps, caps in zip(ms.names, ms.features, ms.fps, ms.captions):
            assert fps == FILES[name] and x.shape == (len(joints[name]) - 1, 263)
            # write_bvh prints 6 decimals: positions come back to ~1e-6 m
            np.testing.assert_allclose(motion.features_per_frame(x, fps),
                                       expected_features(joints[name], fps, skel.joint_names), atol=3e-6)
            assert caps == captions.get(name, [])
    # mean/std from the train split only
    train = np.concatenate(sets["train"].features)
    np.testing.assert_allclose(sets["val"].mean, train.mean(0), rtol=1e-5, atol=1e-5)


def test_csv_labels_split_files_and_fixed_mode(folder, tmp_path):
    src, joints = folder
    d = tmp_path / "csv"
    d.mkdir()
    for stem in FILES:
        (d / f"{stem}.bvh").write_bytes((src / f"{stem}.bvh").read_bytes())
    with open(d / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerows([["file", "caption", "action"], ["walk30.bvh", "a person walks", "walk"],
                     ["walk30", "someone walks", ""], ["kick60", "", "kick"], ["not_here.bvh", "x", "y"]])
    (d / "train.txt").write_text("walk30\nkick60\nwave120\n")
    (d / "val.txt").write_text("jump30\n")
    (d / "test.txt").write_text("turn60\nspin120\n")
    train = bvh.load_bvh_folder(str(d), "train")
    assert train.names == ["walk30", "kick60", "wave120"] and train.fps.tolist() == [30, 60, 120]
    assert train.captions == [["a person walks", "someone walks"], [], []] and train.actions == ["walk", "kick", ""]
    assert bvh.load_bvh_folder(str(d), "test").names == ["turn60", "spin120"]
    fixed = bvh.load_bvh_folder(str(d), "train", fps_mode="fixed")
    assert (fixed.fps == 20).all()
    for xn, xf, f in zip(train.features, fixed.features, train.fps):   # 20 fps rows: every (f/20)-th native row
        assert len(xf) == int((len(xn) - 1) / f * 20 + 1e-6) + 1
        if f % 20 == 0:
            np.testing.assert_allclose(xf, xn[::int(f // 20)][:len(xf)], atol=1e-5)
    (d / "val.txt").write_text("jump30\nmissing_file\n")
    with pytest.raises(data.DataError, match="val.txt lists \\['missing_file'\\]"):
        bvh.load_bvh_folder(str(d), "val")


def test_links_to_folders_are_not_followed_and_links_to_files_are_read(folder, tmp_path):
    """Two links back to the folder itself (a loop a walk that follows links never leaves: 2^40 paths) and a
    link to a BVH file elsewhere: the load ends, reads the linked file, and reads no file twice."""
    src, _ = folder
    d, elsewhere = tmp_path / "loops", tmp_path / "elsewhere"
    d.mkdir()
    elsewhere.mkdir()
    for stem in list(FILES)[:4]:
        (d / f"{stem}.bvh").write_bytes((src / f"{stem}.bvh").read_bytes())
    (elsewhere / "spin120.bvh").write_bytes((src / "spin120.bvh").read_bytes())
    (d / "spin120.bvh").symlink_to(elsewhere / "spin120.bvh")
    (d / "again").symlink_to(d, target_is_directory=True)
    (d / "and_again").symlink_to(".", target_is_directory=True)

    def hung(*_):   # not an OSError, which os.walk would swallow
        raise RuntimeError("the walk followed the links around the loop")
    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(60)
    try:
        stems = bvh._convert_bvh_folder(str(d))[0]
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert stems == sorted(list(FILES)[:4] + ["spin120"])


def test_mismatched_hierarchy_names_both_files(folder, tmp_path):
    src, _ = folder
    d = tmp_path / "mixed"
    d.mkdir()
    (d / "a_walk30.bvh").write_bytes((src / "walk30.bvh").read_bytes())
    bvh.write_bvh(d / "b_kit.bvh", smooth_motion(30, skeleton=motion.KIT21), motion.KIT21, 30)
    with pytest.raises(data.DataError) as err:
        bvh.load_bvh_folder(str(d), "train")
    assert "b_kit.bvh and " in str(err.value) and "a_walk30.bvh have different hierarchies" in str(err.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(data.DataError, match="no .bvh files"):
        bvh.load_bvh_folder(str(tmp_path / "empty"), "train")
    with pytest.raises(data.DataError, match="not found"):
        bvh.load_bvh_folder(str(tmp_path / "nope"), "train")
    with pytest.raises(data.DataError, match="bvh.load_bvh_folder"):        # data.py knows no BVH: it says where
        data.load_dataset("bvh", str(src), "train")


def test_other_subject_is_retargeted_and_tpose_frame_dropped(folder, tmp_path):
    src, joints = folder
    d = tmp_path / "subjects"
    d.mkdir()
    (d / "a_walk30.bvh").write_bytes((src / "walk30.bvh").read_bytes())
    tall = replace(SMPL22, bone_lengths=tuple(1.2 * b for b in SMPL22.bone_lengths))
    x = smooth_motion(60, seed=7, skeleton=tall)
    bvh.write_bvh(d / "b_tall60.bvh", x, tall, 60)
    # a converter's T-pose as frame 0 (CMU's BVH conversions): identity rotations at frame 0's root
    tpose = motion.forward_kinematics(np.tile(np.eye(3), (1, 22, 1, 1)), joints["walk30"][:1, 0], SMPL22)
    bvh.write_bvh(d / "c_tpose30.bvh", np.concatenate([tpose, joints["walk30"]]), SMPL22, 30)
    (d / "train.txt").write_text("a_walk30\nb_tall60\nc_tpose30\n")
    ms = bvh.load_bvh_folder(str(d), "train")
    skel = ms.skeleton
    # every sequence is on the reference's (the first file's) bones: 1.2 times shorter for the tall subject
    rec = motion.features_to_joints(motion.features_per_frame(ms.features[1], 60.0), skel)
    par = [p if p >= 0 else j for j, p in enumerate(skel.parents)]
    np.testing.assert_allclose(np.linalg.norm(rec - rec[:, par], axis=-1).mean(0), skel.bone_lengths, atol=1e-4)
    # and its root path is scaled by the ratio of leg lengths (uniform_skeleton), 1 / 1.2
    walked = np.linalg.norm((x[-2, 0] - x[0, 0])[[0, 2]])
    assert abs(np.linalg.norm((rec[-1, 0] - rec[0, 0])[[0, 2]]) - walked / 1.2) < 1e-3
    # the T-pose frame is gone: the same features as the file without it
    np.testing.assert_allclose(ms.features[2], ms.features[0], atol=1e-5)
    assert len(bvh.drop_tpose(joints["walk30"])) == len(joints["walk30"])


def test_prune_drops_a_static_root_and_joints_on_their_parent():
    x = smooth_motion(30, seed=3)                                      # (T, 22, 3) SMPL order
    names = ["joint_Root", *SMPL22.joint_names, "l_wrist_end"]
    parents = [-1] + [p + 1 if p >= 0 else 0 for p in SMPL22.parents] + [21]   # pelvis under a static root
    off = np.concatenate([[[0.0, 0, 0]], SMPL22.offsets(), [[0.0, 0, 0]]])
    big = np.concatenate([np.zeros((len(x), 1, 3)), x, x[:, 20:21]], axis=1)   # the end sits on l_wrist
    keep, skel = bvh.prune_skeleton(big, bvh._bvh_skeleton("b", names, parents, off, 30.0))
    assert keep == list(range(1, 23)) and skel.joint_names == SMPL22.joint_names
    assert skel.parents == SMPL22.parents and np.allclose(skel.bone_lengths, SMPL22.bone_lengths)
    assert skel.face_joints == SMPL22.face_joints and set(skel.chains) == set(SMPL22.chains)


def plain(v):
    """True when v holds only what torch.load(weights_only=True) and JSON read: str/int/float/list/dict."""
    if isinstance(v, dict):
        return all(isinstance(k, str) and plain(u) for k, u in v.items())
    if isinstance(v, list):
        return all(plain(u) for u in v)
    return isinstance(v, (str, int, float)) or v is None


def test_skeleton_dict_round_trip_and_old_names(folder, tmp_path):
    d, _ = folder
    _, from_file, _ = bvh.read_bvh(d / "walk30.bvh")
    for skel in (SMPL22, motion.KIT21, from_file):
        dct = motion.skeleton_to_dict(skel)
        assert plain(dct)
        torch.save({"skeleton": dct}, tmp_path / "s.pt")
        back = motion.resolve_skeleton(torch.load(tmp_path / "s.pt", weights_only=True)["skeleton"])
        assert back == skel and back.feature_dim == skel.feature_dim
    # checkpoints written before the skeleton travelled hold its name
    assert motion.resolve_skeleton("smpl22") is SMPL22 and motion.resolve_skeleton("kit21") is motion.KIT21
    with pytest.raises(data.DataError, match="unknown skeleton 'amass52'"):
        motion.resolve_skeleton("amass52")


def run(script, *args):
    return subprocess.run([sys.executable, str(ROOT / script), *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)


def test_bvh_trained_model_samples_a_bvh_on_its_skeleton(folder, tmp_path):
    """train_inr --data bvh, then what train_diffusion passes on and sample.py does with it: the skeleton travels."""
    from sample import decode_motion
    d, _ = folder
    s1 = str(tmp_path / "inr.pt")
    r = run("train_inr.py", "--data", "bvh", "--data-dir", str(d), "--out", s1, "--steps", "4", "--batch", "4",
            "--clip-len", "8", "--hidden", "16", "--blocks", "1", "--eval-seqs", "1", "--fit-steps", "1",
            "--eval-every", "0", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    inr = torch.load(s1, weights_only=True)
    _, file_skel, _ = bvh.read_bvh(d / "walk30.bvh")
    carried = motion.resolve_skeleton(inr["skeleton"])             # the folder's skeleton (pruning adds rounding)
    assert replace(carried, bone_lengths=None, rest_dirs=None) == replace(
        file_skel, name=d.name, fps=30.0, bone_lengths=None, rest_dirs=None)
    assert np.allclose(carried.offsets(), file_skel.offsets(), atol=1e-12)
    torch.save({"inr": checkpoint.decoder_payload(inr)}, tmp_path / "d.pt")   # a stage-2 checkpoint's stage-1 part
    payload = torch.load(tmp_path / "d.pt", weights_only=True)["inr"]
    decoder, skeleton = checkpoint.load_decoder(payload), motion.resolve_skeleton(payload["skeleton"])
    feats, joints = decode_motion(decoder, torch.randn(decoder.cfg.latent_dim), 1.0, 45.0, skeleton)
    J = carried.num_joints
    assert skeleton == carried and feats.shape == (46, 12 * J - 1) and joints.shape == (46, J, 3)
    bvh.write_bvh(tmp_path / "s.bvh", joints, skeleton, fps=45.0)   # as sample.py writes it
    back, skel, fps = bvh.read_bvh(tmp_path / "s.bvh")
    assert abs(fps - 45) < 1e-4
    np.testing.assert_allclose(back[:, [skel.joint_names.index(n) for n in carried.joint_names]], joints, atol=1e-4)


# (folder, files, rates, joints, root) of real BVH folders: the fixtures in every clone, the whole sets with realdata
REAL_FOLDERS = [
    (FIXTURES / "cmu", 1, {120.0}, 21, "Hips"),                          # 10 joints on their parents dropped
    (FIXTURES / "games105", 1, {100.0}, 20, "RootJoint"),                # (LHipJoint...); a 100 fps folder
] + ([
    (REALDATA / "bandai_namco/dataset-1/data", 25, {30.0}, 21, "Hips"),  # joint_Root (static) dropped: Hips is the root
    (REALDATA / "games105", 5, {60.0, 100.0}, 20, "RootJoint"),          # the same 20 joints in 3 different orders
    (REALDATA / "cmu_bvh11", 1, {120.0}, 21, "Hips"),
] if HAS_REALDATA else [])


@pytest.mark.parametrize("d, n_files, rates, joints, root", REAL_FOLDERS,
                         ids=[("fixtures/" if FIXTURES in f[0].parents else "realdata/") + f[0].name
                              for f in REAL_FOLDERS])
def test_real_folders_load(d, n_files, rates, joints, root):
    before = all_files(d)
    sets = [bvh.load_bvh_folder(str(d), s) for s in ("train", "val", "test")]
    assert all_files(d) == before
    skel = sets[0].skeleton
    assert skel.num_joints == joints and skel.joint_names[0] == root
    assert sets[0].features[0].shape[1] == skel.feature_dim
    assert set(np.concatenate([s.fps for s in sets]).tolist()) == rates
    names = set(sum((s.names for s in sets), []))
    assert len(names) == n_files and all(np.isfinite(x).all() for s in sets for x in s.features)
    # features give back the files' motion: joints recovered from the first train sequence vs the file read directly
    stem = sets[0].names[0]
    path = next(p for p in map(Path, before) if p.stem == stem)
    x, file_skel, fps = bvh.read_bvh(path)
    x = x[:, [file_skel.joint_names.index(n) for n in skel.joint_names]]
    rec = motion.features_to_joints(motion.features_per_frame(sets[0].features[0], sets[0].fps[0]), skel)
    # compare root-relative poses (the features put frame 0 at the origin facing +Z, so compare shapes per frame)
    rel = lambda j: np.linalg.norm(j - j[:, :1], axis=-1)
    np.testing.assert_allclose(rel(rec), rel(x[-len(rec) - 1:-1]), atol=1e-4)
