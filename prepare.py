"""
Turn raw motion sources into this project's dataset layout (HumanML3D's, plus meta.csv with each sequence's
native fps), keeping every sequence at its NATIVE framerate: the paper's point is to train on 120 fps
mocap as recorded rather than on HumanML3D's 20 fps copy of it.

    # AMASS (SMPL+H G npz files) cut and captioned by HumanML3D's index.csv, texts and splits
    python prepare.py amass --amass ~/amass_data --humanml3d ~/HumanML3D --body-model ~/body_models/smplh \
        --out data/amass
    python train_inr.py --data humanml3d --data-dir data/amass

    # HumanAct12 (ACTOR's humanact12poses.pkl), 12 action labels, captions = the action names
    python prepare.py humanact12 --pkl ~/HumanAct12Poses/humanact12poses.pkl --out data/humanact12
    python train_inr.py --data humanml3d --data-dir data/humanact12

    # the embedded dataset (synthetic.py), which train_inr.py otherwise writes on first use
    python prepare.py synthetic --out data/synthetic --num 2000

    python -m pytest -q tests/test_prepare.py     # a tiny body model and files built by the test, ~5 s

Every sequence goes through motion.uniform_skeleton (HumanML3D's target bone lengths) and motion.joints_to_features
at its own rate (velocities per frame at that rate, hml3d_frame0=False as for the embedded data). Output is
written to a temporary folder next to --out and renamed into place at the end; an existing --out is only
replaced with --force. Nothing is downloaded; nothing is unpickled except through a numpy-only unpickler.
"""
import argparse
import builtins
import csv
import io
import math
import os
import pickle
import re
import sys
import time
import zipfile
import zlib
from collections import Counter

import numpy as np
from tqdm import tqdm

import data
import guard
import motion
import writer

AMASS_LAYOUT = """expected inputs (nothing is downloaded):
  --amass DIR       AMASS 'SMPL+H G' archives from https://amass.is.tue.mpg.de, unpacked under HumanML3D's folder
                    names: DIR/CMU/01/01_01_poses.npz, DIR/KIT/..., DIR/BioMotionLab_NTroje/..., DIR/MPI_HDM05/...
  --body-model DIR  AMASS's SMPL+H body models (https://mano.is.tue.mpg.de, 'Extended SMPL+H model'):
                    DIR/male/model.npz, DIR/female/model.npz
  --humanml3d DIR   a clone of https://github.com/EricGuo5513/HumanML3D with HumanML3D/texts.zip unpacked:
                    DIR/index.csv, DIR/HumanML3D/texts/<id>.txt, DIR/HumanML3D/{train,val,test}.txt, and
                    (optional) pose_data/humanact12.zip unpacked: DIR/pose_data/humanact12/humanact12/*.npy"""

# ----------------------------------------------------------------------------------------------
# SMPL+H forward kinematics (the body model's joints, as AMASS's body model computes Jtr)
# ----------------------------------------------------------------------------------------------
BODY_JOINTS = 22          # SMPL+H joints 0..21 are the SMPL body joints, in motion.SMPL22's order
NUM_BETAS = 10            # HumanML3D's raw_pose_processing uses the first 10 shape coefficients


# what np.load raises for a truncated or corrupt .npz: a damaged .npy's errors, and zipfile's (a bad or encrypted
# member, an unknown compression) and zlib's
NPZ_DAMAGE = (*data.NPY_DAMAGE, zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError)


def check_npz(f, path):
    """Each array's .npy header in an np.load'ed archive against the bytes the archive holds for it, before numpy
    allocates what the header claims (a truncated or corrupt one may claim 10^11 values)."""
    for info in f.zip.infolist():
        with f.zip.open(info) as m:
            version = np.lib.format.read_magic(m)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read(m)
        if not dtype.hasobject and math.prod(shape) * dtype.itemsize > info.file_size:   # objects: np.load refuses
            raise data.DataError(f"{path}: {info.filename} claims shape {shape} of {dtype} but the archive holds "
                                 f"{info.file_size:,} bytes for it: truncated or corrupt")


