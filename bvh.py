"""
BVH motion files: read any skeleton as joint positions, write joint positions back as a BVH, and use a folder
of BVH files as a dataset (train_inr.py --data bvh).

    joints, skeleton, fps = read_bvh("walk.bvh")                   # (T, J, 3) metres, Skeleton, 1 / Frame Time
    write_bvh("out.bvh", joints, motion.SMPL22, fps=20)              # positions -> a BVH that Blender imports
    bvh = read_bvh_channels("walk.bvh"); write_bvh_channels("copy.bvh", bvh)   # exact raw round trip
    train = load_bvh_folder("my_bvh_folder", "train")              # a data.MotionSet, as data.load_dataset gives
    python -m pytest -q tests/test_bvh.py tests/test_bvh_folder.py

Conventions (BVH's own, as Blender's importer reads them):
- Euler angles in degrees, intrinsic, in the listed order: CHANNELS ... Zrotation Yrotation Xrotation means
  R = Rz · Ry · Rx. A child sits at parent_pos + parent_global_rot @ t, where t is the child's OFFSET, or its
  position channels when it has them (any joint may: Bandai writes 6 channels on every joint).
- Y is up (not checked). End Sites are not joints. Lines may end in LF, CRLF or a mix of both.
- Units: read_bvh(scale=None) guesses metres per file unit from the body size (_guess_scale).

This module builds on data.py (skeletons, features, MotionSet); data.py never imports it.
"""
import csv
import io
import os
import zlib
from dataclasses import dataclass, replace

import numpy as np

import data
import motion

BVH_LAYOUT = """expected layout (a folder of BVH files, --data bvh):
  DIR/**/*.bvh                  one hierarchy (same joints and parents, any order), any framerate per file;
                                links to files are read, links to folders are not followed
  DIR/texts/<stem>.txt          optional captions: plain lines, or HumanML3D's 'caption#tokens#start#end'
  DIR/labels.csv                optional: file,caption[,action] (one row per caption; file = stem or name.bvh)
  DIR/train.txt val.txt test.txt  optional, stems; else files ordered by CRC-32 of the stem: last 10% (at least
                                one) test, the 10% before val, the rest train (under 3 files: all in every split)"""

# ----------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------


@dataclass
class BVHData:
    """A BVH file as written: joints in file (depth-first) order, channels and motion untouched."""
    names: list         # (J,) joint names
    parents: list       # (J,) parent index, -1 for a root
    offsets: np.ndarray  # (J, 3) OFFSET of each joint, file units
    channels: list      # (J,) tuple of channel names per joint, e.g. ("Zrotation", "Yrotation", "Xrotation")
    end_sites: list     # [(joint, (3,) offset)]: End Site blocks, kept only to write the file back
    motion: np.ndarray  # (T, C) one row per frame, C = total channel count
    frame_time: float   # seconds per frame: fps = 1 / frame_time


_CHANNELS = {a + kind for a in "XYZ" for kind in ("position", "rotation")}


class _Malformed(ValueError):
    """A syntax error in a BVH file; read_bvh_channels puts the file's path in front of the message."""


def read_bvh_channels(path):
    """Parse a BVH file into BVHData; an unreadable or malformed file raises data.DataError('{path}: line N: ...').

    A BVH file is a HIERARCHY block (nested joints with OFFSET and CHANNELS) and a MOTION block (a header,
    then one line of numbers per frame). The two are read by separate parts below."""
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as f:
            lines = f.read().splitlines()         # text mode already maps CRLF and lone CR to LF
    except OSError as e:
        raise data.DataError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        m = next((i for i, line in enumerate(lines) if line.strip().upper() == "MOTION"), None)
        if m is None:
            raise _Malformed(f"no MOTION line in its {len(lines)} lines")
        names, parents, offsets, channels, end_sites = _parse_hierarchy(_Words(lines[:m], motion_line=m + 1))
        columns = [f"{name} {c}" for name, chans in zip(names, channels) for c in chans]
        motion, frame_time = _parse_motion(lines, m, columns)
    except _Malformed as e:
        raise data.DataError(f"{path}: {e}") from None
    return BVHData(names, parents, offsets, channels, end_sites, motion, frame_time)


class _Words:
    """The HIERARCHY block as a stream of words with their line numbers. BVH separates its items by any
    whitespace, line breaks included (an OFFSET's three numbers may span lines), except that a joint's name
    is the rest of its line."""

    def __init__(self, lines, motion_line):
        self.words = [(w, i + 1) for i, line in enumerate(lines) for w in line.split()]   # (word, line number)
        self.k = 0                                # the next word to read
        self.motion_line = motion_line            # where the block ends, for 'ends before' errors

    def more(self):
        return self.k < len(self.words)

    def take(self, what):
        """-> (word, line number) of the next word; `what` names it in the error when the block has ended."""
        if not self.more():
            raise _Malformed(f"line {self.motion_line}: HIERARCHY ends before {what}")
        self.k += 1
        return self.words[self.k - 1]

    def number(self, what):
        w, ln = self.take(what)
        try:
            return float(w)
        except ValueError:
            raise _Malformed(f"line {ln}: {what} {w!r} is not a number") from None

    def rest_of_line(self, ln):
        """The words left on line ln (a joint's name may hold spaces)."""
        out = []
        while self.more() and self.words[self.k][1] == ln:
            out.append(self.take("")[0])
        return out


