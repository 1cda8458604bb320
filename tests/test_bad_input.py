"""Every user mistake in the data path is one data.DataError naming the file and the cause, and nothing is
allocated or written on the way: python -m pytest -q tests/test_bad_input.py   (~20 s, 3 subprocesses)

Each test breaks one thing in a copy of a few sequences of the embedded dataset (HumanML3D's layout), a small
BVH file or an AMASS npz, and checks the message; the last ones run train_inr.py on a broken folder.
"""
import os
import pickle
import shutil
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import bvh
import data
import motion
import prepare

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def layout(small_dataset, tmp_path):
    """A copy of 4 train, 2 val and 1 test sequences of the embedded dataset, with its meta.csv and Mean/Std
    -> (folder, the first train id)."""
    src, d = Path(small_dataset), tmp_path / "bad"
    ids = {s: (src / f"{s}.txt").read_text().split()[:n] for s, n in (("train", 4), ("val", 2), ("test", 1))}
    for sub in ("new_joint_vecs", "texts"):
        (d / sub).mkdir(parents=True)
    for sid in sum(ids.values(), []):
        shutil.copy(src / "new_joint_vecs" / f"{sid}.npy", d / "new_joint_vecs")
        shutil.copy(src / "texts" / f"{sid}.txt", d / "texts")
    for split, keep in ids.items():
        (d / f"{split}.txt").write_text("".join(i + "\n" for i in keep))
    for f in ("meta.csv", "Mean.npy", "Std.npy"):
        shutil.copy(src / f, d)
    return d, ids["train"][0]


def load(d, split="train"):
    return data.load_dataset("humanml3d", str(d), split)


def set_meta_fps(d, sid, value):
    lines = (d / "meta.csv").read_text().splitlines()
    lines = [f"{sid},{value},{line.split(',')[2]}" if line.startswith(sid + ",") else line for line in lines]
    (d / "meta.csv").write_text("\n".join(lines) + "\n")


def write_huge_header(path, shape):
    """A few bytes of data under a header that claims `shape` float32 (a corrupt or truncated file)."""
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": shape})
        f.write(b"\0" * 16)


def test_the_copied_layout_loads(small_dataset, tmp_path):
    d, _ = layout(small_dataset, tmp_path)
    assert len(load(d)) == 4 and len(load(d, "val")) == 2


# ---- meta.csv --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fps", ["0", "-20", "nan", "inf", "1e9", "0.001", ""])
def test_meta_fps_must_be_a_rate(small_dataset, tmp_path, fps):
    d, sid = layout(small_dataset, tmp_path)
    set_meta_fps(d, sid, fps)
    with pytest.raises(data.DataError, match=rf"meta.csv:\d+ \(id {sid}\): fps must be a positive finite rate"):
        load(d)


# (new lines of meta.csv from its lines and the index k of the first train id's line, the message): {sid} is that
# id, {line} its line number, {last} the last line's
@pytest.mark.parametrize("edit, says", [
    (lambda lines, k: lines + [lines[k]], r"meta.csv:{last}: id {sid} appears twice \(also on line {line}\)"),
    (lambda lines, k: lines[:k] + [" " + lines[k]] + lines[k + 1:], r"meta.csv:{line}: ' {sid}' is not a plain file"),
    (lambda lines, k: lines[:k] + ["a/" + lines[k]] + lines[k + 1:], r"meta.csv:{line}: 'a/{sid}' is not a plain file"),
    (lambda lines, k: lines[:k] + [lines[k] + ",x"] + lines[k + 1:], r"meta.csv:{line}: expected the fields id,fps"),
    (lambda lines, k: lines[:k] + [lines[k].rsplit(",", 1)[0]] + lines[k + 1:], r"meta.csv:{line}: expected the"),
    (lambda lines, k: lines[:k] + lines[k + 1:], r"meta.csv has no line for {sid}, which train.txt lists"),
    (lambda lines, k: lines[:1], r"meta.csv has no line for {sid}, which train.txt lists"),      # a header, no rows
])
def test_meta_lists_each_sequence_once_by_its_plain_id(small_dataset, tmp_path, edit, says):
    """An id given twice or not at all in meta.csv (which would silently be 20 fps) is an error."""
    d, sid = layout(small_dataset, tmp_path)
    lines = (d / "meta.csv").read_text().splitlines()
    k = next(i for i, line in enumerate(lines) if line.startswith(sid + ","))
    lines = edit(lines, k)
    (d / "meta.csv").write_text("".join(line + "\n" for line in lines))
    with pytest.raises(data.DataError, match=says.format(sid=sid, line=k + 1, last=len(lines))):
        load(d)


