"""
The one writer of the dataset layout (HumanML3D's folders plus meta.csv with each sequence's native fps):
synthetic.py writes the embedded dataset with it, prepare.py converts AMASS and HumanAct12 with it; data.py
reads what it writes.

    python -m pytest -q tests/test_synthetic.py tests/test_prepare.py
"""
import csv
import os

import numpy as np

import guard
from data import DataError, Moments, check_fps, group_std
from motion import SMPL22, features_per_frame, features_per_second


class DatasetWriter:
    """Writes sequences in the HumanML3D layout plus meta.csv (native fps, action), one at a time: the one writer
    of the layout (prepare.py and synthetic.py compute their features and call it).

    `out` is claimed through guard (a lock; an existing `out` only with force, and only a dataset nerm wrote;
    never one of `inputs`, the folders this command reads, nor a folder holding one). Everything goes to a
    guard.Folder, a temporary folder beside `out` renamed onto it by finish(): no reader sees half a dataset.
    Use it in a `with` block: on any exception (^C too) the temporary folder is removed.
    """

    def __init__(self, out, skeleton=SMPL22, force=False, inputs=()):
        self.out, self.skeleton = guard.claim(out, force=force, inputs=inputs), skeleton
        self.folder = guard.Folder(self.out)
        self.tmp = self.folder.tmp
        for sub in ("new_joint_vecs", "new_joints", "texts"):
            os.makedirs(os.path.join(self.tmp, sub))
        self.meta, self.dropped = [], []          # (id, fps, action) of each written sequence; ids left out
        self.moments = Moments(skeleton.feature_dim)   # train statistics in per-second units, one sequence at a time

    def add(self, sid, features, joints, fps, lines, action="", train=False):
        """Write one sequence: features (T-1, D) per frame at fps (joints_to_features' rows), the joints
        new_joints/<sid>.npy holds, and its text lines ('caption#tokens#start#end'). Returns False (and notes
        sid in .dropped) when there is no feature row or a row is not finite (a degenerate pose)."""
        guard.plain(sid, "sequence id")            # sid names files: never a path out of tmp
        if features.ndim != 2 or features.shape[1] != self.skeleton.feature_dim:
            raise DataError(f"{sid}: features {features.shape} are not (T, {self.skeleton.feature_dim}) "
                            f"rows of {self.skeleton.name}")
        if len(features) == 0 or not np.isfinite(features).all():
            self.dropped.append(sid)
            return False
        fps = check_fps(fps, f"sequence {sid}")
        np.save(os.path.join(self.tmp, "new_joint_vecs", sid + ".npy"), features.astype(np.float32))
        np.save(os.path.join(self.tmp, "new_joints", sid + ".npy"), np.asarray(joints, dtype=np.float32))
        with open(os.path.join(self.tmp, "texts", sid + ".txt"), "w", encoding="utf-8") as f:
            f.write("".join(line.rstrip("\n") + "\n" for line in lines))
        self.meta.append((sid, fps, action))
        if train:
            self.moments.add(features_per_second(features, fps))
        return True

    def finish(self, splits):
        """Write the split files ({split: ids}; ids not written are left out), meta.csv and Mean/Std, then
        rename the folder to out."""
        written = {sid for sid, _, _ in self.meta}
        for split, ids in splits.items():
            with open(os.path.join(self.tmp, f"{split}.txt"), "w") as f:
                f.write("".join(sid + "\n" for sid in ids if sid in written))
        with open(os.path.join(self.tmp, "meta.csv"), "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["id", "fps", "action"])
            w.writerows(self.meta)
        if self.moments.n == 0:
            raise DataError("no sequence of the train split was written: nothing to compute Mean/Std from")
        # stored per frame at the skeleton's nominal rate, exactly as HumanML3D's files (see _statistics)
        std = group_std(self.moments.std(), self.skeleton)
        for name, v in (("Mean", self.moments.mean), ("Std", std)):
            np.save(os.path.join(self.tmp, f"{name}.npy"), features_per_frame(v, self.skeleton.fps).astype(np.float32))
        self.folder.commit()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.folder.__exit__(exc_type, exc, tb)   # not committed (an error, ^C): the temporary folder goes
        if isinstance(exc, OSError) and str(exc.filename or "").startswith(self.tmp):   # a full disk, say
            raise guard.OutputError(f"cannot write {self.out}: {exc.strerror or exc}") from None