def _parse_hierarchy(words):
    """HIERARCHY -> (names, parents, offsets (J, 3), channels, end_sites), joints in file (depth-first) order.

    A stack holds the open '{' blocks: a joint's index, or None for an End Site. A ROOT opens at depth 0, a JOINT
    inside another joint; OFFSET and CHANNELS belong to the innermost open block; '}' closes it."""
    w, ln = words.take("HIERARCHY")
    if w.upper() != "HIERARCHY":
        raise _Malformed(f"line {ln}: expected HIERARCHY, found {w!r}")
    names, parents, offsets, channels, end_sites = [], [], [], [], []
    stack = []
    while words.more():
        w, ln = words.take("")
        key = w.upper()
        if key in ("ROOT", "JOINT"):
            if (key == "ROOT") == bool(stack) or (stack and stack[-1] is None):
                raise _Malformed(f"line {ln}: {w} is not allowed here")
            name = " ".join(words.rest_of_line(ln))
            if not name:
                raise _Malformed(f"line {ln}: {w} without a name")
            names.append(name)
            parents.append(stack[-1] if stack else -1)
            offsets.append(None)
            channels.append(())
            _expect_brace(words, ln, f"{w} {name}")
            stack.append(len(names) - 1)
        elif key == "END":
            if words.take("Site")[0].upper() != "SITE" or not stack or stack[-1] is None:
                raise _Malformed(f"line {ln}: misplaced End Site")
            words.rest_of_line(ln)                # some exporters name the End Site: ignore it
            _expect_brace(words, ln, "End Site")
            end_sites.append([stack[-1], None])
            stack.append(None)
        elif key == "OFFSET" and stack:
            xyz = [words.number("OFFSET value") for _ in range(3)]
            if stack[-1] is None:
                end_sites[-1][1] = np.array(xyz)
            else:
                offsets[stack[-1]] = xyz
        elif key == "CHANNELS" and stack and stack[-1] is not None:
            channels[stack[-1]] = _read_channels(words, ln)
        elif w == "}" and stack:
            stack.pop()
        else:
            raise _Malformed(f"line {ln}: unexpected {w!r} in HIERARCHY")
    if stack or not names:
        raise _Malformed(f"line {words.motion_line}: HIERARCHY " + ("has an unclosed '{'" if stack else "has no ROOT"))
    missing = [n for n, o in zip(names, offsets) if o is None]
    if missing or any(e[1] is None for e in end_sites):
        raise _Malformed(f"no OFFSET for {missing or 'an End Site'}")
    return names, parents, np.array(offsets, dtype=np.float64), channels, end_sites


def _expect_brace(words, ln, after):
    if words.take("'{'")[0] != "{":
        raise _Malformed(f"line {ln}: expected '{{' after {after}")


def _read_channels(words, ln):
    """'CHANNELS n name1 ... namen' (the word CHANNELS already read) -> the n names."""
    n = words.number("channel count")
    chans = tuple(words.take("a channel name")[0] for _ in range(int(n)))
    bad = [c for c in chans if c[:1].upper() + c[1:].lower() not in _CHANNELS]
    if bad or n != int(n) or n < 0:
        raise _Malformed(f"line {ln}: bad CHANNELS {bad or n}")
    return chans