def test_without_meta_csv_every_sequence_is_at_the_dataset_rate(small_dataset, tmp_path):
    d, _ = layout(small_dataset, tmp_path)
    (d / "meta.csv").unlink()                  # HumanML3D's own folders have none
    assert set(load(d).fps) == {20.0}


# ---- split files -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("listed, says", [
    ("../../outside", r"train.txt:5: '\.\./\.\./outside' is not a plain file name"),
    ("{tmp}/outside", r"train.txt:5: '{tmp}/outside' is not a plain file name"),
    ("{sid}", r"train.txt:5: {sid} is listed twice \(also on line 1\)"),
])
def test_split_ids_are_plain_names_listed_once(small_dataset, tmp_path, listed, says):
    """'../../outside' or a full path in train.txt would train on a sequence outside the dataset folder."""
    d, sid = layout(small_dataset, tmp_path)
    (d / "meta.csv").unlink()                  # else meta.csv, which has no line for the stranger, would say so
    for sub, ext in (("new_joint_vecs", "npy"), ("texts", "txt")):
        shutil.copy(d / sub / f"{sid}.{ext}", tmp_path / f"outside.{ext}")
    with open(d / "train.txt", "a") as f:
        f.write(listed.format(tmp=tmp_path, sid=sid) + "\n")
    with pytest.raises(data.DataError, match=says.format(tmp=tmp_path, sid=sid)):
        load(d)


# ---- .npy files ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(10 ** 9, 263), (10 ** 6, 263)])
def test_a_huge_npy_header_is_refused_before_any_allocation(small_dataset, tmp_path, shape):
    d, sid = layout(small_dataset, tmp_path)
    write_huge_header(d / "new_joint_vecs" / f"{sid}.npy", shape)
    tracemalloc.start()                       # numpy reports its array buffers to tracemalloc
    try:
        with pytest.raises(data.DataError, match=rf"{sid}.npy: its header claims shape \({shape[0]}, 263\) .* "
                                                 "truncated or corrupt"):
            load(d)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50e6, peak                  # the 4 real sequences, never the 1 GB / 1 TB claimed


def _header(text):
    """A .npy file whose header is text (a Python dict literal, as numpy writes one), then 64 zero bytes."""
    def write(path):
        h = text.encode("latin-1")
        h += b" " * (-(len(h) + 11) % 64) + b"\n"
        path.write_bytes(b"\x93NUMPY\x01\x00" + len(h).to_bytes(2, "little") + h + b"\0" * 64)
    return write


def _save_npz(path):
    with open(path, "wb") as f:               # np.savez to an open file keeps the .npy name
        np.savez(f, features=np.zeros((5, 263), np.float32))


@pytest.mark.parametrize("write, says", [
    (lambda p: np.save(p, np.array([["0.1"] * 263] * 5)), r"got an array of <U3 \(strings\)"),
    (lambda p: np.save(p, np.array([None, 1.0], dtype=object), allow_pickle=True), r"object \(Python objects\)"),
    (_save_npz, r"an .npz archive"),
    (lambda p: np.save(p, np.zeros((5, 263), complex)), r"complex128 \(complex numbers\)"),
    (lambda p: np.save(p, np.zeros(5, [("a", "f4"), ("b", "f4")])), r"\(records\)"),
    (lambda p: p.write_bytes(b"time,x\n0,1\n"), r"cannot read"),
    (_header("{b'descr': '<f4', 'fortran_order': False, 'shape': (5, 263), }"), r"cannot read"),   # numpy: TypeError
    (_header("{'descr': '<f4', 'fortran_order': False, 'shape': (5, 263"), r"cannot read"),       # numpy: TokenError
])
def test_an_npy_that_is_not_a_float_array(small_dataset, tmp_path, write, says):
    d, sid = layout(small_dataset, tmp_path)
    write(d / "new_joint_vecs" / f"{sid}.npy")
    with pytest.raises(data.DataError, match=rf"{sid}.npy: .*{says}.*expected a \(T, 263\) float array"):
        load(d)


@pytest.mark.parametrize("edit, says", [
    (lambda x: x.__setitem__((3, 7), np.nan), r"non-finite values \(NaN or inf\) in 1 of \d+ entries, the first at "
                                              r"row 3, column 7"),
    (lambda x: x.__setitem__((slice(None), 0), np.inf), r"non-finite values \(NaN or inf\) in \d+ of \d+ entries, "
                                                       r"the first at row 0, column 0"),
    (lambda x: x[:, :100], r"got shape \(\d+, 100\)"),
    (lambda x: x[0], r"got shape \(263,\)"),
    (lambda x: x[:, :, None], r"got shape \(\d+, 263, 1\)"),
])
def test_non_finite_features_and_wrong_shapes(small_dataset, tmp_path, edit, says):
    d, sid = layout(small_dataset, tmp_path)
    path = d / "new_joint_vecs" / f"{sid}.npy"
    x = np.load(path)
    y = edit(x)
    np.save(path, x if y is None else y)
    with pytest.raises(data.DataError, match=rf"{sid}.npy: {says}; expected a \(T, 263\) float array.*"
                                             rf"leave {sid} out of train.txt"):
        load(d)


