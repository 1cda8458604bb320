"""train_inr.py end to end on a tiny embedded dataset: python -m pytest -q tests/test_train_inr.py"""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

import nerm
import train_inr

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--steps", "6", "--batch", "8", "--clip-len", "8", "--hidden", "32", "--blocks", "1", "--latent-dim", "16",
        "--eval-seqs", "2", "--fit-steps", "2", "--eval-every", "0", "--save-every", "3", "--device", "cpu"]


def run(*args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "train_inr.py"), *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=300)


def test_train_checkpoint_round_trip_and_resume(small_dataset, tmp_path):
    out = str(tmp_path / "inr.pt")
    r = run("--data-dir", small_dataset, "--out", out, *TINY)
    assert r.returncode == 0, r.stderr
    assert "held-out MRE" in r.stdout and "@120fps" in r.stdout
    ckpt = torch.load(out, weights_only=True)
    assert ckpt["stage"] == 1 and ckpt["step"] == 6
    assert sorted(os.listdir(tmp_path)) == [".nerm-manifest", "inr.pt"]   # no temp file, no lock left
    model = nerm.NeRM(nerm.INRConfig(**ckpt["model_args"]))
    model.load_state_dict(ckpt["model"])
    assert model.latents.mu.shape[0] == len(ckpt["sequences"]["names"]) == len(ckpt["sequences"]["captions"])
    assert model.decoder.mean.shape == (263,) and model.decoder.std.min() > 0 and ckpt["args"]["fps_mode"] == "native"
    assert model.decoder.cfg.max_fps == max(ckpt["sequences"]["fps"].tolist())
    # resume continues from step 6 to 10 with the saved optimizer state
    r = run("--data-dir", small_dataset, "--out", out, "--resume", *TINY, "--steps", "10")
    assert r.returncode == 0, r.stderr
    assert "resumed" in r.stdout and torch.load(out, weights_only=True)["step"] == 10


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(small_dataset, tmp_path):
    out = str(tmp_path / "inr.pt")
    assert run("--data-dir", small_dataset, "--out", out, *TINY).returncode == 0
    before = torch.load(out, weights_only=True)
    # an absurd learning rate overflows the weights at once
    r = run("--data-dir", small_dataset, "--out", out, "--resume", *TINY, "--steps", "20", "--lr", "1e38",
            "--latent-lr", "1e38")
    assert r.returncode != 0 and "error: loss became" in r.stderr and "Traceback" not in r.stderr
    after = torch.load(out, weights_only=True)
    assert after["step"] == before["step"]
    assert all(torch.isfinite(v).all() for v in after["model"].values())


def test_bad_inputs_get_one_line(tmp_path, small_dataset):
    r = run("--data", "humanml3d", "--data-dir", str(tmp_path / "missing"), "--out", str(tmp_path / "x.pt"))
    assert r.returncode != 0 and "expected layout" in r.stderr and "Traceback" not in r.stderr
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00" * 100)
    r = run("--data-dir", small_dataset, "--out", str(bad), "--resume", *TINY)
    assert r.returncode != 0 and "not a readable nerm checkpoint" in r.stderr and "Traceback" not in r.stderr
    r = run("--data-dir", small_dataset, "--out", str(tmp_path / "absent.pt"), "--resume", *TINY)
    assert r.returncode != 0 and "not found" in r.stderr


def test_lr_schedule_warms_up_and_decays():
    assert train_inr.get_lr(0, 1.0, 1000) == 0.01
    assert abs(train_inr.get_lr(99, 1.0, 1000) - 1.0) < 1e-9
    assert abs(train_inr.get_lr(1000, 1.0, 1000) - 0.1) < 1e-9