def _parse_motion(lines, m, columns):
    """The MOTION block after line index m: 'Frames: T', 'Frame Time: dt', then T lines of one number per
    channel (columns names them) -> (motion (T, C) float64, dt). Blank lines are skipped; line numbers in
    errors are the file's."""
    C = len(columns)
    body = [(i + 1, line) for i, line in enumerate(lines[m + 1:], start=m + 1) if line.strip()]
    header = {}
    for (ln, line), key in zip(body[:2], ("frames", "frame time")):
        name, _, value = line.partition(":")
        try:
            header[key] = (int if key == "frames" else float)(value)
        except ValueError:
            name = ""
        if name.strip().lower() != key:
            raise _Malformed(f"line {ln}: expected '{key.title()}: <number>', found {line.strip()!r}")
    if len(header) < 2:
        raise _Malformed(f"line {m + 1}: MOTION needs a 'Frames:' and a 'Frame Time:' line")
    T, dt = header["frames"], header["frame time"]
    if T < 1:
        raise _Malformed(f"line {body[0][0]}: 'Frames: {T}': a BVH file needs at least one frame")
    fps = 1.0 / dt if dt else np.inf             # nan stays nan, 1e-300 gives 1e300: both refused below
    if not data.MIN_FPS <= fps <= data.MAX_FPS:
        raise _Malformed(f"line {body[1][0]}: 'Frame Time: {dt!r}' means {fps:g} frames per second; {data.FPS_RULE}: "
                         f"a Frame Time of {1 / data.MAX_FPS:g} to {1 / data.MIN_FPS:g} s")
    rows = body[2:]
    values = [line.split() for _, line in rows]
    for (ln, _), v in zip(rows, values):
        if len(v) != C:
            raise _Malformed(f"line {ln}: {len(v)} values, expected {C} (one per channel)")
    if len(rows) < T:
        raise _Malformed(f"line {rows[-1][0] if rows else body[1][0]}: 'Frames: {T}' but {len(rows)} frame lines "
                         "(truncated?)")
    if len(rows) > T:
        raise _Malformed(f"line {rows[T][0]}: 'Frames: {T}' but {len(rows)} frame lines: set Frames to the "
                         "number of frame lines")
    try:
        motion = np.array(values, dtype=np.float64).reshape(T, C)
    except ValueError:                            # name the first word that is not a number
        for (ln, _), v in zip(rows, values):
            for x in v:
                try:
                    float(x)
                except ValueError:
                    raise _Malformed(f"line {ln}: {x!r} is not a number") from None
        raise
    bad = ~np.isfinite(motion)
    if bad.any():                                 # 'nan' and 'inf' parse as floats: no pose has them
        t, c = np.argwhere(bad)[0]
        raise _Malformed(f"line {rows[t][0]}: {values[t][c]!r} ({columns[c]}) is not a finite number")
    return motion, dt


def _axis_rotation(axis, rad):
    """(T,) angles -> (T, 3, 3) rotations about axis 0, 1, 2 (x, y, z), right-handed."""
    i, k = (axis + 1) % 3, (axis + 2) % 3
    R = np.zeros(rad.shape + (3, 3))
    R[:, axis, axis] = 1.0
    R[:, i, i], R[:, i, k], R[:, k, i], R[:, k, k] = np.cos(rad), -np.sin(rad), np.sin(rad), np.cos(rad)
    return R


def bvh_positions(bvh):
    """(T, J, 3) joint positions in file units: forward kinematics with the BVH channel semantics."""
    T, J = len(bvh.motion), len(bvh.names)
    pos, glob = np.zeros((T, J, 3)), np.zeros((T, J, 3, 3))
    col = 0
    for j, p in enumerate(bvh.parents):           # parents precede children in a BVH
        trans, rot = np.tile(bvh.offsets[j], (T, 1)), np.tile(np.eye(3), (T, 1, 1))
        for ch in bvh.channels[j]:
            axis, value = "XYZ".index(ch[0].upper()), bvh.motion[:, col]
            col += 1
            if ch[1:].lower() == "position":
                trans[:, axis] = value            # position channels replace the OFFSET
            else:
                rot = rot @ _axis_rotation(axis, np.radians(value))   # intrinsic: R = R_c1 R_c2 R_c3
        if p < 0:
            pos[:, j], glob[:, j] = trans, rot
        else:
            pos[:, j] = pos[:, p] + np.einsum("tij,tj->ti", glob[:, p], trans)
            glob[:, j] = glob[:, p] @ rot
    return pos


# metres per file unit, chosen by the body's size in file units (below the bound): metres, CMU's unit
# (1/0.45 inch = 0.0564 m; the cgspeed conversions keep it), inches, centimetres, millimetres
_UNIT_GUESSES = ((4.0, 1.0), (45.0, 0.0564), (110.0, 0.0254), (1000.0, 0.01), (np.inf, 0.001))


def _guess_scale(pos):
    """Metres per file unit. Size = the largest side of the joints' bounding box over all frames, leaving out
    joint 0 (Bandai's root stays at the origin while the body walks away): about the body height, or the arm
    span in a T-pose, whatever the pose. A 1.7 m person measures ~1.7 (m), ~30 (CMU), ~67 (in), ~170 (cm)."""
    body = pos[:, 1:] if pos.shape[1] > 1 else pos
    size = np.ptp(body, axis=1).max() if len(pos) else 0.0
    return next(scale for bound, scale in _UNIT_GUESSES if size < bound)