# ---- text files --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("where, content, says", [
    ("texts", "a person walks#a/DET#0.0#0.0\ncaf\xe9 au lait#x#0.0#0.0\n".encode("latin-1"), r":2: not UTF-8"),
    ("texts", "a person walks#a/DET#0.0#0.0\n".encode("utf-16"), r":1: not UTF-8"),
    ("texts", b"a person walks#a/DET#inf#inf\n", r":1: start/end must be seconds"),
    ("split", b"\xff\xfe000001\n", r":1: not UTF-8"),
])
def test_text_files_must_be_utf8(small_dataset, tmp_path, where, content, says):
    d, sid = layout(small_dataset, tmp_path)
    path = d / "texts" / f"{sid}.txt" if where == "texts" else d / "train.txt"
    path.write_bytes(content)
    with pytest.raises(data.DataError, match=rf"{path.name}{says}"):
        load(d)


@pytest.mark.parametrize("line, says", [
    ("then it stops#x#2.0#1.0", r":2: the segment ends at 1.0 s, not after its start at 2.0 s"),
    ("then it stops#x#1.5#1.5", r":2: the segment ends at 1.5 s, not after its start at 1.5 s"),
    ("then it stops#x#0.0#1000", r":2: the segment ends at 1000 s, after the motion's [\d.]+ s \(\d+ feature rows"),
    ("then it stops#x#999#1000", r":2: the segment ends at 1000 s, after the motion's"),
])
def test_caption_segments_lie_inside_the_motion(small_dataset, tmp_path, line, says):
    """An empty or reversed segment, or one past the motion's end, would silently cut nothing (x[a:b])."""
    d, sid = layout(small_dataset, tmp_path)
    path = d / "texts" / f"{sid}.txt"
    path.write_text(f"a person walks#a/DET#0.0#0.0\n{line}\n")
    with pytest.raises(data.DataError, match=rf"{sid}.txt{says}"):
        load(d)


def test_a_segment_may_end_with_the_motion(small_dataset, tmp_path):
    d, sid = layout(small_dataset, tmp_path)
    x = np.load(d / "new_joint_vecs" / f"{sid}.npy")
    fps = float(next(line for line in (d / "meta.csv").read_text().splitlines() if line.startswith(sid + ",")
                     ).split(",")[1])
    (d / "texts" / f"{sid}.txt").write_text(f"all of it but the first half second#x#0.5#{len(x) / fps}\n")
    ms = load(d)
    assert len(ms.features[ms.names.index(f"{sid}#0")]) == len(x) - round(0.5 * fps)


@pytest.mark.parametrize("make, says", [
    (lambda p: p.write_text("\n   \n\n"), r": no caption in it; expected lines 'caption#tokens#start#end'"),
    (lambda p: p.mkdir(), r": cannot read it \(Is a directory\)"),
])
def test_a_caption_file_without_captions_or_not_a_file(small_dataset, tmp_path, make, says):
    """Nothing writes a caption file without a caption (writer.py is given captions; prepare.py skips a sequence
    without any; a BVH folder's sequence without captions has no file): a blank one is a mistake."""
    d, sid = layout(small_dataset, tmp_path)
    path = d / "texts" / f"{sid}.txt"
    path.unlink()
    make(path)
    with pytest.raises(data.DataError, match=rf"{sid}.txt{says}"):
        load(d)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_caption_file(small_dataset, tmp_path):
    d, sid = layout(small_dataset, tmp_path)
    (d / "texts" / f"{sid}.txt").chmod(0)
    with pytest.raises(data.DataError, match=rf"{sid}.txt: cannot read it \(Permission denied\)"):
        load(d)


# ---- Mean.npy / Std.npy ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, value, says", [
    ("Std", 0.0, r"Std.npy: every standard deviation must be positive; channel 5 is 0"),
    ("Std", -0.3, r"Std.npy: every standard deviation must be positive; channel 5 is -0.3"),
    ("Std", np.nan, r"Std.npy: non-finite values"),
    ("Mean", np.inf, r"Mean.npy: non-finite values"),
])
def test_statistics_must_be_finite_and_std_positive(small_dataset, tmp_path, name, value, says):
    d, _ = layout(small_dataset, tmp_path)
    a = np.load(d / f"{name}.npy")
    a[5] = value
    np.save(d / f"{name}.npy", a)
    for split in ("train", "val"):
        with pytest.raises(data.DataError, match=says + ".*delete Mean.npy and Std.npy"):
            load(d, split)


