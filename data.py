"""
Motion data for NeRM: skeletons, HumanML3D-style features, datasets and clip sampling. Every script builds on
this file; it imports none of them (bvh.py, synthetic.py and writer.py build on it).

    python -m pytest -q tests/test_features.py tests/test_data.py     # the feature pipeline and the loaders
    python -m pytest -q tests/test_bad_input.py                       # every bad file: one DataError naming it

Shape letters: T frames, J joints, D feature width (263 for 22 joints), N sequences.
"""
import csv
import hashlib
import io
import json
import math
import os
import time
import tokenize
from dataclasses import dataclass

import numpy as np
import torch

import guard
import motion
from guard import DataError   # a user-facing problem with the data: one line (guard.report_errors)

# ----------------------------------------------------------------------------------------------
# Datasets in the HumanML3D layout
# ----------------------------------------------------------------------------------------------
LAYOUT = """expected layout (HumanML3D's):
  DIR/new_joint_vecs/<id>.npy   (T, 263) features (251 for KIT)
  DIR/texts/<id>.txt            lines 'caption#word/POS ...#start#end' (start/end in seconds, 0.0#0.0 = whole)
  DIR/train.txt val.txt test.txt  one id per line
  DIR/Mean.npy Std.npy          optional; computed from the train split when absent
  DIR/meta.csv                  optional: id,fps[,action], a line per sequence (else 20 fps, 12.5 for KIT)
HumanML3D is made from AMASS with the scripts of https://github.com/EricGuo5513/HumanML3D
(KIT-ML from the same repository's instructions); nothing is downloaded by this project."""
KIT_SOURCE = """KIT-ML in this layout: new_joint_vecs (T, 251) for KIT's 21 joints at 12.5 fps, new_joints (T, 21, 3),
texts, train/val/test.txt, Mean.npy/Std.npy. It is the KIT Motion-Language Dataset (Plappert et al. 2016,
https://motion-annotation.humanoids.kit.edu/dataset/) processed by HumanML3D's scripts; the README of
https://github.com/EricGuo5513/HumanML3D says where to get the processed KIT-ML folder."""
DATASETS = {"humanml3d": motion.SMPL22, "kit": motion.KIT21, "synthetic": motion.SMPL22}   # a folder of BVH files: bvh.load_bvh_folder




# The native rates a file may declare. Real capture runs from KIT's 12.5 fps to 250 fps (Eyes_Japan); outside
# this range the number is a typo or a broken header, and would only surface much later as a nan loss.
MIN_FPS, MAX_FPS = 1.0, 1000.0
FPS_RULE = f"fps must be a positive finite rate ({MIN_FPS:g} to {MAX_FPS:g} frames per second)"


def check_fps(fps, where):
    """fps as a float; a DataError naming `where` (a file and line) when it is no rate a recording can have."""
    try:
        f = float(fps)
    except (TypeError, ValueError):
        f = math.nan
    if not MIN_FPS <= f <= MAX_FPS:               # also false for nan
        raise DataError(f"{where}: {FPS_RULE}, got {fps!r}")
    return f