def load_body_model(path):
    """An SMPL+H model.npz -> dict(J (K, 3) rest joints, Jdirs (K, 3, B) their shape directions, parents (K,)).
    J = J_regressor @ (v_template + shapedirs · betas) is linear in betas, so it is regressed once here."""
    try:
        with np.load(path, allow_pickle=False) as f:
            check_npz(f, path)
            m = {k: np.asarray(f[k], dtype=np.float64)
                 for k in ("v_template", "shapedirs", "J_regressor", "kintree_table")}
    except FileNotFoundError:
        raise data.DataError(f"body model {path} not found\n{AMASS_LAYOUT}") from None
    except ValueError as e:   # object arrays (a scipy matrix, chumpy) or a .pkl: loading would run pickle
        raise data.DataError(f"{path}: this model file needs pickle to load ({e}); refusing. Use the npz models "
                             f"AMASS distributes (body_models/smplh/<gender>/model.npz)") from None
    except (KeyError, *NPZ_DAMAGE) as e:
        raise data.DataError(f"{path}: not an SMPL+H model.npz, or a truncated or corrupt one ({e})") from None
    bad = [k for k, v in m.items() if not np.isfinite(v).all()]
    if bad:
        raise data.DataError(f"{path}: non-finite values (NaN or inf) in {', '.join(bad)}: a damaged model file")
    kin = m["kintree_table"].astype(np.int64)         # (2, K): parent ids over joint ids; the root's is 2^32-1 or -1
    K = kin.shape[1]
    parents = np.full(K, -1)
    parents[kin[1]] = np.where((kin[0] >= 0) & (kin[0] < K), kin[0], -1)
    if K < BODY_JOINTS or any(not (-1 <= parents[j] < j) for j in range(BODY_JOINTS)) or parents[0] != -1:
        raise data.DataError(f"{path}: kintree_table does not start with the 22 SMPL body joints")
    J = m["J_regressor"] @ m["v_template"]                                  # (K, 3)
    Jdirs = np.einsum("kv,vcb->kcb", m["J_regressor"], m["shapedirs"])      # (K, 3, B)
    return {"J": J, "Jdirs": Jdirs, "parents": parents}


def rodrigues(aa):
    """(..., 3) axis-angle -> (..., 3, 3): R = I + sin θ K + (1 − cos θ) K², K the unit axis's cross matrix."""
    theta = np.linalg.norm(aa, axis=-1, keepdims=True)[..., None]          # (..., 1, 1)
    x, y, z = np.moveaxis(aa, -1, 0)
    zero = np.zeros_like(x)
    K = np.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(aa.shape[:-1] + (3, 3))
    K = K / np.maximum(theta, 1e-12)                                        # unit axis; θ = 0 gives K = 0, R = I
    return np.eye(3) + np.sin(theta) * K + (1 - np.cos(theta)) * (K @ K)


def smplh_joints(poses, trans, betas, model):
    """(T, 3·52) axis-angle poses, (T, 3) trans, betas -> (T, 22, 3) body joints in AMASS's z-up world.
    A joint's global transform is its parent's times [R_j | J_j − J_parent]; the root turns about J_0."""
    b = np.zeros(model["Jdirs"].shape[-1])
    n = min(NUM_BETAS, len(b), len(betas))
    b[:n] = np.asarray(betas, dtype=np.float64)[:n]
    J = model["J"] + model["Jdirs"] @ b                                     # (K, 3) this body's rest joints
    R = rodrigues(np.asarray(poses, dtype=np.float64)[:, :3 * BODY_JOINTS].reshape(len(poses), BODY_JOINTS, 3))
    glob = np.zeros(R.shape)                                                # (T, 22, 3, 3)
    pos = np.zeros(R.shape[:2] + (3,))                                      # (T, 22, 3)
    for j, p in enumerate(model["parents"][:BODY_JOINTS]):                  # parents come first (checked on load)
        if p < 0:
            glob[:, j], pos[:, j] = R[:, j], J[j] + trans
        else:
            glob[:, j] = glob[:, p] @ R[:, j]
            pos[:, j] = pos[:, p] + glob[:, p] @ (J[j] - J[p])
    return pos