# ---- BVH ---------------------------------------------------------------------------------------------------------

BVH = """HIERARCHY
ROOT hips
{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition Zrotation Yrotation Xrotation
  JOINT knee
  {
    OFFSET 0 -40 0
    CHANNELS 3 Zrotation Yrotation Xrotation
    End Site
    {
      OFFSET 0 -40 0
    }
  }
}
MOTION
Frames: 3
Frame Time: 0.0333333
0 90 0 0 0 0 0 0 0
1 90 0 0 5 0 10 0 0
2 90 0 0 10 0 20 0 0
"""


@pytest.mark.parametrize("old, new, says", [
    ("Frame Time: 0.0333333", "Frame Time: nan", r"line 18: 'Frame Time: nan' means nan frames per second; fps must"),
    ("Frame Time: 0.0333333", "Frame Time: inf", r"line 18: 'Frame Time: inf' means 0 frames per second"),
    ("Frame Time: 0.0333333", "Frame Time: 0", r"line 18: 'Frame Time: 0.0' means inf frames per second"),
    ("Frame Time: 0.0333333", "Frame Time: -0.01", r"line 18: 'Frame Time: -0.01' means -100 frames"),
    ("Frame Time: 0.0333333", "Frame Time: 1e-300", r"line 18: 'Frame Time: 1e-300' means 1e\+300 frames"),
    ("Frames: 3", "Frames: 0", r"line 17: 'Frames: 0': a BVH file needs at least one frame"),
    ("Frames: 3", "Frames: 2", r"line 21: 'Frames: 2' but 3 frame lines: set Frames"),
    ("Frames: 3", "Frames: 5", r"line 21: 'Frames: 5' but 3 frame lines \(truncated\?\)"),
    ("1 90 0 0 5", "1 90 nan 0 5", r"line 20: 'nan' \(hips Zposition\) is not a finite number"),
    ("0 0 10 0 20 0 0", "0 0 10 0 -inf 0 0", r"line 21: '-inf' \(knee Zrotation\) is not a finite number"),
])
def test_bad_bvh_motion_names_file_and_line(tmp_path, old, new, says):
    good = tmp_path / "good.bvh"
    good.write_text(BVH)
    assert bvh.read_bvh(good)[0].shape == (3, 2, 3)
    path = tmp_path / "bad.bvh"
    assert BVH.count(old) == 1
    path.write_text(BVH.replace(old, new))
    with pytest.raises(data.DataError, match=rf"^{path}: {says}"):
        bvh.read_bvh(path)


def test_a_bad_bvh_in_a_folder_stops_the_load(tmp_path):
    x = motion.forward_kinematics(np.tile(np.eye(3), (30, 22, 1, 1)), np.linspace([0, 0.9, 0], [1, 0.9, 0], 30),
                                motion.SMPL22)
    bvh.write_bvh(tmp_path / "a.bvh", x, motion.SMPL22, fps=30)
    text = (tmp_path / "a.bvh").read_text()
    (tmp_path / "b.bvh").write_text(text.replace("Frame Time: 0.03333333", "Frame Time: nan"))
    with pytest.raises(data.DataError, match=r"b.bvh: line \d+: 'Frame Time: nan' means nan frames per second"):
        bvh.load_bvh_folder(str(tmp_path), "train")


# ---- prepare.py's inputs -----------------------------------------------------------------------------------------

def amass_npz(path, **change):
    T = 10
    arrays = dict(poses=np.zeros((T, 156)), trans=np.zeros((T, 3)), betas=np.zeros(16),
                  mocap_framerate=np.array(120.0), gender=np.array("male"))
    arrays.update(change)
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("change, says", [
    (dict(poses=np.full((10, 156), np.nan)), r"non-finite values \(NaN or inf\) in poses, frame 0"),
    (dict(trans=np.array([[0, 0, 0]] * 9 + [[0, np.inf, 0]])), r"non-finite values \(NaN or inf\) in trans, frame 9"),
    (dict(betas=np.full(16, np.nan)), r"non-finite values \(NaN or inf\) in betas"),
    (dict(poses=np.full((10, 156), "0.1")), r"poses holds <U3 values, expected numbers"),
    (dict(mocap_framerate=np.array(np.nan)), r"mocap_framerate: fps must be a positive finite rate"),
    (dict(mocap_framerate=np.array(0.0)), r"mocap_framerate: fps must be a positive finite rate"),
    (dict(mocap_framerate=np.array(1e9)), r"mocap_framerate: fps must be a positive finite rate"),
])
def test_amass_npz_with_bad_values(tmp_path, change, says):
    assert prepare.read_amass(amass_npz(tmp_path / "ok.npz"))[3] == 120.0
    path = amass_npz(tmp_path / "bad.npz", **change)
    with pytest.raises(data.DataError, match=rf"bad.npz: {says}"):
        prepare.read_amass(path)