def read_text(path):
    """The text of a UTF-8 file (a byte-order mark is dropped); another encoding, or a file that cannot be read (a
    folder, no permission), is a DataError naming it."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise DataError(f"{path}: cannot read it ({e.strerror or e}); expected a UTF-8 text file") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not UTF-8 text (byte 0x{raw[e.start]:02x}); save the file as UTF-8") from None


# what numpy raises for a damaged .npy: a short read, and its header parser's errors (a header is a Python literal)
NPY_DAMAGE = (ValueError, OSError, EOFError, SyntaxError, TypeError, tokenize.TokenError)


def load_npy(path, shape, expected, remedy=""):
    """A numeric .npy array, checked before and after loading; every problem is a DataError naming the file.

    shape: the wanted shape, None for a free length, e.g. (None, 263). `expected` says in words what the file
    should hold, `remedy` what to do about a bad one (it ends every message). The header (dtype, shape) is read
    first and compared with the file's size, so a corrupt header claiming (10**9, 263) never allocates; pickled
    (object) arrays are refused; NaN and inf are refused after loading."""
    def fail(problem):
        return DataError(f"{path}: {problem}; expected {expected}" + (f". {remedy}" if remedy else ""))

    try:
        with open(path, "rb") as f:
            if f.read(2) == b"PK":                # a zip archive
                raise fail("an .npz archive (np.savez under a .npy name), not an array saved with np.save")
            f.seek(0)
            version = np.lib.format.read_magic(f)
            if version not in ((1, 0), (2, 0), (3, 0)):
                raise ValueError(f"unknown .npy format version {version}")
            # 2.0 and 3.0 differ only in the header's text encoding (latin-1 / UTF-8), the same for a numeric array
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                np.lib.format.read_array_header_2_0
            file_shape, _, dtype = read_header(f)
            stored = os.fstat(f.fileno()).st_size - f.tell()
        if dtype.kind not in "fiu":               # bool, complex, strings, objects, records: not features
            raise fail(f"got an array of {dtype} ({_DTYPE_KINDS.get(dtype.kind, 'not numbers')})")
        if len(file_shape) != len(shape) or any(n is not None and n != k for n, k in zip(shape, file_shape)):
            raise fail(f"got shape {file_shape}")
        need = math.prod(file_shape) * dtype.itemsize
        if need > stored:
            raise fail(f"its header claims shape {file_shape} ({need:,} bytes) but the file holds {stored:,} bytes "
                       "of data: truncated or corrupt")
        x = np.load(path, allow_pickle=False)
    except NPY_DAMAGE as e:
        raise fail(f"cannot read ({e})") from None
    bad = ~np.isfinite(x)
    if bad.any():
        first = np.argwhere(bad)[0]
        at = f"row {first[0]}, column {first[1]}" if x.ndim == 2 else f"index {tuple(int(i) for i in first)}"
        raise fail(f"non-finite values (NaN or inf) in {int(bad.sum())} of {x.size} entries, the first at {at}")
    return x


_DTYPE_KINDS = {"b": "booleans", "c": "complex numbers", "U": "strings", "S": "bytes", "O": "Python objects",
                "V": "records", "M": "dates", "m": "time deltas"}


@dataclass
class MotionSet:
    """Sequences of one split: features in per-second units at each sequence's native framerate."""
    names: list
    features: list                # (T_i, D) float32, velocity channels per second
    fps: np.ndarray               # (N,) native framerates
    captions: list                # N lists of strings
    actions: list                 # N labels ('' when the dataset has none)
    skeleton: object = motion.SMPL22
    mean: np.ndarray = None       # (D,) statistics of the train split, per-second units
    std: np.ndarray = None
    store: object = None          # a Store when features are views of one on disk (load_dataset), else None

    def __len__(self):
        return len(self.names)

    def durations(self):
        return np.array([(len(x) - 1) / f for x, f in zip(self.features, self.fps)])

    def rows(self, i, a, b):
        """Frames a .. b-1 of sequence i, (b - a, D) float32 per second: one read from the store (nothing is
        mapped into the process), or a slice of the features in memory."""
        return self.store.read(i, a, b) if self.store is not None else np.asarray(self.features[i][a:b], np.float32)

    def subset(self, keep):
        """The sequences whose indices are in keep, same statistics."""
        keep = list(keep)
        return MotionSet([self.names[i] for i in keep], [self.features[i] for i in keep], self.fps[keep],
                         [self.captions[i] for i in keep], [self.actions[i] for i in keep], self.skeleton,
                         self.mean, self.std, self.store and self.store.subset(keep))


def _digest(h, name, x, fps, caps, action, rows=64):
    """Add one sequence to the hash h: its name, shape, rate, captions and action, and up to `rows` evenly
    spaced frames (a cheap content hash: any edit of a sequence moves its frames)."""
    h.update(repr((name, x.shape, float(fps), list(caps), action)).encode())
    h.update(np.ascontiguousarray(x[np.linspace(0, len(x) - 1, min(rows, len(x))).astype(int)], np.float32).tobytes())