# ----------------------------------------------------------------------------------------------
# HumanML3D's raw_pose_processing conventions
# ----------------------------------------------------------------------------------------------
# AMASS is z-up. HumanML3D maps (x, y, z) -> (x, z, y) and later negates x, i.e. (−x, z, y): a proper
# rotation (det +1) to y-up. HumanAct12's joints are used as they are (already y-up, HumanML3D issue #124).
def z_up_to_y_up(p):
    return p[..., [0, 2, 1]] * np.array([-1.0, 1.0, 1.0])


# static T-poses that HumanML3D cuts off the start of some subsets, in its 20 fps frames (3 s, 1 s, 0.5 s)
TRIM_HML_FRAMES = {"Eyes_Japan_Dataset": 60, "MPI_HDM05": 60, "TotalCapture": 20, "MPI_Limits": 20,
                   "Transitions_mocap": 10}
_RIGHT, _LEFT = [2, 5, 8, 11, 14, 17, 19, 21], [1, 4, 7, 10, 13, 16, 18, 20]
HUMANACT12_FPS = 15.0     # "The fps of HumanAct12 is 15 actually" (its author, HumanML3D issue #124), although
# HumanML3D puts its frames unchanged into its 20 fps dataset. ACTOR's 12 coarse classes (HumanAct12Poses), labels 0..11:
HUMANACT12_ACTIONS = ("warm_up", "walk", "run", "jump", "drink", "lift_dumbbell", "sit", "eat", "turn_steering_wheel",
                      "phone", "boxing", "throw")


def hml3d_stride(fps):
    """HumanML3D keeps every int(fps / 20)-th frame, so its 'frame k' is native frame k·stride. That is k/20 s
    only when fps is a multiple of 20 (CMU 120, KIT 100 ...): SSM_synced (59.99999 fps, stride 2) and
    Eyes_Japan (250 fps, stride 12) are not, 129 sequences (HumanML3D issue #176). Their captions describe
    the frames HumanML3D kept, so we cut at k·stride, not at k/20 s (which would be 1.5x later for SSM)."""
    return max(1, int(fps / 20))


def hml3d_segment(source, start, end, fps):
    """Native frames [a, b) holding the motion that HumanML3D's clip (index.csv start..end) holds: its
    subset's head trim, then start..end, all in its strided frames, times the stride. Every native frame in
    between is kept: a 120 fps clip 20..60 is native frames 120..360, 240 frames (2.0 s of intervals)."""
    trim = next((n for name, n in TRIM_HML_FRAMES.items() if name in source), 0)
    stride = hml3d_stride(fps)
    return (trim + start) * stride, (trim + end) * stride


def mirror(joints):
    """HumanML3D's left-right mirror: x negated, left and right joints swapped. (T, 22, 3) -> (T, 22, 3)."""
    perm = np.arange(joints.shape[1])
    perm[_RIGHT], perm[_LEFT] = _LEFT, _RIGHT
    return joints[:, perm] * np.array([-1.0, 1.0, 1.0])


_SIDE_WORDS = {"left": "right", "right": "left", "clockwise": "counterclockwise", "counterclockwise": "clockwise",
               "anticlockwise": "clockwise", "counter-clockwise": "clockwise"}


def mirror_text(line):
    """Swap left/right and clockwise/counterclockwise in a caption line (caption and tokens), as HumanML3D's
    mirrored texts do; the capitalisation of the first letter is kept."""
    def swap(m):
        w = _SIDE_WORDS[m.group(0).lower()]
        return w.capitalize() if m.group(0)[0].isupper() else w
    return re.sub(r"\b(counter-clockwise|counterclockwise|anticlockwise|clockwise|left|right)\b", swap, line,
                  flags=re.IGNORECASE)


def scale_text_times(line, factor):
    """Rescale a caption line's '#start#end' seconds (HumanML3D's 20 fps clock) to native seconds."""
    parts = line.split("#")
    if len(parts) >= 4 and factor != 1.0:
        try:
            parts[-2], parts[-1] = (f"{float(t) * factor:g}" for t in parts[-2:])
        except ValueError:
            pass                          # left as written: data.read_texts names the line when it is loaded
    return "#".join(parts)