def read_bvh(path, scale=None):
    """(positions (T, J, 3) metres, Skeleton, fps) from a BVH file; scale = metres per file unit (None: guess).
    An unreadable or malformed file (a syntax error, a Frame Time outside data.FPS_RULE, NaN or inf in the motion,
    a Frames count that is not the number of frame lines) raises data.DataError naming the file and line."""
    bvh = read_bvh_channels(path)
    pos = bvh_positions(bvh)
    scale = _guess_scale(pos) if scale is None else scale
    fps = 1.0 / bvh.frame_time                   # keep the file's rate: .0083333 -> 120.0005 (motion.round_fps)
    off = bvh.offsets * scale
    # no bone for a root, nor for a joint whose distance to its parent changes (its position channels carry a
    # trajectory: Bandai's Hips under a static joint_Root, whose OFFSET even holds the start point, 4.6 m away)
    parents = np.asarray(bvh.parents)
    moving = np.ptp(np.linalg.norm(pos - pos[:, parents], axis=-1), axis=0) * scale > 1e-4 if len(pos) else 0
    off[(parents < 0) | moving] = 0.0
    name = str(path).replace("\\", "/").split("/")[-1].rsplit(".", 1)[0]
    return pos * scale, _bvh_skeleton(name, bvh.names, bvh.parents, off, fps), fps


def _bvh_skeleton(name, names, parents, off, fps):
    """A Skeleton from joint names, parents and (J, 3) rest offsets in metres (zero: no bone); the facing
    joints, feet and leg are guessed from the names."""
    lengths = np.linalg.norm(off, axis=1)
    dirs = np.divide(off, lengths[:, None], out=np.zeros_like(off), where=lengths[:, None] > 0)
    face, left, right, leg = _body_parts(names, parents)
    return motion.Skeleton(name=name, joint_names=tuple(names), parents=tuple(int(p) for p in parents),
                         rest_dirs=tuple(map(tuple, dirs.tolist())), bone_lengths=tuple(lengths.tolist()),
                         chains=_chains(parents), face_joints=face, feet_left=left, feet_right=right,
                         fps=float(fps), leg_joints=leg)


def _chains(parents):
    """Kinematic chains, each from the root or a branching joint down to a leaf (the first child continues
    the chain, the others start new ones): SMPL22's tree gives back motion.SMPL22.chains."""
    children = [[c for c, p in enumerate(parents) if p == j] for j in range(len(parents))]
    chains, todo = [], [[r] for r, p in enumerate(parents) if p < 0]
    while todo:
        chain = todo.pop(0)
        while children[chain[-1]]:
            first, *others = children[chain[-1]]
            todo += [[chain[-1], c] for c in others]
            chain.append(first)
        chains.append(tuple(chain))
    return tuple(chains)


def _side(name):
    """'l', 'r' or None from a joint name: LeftHip, lHip, LHipJoint, l_hip, UpperLeg_L, Hand.R ..."""
    n = name.split(":")[-1]                       # drop a namespace such as 'mixamorig:'
    low = n.lower()
    for word in ("left", "right"):
        if word in low:
            return word[0]
    if len(n) > 1 and n[0] in "lLrR" and (n[1] in "_.- " or n[1].isupper()):
        return n[0].lower()
    if len(n) > 1 and n[-1] in "lLrR" and n[-2] in "_.- ":
        return n[-1].lower()
    return None


# name keywords per body part, preferred first; ties go to the deepest joint (CMU's LeftHip below LHipJoint)
_PART_WORDS = {"hip": ("upperleg", "upleg", "thigh", "hip"), "shoulder": ("upperarm", "shoulder"),
               "ankle": ("ankle", "foot")}


def _body_parts(names, parents):
    """Guess (face_joints, feet_left, feet_right, leg_joints) from joint names; empty tuples when not found.
    The toe is the ankle's first child, the knee the right ankle's parent (HumanML3D measures the right leg)."""
    depth = []
    for p in parents:
        depth.append(depth[p] + 1 if p >= 0 else 0)

    def find(part, side):
        hits = [(rank, -depth[j], j) for j, n in enumerate(names) if _side(n) == side
                for rank, word in enumerate(_PART_WORDS[part]) if word in n.lower()]
        return min(hits)[2] if hits else None

    face = tuple(find(part, side) for part, side in (("hip", "r"), ("hip", "l"), ("shoulder", "r"), ("shoulder", "l")))
    feet = []
    for side in "lr":
        ankle = find("ankle", side)
        toe = [c for c, p in enumerate(parents) if p == ankle][:1] if ankle is not None else []
        feet.append(() if ankle is None else (ankle, *toe))
    leg = (parents[feet[1][0]], feet[1][0]) if feet[1] and parents[feet[1][0]] >= 0 else ()
    return (face if None not in face else ()), feet[0], feet[1], leg


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------


