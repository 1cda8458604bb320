"""train_diffusion.py -> sample.py end to end on tiny models: python -m pytest -q tests/test_sample.py"""
import os
import subprocess
import sys

import numpy as np
import pytest

import bvh
import data
import motion
import synthetic

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
    T = int(np.floor(fps * seconds + 1e-6)) + 1   # frame k at k / fps, the last at or just before --seconds
    joints = np.load(os.path.join(out, "a_person_walks_forward_0.npy"))
    feats = np.load(os.path.join(out, "a_person_walks_forward_0_features.npy"))
    assert joints.shape == (T, 22, 3) and feats.shape == (T, 263) and np.isfinite(joints).all()
    bvh_joints, skeleton, bvh_fps = bvh.read_bvh(os.path.join(out, "a_person_walks_forward_0.bvh"))
    assert abs(bvh_fps - fps) < 1e-4 * fps
    order = [skeleton.joint_names.index(n) for n in motion.SMPL22.joint_names]
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
    low = synthetic.generate_motions(3, seed=5)[0]
    joints20 = motion.resample(low["joints"].reshape(len(low["joints"]), -1), low["fps"], 20.0).reshape(-1, 22, 3)
    np.save(tmp_path / "low.npy", joints20)
    r = run("sample.py", "--ckpt", ckpts[1], "--fit", str(tmp_path / "low.npy"), "--fit-fps", "20", "--fps", "100",
            "--out", str(tmp_path / "fit"), "--no-preview", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    seconds = (len(joints20) - 2) / 20.0   # T joints give T-1 feature rows spanning (T-2)/20 s
    assert np.load(tmp_path / "fit" / "fit_0.npy").shape == (int(np.floor(100 * seconds + 1e-6)) + 1, 22, 3)


@pytest.mark.parametrize("args,message", [
    (["--text", "  ?! "], "has no word this model knows"),
    (["--text", "一个人在走路"], "has no word this model knows"),
    (["--guidance", "nan"], "argument --guidance: expected -1000 <= x <= 1000, got nan"),
    (["--steps", "5000"], "--steps 5000: this model has 1000 diffusion steps"),
    (["--fit-fps", "0"], "argument --fit-fps: expected 0 < x <= 480"),
    (["--fps", "0"], "argument --fps: expected 0 < x <= 480"),
    (["--fps", "100000"], "argument --fps: expected 0 < x <= 480"),
    (["--seconds", "-1"], "argument --seconds: expected 0 < x <= 60"),
    (["--num", "100000000"], "argument --num: expected 1 to 1,000"),
    (["--device", "tpu"], "argument --device: 'tpu'"),
    (["--fit", "/nonexistent/x.npy"], "argument --fit: /nonexistent/x.npy not found"),
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


def test_samples_are_the_decoder_on_the_frame_grid(ckpts, tmp_path):
    """sample.py's files against an independent computation: the same z (same seed), the decoder's forward
    at times k / fps seconds (its own time encoding and normalization are checked in test_inr.py) for a
    motion of `seconds`, told the rate (capped at the training's highest), std * x + mean, velocities turned
    per frame at --fps, joints recovered. A linspace time grid, a wrong rate or duration, or a wrong
    velocity conversion anywhere in sample.py's path makes this fail."""
    import torch
    import nerm
    ckpt = torch.load(ckpts[1], weights_only=True)
    model = nerm.LatentDiffusion(nerm.DiffusionConfig(**ckpt["model_args"])).eval()
    model.load_state_dict(ckpt["model"])
    text, fps, seconds = "a person walks forward", 45.0, 1.3
    r = run("sample.py", "--ckpt", ckpts[1], "--text", text, "--fps", str(fps), "--seconds", str(seconds),
            "--out", str(tmp_path), "--steps", "5", "--no-preview", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    z = model.sample(1, text=text, duration=seconds, guidance=nerm.GUIDANCE, steps=5, generator=torch.Generator().manual_seed(0))
    args = ckpt["inr"]["model_args"]
    raw = nerm.INRDecoder(nerm.INRConfig(**args)).eval()
    raw.load_state_dict(ckpt["inr"]["decoder"])
    T = int(np.floor(fps * seconds + 1e-6)) + 1
    t = torch.arange(T, dtype=torch.float64)[None] / fps                # (1, T) seconds
    told = torch.tensor([min(fps, args["max_fps"])])
    with torch.no_grad():
        x = (raw(z, t.float(), torch.tensor([seconds]), told)[0] * raw.std + raw.mean).double().numpy()   # per second
    vel = motion.velocity_mask(motion.SMPL22)
    x[:, vel] /= fps                                                    # per frame at --fps
    feats = np.load(tmp_path / "a_person_walks_forward_0_features.npy")
    np.testing.assert_allclose(feats, x, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.load(tmp_path / "a_person_walks_forward_0.npy"), motion.features_to_joints(x),
                               rtol=1e-4, atol=1e-4)


def test_sample_never_overwrites_without_force(ckpts, tmp_path):
    """Two prompts with the same first 40 characters (or differing only in case and punctuation) get their own
    names; a second run into the same folder is refused unless --force, and leaves the files as they were."""
    a = "a person walks forward and then turns around to the left"
    b = "A person walks forward and then turns around to the right"
    args = ["--ckpt", ckpts[1], "--text", a, "--text", b, "--text", "Walks!", "--text", "walks.", "--out",
            str(tmp_path), "--steps", "3", "--no-preview", "--device", "cpu"]
    r = run("sample.py", *args)
    assert r.returncode == 0, r.stderr
    names = sorted(p.name for p in tmp_path.glob("*.npy") if not p.name.endswith("_features.npy"))
    assert len(names) == 4 and len(set(names)) == 4, names
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    r = run("sample.py", *args, "--seed", "1")
    assert r.returncode != 0 and "already exists" in r.stderr and "--force" in r.stderr and "Traceback" not in r.stderr
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    r = run("sample.py", *args, "--seed", "1", "--force")
    assert r.returncode == 0 and {p.name: p.read_bytes() for p in tmp_path.iterdir()} != before


def test_train_diffusion_resume_refuses_another_stage1(ckpts, small_dataset, tmp_path):
    """--resume --inr OTHER.pt would continue on another model's latents: refused, the checkpoint untouched.
    A stage-2 run with an existing --out and neither --resume nor --force is refused too."""
    other = str(tmp_path / "other.pt")
    r = run("train_inr.py", "--data-dir", small_dataset, "--out", other, "--steps", "10", "--batch", "8",
            "--clip-len", "8", "--hidden", "32", "--blocks", "1", "--eval-seqs", "2", "--fit-steps", "2",
            "--eval-every", "0", "--device", "cpu", "--seed", "1")
    assert r.returncode == 0, r.stderr
    out = str(tmp_path / "d.pt")
    tiny = ["--batch", "8", "--d-model", "32", "--layers", "1", "--device", "cpu"]
    assert run("train_diffusion.py", "--inr", ckpts[0], "--out", out, "--steps", "2", *tiny).returncode == 0
    before = open(out, "rb").read()
    r = run("train_diffusion.py", "--inr", other, "--out", out, "--resume", "--steps", "4", *tiny)
    assert r.returncode != 0 and "another stage-1 model" in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = run("train_diffusion.py", "--inr", ckpts[0], "--out", out, "--steps", "4", *tiny)
    assert r.returncode != 0 and "--resume" in r.stderr and "Traceback" not in r.stderr
    assert open(out, "rb").read() == before
    r = run("train_diffusion.py", "--inr", ckpts[0], "--out", out, "--resume", "--steps", "4", *tiny)
    assert r.returncode == 0 and "resumed" in r.stdout, r.stderr


def test_fit_refuses_bad_joint_files_and_writes_nothing(ckpts, tmp_path):
    """--fit reads its joints through data.load_npy: non-finite values, strings, another skeleton's shape and
    too few frames each give one line naming the file, and nothing is written."""
    nan = np.zeros((10, 22, 3))
    nan[3, 2, 1] = np.nan
    for name, array, says in (("nan", nan, "non-finite values"), ("str", np.array(["a", "b"]), "strings"),
                              ("kit", np.zeros((10, 21, 3)), "got shape (10, 21, 3)"),
                              ("short", np.zeros((2, 22, 3)), "expected at least 3")):
        np.save(tmp_path / f"{name}.npy", array)
        r = run("sample.py", "--ckpt", ckpts[1], "--fit", str(tmp_path / f"{name}.npy"), "--out",
                str(tmp_path / "out"), "--no-preview", "--device", "cpu")
        assert r.returncode != 0 and says in r.stderr and "Traceback" not in r.stderr, (name, r.stderr)
    assert not (tmp_path / "out").exists()


def test_fit_target_is_the_motion_in_per_second_units_on_its_frame_grid(tmp_path, monkeypatch):
    """sample.fit_joints hands fit_latents one clip: row r of the features of the (T, 22, 3) joints at time r / fit_fps,
    r = 0 .. T-2, the sequence's duration (T - 2) / fit_fps, the rate fit_fps, and the target in the decoder's
    normalized units: per-frame velocity channels (root angular and linear velocity [0:3], joint velocities
    [193:259]) times fit_fps, then (x - mean) / std. Checked here against that arithmetic written out, with
    fit_latents replaced by a recorder; a dropped or inverted unit conversion, a linspace time grid or a duration
    of T - 1 rows fails."""
    import torch
    import nerm
    import sample
    fit_fps = 30.0
    low = synthetic.generate_motions(3, seed=5)[0]
    joints = motion.resample(low["joints"].reshape(len(low["joints"]), -1), low["fps"], fit_fps).reshape(-1, 22, 3)[:40]
    np.save(tmp_path / "low.npy", joints)
    torch.manual_seed(0)
    dec = nerm.INRDecoder(nerm.INRConfig(latent_dim=8, hidden=16, n_blocks=1, time_enc="sinusoidal")).eval()
    dec.mean.copy_(torch.randn(263))
    dec.std.copy_(torch.rand(263) + 0.5)
    seen = []

    def recorder(decoder, sample_clip, n, **kw):
        seen.append((decoder, n, sample_clip()))
        return torch.full((n, 8), 0.25)

    monkeypatch.setattr(nerm, "fit_latents", recorder)
    z, seconds = sample.fit_joints(dec, motion.SMPL22, str(tmp_path / "low.npy"), fit_fps)
    (decoder, n, (k, t, dur, fps, x)), = seen
    assert decoder is dec and n == 1 and torch.equal(z, torch.full((8,), 0.25))
    T = len(joints)
    assert seconds == pytest.approx((T - 2) / fit_fps, rel=1e-12)
    assert k.tolist() == [0] and dur.tolist() == pytest.approx([(T - 2) / fit_fps]) and fps.tolist() == [fit_fps]
    np.testing.assert_allclose(t.double().numpy(), np.arange(T - 1)[None] / fit_fps, rtol=1e-6)
    per_frame = motion.joints_to_features(joints, motion.SMPL22, fps=fit_fps, hml3d_frame0=False).astype(np.float64)
    rates = np.r_[0:3, 4 + 9 * 21:4 + 9 * 21 + 3 * 22]                 # root velocities, joint velocities
    assert np.abs(per_frame[:, rates]).max() > 1e-3                      # the motion moves: the rates matter
    per_second = per_frame.copy()
    per_second[:, rates] *= fit_fps
    want = (per_second - dec.mean.double().numpy()) / dec.std.double().numpy()
    assert x.shape == (1, T - 1, 263)
    np.testing.assert_allclose(x[0].double().numpy(), want, rtol=1e-5, atol=1e-5)


def test_text_file_prompts_with_bom_crlf_and_blank_lines(tmp_path):
    """--text-file: one prompt per line, whatever the line ends and a byte-order mark; only blank lines is an
    error naming the file, not zero samples."""
    import sample
    f = tmp_path / "prompts.txt"
    f.write_bytes("\ufeffa person walks\r\n\r\n  someone jumps twice  \r\nwaves\rclaps\n".encode("utf-8"))
    assert sample.read_prompts(str(f)) == ["a person walks", "someone jumps twice", "waves", "claps"]
    f.write_text("\n  \n\t\n")
    with pytest.raises(data.DataError, match="no prompt in it"):
        sample.read_prompts(str(f))


def test_file_names_from_prompts_and_labels_are_plain_and_distinct():
    """A prompt or an action label from the data names files under --out: never a path out of it."""
    import sample
    import guard
    jobs = sample.unique_names([(guard.name(t), t, None) for t in
                                ("../../etc/passwd", "/abs/path", "Walk!", "walk", "a" * 300, "..")])
    names = [n for n, _, _ in jobs]
    assert names == ["etc_passwd", "abs_path", "walk", "walk-2", "a" * 40, "unnamed"]