# ----------------------------------------------------------------------------------------------
# Writing the layout
# ----------------------------------------------------------------------------------------------


def sequence_features(joints, fps):
    """(T, ≥22, 3) y-up joints -> (features (T-1, 263) per frame at fps, joints recovered from them (T-1, 22, 3)),
    as HumanML3D's motion_representation (uniform skeleton, then features; new_joints = recover_from_ric)."""
    x = motion.joints_to_features(motion.uniform_skeleton(joints[:, :BODY_JOINTS], motion.SMPL22), motion.SMPL22, fps=fps,
                                hml3d_frame0=False)
    return x, motion.features_to_joints(x).astype(np.float32)


def _add(writer, sid, joints, fps, lines, action="", train=False):
    """Features and recovered joints of one sequence into the writer.DatasetWriter; False when it is dropped."""
    if len(joints) < 2:                   # no feature row: a velocity needs two frames
        writer.dropped.append(sid)
        return False
    x, rec = sequence_features(joints, fps)
    return writer.add(sid, x, rec, fps, lines, action, train)


def _open_writer(args):
    """The one writer of the layout (writer.DatasetWriter) for --out: an existing --out only with --force and only
    a dataset nerm wrote; never an input of this command nor a folder holding one (guard.claim)."""
    inputs = [args.pkl] if args.source == "humanact12" else [args.amass, args.humanml3d, args.body_model]
    return writer.DatasetWriter(args.out, motion.SMPL22, force=args.force, inputs=inputs)


def _read_lines(path):
    """Non-empty lines of a UTF-8 text file; [] when there is no such file."""
    if not os.path.exists(path):
        return []
    return [line.strip() for line in io.StringIO(data.read_text(path), newline=None) if line.strip()]


def _summary(writer, skipped):
    rates = Counter(fps for _, fps, _ in writer.meta)
    print(f"wrote {len(writer.meta)} sequences to {writer.out}; fps: "
          + ", ".join(f"{f:g} ({n})" for f, n in sorted(rates.items())))
    for why, n in skipped.items():
        print(f"skipped {n}: {why}")
    if writer.dropped:
        print(f"dropped {len(writer.dropped)} (under 2 frames or non-finite features): {' '.join(writer.dropped[:10])}")


# ----------------------------------------------------------------------------------------------
# AMASS + HumanML3D
# ----------------------------------------------------------------------------------------------


def read_amass(path):
    """An AMASS npz -> (poses (T, ≥66), trans (T, 3), betas, fps, gender), without pickle."""
    try:
        with np.load(path, allow_pickle=False) as f:
            check_npz(f, path)
            fps = f["mocap_framerate"] if "mocap_framerate" in f.files else f["mocap_frame_rate"]
            gender = np.asarray(f["gender"]).item()
            poses, trans, betas, fps = f["poses"], f["trans"], f["betas"], fps.item()
    except (KeyError, *NPZ_DAMAGE) as e:
        raise data.DataError(f"{path}: not an AMASS pose file (poses, trans, betas, mocap_framerate, gender), or a "
                             f"truncated or corrupt one: {e}") from None
    gender = (gender.decode() if isinstance(gender, bytes) else str(gender)).strip().lower()
    if poses.ndim != 2 or poses.shape[1] < 3 * BODY_JOINTS or trans.shape != (len(poses), 3):
        raise data.DataError(f"{path}: poses {poses.shape} / trans {trans.shape} are not (T, 156) / (T, 3)")
    for name, a in (("poses", poses), ("trans", trans), ("betas", betas)):
        if a.dtype.kind not in "fiu":
            raise data.DataError(f"{path}: {name} holds {a.dtype} values, expected numbers")
        if not np.isfinite(a).all():
            raise data.DataError(f"{path}: non-finite values (NaN or inf) in {name}, frame "
                                 f"{int(np.argwhere(~np.isfinite(a))[0][0])}: a damaged capture")
    return poses, trans, betas, data.check_fps(fps, f"{path}: mocap_framerate"), gender