def test_band_loss_is_the_band_error_of_the_clips_each_at_its_own_rate():
    """metrics.clip_band_pass on a batch is metrics.band_pass (checked against the sine series written out) of
    each clip alone at its own rate; band_loss is metrics.band_error of the clips (energies summed over clips per
    joint, then the mean of the ratios over joints), and its gradient reaches the prediction."""
    import metrics
    rng = np.random.default_rng(0)
    B, m, J = 5, 32, 4
    ric = slice(2, 2 + 3 * J)                                              # the position channels among D = 3J + 4
    x = rng.standard_normal((B, m, 3 * J + 4)).cumsum(1)
    x_hat = x + 0.3 * rng.standard_normal(x.shape)
    fps = np.array([120.0, 60.0, 40.0, 100.0, 24.0])
    got = metrics.clip_band_pass(torch.from_numpy(x), torch.from_numpy(fps)).numpy()
    for b in range(B):
        np.testing.assert_allclose(got[b], metrics.band_pass(x[b], fps[b]), atol=1e-12, err_msg=f"{fps[b]} fps")
    same = np.full(B, 120.0)                                              # one rate: band_error of the clip list
    pred = torch.from_numpy(x_hat).requires_grad_()
    loss = train_inr.band_loss(pred, torch.from_numpy(x), torch.from_numpy(same), ric)
    want = metrics.band_error([c[:, ric].reshape(m, J, 3) for c in x_hat], [c[:, ric].reshape(m, J, 3) for c in x], 120.0)
    assert loss.item() == pytest.approx(want, rel=1e-9)
    loss.backward()
    assert pred.grad[..., ric].abs().sum() > 0 and pred.grad[..., 3 * J + 2:].abs().sum() == 0
    assert train_inr.band_loss(torch.from_numpy(x), torch.from_numpy(x), torch.from_numpy(fps), ric).item() == 0.0


def test_a_folder_that_is_not_the_embedded_dataset_is_never_touched(tmp_path):
    """--data-dir with the default --data synthetic: someone's folder (no meta.csv) is refused, not replaced."""
    mine = tmp_path / "HumanML3D"
    (mine / "new_joint_vecs").mkdir(parents=True)
    (mine / "new_joint_vecs" / "000001.npy").write_bytes(b"precious")
    (mine / "notes.txt").write_text("mine")
    r = run("--data-dir", str(mine), "--out", str(tmp_path / "x.pt"), *TINY)
    assert r.returncode != 0 and "is not the embedded dataset" in r.stderr and "Traceback" not in r.stderr
    assert sorted(p.name for p in mine.rglob("*")) == ["000001.npy", "new_joint_vecs", "notes.txt"]
    assert (mine / "new_joint_vecs" / "000001.npy").read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["HumanML3D"]   # no temp folder, no checkpoint


def test_an_existing_out_needs_resume_or_force(small_dataset, tmp_path):
    """An existing --out needs --resume or --force, and --force replaces only a checkpoint nerm wrote."""
    out = tmp_path / "inr.pt"
    out.write_bytes(b"an older run")
    r = run("--data-dir", small_dataset, "--out", str(out), *TINY)
    assert r.returncode != 0 and "--resume" in r.stderr and "--force" in r.stderr and "Traceback" not in r.stderr
    r = run("--data-dir", small_dataset, "--out", str(out), "--force", *TINY)
    assert r.returncode != 0 and "not written by nerm" in r.stderr and "Traceback" not in r.stderr
    assert out.read_bytes() == b"an older run"
    mine = tmp_path / "mine.pt"
    assert run("--data-dir", small_dataset, "--out", str(mine), *TINY, "--steps", "3").returncode == 0
    r = run("--data-dir", small_dataset, "--out", str(mine), "--force", *TINY)
    assert r.returncode == 0, r.stderr
    assert torch.load(mine, weights_only=True)["step"] == 6