def fingerprint(ms):
    """A hex digest of what a run trained on, for --resume to compare: the names in their order, each
    sequence's length, rate, captions, action and 64 of its frames (_digest; a stored set's was taken when its
    store was built), and the statistics."""
    if ms.store is not None and ms.store.digest:
        h = hashlib.blake2b(ms.store.digest.encode(), digest_size=16)
    else:
        h = hashlib.blake2b(digest_size=16)
        for seq in zip(ms.names, ms.features, ms.fps, ms.captions, ms.actions):
            _digest(h, *seq)
        h = hashlib.blake2b(h.hexdigest().encode(), digest_size=16)
    for stat in (ms.mean, ms.std):
        h.update(b"-" if stat is None else np.ascontiguousarray(stat, np.float32).tobytes())
    return h.hexdigest()


def read_ids(path):
    """The ids of a split file, one a line: plain file names (they name files under the dataset folder), each once."""
    ids = {}
    for n, line in enumerate(io.StringIO(read_text(path), newline=None), 1):
        if line.strip():
            sid = guard.plain(line.strip(), f"{path}:{n}")
            if sid in ids:
                raise DataError(f"{path}:{n}: {sid} is listed twice (also on line {ids[sid]}); expected each id once")
            ids[sid] = n
    return list(ids)


def read_texts(path, plain=False, rows=math.inf, fps=1.0):
    """Parse a HumanML3D text file -> list of (caption, start_s, end_s); plain: a line without '#' fields is a
    whole-motion caption. rows, fps: the motion's feature rows and rate; a segment must lie within them, as
    motion_set cuts it from x[a:b]. A file without a caption is an error: a sequence without captions has none."""
    out = []
    for n, line in enumerate(io.StringIO(read_text(path), newline=None), 1):
        line = line.strip()
        if not line:
            continue
        parts = line.split("#")
        if len(parts) < 4 and plain:
            out.append((line, 0.0, 0.0))
            continue
        if len(parts) < 4:
            raise DataError(f"{path}:{n}: expected 'caption#tokens#start#end', got {line[:60]!r}")
        try:   # HumanML3D writes nan#nan for a whole motion
            start, end = (0.0 if math.isnan(v) else v for v in (float(parts[2]), float(parts[3])))
        except ValueError:
            raise DataError(f"{path}:{n}: start/end are not numbers: {parts[2]!r}, {parts[3]!r}") from None
        if not (0 <= start < math.inf and 0 <= end < math.inf):
            raise DataError(f"{path}:{n}: start/end must be seconds from 0 on (0.0#0.0 for the whole motion), "
                            f"got {parts[2]!r}, {parts[3]!r}")
        if end <= start and (start, end) != (0.0, 0.0):   # an empty segment would silently drop the caption
            raise DataError(f"{path}:{n}: the segment ends at {parts[3]} s, not after its start at {parts[2]} s "
                            "(0.0#0.0 for the whole motion)")
        if round(end * fps) > rows:
            raise DataError(f"{path}:{n}: the segment ends at {end:g} s, after the motion's {rows / fps:g} s "
                            f"({rows} feature rows at {fps:g} fps)")
        out.append((parts[0].strip(), start, end))
    if not out:
        raise DataError(f"{path}: no caption in it; expected lines 'caption#tokens#start#end'"
                        + (" or plain captions" if plain else "") + " (a sequence without captions has no text file)")
    return out


def group_std(std, skeleton):
    """HumanML3D's statistics: one std per channel group (root parts, ric, rot6d, vel, contacts)."""
    std = std.copy()
    sl = motion.feature_slices(skeleton)
    for s in (slice(0, 1), slice(1, 3), slice(3, 4), sl["ric"], sl["rot6d"], sl["vel"], sl["contact"]):
        std[s] = std[s].mean()
    return np.maximum(std, 1e-3)