def read_index(path, amass, pose_data, limit=0):
    """HumanML3D's index.csv -> its first limit rows (0: all) as (source as written, the file it names, whether it
    is humanact12, start, end, new name). An AMASS source is its .npz under amass, a humanact12 one its joints .npy
    under pose_data (HumanML3D's humanact12.zip); neither may leave its folder, and every new name, which names
    files under --out, is a plain file name and given once."""
    rows, seen = [], {}
    reader = csv.DictReader(io.StringIO(data.read_text(path), newline=""))
    for r in reader:
        where = f"{path}:{reader.line_num}"
        try:
            source, start, end, name = r["source_path"], int(r["start_frame"]), int(r["end_frame"]), r["new_name"]
            rel = source.replace("\\", "/").split("pose_data/", 1)[-1]      # after HumanML3D's ./pose_data/
        except (KeyError, ValueError, TypeError, AttributeError):
            raise data.DataError(f"{where}: expected HumanML3D's columns source_path,start_frame,end_frame,new_name, "
                                 "frames as whole numbers") from None
        sid = guard.plain(name.rsplit(".", 1)[0], f"{where} (new_name)")
        if sid in seen:
            raise data.DataError(f"{where}: new_name {sid} appears twice (also on line {seen[sid]}); expected once")
        seen[sid] = reader.line_num
        ha12 = "humanact12" in source     # joint positions already (HumanML3D's humanact12.zip), whole files
        file = guard.inside(pose_data if ha12 else amass, rel, f"{where} (source_path)")
        # index.csv names HumanML3D's .npy of an AMASS source; AMASS holds its .npz
        rows.append((source, file if ha12 else os.path.splitext(file)[0] + ".npz", ha12, start, end, sid))
        if len(rows) == limit:
            break
    return rows


def prepare_amass(args):
    hml, sub = args.humanml3d, os.path.join(args.humanml3d, "HumanML3D")
    base = sub if os.path.isdir(os.path.join(sub, "texts")) else hml
    index_path, texts = os.path.join(hml, "index.csv"), os.path.join(base, "texts")
    split_paths = {s: os.path.join(base, f"{s}.txt") for s in ("train", "val", "test")}
    for need in (args.amass, args.body_model, index_path, texts, *split_paths.values()):
        if not os.path.exists(need):
            raise data.DataError(f"{need} not found\n{AMASS_LAYOUT}")
    rows = read_index(index_path, args.amass, os.path.join(hml, "pose_data"), args.limit)
    splits = {s: _read_lines(p) for s, p in split_paths.items()}
    train = set(splits["train"])
    by_source = {}
    for source, path, ha12, start, end, sid in rows:
        by_source.setdefault((source, path, ha12), []).append((start, end, sid))
    models, skipped = {}, Counter()
    with _open_writer(args) as writer:
        for (source, path, ha12), segments in tqdm(by_source.items(), desc="sources"):
            if not os.path.exists(path):
                subset = "humanact12" if ha12 else os.path.relpath(path, args.amass).split(os.sep)[0]
                why = f"sequences whose source is missing ({subset})"
                skipped[why] += 2 * len(segments)
                continue
            if ha12:
                joints = data.load_npy(path, (None, None, 3), "HumanML3D's humanact12 joints, a (T, 24, 3) float array")
                if joints.shape[1] < BODY_JOINTS:
                    raise data.DataError(f"{path}: expected HumanML3D's humanact12 joints (T, 24, 3), got shape "
                                         f"{joints.shape}")
                joints, fps, stride = joints[:, :BODY_JOINTS], args.humanact12_fps, 1
            else:
                poses, trans, betas, fps, gender = read_amass(path)
                g = "male" if gender == "male" else "female"    # HumanML3D loads the male and female models only
                if g not in models:
                    models[g] = load_body_model(os.path.join(args.body_model, g, "model.npz"))
                joints, stride = z_up_to_y_up(smplh_joints(poses, trans, betas, models[g])), hml3d_stride(fps)
            clock = 20.0 * stride / fps       # native seconds per second of HumanML3D's 20 fps playback
            for start, end, sid in segments:
                a, b = (0, len(joints)) if ha12 else hml3d_segment(source, start, end, fps)
                lines = _read_lines(os.path.join(texts, sid + ".txt"))
                mlines = _read_lines(os.path.join(texts, "M" + sid + ".txt")) or [mirror_text(c) for c in lines]
                for name, clip, caps in ((sid, joints[a:b], lines), ("M" + sid, mirror(joints[a:b]), mlines)):
                    if not caps:
                        skipped["sequences without a caption file"] += 1
                        continue
                    _add(writer, name, clip, motion.round_fps(fps), [scale_text_times(c, clock) for c in caps],
                         train=name in train)
        if not writer.meta:
            raise data.DataError(f"no sequence could be made from {args.amass}\n{AMASS_LAYOUT}")
        writer.finish(splits)
    _summary(writer, skipped)


