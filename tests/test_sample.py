"""train_diffusion.py -> sample.py end to end on tiny models: python -m pytest -q tests/test_sample.py"""
import os
import subprocess
import sys

import numpy as np
import pytest

import data

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(script, *args):
    return subprocess.run([sys.executable, os.path.join(ROOT, script), *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


@pytest.fixture(scope="module")
def ckpts(small_dataset, tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpt")
    s1, s2 = str(d / "inr.pt"), str(d / "diffusion.pt")
    r = run("train_inr.py", "--data-dir", small_dataset, "--out", s1, "--steps", "10", "--batch", "8",
            "--clip-len", "8", "--hidden", "32", "--blocks", "1", "--eval-seqs", "2", "--fit-steps", "2",
            "--eval-every", "0", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    r = run("train_diffusion.py", "--inr", s1, "--out", s2, "--steps", "4", "--batch", "8", "--d-model", "32",
            "--layers", "1", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    return s1, s2


@pytest.mark.parametrize("fps,seconds", [(20, 2.0), (60, 1.5), (120, 1.0), (29.97, 2.5)])
def test_sample_files_have_the_requested_rate_and_length(ckpts, tmp_path, fps, seconds):
    out = str(tmp_path)
    r = run("sample.py", "--ckpt", ckpts[1], "--text", "a person walks forward", "--fps", str(fps),
            "--seconds", str(seconds), "--out", out, "--steps", "5", "--no-preview", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    T = round(fps * seconds)
    joints = np.load(os.path.join(out, "a_person_walks_forward_0.npy"))
    feats = np.load(os.path.join(out, "a_person_walks_forward_0_features.npy"))
    assert joints.shape == (T, 22, 3) and feats.shape == (T, 263) and np.isfinite(joints).all()
    bvh_joints, skeleton, bvh_fps = data.read_bvh(os.path.join(out, "a_person_walks_forward_0.bvh"))
    assert abs(bvh_fps - fps) < 1e-4 * fps
    order = [skeleton.joint_names.index(n) for n in data.SMPL22.joint_names]
    np.testing.assert_allclose(bvh_joints[:, order], joints, atol=1e-4)   # written and read back


def test_seeds_repeat_and_differ(ckpts, tmp_path):
    outs = []
    for seed, name in ((0, "a"), (0, "b"), (1, "c")):
        r = run("sample.py", "--ckpt", ckpts[1], "--seed", str(seed), "--out", str(tmp_path / name), "--steps", "5",
                "--no-preview", "--device", "cpu")
        assert r.returncode == 0, r.stderr
        outs.append(np.load(tmp_path / name / "uncond_0.npy"))
    assert np.array_equal(outs[0], outs[1]) and not np.allclose(outs[0], outs[2])


def test_fit_super_resolution(ckpts, tmp_path):
    low = data.generate_motions(3, seed=5)[0]
    joints20 = data.resample(low["joints"].reshape(len(low["joints"]), -1), low["fps"], 20.0).reshape(-1, 22, 3)
    np.save(tmp_path / "low.npy", joints20)
    r = run("sample.py", "--ckpt", ckpts[1], "--fit", str(tmp_path / "low.npy"), "--fit-fps", "20", "--fps", "100",
            "--out", str(tmp_path / "fit"), "--no-preview", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    seconds = (len(joints20) - 2) / 20.0   # T joints give T-1 feature rows spanning (T-2)/20 s
    assert np.load(tmp_path / "fit" / "fit_0.npy").shape == (round(100 * seconds), 22, 3)


@pytest.mark.parametrize("args,message", [
    (["--text", "  ?! "], "is empty"),
    (["--fps", "0"], "--fps must be in"),
    (["--fps", "100000"], "--fps must be in"),
    (["--seconds", "-1"], "--seconds must be in"),
    (["--action", "walk"], "text-conditioned model"),
    (["--ckpt", "STAGE1"], "expected a stage-2 checkpoint"),
    (["--ckpt", "/nonexistent/ckpt.pt"], "not found"),
])
def test_bad_inputs_get_one_line(ckpts, tmp_path, args, message):
    args = [ckpts[0] if a == "STAGE1" else a for a in args]
    if "--ckpt" not in args:
        args = ["--ckpt", ckpts[1], *args]
    r = run("sample.py", *args, "--out", str(tmp_path), "--no-preview")
    assert r.returncode != 0 and message in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_train_diffusion_refuses_a_stage2_checkpoint_as_stage1(ckpts, tmp_path):
    r = run("train_diffusion.py", "--inr", ckpts[1], "--out", str(tmp_path / "x.pt"), "--steps", "1")
    assert r.returncode != 0 and "expected a stage-1 checkpoint" in r.stderr and "Traceback" not in r.stderr