def write_bvh_channels(path, bvh, fmt=None):
    """Write BVHData. fmt=None writes each number as repr (the shortest text that parses back to the same
    float), so read -> write -> read is bit-identical; write_bvh passes '%.6f'. Line endings are LF."""
    num = repr if fmt is None else (lambda x: fmt % x)
    children = [[c for c, p in enumerate(bvh.parents) if p == j] for j in range(len(bvh.names))]
    out = ["HIERARCHY"]

    def block(j, ind):
        # one item per line, '{' alone: Blender's importer reads the lines after JOINT by position
        out.extend([f"{ind}{'JOINT' if bvh.parents[j] >= 0 else 'ROOT'} {bvh.names[j]}", ind + "{",
                    f"{ind}  OFFSET {' '.join(map(num, bvh.offsets[j].tolist()))}",
                    f"{ind}  CHANNELS {len(bvh.channels[j])} {' '.join(bvh.channels[j])}".rstrip()])
        for c in children[j]:
            block(c, ind + "  ")
        for _, off in (e for e in bvh.end_sites if e[0] == j):
            out.extend([ind + "  End Site", ind + "  {", f"{ind}    OFFSET {' '.join(map(num, off.tolist()))}",
                        ind + "  }"])
        out.append(ind + "}")

    for r in (j for j, p in enumerate(bvh.parents) if p < 0):
        block(r, "")
    out += ["MOTION", f"Frames: {len(bvh.motion)}", f"Frame Time: {bvh.frame_time!r}"]
    out += [" ".join(map(num, row)) for row in bvh.motion.tolist()]
    with open(path, "w", newline="\n") as f:
        f.write("\n".join(out) + "\n")


def _unit(v):
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return np.divide(v, n, out=np.zeros(np.broadcast(v, n).shape), where=n > 1e-12)


def _between(u, v):
    """(..., 3, 3) shortest-arc rotations taking direction u to direction v (HumanML3D's qbetween, motion.qbetween),
    plus the cases it leaves undefined: a zero vector gives the identity, opposite vectors a half-turn."""
    u, v = np.broadcast_arrays(_unit(u), _unit(v))
    q = np.concatenate([1.0 + (u * v).sum(-1, keepdims=True), np.cross(u, v)], axis=-1)   # (..., 4) w, xyz
    opposite = np.linalg.norm(q, axis=-1) < 1e-9
    if opposite.any():                            # any axis perpendicular to u will do
        uo = u[opposite]
        q[opposite] = np.concatenate([np.zeros((len(uo), 1)),
                                      _unit(np.cross(uo, np.eye(3)[np.abs(uo).argmin(-1)]))], axis=-1)
    return motion.quat_to_matrix(_unit(q))


def _kabsch(a, b):
    """(T, 3, 3) rotations R minimising sum_k |R a_k - b_k|^2 for rest vectors a (K, 3), posed b (T, K, 3)."""
    U, _, Vt = np.linalg.svd(np.einsum("ki,tkj->tij", a, b))
    V, Ut = np.swapaxes(Vt, -1, -2), np.swapaxes(U, -1, -2)
    D = np.tile(np.eye(3), (len(b), 1, 1))
    D[:, 2, 2] = np.where(np.linalg.det(V @ Ut) < 0, -1.0, 1.0)   # a rotation, never a reflection
    return V @ D @ Ut


def _euler_zyx(R):
    """(..., 3, 3) -> (..., 3) degrees (z, y, x) with R = Rz Ry Rx, the order written in CHANNELS."""
    cy = np.hypot(R[..., 0, 0], R[..., 1, 0])
    ok = cy > 1e-9                                # at y = ±90° only z ± x is defined: put it all in z
    z = np.where(ok, np.arctan2(R[..., 1, 0], R[..., 0, 0]), np.arctan2(-R[..., 0, 1], R[..., 1, 1]))
    x = np.where(ok, np.arctan2(R[..., 2, 1], R[..., 2, 2]), 0.0)
    return np.degrees(np.stack([z, np.arctan2(-R[..., 2, 0], cy), x], axis=-1))


_POS, _ROT = ("Xposition", "Yposition", "Zposition"), ("Zrotation", "Yrotation", "Xrotation")