# ----------------------------------------------------------------------------------------------
# HumanAct12
# ----------------------------------------------------------------------------------------------
# What a pickle of numpy arrays in plain containers may ask for; anything else (os.system, eval, a class)
# is refused before it is called. Both numpy 1 (numpy.core) and numpy 2 (numpy._core) spellings are mapped
# to this numpy's own functions, and what they build is checked first: numpy trusts a pickle's shapes and dtypes
# (an object array whose state lists fewer items than its shape crashes it; bytes(10**11) is a short pickle).
_NP_RECONSTRUCT, _NP_SCALAR = np.ndarray(0).__reduce__()[0], np.float64(0).__reduce__()[0]


def _latin1(text, encoding="latin1"):
    """_codecs.encode as protocol-2 pickles use it: array bytes stored as latin-1 text; no other codec."""
    if encoding.replace("-", "").lower() != "latin1":
        raise data.DataError(f"refusing to unpickle _codecs.encode(..., {encoding!r}): only latin1 is used for arrays")
    return text.encode("latin1")


def _numbers(dtype):
    """dtype, when it holds plain numbers: a pickle sets a dtype's state as it likes (object pointers, a 10^11-byte
    void), so nothing is built from one before this check."""
    if not (isinstance(dtype, np.dtype) and dtype.kind in "biufc" and not dtype.hasobject and dtype.names is None
            and dtype.subdtype is None):
        raise data.DataError(f"refusing to unpickle an array or scalar of {dtype!r}: only numbers are allowed")
    return dtype


class _Array(np.ndarray):
    """numpy.ndarray as a pickle names it: made empty by _reconstruct, then filled by __setstate__ (BUILD) once its
    dtype is numbers and its size is charged to the load's budget (charge); never made from a shape."""

    def __new__(cls, *args, **kwargs):
        raise data.DataError("refusing to unpickle numpy.ndarray(...): arrays are only rebuilt from their bytes")

    def __setstate__(self, state):                 # (version, shape, dtype, is_fortran, raw data)
        shape, dtype = state[-4], _numbers(state[-3])
        self.charge(math.prod(shape) * dtype.itemsize)
        super().__setstate__(state)


def _reconstruct(cls, shape, dtype):
    """numpy's first step of an array: an empty one (numpy's pickles ask for shape (0,)), which BUILD fills."""
    if not (isinstance(cls, type) and issubclass(cls, _Array)) or math.prod(shape) != 0:
        raise data.DataError("refusing to unpickle _reconstruct(...) of anything but an empty numpy.ndarray")
    return _NP_RECONSTRUCT(cls, shape, dtype)


def _scalar(dtype, *raw):
    """numpy's scalar(dtype, bytes): a numpy number."""
    return _NP_SCALAR(_numbers(dtype), *raw)


_SAFE_GLOBALS = {("numpy", "ndarray"): _Array, ("numpy", "dtype"): np.dtype, ("_codecs", "encode"): _latin1}
for _mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _SAFE_GLOBALS[(_mod, "_reconstruct")] = _reconstruct
    _SAFE_GLOBALS[(_mod, "scalar")] = _scalar
for _name in ("dict", "list", "tuple", "set", "frozenset", "int", "float", "complex", "str", "bytes", "bytearray"):
    _SAFE_GLOBALS[("builtins", _name)] = getattr(builtins, _name)