def _layout_files(name, data_dir, split):
    """The (id, features file, text file) of one split in the HumanML3D layout whose two files exist (HumanML3D's
    split files list ids that some preparations drop; T2M skips them too), and every file the split comes from."""
    layout = LAYOUT + ("\n" + KIT_SOURCE if name == "kit" else "")
    if not data_dir or not os.path.isdir(data_dir):
        raise DataError(f"dataset directory {data_dir!r} not found\n{layout}")
    for need in ("new_joint_vecs", "texts", f"{split}.txt"):
        if not os.path.exists(os.path.join(data_dir, need)):
            raise DataError(f"{data_dir} has no {need}\n{layout}")
    seqs, files = [], [os.path.join(data_dir, f) for f in (f"{split}.txt", "meta.csv")
                       if os.path.exists(os.path.join(data_dir, f))]
    for sid in read_ids(os.path.join(data_dir, f"{split}.txt")):
        pair = [os.path.join(data_dir, "new_joint_vecs", sid + ".npy"), os.path.join(data_dir, "texts", sid + ".txt")]
        if all(os.path.exists(p) for p in pair):
            seqs.append((sid, *pair))
            files += pair
    return seqs, files


def _layout_items(name, data_dir, split, skeleton, seqs):
    """(id, per-frame features, fps, [(caption, start, end)], action) of the (id, features file, text file) seqs
    of one split in the HumanML3D layout, each file checked as it is read."""
    meta, meta_path = None, os.path.join(data_dir, "meta.csv")
    if os.path.exists(meta_path):    # then it rates every sequence: one left out is not silently taken at 20 fps
        meta, reader = {}, csv.DictReader(io.StringIO(read_text(meta_path), newline=""))
        for row in reader:
            where = f"{meta_path}:{reader.line_num}"
            if None in row or None in row.values() or "id" not in row or "fps" not in row:   # too many, too few
                raise DataError(f"{where}: expected the fields id,fps[,action], as many as its first line names")
            sid = guard.plain(row["id"], where)
            if sid in meta:
                raise DataError(f"{where}: id {sid} appears twice (also on line {meta[sid][2]}); expected each once")
            meta[sid] = (check_fps(row["fps"], f"{where} (id {sid})"), row.get("action") or "", reader.line_num)
    for sid, vec_path, txt_path in seqs:
        if meta is not None and sid not in meta:
            raise DataError(f"{meta_path} has no line for {sid}, which {split}.txt lists; expected a line "
                            f"'{sid},<fps>[,<action>]' for every sequence")
        fps, action = meta[sid][:2] if meta is not None else (skeleton.fps, "")
        x = load_npy(vec_path, (None, skeleton.feature_dim), f"a (T, {skeleton.feature_dim}) float array of {name} "
                     "features", f"Re-create the file, or leave {sid} out of {split}.txt")
        yield sid, x.astype(np.float32), fps, read_texts(txt_path, rows=len(x), fps=fps), action


def pieces(items, fps_mode="native", min_seconds=1.0):
    """(id, per-frame features (T, D), fps, [(caption, start_s, end_s)], action) items -> (name, features per
    second, fps, captions, action) pieces, one at a time: what every dataset loader shares, whatever its files.

    Sub-segments of a text file ('#start#end' not 0) become sequences of their own, as in T2M's loader.
    Sequences shorter than min_seconds are left out. fps_mode 'fixed' resamples every sequence to 20 fps
    afterwards: the peers' preprocessing, our baseline.
    """
    for sid, x, fps, texts, action in items:
        x = motion.features_per_second(x, fps)
        whole = [c for c, start, end in texts if start == 0.0 and end == 0.0]
        parts = [(c, start, end) for c, start, end in texts if start != 0.0 or end != 0.0]
        cuts = [(sid, x, whole)] if whole or not parts else []
        for k, (caption, start, end) in enumerate(parts):
            a, b = int(round(start * fps)), int(round(end * fps))
            cuts.append((f"{sid}#{k}", x[a:b], [caption]))
        for pid, px, pcaps in cuts:
            if (len(px) - 1) / fps < min_seconds:
                continue
            if fps_mode == "fixed":
                yield pid, motion.resample(px, fps, 20.0), 20.0, pcaps, action
            else:
                yield pid, px, fps, pcaps, action