def write_bvh(path, joints, skeleton=motion.SMPL22, fps=None, units="m", length_tol=1e-3):
    """Write (T, J, 3) joint positions (metres) on `skeleton` as a BVH; returns the BVHData written.

    Rotations come from positions: a joint with one child gets the swing that turns the child's rest offset
    (in the parent's posed frame) onto the posed bone, as HumanML3D's IK does. No single rotation can place
    the several children of a branching joint (SMPL's pelvis and spine3) when the input is not rigidly
    consistent, so those children also carry position channels (6 channels, as Bandai writes every joint),
    and the branching joint takes the best-fit (Kabsch) rotation of its children, so Blender shows a sensible
    orientation. This keeps the skeleton's own joints and names (no helper joints, no zero-length bones) and
    makes read_bvh(write_bvh(x)) == x for any x. Bones whose length varies by more than length_tol metres over
    the clip (a trajectory joint, generated motion) get position channels for the same reason; the others are
    rotations with OFFSET = rest_dir * mean length. units: 'm' or 'cm' in the file. Frame Time = 1/fps (%.8f).
    """
    x = np.asarray(joints, dtype=np.float64)
    T, J = x.shape[:2]
    if x.shape != (T, skeleton.num_joints, 3) or T == 0:
        raise ValueError(f"joints {x.shape} do not fit {skeleton.name}'s ({skeleton.num_joints}, 3) per frame")
    fps = skeleton.fps if fps is None else fps
    unit = {"m": 1.0, "cm": 100.0}[units]
    par = skeleton.parents
    kids = [[c for c, p in enumerate(par) if p == j] for j in range(J)]
    bone = x - x[:, [p if p >= 0 else j for j, p in enumerate(par)]]     # (T, J, 3), zero at the root
    lengths = np.linalg.norm(bone, axis=-1)                             # (T, J)
    dirs = np.asarray(skeleton.rest_dirs, dtype=np.float64)
    off = dirs * lengths.mean(0)[:, None]                               # (J, 3) OFFSETs, metres
    has_loc = [p < 0 or len(kids[p]) > 1 or np.ptp(lengths[:, j]) > length_tol
               or (not dirs[j].any() and lengths[:, j].mean() > length_tol) for j, p in enumerate(par)]

    glob = np.zeros((T, J, 3, 3))                 # global rotation of each joint's frame
    for j, p in enumerate(par):                   # parents precede children in our skeletons
        parent = glob[:, p] if p >= 0 else np.eye(3)
        if len(kids[j]) == 1:
            c = kids[j][0]
            glob[:, j] = _between(parent @ off[c], bone[:, c]) @ parent
        elif kids[j]:
            glob[:, j] = _kabsch(off[kids[j]], bone[:, kids[j]])
        else:
            glob[:, j] = parent                   # a leaf: nothing to aim, keep the parent's frame
    parent_glob = np.stack([glob[:, p] if p >= 0 else np.tile(np.eye(3), (T, 1, 1)) for p in par], 1)
    local = np.swapaxes(parent_glob, -1, -2) @ glob                           # (T, J, 3, 3)
    euler = _euler_zyx(local)                                                 # (T, J, 3) degrees
    loc = np.einsum("tjki,tjk->tji", parent_glob, np.where(np.array(par)[:, None] < 0, x, bone))  # parent frame

    order, todo = [], [j for j, p in enumerate(par) if p < 0][::-1]
    while todo:                                   # depth-first: the order BVH nests (and stores) joints
        order.append(todo.pop())
        todo += kids[order[-1]][::-1]
    new = {j: i for i, j in enumerate(order)}
    motion = np.concatenate([np.concatenate([loc[:, j] * unit, euler[:, j]], -1) if has_loc[j] else euler[:, j]
                             for j in order], axis=1)
    bvh = BVHData(names=[skeleton.joint_names[j] for j in order],
                  parents=[new[par[j]] if par[j] >= 0 else -1 for j in order],
                  offsets=off[order] * unit,
                  channels=[_POS + _ROT if has_loc[j] else _ROT for j in order],
                  end_sites=[(new[j], 0.5 * off[j] * unit) for j in order if not kids[j]],   # a tip for Blender
                  motion=motion, frame_time=float(f"{1.0 / fps:.8f}"))
    write_bvh_channels(path, bvh, fmt="%.6f")
    return bvh


# ----------------------------------------------------------------------------------------------
# A folder of BVH files as a dataset (--data bvh)
# ----------------------------------------------------------------------------------------------
# Every file is read at its own framerate (a folder may mix 30, 60 and 120 fps), turned into joint positions
# on the folder's one hierarchy, retargeted to one set of bone lengths and converted to the HumanML3D features
# of that skeleton. Nothing is written: the folder may be read-only, and a process converts it once.


def prune_skeleton(joints, skeleton):
    """-> (kept joint indices, Skeleton on them): the joints whose positions carry motion. Drops a joint that
    sits on its parent in every frame (CMU's LHipJoint, lowerback, lhand: zero-length bones, whose rotation
    positions cannot show and whose rest direction IK cannot use) and a root that never moves above a single
    child (Bandai's joint_Root: its child Hips carries the trajectory and becomes the root). A child moves up to
    its nearest kept ancestor with its rest position unchanged."""
    x, par = np.asarray(joints), skeleton.parents
    drop = {j for j, p in enumerate(par) if p >= 0 and np.abs(x[:, j] - x[:, p]).max() < 1e-6}
    drop |= {r for r, p in enumerate(par) if p < 0 and np.ptp(x[:, r], axis=0).max() < 1e-6 and par.count(r) == 1}
    off, rest = skeleton.offsets(), np.zeros((len(par), 3))
    for j, p in enumerate(par):                   # rest positions; parents precede children
        rest[j] = off[j] + (rest[p] if p >= 0 else 0.0)

    def kept_parent(j):
        p = par[j]
        while p in drop:
            p = par[p]
        return p

    keep = [j for j in range(len(par)) if j not in drop]
    new_par = [keep.index(kept_parent(j)) if kept_parent(j) >= 0 else -1 for j in keep]
    new_off = np.array([rest[j] - rest[kept_parent(j)] if kept_parent(j) >= 0 else np.zeros(3) for j in keep])
    return keep, _bvh_skeleton(skeleton.name, [skeleton.joint_names[j] for j in keep], new_par, new_off,
                               skeleton.fps)