class NumpyUnpickler(pickle.Unpickler):
    """pickle.Unpickler that only builds numpy arrays of numbers, numpy scalars and builtin containers, and at most
    `limit` bytes of them: each allowed call is charged what it makes (bytes(n) before it is made) and each array
    what its state asks for before numpy allocates it, so a small file cannot ask for 10^11 bytes."""

    def __init__(self, file, limit, **kwargs):
        super().__init__(file, **kwargs)
        self.limit = self.left = limit
        self.array = type("ndarray", (_Array,), {"charge": staticmethod(self.charge)})   # arrays of this load

    def charge(self, n):
        self.left -= n
        if self.left < 0:
            raise data.DataError(f"refusing to unpickle more than {self.limit:,} bytes of arrays and objects, more "
                                 "than a pickle of this size holds")

    def find_class(self, module, name):
        module = "builtins" if module == "__builtin__" else module      # protocol 2's name for it
        if (module, name) not in _SAFE_GLOBALS:
            raise data.DataError(f"refusing to unpickle {module}.{name}: only numpy arrays and plain containers are "
                                 f"allowed (loading anything else could run code)")
        f = _SAFE_GLOBALS[(module, name)]
        if f is _Array:
            return self.array

        def call(*args):
            if f in (bytes, bytearray) and args and isinstance(args[0], int):
                self.charge(args[0])               # n zero bytes from a number in the pickle
            out = f(*args)
            self.charge(sys.getsizeof(out))        # a copy: of a memoized string, a thousand times over
            return out
        return call


