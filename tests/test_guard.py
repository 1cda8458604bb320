"""The safety mechanisms of guard.py, each against the family of failures it closes:
python -m pytest -q tests/test_guard.py"""
import argparse
import errno
import os
import subprocess
import sys
import time

import pytest
import torch

import checkpoint
import guard
import nerm
import writer
from motion import SMPL22

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def release():
    """Claims live until the process ends; each test starts and ends with none."""
    guard.reset()
    yield
    guard.reset()


def files(folder):
    return sorted(os.listdir(folder))


def dead_pid():
    """The pid of a process that has ended (what a killed run leaves in its temp names)."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


# ---- outputs: what --force may replace ----

def test_force_never_replaces_a_folder_holding_what_nerm_did_not_write(tmp_path):
    """prepare.py --out ~ --force once emptied a home folder: a folder is replaced only when its own manifest
    names every file in it and it holds no link."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("years of work")
    with pytest.raises(guard.OutputError, match="not written by nerm"):
        writer.DatasetWriter(str(home), SMPL22, force=True)
    assert files(home) == ["thesis.tex"] and files(tmp_path) == ["home"]
    # a dataset nerm wrote is replaced ... until someone adds a file of their own to it, or a link
    for extra in ("notes.txt", "link"):
        out = tmp_path / f"ds_{extra}"
        for _ in range(2):                  # the second write replaces the first (force, recorded)
            with writer.DatasetWriter(str(out), SMPL22, force=True) as w:
                w.add("a", __import__("numpy").zeros((3, 263)), __import__("numpy").zeros((4, 22, 3)), 20.0,
                      ["a person#a/DET#0.0#0.0"], train=True)
                w.finish({"train": ["a"], "val": [], "test": []})
            guard.reset()
        assert guard.recorded(str(out))
        if extra == "link":
            os.symlink(home / "thesis.tex", out / "texts" / "b.txt")
        else:
            (out / extra).write_text("mine")
        assert not guard.recorded(str(out))
        with pytest.raises(guard.OutputError, match="not written by nerm"):
            guard.claim(str(out), force=True)
    assert (home / "thesis.tex").read_text() == "years of work"


def test_an_output_is_never_an_input_nor_a_folder_holding_one(tmp_path):
    """--out . with the input inside it, --out .., train_diffusion.py --inr X --out X: refused before any work."""
    data_dir = tmp_path / "HumanML3D"
    data_dir.mkdir()
    ckpt = tmp_path / "inr.pt"
    ckpt.write_bytes(b"x")
    for out in (data_dir, tmp_path, tmp_path.parent, ckpt):
        with pytest.raises(guard.OutputError, match="an input of this command"):
            guard.claim(str(out), force=True, inputs=[str(data_dir), str(ckpt)])
    os.symlink(ckpt, tmp_path / "alias.pt")          # the same file under another name
    with pytest.raises(guard.OutputError, match="an input"):
        guard.claim(str(tmp_path / "alias.pt"), force=True, inputs=[str(ckpt)])
    assert guard.claim(str(data_dir / "converted"), inputs=[str(data_dir)])   # inside an input is fine