def drop_tpose(joints, min_jump=0.1):
    """(T, J, 3) -> the same without frame 0 when frame 0 is a pose the motion jumps away from: BVH converters
    of CMU mocap put a T-pose there. It goes when some joint moves over min_jump metres and over twice the
    largest move between any two later frames from frame 0 to 1."""
    step = np.linalg.norm(joints[1:] - joints[:-1], axis=-1).max(-1)      # (T-1,) largest joint move per frame
    return joints[1:] if len(step) > 1 and step[0] > max(min_jump, 2 * step[1:].max()) else joints


_BVH_FOLDER = {}   # the last folder converted: train, val and test loads of one run read each file once


def _convert_bvh_folder(data_dir):
    """-> (stems, per-frame features, native fps, Skeleton) for every .bvh file under data_dir (sorted)."""
    if not data_dir or not os.path.isdir(data_dir):
        raise data.DataError(f"BVH directory {data_dir!r} not found\n{BVH_LAYOUT}")
    # links to folders are not walked into (a link to its own folder would never end); links to files are read
    paths = sorted(os.path.join(d, f) for d, _, files in os.walk(data_dir) for f in files if f.lower().endswith(".bvh"))
    if not paths:
        raise data.DataError(f"{data_dir}: no .bvh files\n{BVH_LAYOUT}")
    key = [(p, os.stat(p).st_mtime_ns, os.stat(p).st_size) for p in paths]
    if _BVH_FOLDER.get("key") == key:
        return _BVH_FOLDER["value"]
    stems = [os.path.basename(p)[:-4] for p in paths]
    if len(set(stems)) < len(stems):
        twice = sorted({p for p, s in zip(paths, stems) if stems.count(s) > 1})
        raise data.DataError(f"{data_dir}: file names must be unique (captions and splits use them): {twice[:2]}")
    # the first file (sorted) sets the skeleton: its joint order, which joints are kept, and the bone lengths
    # every other file is retargeted to, as HumanML3D retargets all of AMASS to one subject (uniform_skeleton)
    ref_x, ref, _ = read_bvh(paths[0])
    tree = {n: ref.joint_names[p] if p >= 0 else None for n, p in zip(ref.joint_names, ref.parents)}
    keep, skeleton = prune_skeleton(ref_x, ref)
    skeleton = replace(skeleton, name=os.path.basename(os.path.abspath(data_dir)))
    if len(skeleton.face_joints) != 4 or len(skeleton.feet_left) != 2 or len(skeleton.feet_right) != 2:
        raise data.DataError(f"{paths[0]}: cannot tell the hips, shoulders and feet (ankle, toe) from the joint names "
                             f"{', '.join(skeleton.joint_names)}; expected names such as LeftUpLeg, RightShoulder, "
                             "LeftFoot, LeftToe (any of Left/Right, L/R, _l/_r)")
    parent = [p if p >= 0 else j for j, p in enumerate(skeleton.parents)]
    feats, fps_list = [], []
    for path in paths:
        x, skel, fps = read_bvh(path)
        other = {n: skel.joint_names[p] if p >= 0 else None for n, p in zip(skel.joint_names, skel.parents)}
        if other != tree:
            diff = sorted(set(tree.items()) ^ set(other.items()), key=str)[:4]
            raise data.DataError(f"{path} and {paths[0]} have different hierarchies (joint, parent: {diff}); "
                                 "a folder must hold one skeleton")
        x = drop_tpose(x[:, [skel.joint_names.index(n) for n in ref.joint_names]][:, keep])
        lengths = np.linalg.norm(x[0] - x[0, parent], axis=-1)
        if np.abs(lengths - skeleton.bone_lengths).max() > 1e-3:   # another subject: the reference's bones
            x = motion.uniform_skeleton(x, skeleton)
        fps = motion.round_fps(fps)
        f = (motion.joints_to_features(x, skeleton, fps=fps, hml3d_frame0=False) if len(x) > 2
             else np.zeros((0, skeleton.feature_dim), np.float32))
        if not np.isfinite(f).all():
            raise data.DataError(f"{path}: the features are not finite (a bone that changes length or a degenerate "
                                 "pose)")
        feats.append(f)
        fps_list.append(fps)
    _BVH_FOLDER.update(key=key, value=(stems, feats, fps_list, replace(skeleton, fps=fps_list[0])))
    return _BVH_FOLDER["value"]