def motion_set(items, skeleton, fps_mode="native", min_seconds=1.0):
    """The pieces of items (see pieces) as one MotionSet in memory, no statistics."""
    got = list(pieces(items, fps_mode, min_seconds))
    names, feats, fps, caps, acts = (list(c) for c in zip(*got)) if got else ([], [], [], [], [])
    return MotionSet(names, feats, np.array(fps, dtype=np.float64), caps, acts, skeleton)


class Moments:
    """Per-channel mean and std of many (T, D) arrays, merged one at a time (Chan et al.'s pairwise update:
    one pass, no sum-of-squares cancellation, never the whole split in memory)."""

    def __init__(self, dim):
        self.n, self.mean, self.m2 = 0, np.zeros(dim), np.zeros(dim)

    def add(self, x):
        x = np.asarray(x, dtype=np.float64)
        n, mean = len(x), x.mean(0)
        delta = mean - self.mean
        self.n += n
        self.mean += delta * n / self.n
        self.m2 += ((x - mean) ** 2).sum(0) + delta ** 2 * n * (self.n - n) / self.n

    def std(self):
        return np.sqrt(self.m2 / self.n)


def train_statistics(train):
    """(mean, std) of a train MotionSet's rows, per-second units; std is HumanML3D's, one per channel group.
    A stored set's were taken when its store was built."""
    if train.store is not None:
        return train.store.mean, group_std(train.store.std, train.skeleton)
    m = Moments(train.skeleton.feature_dim)
    for x in train.features:
        m.add(x)
    return m.mean, group_std(m.std(), train.skeleton)


# ----------------------------------------------------------------------------------------------
# The store: one split in one contiguous file, built once, read by every process
# ----------------------------------------------------------------------------------------------
# AMASS at native rates is ~12 M frames (13 GB of float32). A split is converted once into STORE/<key>/:
# features.f32, every sequence's (T_i, D) rows one after another, and index.json (names, rates, lengths,
# captions, actions, the rows' statistics, a digest). Readers map it (np.memmap: a sequence costs memory only
# when it is read) and the clip sampler reads each clip with one pread, so a training process's memory does
# not grow with the dataset, and processes share the file through the page cache. A store is rebuilt when
# its key (folder, split, fps mode), a source file's size or modification time, or STORE_VERSION changes;
# one that is half-written or damaged (its size, its index, 64 sampled rows) is rebuilt, never read.
STORE = os.environ.get("NERM_STORE", os.path.join("data", "store"))
STORE_VERSION = 1


class Store:
    """One split's rows on disk; read(i, a, b) gives frames a .. b-1 of sequence i with one pread."""

    def __init__(self, path, dim, offset, length, mean=None, std=None, digest=None):
        self.path, self.dim, self.offset, self.length = path, dim, np.asarray(offset), np.asarray(length)
        self.mean, self.std, self.digest, self.fd = mean, std, digest, None

    def read(self, i, a, b):
        if self.fd is None:
            self.fd = os.open(self.path, os.O_RDONLY)
        n = (b - a) * self.dim * 4
        buf = os.pread(self.fd, n, int(self.offset[i] + a) * self.dim * 4)
        if len(buf) != n:
            raise DataError(f"{self.path}: shorter than its index says (changed while in use?); run again to rebuild it")
        return np.frombuffer(buf, np.float32).reshape(b - a, self.dim)

    def subset(self, keep):
        return Store(self.path, self.dim, self.offset[keep], self.length[keep])