def test_train_diffusion_refuses_its_own_input_as_out(tmp_path):
    inr = tmp_path / "inr.pt"
    inr.write_bytes(b"precious")
    r = subprocess.run([sys.executable, os.path.join(ROOT, "train_diffusion.py"), "--inr", str(inr), "--out", str(inr),
                        "--force"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "an input of this command" in r.stderr and "Traceback" not in r.stderr
    assert inr.read_bytes() == b"precious" and files(tmp_path) == ["inr.pt"]


# ---- outputs: links, atomic writes, failures of the disk ----

def test_writes_replace_links_and_never_follow_them(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("outside")
    out = tmp_path / "out"
    out.mkdir()
    guard.claim(str(out), into=True, force=True)
    os.symlink(secret, out / "a.npy")                       # a link where a sample goes
    os.symlink(tmp_path / "nowhere", out / "b.npy")         # a dangling one
    for name in ("a.npy", "b.npy"):
        with pytest.raises(guard.OutputError, match="already exists"):
            guard.check(str(out / name), force=False)
        with pytest.raises(guard.OutputError, match="not written by nerm"):
            guard.write(str(out / name), lambda tmp: open(tmp, "w").write("new"))
    assert secret.read_text() == "outside" and not (tmp_path / "nowhere").exists()
    # with the rule satisfied (this run's own file), the rename replaces the link itself, not its target
    guard._written.add(str(out / "a.npy"))
    guard.write(str(out / "a.npy"), lambda tmp: open(tmp, "w").write("new"))
    assert not os.path.islink(out / "a.npy") and (out / "a.npy").read_text() == "new"
    assert secret.read_text() == "outside"


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path):
    path = tmp_path / "runs" / "inr.pt"
    guard.claim(str(path))
    checkpoint.save({"step": 1}, str(path))
    for error in (OSError(errno.ENOSPC, "No space left on device"), OSError(errno.EROFS, "Read-only file system")):
        def fill(tmp):
            with open(tmp, "wb") as f:
                f.write(b"half")
            raise error
        with pytest.raises(guard.OutputError) as e:
            guard.write(str(path), fill)
        assert str(path) in str(e.value) and error.strerror in str(e.value) and "\n" not in str(e.value)
        assert torch.load(path, weights_only=True)["step"] == 1
        assert [f for f in files(path.parent) if not f.startswith(".nerm-lock")] == [".nerm-manifest", "inr.pt"]


def test_a_full_disk_while_writing_a_dataset_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    import numpy as np
    real = np.save

    def full(path, *a, **k):
        if str(path).endswith("b.npy"):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, *a, **k)
    monkeypatch.setattr(np, "save", full)
    out = tmp_path / "ds"
    with pytest.raises(guard.OutputError, match=f"cannot write {out}: No space left on device"):
        with writer.DatasetWriter(str(out), SMPL22) as w:
            for sid in ("a", "b"):
                w.add(sid, np.zeros((3, 263)), np.zeros((4, 22, 3)), 20.0, ["a person#a/DET#0.0#0.0"], train=True)
    guard.release()
    assert files(tmp_path) == []


def test_writing_without_a_claim_is_a_bug(tmp_path):
    with pytest.raises(RuntimeError, match="without guard.claim"):
        guard.write(str(tmp_path / "x"), lambda tmp: None)
    assert files(tmp_path) == []


def test_a_folder_that_cannot_be_written_is_one_line(tmp_path, monkeypatch):
    """A read-only folder or a full disk at claim time (the lock is the first file written): OutputError."""
    real = os.open

    def refuse(path, *a, **k):
        if ".nerm-lock" in str(path):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real(path, *a, **k)
    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(guard.OutputError, match=f"cannot write in {tmp_path}: Read-only file system"):
        guard.claim(str(tmp_path / "x.pt"))


# ---- outputs: two runs, killed runs ----

CLAIM_AND_WAIT = "import sys, time; sys.path.insert(0, {root!r}); import guard; guard.claim({path!r}); " \
                 "print('claimed', flush=True); time.sleep(60)"


def test_two_runs_never_write_one_output_and_a_killed_run_releases_it(tmp_path):
    path = str(tmp_path / "diffusion.pt")
    other = subprocess.Popen([sys.executable, "-c", CLAIM_AND_WAIT.format(root=ROOT, path=path)],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "claimed"
        with pytest.raises(guard.OutputError, match="another run is writing"):
            guard.claim(path)
    finally:
        other.kill()                                # SIGKILL: no atexit; the kernel drops its lock
        other.wait()
    assert guard.claim(path) == path                # the stale lock file is taken over
    guard.release()
    assert files(tmp_path) == []                    # and removed at the end


def test_debris_of_killed_runs_is_removed_and_a_half_replacement_put_back(tmp_path):
    pid, mine = dead_pid(), os.getpid()
    (tmp_path / f".nerm-tmp-{pid}-1a2b-inr.pt").write_bytes(b"x" * 1000)        # a temp checkpoint
    (tmp_path / f".nerm-tmp-{pid}-3c4d-synthetic").mkdir()                      # a half-written dataset
    (tmp_path / f".nerm-tmp-{pid}-3c4d-synthetic" / "a.npy").write_bytes(b"x")
    (tmp_path / f".nerm-old-{pid}-5e6f-data").mkdir()                           # killed between two renames
    (tmp_path / f".nerm-old-{pid}-5e6f-data" / "meta.csv").write_text("id,fps\n")
    (tmp_path / f".nerm-tmp-{mine}-7a8b-x.pt").write_bytes(b"a live run's")     # not dead: kept
    (tmp_path / ".nerm-tmp-notes").write_text("not ours by name: kept")
    guard.claim(str(tmp_path / "inr.pt"))
    assert {f for f in files(tmp_path) if not f.startswith(".nerm-lock")} == \
        {".nerm-tmp-notes", f".nerm-tmp-{mine}-7a8b-x.pt", "data"}
    assert (tmp_path / "data" / "meta.csv").read_text() == "id,fps\n"


def test_a_killed_run_leaves_no_half_written_output(tmp_path):
    """SIGKILL while a large file is being written: the target is absent (or the old one), never partial; the
    next claim removes the temp file."""
    path = str(tmp_path / "big.npy")
    code = (f"import sys; sys.path.insert(0, {ROOT!r}); import guard, numpy as np; guard.claim({path!r}); "
            f"print('go', flush=True); guard.write({path!r}, lambda t: [np.save(t, np.zeros(10**8)), "
            "__import__('time').sleep(60)])")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "go"
    deadline = time.time() + 60
    while not any(f.startswith(".nerm-tmp") and os.path.getsize(tmp_path / f) > 10**6 for f in files(tmp_path)):
        assert time.time() < deadline
        time.sleep(0.05)
    p.kill()
    p.wait()
    assert not os.path.exists(path)
    guard.claim(path)
    assert [f for f in files(tmp_path) if not f.startswith(".nerm-lock")] == []


# ---- names from data ----

@pytest.mark.parametrize("text", ["../../x", "/etc/passwd", "a/b\\c", "..", ".", "", "x" * 500, "C:\\evil", "\x00"])
def test_names_from_data_are_plain_names(text):
    n = guard.name(text)
    assert n and "/" not in n and "\\" not in n and n not in (".", "..") and len(n) <= 40
    assert os.path.basename(n) == n and not os.path.isabs(n)


def test_ids_and_listed_paths_stay_inside_their_folder(tmp_path):
    for bad in ("../x", "/abs", "a/b", "..", "", " 0001", "0001 ", "a\\b", "a\x07"):
        with pytest.raises(guard.DataError, match="train.txt:3"):
            guard.plain(bad, "train.txt:3")
    assert guard.plain("M000123", "train.txt:1") == "M000123"
    for bad in ("../pose_data/x.npy", "/etc/x.npy", "a/../../x", "C:/x", "", "./"):
        with pytest.raises(guard.DataError, match="index.csv:7"):
            guard.inside(str(tmp_path), bad, "index.csv:7")
    assert guard.inside(str(tmp_path), "./KIT/3/a.npy", "index.csv:2") == os.path.join(tmp_path, "KIT", "3", "a.npy")


# ---- flags: every flag declares its type, and the type its range ----

def parsers():
    import bench
    import eval as eval_script
    import prepare
    import sample
    import train_diffusion
    import train_inr
    return {"train_inr": train_inr.parser, "train_diffusion": train_diffusion.parser, "sample": sample.parser,
            "eval": eval_script.parser, "bench": bench.parser, "prepare": prepare.make_parser()}


def unchecked(parser):
    """The flags of a parser (and of its sub-commands) that take a value with no guard type and no choices."""
    out = []
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            out += [x for p in a.choices.values() for x in unchecked(p)]
        elif a.nargs == 0 or isinstance(a, argparse.BooleanOptionalAction):    # switches, --help
            continue
        elif not (a.choices or isinstance(a.type, guard.TYPES) or a.type is guard.device):
            out.append(a.option_strings[0])
    return out


def test_every_flag_of_every_script_is_typed():
    got = {name: unchecked(p) for name, p in parsers().items()}
    assert got == {name: [] for name in got}
    bad = argparse.ArgumentParser()
    bad.add_argument("--steps", type=int)            # how a flag used to be added: caught
    assert unchecked(bad) == ["--steps"]


@pytest.mark.parametrize("kind,text", [(guard.Int(1, 64), "0"), (guard.Int(1, 64), "100000"), (guard.Int(1, 64), "2.5"),
                                       (guard.Float(0, 1000), "nan"), (guard.Float(0, 1000), "-8"),
                                       (guard.Float(0, 1e3, open=True), "0"), (guard.Float(0, 1e3), "inf"), (guard.Float(0, float("inf")), "inf"),
                                       (guard.Float(0, 1e3), "1e400"), (guard.Text(), " \t"), (guard.Text(), "a\nb"),
                                       (guard.Path("file"), "/nonexistent"), (guard.Path("folder"), __file__),
                                       (guard.Path("any"), "a\x00b")])
def test_flag_types_refuse_what_is_out_of_range(kind, text):
    with pytest.raises(argparse.ArgumentTypeError):
        kind(text)


def test_flag_types_take_what_is_in_range():
    assert guard.Int(1, 64)("64") == 64 and guard.Float(0, 1000)("8.5") == 8.5 and guard.Float(0, 1)("0") == 0.0
    assert guard.device("cpu") == "cpu"
    with pytest.raises(argparse.ArgumentTypeError, match="this machine offers cpu"):
        guard.device("tpu")


def test_model_shapes_are_checked_before_anything_is_built(tmp_path):
    with pytest.raises(guard.UserError, match="multiple of n_heads"):
        nerm.DiffusionConfig(d_model=130, n_heads=4)
    for bad in ({"hidden": 0}, {"latent_dim": -1}, {"n_blocks": 100000}, {"max_hz": float("nan")}, {"time_enc": "x"}):
        with pytest.raises(guard.UserError, match="model setting"):
            nerm.INRConfig(**bad)
    (tmp_path / "inr.pt").write_bytes(b"x")
    r = subprocess.run([sys.executable, os.path.join(ROOT, "train_diffusion.py"), "--d-model", "130", "--inr",
                        str(tmp_path / "inr.pt"), "--out", str(tmp_path / "d.pt")], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and "multiple of the denoiser's 4 heads" in r.stderr and files(tmp_path) == ["inr.pt"]


def test_a_damaged_stage2_checkpoint_is_one_error(tmp_path):
    vocab = nerm.Vocab.build(["a person walks", "someone jumps"])
    cfg = nerm.DiffusionConfig(cond="text", vocab=vocab.to_list(), d_model=32, n_layers=1, latent_dim=8)
    icfg = nerm.INRConfig(latent_dim=8, hidden=16, n_blocks=1)
    from dataclasses import asdict
    good = {"stage": 2, "model": nerm.LatentDiffusion(cfg).state_dict(), "model_args": asdict(cfg), "optimizer": {},
            "args": {}, "step": 1, "actions": [""], "inr": {"model_args": asdict(icfg), "skeleton": {},
                                                             "decoder": nerm.INRDecoder(icfg).state_dict()}}
    torch.save(good, tmp_path / "good.pt")
    assert checkpoint.load_diffusion(str(tmp_path / "good.pt"))[0].config.d_model == 32
    wrong = dict(good, model={**good["model"], "null": torch.zeros(1, 1, 33)})   # a weight of the wrong shape
    missing = {k: v for k, v in good.items() if k != "inr"}
    odd = dict(good, model_args={**good["model_args"], "d_model": 30})
    for name, ckpt, says in (("wrong", wrong, "damaged or foreign"), ("missing", missing, "no inr"),
                             ("odd", odd, "multiple of n_heads")):
        torch.save(ckpt, tmp_path / f"{name}.pt")
        with pytest.raises(checkpoint.CheckpointError, match=says):
            checkpoint.load_diffusion(str(tmp_path / f"{name}.pt"))


# ---- errors: one line ----

def test_user_errors_are_one_line_and_bugs_keep_their_traceback():
    code = "import sys; sys.path.insert(0, {root!r}); import guard; guard.report_errors(); raise {error}"
    for error, rc, says in (("guard.OutputError('cannot write x: No space left on device')", 1,
                             "error: cannot write x: No space left on device\n"),
                            ("OSError(13, 'Permission denied', '/data/x.txt')", 1, "error: /data/x.txt: Permission denied\n"),
                            ("KeyboardInterrupt", -2, "interrupted\n")):   # ^C: Python exits by SIGINT
        r = subprocess.run([sys.executable, "-c", code.format(root=ROOT, error=error)], capture_output=True, text=True)
        assert (r.returncode, r.stderr) == (rc, says)
    r = subprocess.run([sys.executable, "-c", code.format(root=ROOT, error="ValueError('a bug')")],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "Traceback" in r.stderr