def _split_ids(data_dir, stems, split):
    """The stems of one split: listed in DIR/<split>.txt when the folder has split files, else drawn by CRC-32."""
    split_files = {s: os.path.join(data_dir, f"{s}.txt") for s in ("train", "val", "test")}
    if any(os.path.exists(p) for p in split_files.values()):
        if not os.path.exists(split_files[split]):
            raise data.DataError(f"{data_dir} has train/val/test files but no {split}.txt\n{BVH_LAYOUT}")
        ids = data.read_ids(split_files[split])
        unknown = [i for i in ids if i not in stems]
        if unknown:
            raise data.DataError(f"{split_files[split]} lists {unknown[:3]}, not .bvh files of {data_dir}")
        return ids
    if len(stems) < 3:
        return stems
    # a deterministic shuffle (CRC-32 of the name), so neighbours such as walk_001, walk_002 spread out
    order = sorted(stems, key=lambda s: (zlib.crc32(s.encode()), s))
    n, k = len(order), max(1, round(0.1 * len(order)))
    return {"train": order[:n - 2 * k], "val": order[n - 2 * k:n - k], "test": order[n - k:]}[split]


def _labels(data_dir, lengths):
    """-> ({stem: [(caption, start, end)]}, {stem: action}) from DIR/labels.csv and DIR/texts/<stem>.txt, for the
    stems of lengths ({stem: (feature rows, fps)}, which a caption's segment must lie in)."""
    texts, actions = {}, {}
    labels = os.path.join(data_dir, "labels.csv")
    if os.path.exists(labels):
        for n, row in enumerate(csv.DictReader(io.StringIO(data.read_text(labels), newline="")), 2):
            if not row.get("file"):
                raise data.DataError(f"{labels}:{n}: expected columns file,caption[,action]")
            stem = os.path.basename(row["file"].strip())
            stem = stem[:-4] if stem.lower().endswith(".bvh") else stem
            if (row.get("caption") or "").strip():
                texts.setdefault(stem, []).append((row["caption"].strip(), 0.0, 0.0))
            if (row.get("action") or "").strip():
                actions.setdefault(stem, row["action"].strip())
    for stem, (rows, fps) in lengths.items():
        path = os.path.join(data_dir, "texts", stem + ".txt")
        if os.path.exists(path):
            texts[stem] = texts.get(stem, []) + data.read_texts(path, plain=True, rows=rows, fps=fps)
    return texts, actions


def _motion_set(data_dir, split, fps_mode, min_seconds):
    """One split as a data.MotionSet without statistics, read from its store (data.stored: converted once)."""
    def build():
        stems, feats, fps, skeleton = _convert_bvh_folder(data_dir)
        ids = _split_ids(data_dir, stems, split)
        index = {s: i for i, s in enumerate(stems)}
        texts, actions = _labels(data_dir, {s: (len(feats[index[s]]), fps[index[s]]) for s in ids})
        return skeleton, [(s, feats[index[s]], fps[index[s]], texts.get(s, []), actions.get(s, "")) for s in ids]
    if not data_dir or not os.path.isdir(data_dir):
        raise data.DataError(f"BVH directory {data_dir!r} not found\n{BVH_LAYOUT}")
    sources = [os.path.join(d, f) for d, _, files in os.walk(data_dir) for f in files]   # every file it may read
    ms = data.stored(f"bvh {split} split of {os.path.abspath(data_dir)}", sources, build, fps_mode, min_seconds)
    if not len(ms):
        raise data.DataError(f"{data_dir}: no usable sequences (of at least {min_seconds:g} s) in the {split} split\n"
                             f"{BVH_LAYOUT}")
    return ms


def load_bvh_folder(data_dir, split="train", fps_mode="native", min_seconds=0.5):
    """One split of a folder of BVH files (BVH_LAYOUT) -> data.MotionSet (features per second), as
    data.load_dataset gives for the HumanML3D layout.

    The features are HumanML3D's on the folder's own skeleton (hml3d_frame0=False, as the embedded data), each
    file at its own rate; fps_mode 'fixed' resamples them to 20 fps. Files shorter than min_seconds are left
    out: 0.5 s, as Bandai's in-place cycles last 0.63-1 s and GAMES-105's 100 fps walk 0.99 s. Mean/std come
    from the train split, as data.load_dataset computes them when a folder has no Mean.npy.
    """
    ms = _motion_set(data_dir, split, fps_mode, min_seconds)
    train = ms if split == "train" else _motion_set(data_dir, "train", "native", 0.5)   # train as loaded by default
    ms.mean, ms.std = data.train_statistics(train)
    return ms