def stored(key, sources, build, fps_mode="native", min_seconds=1.0):
    """One split as a MotionSet whose features are views of its store (see above), built when missing, stale or
    damaged from build() -> (skeleton, the loader's (id, features, fps, texts, action) items): every file is
    checked then, once. key names the split (its folder and split); sources are the files its content comes from."""
    sig = hashlib.blake2b(repr((STORE_VERSION, key, fps_mode, min_seconds, [
        (p, st.st_size, st.st_mtime_ns) for p in sorted(sources) for st in [os.stat(p)]])).encode(),
        digest_size=16).hexdigest()
    tag = f"{key}-{fps_mode}-{min_seconds:g}"
    folder = os.path.join(STORE, f"{guard.name(tag, 60)}-{hashlib.blake2b(tag.encode(), digest_size=6).hexdigest()}")
    index = _read_index(folder, sig)
    if index is None:
        t0 = time.time()
        guard.claim(folder, force=True)               # only a store nerm wrote is ever replaced
        with guard.Folder(folder) as out:
            skeleton, items = build()
            _build(out.tmp, pieces(items, fps_mode, min_seconds), skeleton, sig)
            out.commit()
        index = _read_index(folder, sig)
        print(f"stored {len(index['names'])} sequences ({index['rows']} frames) in {folder} in {time.time() - t0:.0f} s")
    D, rows, length = index["dim"], index["rows"], index["length"]
    path = os.path.join(folder, "features.f32")
    flat = np.memmap(path, np.float32, "r", shape=(rows, D)) if rows else np.zeros((0, D), np.float32)
    offset = np.concatenate([[0], np.cumsum(length)[:-1]]).astype(np.int64)
    store = Store(path, D, offset, length, np.array(index["mean"]), np.array(index["std"]), index["digest"])
    return MotionSet(index["names"], [flat[o:o + n] for o, n in zip(offset, length)],
                     np.array(index["fps"], dtype=np.float64), index["captions"], index["actions"],
                     motion.resolve_skeleton(index["skeleton"]), store=store)


def _build(folder, pieces_, skeleton, sig):
    """Write pieces into folder (features.f32 + index.json) one at a time: never the whole split in memory."""
    D = skeleton.feature_dim
    index = {"version": STORE_VERSION, "source": sig, "dim": D, "names": [], "length": [], "fps": [],
             "captions": [], "actions": []}
    moments, h = Moments(D), hashlib.blake2b(digest_size=16)
    with open(os.path.join(folder, "features.f32"), "wb") as f:
        for name, x, fps, caps, action in pieces_:
            f.write(np.ascontiguousarray(x, np.float32).tobytes())
            moments.add(x)
            _digest(h, name, x, fps, caps, action)
            for k, v in zip(("names", "length", "fps", "captions", "actions"), (name, len(x), float(fps), list(caps), action)):
                index[k].append(v)
    empty = not index["names"]
    index.update(rows=int(sum(index["length"])), digest=h.hexdigest(), skeleton=motion.skeleton_to_dict(skeleton),
                 mean=[0.0] * D if empty else moments.mean.tolist(), std=[1.0] * D if empty else moments.std().tolist(),
                 check=_check_rows(os.path.join(folder, "features.f32"), D))
    with open(os.path.join(folder, "index.json"), "w", encoding="utf-8") as f:
        json.dump(index, f)


def _check_rows(path, D, n=64):
    """A hash of the size of a features file and of n evenly spaced rows: what damage to it changes."""
    size = os.path.getsize(path)
    rows = size // (4 * D)
    h = hashlib.blake2b(str(size).encode(), digest_size=16)
    with open(path, "rb") as f:
        for r in np.linspace(0, max(rows - 1, 0), min(n, rows)).astype(int):
            f.seek(int(r) * 4 * D)
            h.update(f.read(4 * D))
    return h.hexdigest()


def _read_index(folder, sig):
    """The index of the store in folder when it is whole and current, else None (then it is rebuilt)."""
    path = os.path.join(folder, "features.f32")
    try:
        with open(os.path.join(folder, "index.json"), encoding="utf-8") as f:
            index = json.load(f)
        ok = index["version"] == STORE_VERSION and index["source"] == sig and \
            index["check"] == _check_rows(path, index["dim"])          # the file's size and 64 of its rows
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return index if ok else None