def load_humanact12(path):
    """humanact12poses.pkl -> (list of (T, 22, 3) joints, list of labels 0..11), through NumpyUnpickler."""
    try:
        with open(path, "rb") as f:   # a pickle of arrays holds its data once (protocol 2: as text to encode)
            d = NumpyUnpickler(f, 4 * os.fstat(f.fileno()).st_size + 2 ** 20, encoding="latin1").load()
    except FileNotFoundError:
        raise data.DataError(f"{path} not found: expected ACTOR's humanact12poses.pkl (its README's download of "
                             f"HumanAct12Poses; HumanAct12 itself: github.com/EricGuo5513/action-to-motion)") from None
    except data.DataError as e:
        raise data.DataError(f"{path}: {e}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as e:
        raise data.DataError(f"{path}: not a readable pickle ({type(e).__name__}: {e})") from None
    if not isinstance(d, dict) or "joints3D" not in d or "y" not in d or len(d["joints3D"]) != len(d["y"]):
        raise data.DataError(f"{path}: expected a dict with 'joints3D' (list of (T, 24, 3)) and 'y' (labels), "
                             f"of equal length")
    try:
        joints, labels = [np.asarray(j, dtype=np.float64) for j in d["joints3D"]], [int(y) for y in d["y"]]
    except (TypeError, ValueError) as e:
        raise data.DataError(f"{path}: 'joints3D' must hold numeric arrays and 'y' integer labels ({e})") from None
    for i, (j, y) in enumerate(zip(joints, labels)):
        if j.ndim != 3 or j.shape[1] < BODY_JOINTS or j.shape[2] != 3 or not 0 <= y < len(HUMANACT12_ACTIONS):
            raise data.DataError(f"{path}: sequence {i}: joints {j.shape}, label {y}: expected (T, 24, 3) and 0..11")
        if not np.isfinite(j).all():
            raise data.DataError(f"{path}: sequence {i}: non-finite values (NaN or inf) in its joints")
    return [j[:, :BODY_JOINTS] for j in joints], labels


def turn_up_to_y(joints_list):
    """HumanML3D uses HumanAct12's joints as y-up; check it on the whole set (the head above the pelvis on
    average) and turn a y-down copy 180° about x (a rotation: left stays left). Returns (joints, turned)."""
    up = sum((j[:, 15] - j[:, 0]).sum(0) for j in joints_list)
    if np.abs(up).argmax() != 1:
        raise data.DataError(f"HumanAct12's head-pelvis direction is mostly along {'xyz'[np.abs(up).argmax()]}, "
                             f"expected y (HumanML3D's y-up joints)")
    if up[1] > 0:
        return joints_list, False
    return [j * np.array([1.0, -1.0, -1.0]) for j in joints_list], True


def prepare_humanact12(args):
    joints, labels = load_humanact12(args.pkl)
    joints, turned = turn_up_to_y(joints)
    if turned:
        print("note: the joints were y-down; turned 180° about x")
    # deterministic split, per action: its 9th of every 10 sequences (in file order) goes to val, its 10th to test
    seen, splits = {}, {"train": [], "val": [], "test": []}
    with _open_writer(args) as writer:
        for i, (j, y) in enumerate(tqdm(list(zip(joints, labels)), desc="sequences")):
            k = seen[y] = seen.get(y, -1) + 1
            split = "val" if k % 10 == 8 else "test" if k % 10 == 9 else "train"
            words = HUMANACT12_ACTIONS[y].replace("_", " ")
            line = f"{words}#{' '.join(w + '/OTHER' for w in words.split())}#0.0#0.0"
            sid = f"{i:04d}"
            if _add(writer, sid, j, args.fps, [line], action=HUMANACT12_ACTIONS[y], train=split == "train"):
                splits[split].append(sid)
        writer.finish(splits)
    _summary(writer, {})


def make_parser():
    Int, Float, Path = guard.Int, guard.Float, guard.Path   # each flag's type states its range (guard.py)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="source", required=True)
    p = sub.add_parser("amass", help="AMASS + HumanML3D's index.csv, texts and splits -> native-fps dataset")
    p.add_argument("--amass", required=True, type=Path("folder"), help="AMASS SMPL+H G npz files, a folder per subset (CMU, KIT ...)")
    p.add_argument("--humanml3d", required=True, type=Path("folder"),
                   help="clone of github.com/EricGuo5513/HumanML3D with HumanML3D/texts.zip unpacked")
    p.add_argument("--body-model", required=True, type=Path("folder"), help="AMASS's body_models/smplh: male/model.npz, female/model.npz")
    p.add_argument("--humanact12-fps", type=Float(data.MIN_FPS, data.MAX_FPS), default=HUMANACT12_FPS,
                   help="native rate of index.csv's HumanAct12 rows (15 fps, HumanML3D issue #124)")
    p.add_argument("--limit", type=Int(0, 10**7), default=0, help="only the first N rows of index.csv (a quick trial; 0 = all)")
    h = sub.add_parser("humanact12", help="ACTOR's humanact12poses.pkl -> native-fps dataset with action labels")
    h.add_argument("--pkl", required=True, type=Path("file"), help="humanact12poses.pkl (read with a numpy-only unpickler)")
    h.add_argument("--fps", type=Float(data.MIN_FPS, data.MAX_FPS), default=HUMANACT12_FPS,
                   help="native rate of HumanAct12 (15 fps, HumanML3D issue #124)")
    for q in (p, h):
        q.add_argument("--out", required=True, type=Path("any"), help="output dataset folder (written atomically)")
        q.add_argument("--force", action="store_true", help="replace --out if it is a dataset nerm wrote")
    s = sub.add_parser("synthetic", help="the embedded dataset (synthetic.py), 20-120 fps, with captions")
    s.add_argument("--out", type=Path("any"), default="data/synthetic", help="output folder; must not exist yet")
    s.add_argument("--num", type=Int(10, 10**6), default=2000, help="number of sequences")
    s.add_argument("--seed", type=Int(0, 2**31 - 1), default=0, help="generator seed")
    return parser


def prepare_synthetic(args):
    import synthetic   # the embedded dataset's generator
    t0 = time.time()
    n = synthetic.write_dataset(args.out, args.num, args.seed)
    print(f"wrote {n} sequences to {args.out} in {time.time() - t0:.1f} s")


def main(argv=None):
    args = make_parser().parse_args(argv)
    {"amass": prepare_amass, "humanact12": prepare_humanact12, "synthetic": prepare_synthetic}[args.source](args)


if __name__ == "__main__":
    guard.report_errors()
    main()
