"""
Motion data for NeRM: skeletons, HumanML3D-style features, datasets and clip sampling.

    python data.py synthetic --out data/synthetic      # write the embedded dataset (HumanML3D layout)
    python data.py check                               # features vs ../shared/realdata reference pairs

Shape letters: T frames, J joints, D feature width (263 for 22 joints), N sequences.
"""
from dataclasses import dataclass

import numpy as np

# ----------------------------------------------------------------------------------------------
# Skeletons
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Skeleton:
    """A kinematic tree: rest directions, bone lengths and the joints the features need."""
    name: str
    joint_names: tuple        # (J,)
    parents: tuple            # (J,) parent index, -1 for the root
    rest_dirs: tuple          # (J, 3) unit direction from parent to joint at rest (HumanML3D "raw offsets")
    bone_lengths: tuple       # (J,) metres, 0 for the root
    chains: tuple             # kinematic chains, each starting at the root or at a branching joint
    face_joints: tuple        # (r_hip, l_hip, r_shoulder, l_shoulder): the facing direction
    feet_left: tuple          # joints whose speed gives the left foot contact
    feet_right: tuple
    fps: float = 20.0         # the dataset's native rate when the files do not record one

    @property
    def num_joints(self):
        return len(self.parents)

    @property
    def feature_dim(self):
        # root (4) + ric (J-1)*3 + rot6d (J-1)*6 + velocity J*3 + contacts (4): 263 for 22 joints, 251 for 21
        return 4 + 9 * (self.num_joints - 1) + 3 * self.num_joints + 4

    def offsets(self):
        """(J, 3) rest offset of each joint from its parent, metres."""
        return np.asarray(self.rest_dirs, dtype=np.float64) * np.asarray(self.bone_lengths)[:, None]


def _parents_from_chains(chains, num_joints):
    parents = [-1] * num_joints
    for chain in chains:
        for p, c in zip(chain[:-1], chain[1:]):
            parents[c] = p
    return tuple(parents)


_SMPL22_CHAINS = ((0, 2, 5, 8, 11), (0, 1, 4, 7, 10), (0, 3, 6, 9, 12, 15), (9, 14, 17, 19, 21), (9, 13, 16, 18, 20))
SMPL22 = Skeleton(
    name="smpl22",
    joint_names=("pelvis", "l_hip", "r_hip", "spine1", "l_knee", "r_knee", "spine2", "l_ankle", "r_ankle",
                 "spine3", "l_foot", "r_foot", "neck", "l_collar", "r_collar", "head", "l_shoulder",
                 "r_shoulder", "l_elbow", "r_elbow", "l_wrist", "r_wrist"),
    parents=_parents_from_chains(_SMPL22_CHAINS, 22),
    # HumanML3D's t2m_raw_offsets (DESIGN.md §2); +X is the body's left, +Y up, +Z forward
    rest_dirs=((0, 0, 0), (1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, -1, 0), (0, 1, 0), (0, -1, 0),
               (0, -1, 0), (0, 1, 0), (0, 0, 1), (0, 0, 1), (0, 1, 0), (1, 0, 0), (-1, 0, 0), (0, 0, 1),
               (0, -1, 0), (0, -1, 0), (0, -1, 0), (0, -1, 0), (0, -1, 0), (0, -1, 0)),
    # the target bone lengths every HumanML3D new_joints file shares (read off 012314.npy)
    bone_lengths=(0.0, 0.103074, 0.109883, 0.131568, 0.393623, 0.390188, 0.14319, 0.432433, 0.425643,
                  0.057365, 0.143382, 0.149419, 0.21936, 0.137487, 0.143383, 0.103039, 0.131614, 0.122984,
                  0.25684, 0.263092, 0.266012, 0.269876),
    chains=_SMPL22_CHAINS,
    face_joints=(2, 1, 17, 16),
    feet_left=(7, 10),
    feet_right=(8, 11),
    fps=20.0,
)

_KIT21_CHAINS = ((0, 11, 12, 13, 14, 15), (0, 16, 17, 18, 19, 20), (0, 1, 2, 3, 4), (3, 5, 6, 7), (3, 8, 9, 10))
KIT21 = Skeleton(
    name="kit21",
    joint_names=("root", "torso", "chest", "neck", "head", "l_shoulder", "l_elbow", "l_wrist", "r_shoulder",
                 "r_elbow", "r_wrist", "l_hip", "l_knee", "l_ankle", "l_heel", "l_toe", "r_hip", "r_knee",
                 "r_ankle", "r_heel", "r_toe"),
    parents=_parents_from_chains(_KIT21_CHAINS, 21),
    rest_dirs=((0, 0, 0), (0, 1, 0), (0, 1, 0), (0, 1, 0), (0, 1, 0), (1, 0, 0), (0, -1, 0), (0, -1, 0),
               (-1, 0, 0), (0, -1, 0), (0, -1, 0), (1, 0, 0), (0, -1, 0), (0, -1, 0), (0, 0, 1), (0, 0, 1),
               (-1, 0, 0), (0, -1, 0), (0, -1, 0), (0, 0, 1), (0, 0, 1)),
    # approximate adult proportions (metres); KIT features do not depend on them unless retargeted
    bone_lengths=(0.0, 0.12, 0.22, 0.22, 0.12, 0.18, 0.28, 0.25, 0.18, 0.28, 0.25, 0.09, 0.42, 0.41, 0.06,
                  0.14, 0.09, 0.42, 0.41, 0.06, 0.14),
    chains=_KIT21_CHAINS,
    face_joints=(11, 16, 5, 8),
    feet_left=(19, 20),   # HumanML3D's KIT pipeline: fid_r, fid_l = [14, 15], [19, 20]
    feet_right=(14, 15),
    fps=12.5,
)


def forward_kinematics(local_rot, root_pos, skeleton):
    """Joint positions from per-joint local rotations.

    local_rot: (T, J, 3, 3) rotation of each joint relative to its parent's frame (the root's is global);
    a child's position is parent_pos + parent_global_rot @ offset[child].  root_pos: (T, 3).
    Returns (T, J, 3).
    """
    offsets = skeleton.offsets()
    T, J = local_rot.shape[:2]
    glob = np.zeros_like(local_rot)
    pos = np.zeros((T, J, 3), dtype=np.float64)
    for j, p in enumerate(skeleton.parents):  # parents come before children in both skeletons
        if p < 0:
            glob[:, j] = local_rot[:, j]
            pos[:, j] = root_pos
        else:
            glob[:, j] = glob[:, p] @ local_rot[:, j]
            pos[:, j] = pos[:, p] + glob[:, p] @ offsets[j]
    return pos