def open_split(name, data_dir, split, fps_mode="native", generate=None):
    """One split of a dataset by name, the one dispatch of the scripts: a folder of BVH files (bvh.py), or the
    HumanML3D layout (load_dataset). data_dir defaults to data/<name>. generate=N: the embedded dataset, when
    data_dir has none, is first generated there with N sequences (synthetic.py), only into a folder that does
    not exist yet: an existing folder without meta.csv is someone's data and is never touched."""
    data_dir = data_dir or os.path.join("data", name)
    if name == "bvh":
        import bvh   # the BVH reader, needed only for this dataset
        return bvh.load_bvh_folder(data_dir, split, fps_mode)
    if name == "synthetic" and generate and not os.path.exists(os.path.join(data_dir, "meta.csv")):
        if os.path.exists(data_dir):
            raise DataError(f"{data_dir} exists but is not the embedded dataset (it has no meta.csv); the embedded "
                            f"dataset is only generated into a new folder. For your own data give --data humanml3d, "
                            f"kit or bvh with --data-dir {data_dir}")
        import synthetic   # the embedded dataset's generator, needed only this once
        t0 = time.time()
        print(f"generating the embedded dataset ({generate} sequences) in {data_dir} ...")
        synthetic.write_dataset(data_dir, generate, seed=0)
        print(f"  done in {time.time() - t0:.0f} s")
    return load_dataset(name, data_dir, split, fps_mode)


def load_dataset(name, data_dir, split="train", fps_mode="native", min_seconds=1.0, with_stats=True):
    """Load one split of a dataset in the HumanML3D layout -> MotionSet (features per second) read from its
    store (built on first use: see stored); see pieces for fps_mode and min_seconds. A folder of BVH files
    is read by bvh.load_bvh_folder instead."""
    if name == "bvh":
        raise DataError("a folder of BVH files is loaded by bvh.load_bvh_folder (or data.open_split), "
                        "not data.load_dataset")
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}")
    skeleton = DATASETS[name]
    seqs, files = _layout_files(name, data_dir, split)
    ms = stored(f"{name} {split} split of {os.path.abspath(data_dir)}", files,
                lambda: (skeleton, _layout_items(name, data_dir, split, skeleton, seqs)), fps_mode, min_seconds)
    if not len(ms):
        raise DataError(f"{data_dir}: no usable sequences (of at least {min_seconds:g} s) in the {split} split\n"
                        f"{LAYOUT}")
    if with_stats:
        ms.mean, ms.std = _statistics(data_dir, skeleton, ms if split == "train" else None, name)
    return ms


def _statistics(data_dir, skeleton, train, name):
    """Mean/Std in per-second units. Mean.npy/Std.npy hold per-frame values at the dataset's nominal rate
    (skeleton.fps), exactly HumanML3D's files; computed from the train split when absent."""
    mp, sp = os.path.join(data_dir, "Mean.npy"), os.path.join(data_dir, "Std.npy")
    if os.path.exists(mp) and os.path.exists(sp):
        D = skeleton.feature_dim
        again = "Fix it, or delete Mean.npy and Std.npy to have them computed from the train split"
        mean = load_npy(mp, (D,), f"a ({D},) float array: the mean of each feature channel", again)
        std = load_npy(sp, (D,), f"a ({D},) float array: the standard deviation of each feature channel", again)
        if not (std > 0).all():                   # features are divided by it: a zero gives inf, then a nan loss
            k = int(np.argmin(std > 0))
            raise DataError(f"{sp}: every standard deviation must be positive; channel {k} is {std[k]:g}. {again}")
        return tuple(motion.features_per_second(a.astype(np.float32), skeleton.fps) for a in (mean, std))
    if train is None:
        train = load_dataset(name, data_dir, "train", with_stats=False)
    return train_statistics(train)


# ----------------------------------------------------------------------------------------------
# Clips at random framerates (the paper's training unit)
# ----------------------------------------------------------------------------------------------