def test_a_truncated_or_corrupt_amass_npz_is_one_error_naming_it(tmp_path):
    raw = amass_npz(tmp_path / "ok.npz").read_bytes()
    path = tmp_path / "bad.npz"
    for cut in (0, 30, 600, len(raw) // 2, len(raw) - 30, len(raw) - 1):      # a copy that stopped early
        path.write_bytes(raw[:cut])
        with pytest.raises(data.DataError, match=rf"^{path}: .*truncated or corrupt"):
            prepare.read_amass(path)
    rng = np.random.default_rng(0)
    for _ in range(300):                      # a few flipped bytes anywhere: an error naming the file, or it loads
        damaged = bytearray(raw)
        for i in rng.integers(len(raw), size=rng.integers(1, 4)):
            damaged[i] = rng.integers(256)
        path.write_bytes(bytes(damaged))
        try:
            prepare.read_amass(path)
        except data.DataError as e:
            assert str(e).startswith(f"{path}: "), e


def test_an_npz_header_claiming_a_huge_shape_is_refused_before_any_allocation(tmp_path):
    raw = amass_npz(tmp_path / "ok.npz").read_bytes()
    old, new = b"'shape': (10, 156), }" + b" " * 9, b"'shape': (10000000000, 156), }"    # the same header length
    assert raw.count(old) == 1
    path = tmp_path / "bad.npz"
    path.write_bytes(raw.replace(old, new))
    tracemalloc.start()
    try:
        with pytest.raises(data.DataError, match=rf"^{path}: poses.npy claims shape \(10000000000, 156\) of float64 "
                                                 r"but the archive holds 12,608 bytes for it: truncated or corrupt"):
            prepare.read_amass(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50e6, peak                  # never the 12 TB claimed


def test_humanact12_with_non_finite_joints_and_rates(tmp_path):
    joints = np.zeros((5, 24, 3))
    joints[2, 3, 1] = np.nan
    path = tmp_path / "humanact12poses.pkl"
    path.write_bytes(pickle.dumps({"joints3D": [np.zeros((5, 24, 3)), joints], "y": [0, 1]}))
    with pytest.raises(data.DataError, match=r"sequence 1: non-finite values"):
        prepare.load_humanact12(str(path))
    for fps in ("0", "nan", "-15"):
        with pytest.raises(SystemExit) as e:          # a flag: argparse's one line, exit 2
            prepare.main(["humanact12", "--pkl", str(path), "--out", str(tmp_path / "out"), "--fps", fps])
        assert e.value.code == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["humanact12poses.pkl"]


# ---- end to end: train_inr.py on a broken folder -----------------------------------------------------------------

@pytest.mark.parametrize("breakage, says", [
    ("meta_fps", "fps must be a positive finite rate"),
    ("huge_header", "its header claims shape (1000000000, 263)"),
    ("zero_std", "every standard deviation must be positive"),
])
def test_train_inr_on_a_broken_folder_prints_one_line_and_writes_nothing(small_dataset, tmp_path, breakage, says):
    d, sid = layout(small_dataset, tmp_path)
    if breakage == "meta_fps":
        set_meta_fps(d, sid, "nan")
    elif breakage == "huge_header":
        write_huge_header(d / "new_joint_vecs" / f"{sid}.npy", (10 ** 9, 263))
    else:
        std = np.load(d / "Std.npy")
        std[100:110] = 0.0
        np.save(d / "Std.npy", std)
    before = {p: p.read_bytes() for p in d.rglob("*") if p.is_file()}
    out = tmp_path / "x.pt"
    r = subprocess.run([sys.executable, os.path.join(ROOT, "train_inr.py"), "--data", "humanml3d", "--data-dir",
                        str(d), "--out", str(out), "--steps", "1", "--device", "cpu"],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith("error: ") and r.stderr.strip().count("\n") == 0 and says in r.stderr, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad"]          # no checkpoint, no temporary file
    assert {p: p.read_bytes() for p in d.rglob("*") if p.is_file()} == before