def test_resume_refuses_another_run(small_dataset, tmp_path):
    """Architecture, time normalization and fps mode define a run: --resume with other ones is refused with
    what differs, and the checkpoint is left as it was."""
    out = str(tmp_path / "inr.pt")
    assert run("--data-dir", small_dataset, "--out", out, *TINY).returncode == 0
    before = open(out, "rb").read()
    for flags, says in ((["--hidden", "48"], "hidden=32"), (["--no-time-norm"], "time_norm=True"),
                        (["--fps-mode", "fixed"], "--fps-mode native"), (["--time-enc", "sinusoidal"], "time_enc")):
        r = run("--data-dir", small_dataset, "--out", out, "--resume", *TINY, "--steps", "8", *flags)
        assert r.returncode != 0 and says in r.stderr and "another run" in r.stderr, (flags, r.stderr)
        assert "Traceback" not in r.stderr
    assert open(out, "rb").read() == before


@pytest.mark.parametrize("flag,value", [("--batch", "0"), ("--batch", "-4"), ("--save-every", "0"),
                                        ("--eval-seqs", "0"), ("--lr", "nan"), ("--clip-len", "1"),
                                        ("--n-hz", "-1"), ("--hidden", "0"), ("--latent-dim", "-3"),
                                        ("--blocks", "100000"), ("--max-hz", "nan"), ("--max-hz", "-8"),
                                        ("--device", "tpu"), ("--batch", "10000000000"), ("--seed", "-1"),
                                        ("--steps", "x")])
def test_impossible_settings_get_one_line(tmp_path, flag, value):
    r = run("--out", str(tmp_path / "x.pt"), flag, value)
    assert r.returncode == 2 and f"error: argument {flag}" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert list(tmp_path.iterdir()) == []


def _edit_meta_rate(d, sid):
    """Another native rate for sequence sid in meta.csv (60 <-> 30 fps...): the same frames at another speed."""
    lines = (d / "meta.csv").read_text().splitlines()
    for k, line in enumerate(lines):
        if line.startswith(sid + ","):
            sid_, fps, action = line.split(",")
            lines[k] = f"{sid},{float(fps) * 0.5},{action}"
    (d / "meta.csv").write_text("\n".join(lines) + "\n")


def _edit_npy(path, fn):
    np.save(path, fn(np.load(path)))


EDITS = {   # one change each to the data a run was trained on, with the same sequence names
    "features": lambda d, sid: _edit_npy(d / "new_joint_vecs" / f"{sid}.npy", lambda x: x * 1.01),
    "cut in half": lambda d, sid: _edit_npy(d / "new_joint_vecs" / f"{sid}.npy", lambda x: x[:len(x) // 2]),
    "Std.npy": lambda d, sid: _edit_npy(d / "Std.npy", lambda x: x * 1.1),
    "captions": lambda d, sid: (d / "texts" / f"{sid}.txt").write_text("a person does something else.#a/DET#0.0#0.0\n"),
    "rate in meta.csv": _edit_meta_rate,
    "order": lambda d, sid: (d / "train.txt").write_text("\n".join((d / "train.txt").read_text().split()[::-1]) + "\n"),
}


def test_resume_compares_the_data_not_only_its_names(small_dataset, tmp_path):
    """--resume refuses data that differs from the run's in anything that defines it (data.fingerprint): each
    edit below keeps every sequence name; the unedited copy resumes."""
    d = tmp_path / "data"
    shutil.copytree(small_dataset, d)
    out = str(tmp_path / "inr.pt")
    assert run("--data-dir", str(d), "--out", out, *TINY).returncode == 0
    sid = (d / "train.txt").read_text().split()[0]
    for what, edit in EDITS.items():
        e = tmp_path / what.replace(" ", "_")
        shutil.copytree(d, e)
        edit(e, sid)
        r = run("--data-dir", str(e), "--out", out, "--resume", *TINY, "--steps", "8")
        assert r.returncode != 0 and "other training data" in r.stderr and "Traceback" not in r.stderr, (what, r.stderr)
    r = run("--data-dir", str(d), "--out", out, "--resume", *TINY, "--steps", "8")
    assert r.returncode == 0, r.stderr