MIN_CLIP_FPS = 20.0   # clip rates go down to the evaluation's 20 fps (or a slower native rate itself)


class ClipSampler:
    """Draw, per sequence, a clip of m frames at a framerate s = native / k that reads its own frames.

    k is uniform over 1 .. K_i, K_i the largest frame step that keeps s >= 20 fps (native 120: 120, 60, 40,
    30, 24 or 20 fps; native 30: only 30, since 30 / 2 is below 20; native 20: only 20), so every target is
    a stored frame, never a blend of two (a blend blurs rotations and turns foot contacts fractional). The
    window of m frames lies wholly inside the sequence, its first frame uniform over every place it fits; a
    step whose window would not fit is not drawn (a sequence shorter than m frames gives its native rate and
    repeats its last frame). Each clip's frames are read from the MotionSet (MotionSet.rows: one read of the
    store per clip) and normalized with the train statistics, so the sampler holds no copy of the data and
    memory depends on m and the batch, never on the dataset or the framerate.

    What sample() hands to NeRM.forward (B clips, one per drawn sequence, m frames each):
      x    (B, m, D) normalized features: (features - mean) / std, velocity channels per second, so they mean
           the same at every rate
      t    (B, m)    seconds from the sequence's start of each frame (frame / native fps); the decoder
           normalizes time itself (nerm.INRDecoder), which is why it is also handed
      fps  (B,)      the clip's rate s = native / k, Hz
      idx  (B,)      which sequence, i.e. which row of the latent table; and sampler.duration[idx] (B,) s
    NeRM.forward returns the mean squared error over all B m D elements plus the weighted KL (see there).
    """

    def __init__(self, ms, mean, std):
        self.ms = ms
        self.mean, self.std = torch.as_tensor(mean).float(), torch.as_tensor(std).float()
        lengths = np.array([len(x) for x in ms.features])
        self.length = torch.from_numpy(lengths).long()
        self.fps = torch.from_numpy(ms.fps).float()
        self.duration = torch.from_numpy((lengths - 1) / ms.fps).float()

    def __len__(self):
        return len(self.length)

    def frame_steps(self, idx, m):
        """The largest frame step K_i (B,) for sequences idx: s = native / k >= 20 fps (k = 1 always allowed)
        and m frames k apart inside the sequence."""
        native, last = self.fps[idx].double(), (self.length[idx] - 1).double()
        fits = torch.floor(last / (m - 1)).clamp(min=1)                           # the window fits
        return torch.minimum(torch.floor(native / MIN_CLIP_FPS + 1e-6).clamp(min=1), fits).long()

    def sample(self, idx, m, generator=None):
        """-> x (B, m, D), t (B, m) seconds, fps (B,), idx (B,): see the class docstring."""
        B = len(idx)
        k_max = self.frame_steps(idx, m)
        k = 1 + (torch.rand(B, generator=generator) * k_max).long().clamp(max=k_max - 1)   # uniform over 1 .. K_i
        fps = self.fps[idx] / k                                  # (B,) clip rate
        last = self.length[idx] - 1
        room = (last - (m - 1) * k).clamp(min=0)                 # the latest first frame that keeps the window inside
        first = (torch.rand(B, generator=generator) * (room + 1)).long().clamp(max=room)
        frame = torch.minimum(first[:, None] + k[:, None] * torch.arange(m), last[:, None])  # (B, m) native frames
        t = frame.float() / self.fps[idx, None]
        return self.gather(idx, frame), t, fps, idx

    def gather(self, idx, frame):
        """Normalized features (B, m, D) of sequences idx (B,) at native frames frame (B, m): each clip reads
        the rows from its first to its last frame in one go."""
        out = np.empty(tuple(frame.shape) + (self.mean.shape[0],), np.float32)
        for b, (i, f) in enumerate(zip(idx.tolist(), frame.numpy())):
            out[b] = self.ms.rows(i, int(f[0]), int(f[-1]) + 1)[f - f[0]]    # (m, D) per second
        return (torch.from_numpy(out) - self.mean) / self.std
