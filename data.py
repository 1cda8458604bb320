"""
Motion data for NeRM: skeletons, HumanML3D-style features, datasets and clip sampling.

    python data.py --out data/synthetic --num 2000     # write the embedded dataset (HumanML3D layout), ~25 s

Shape letters: T frames, J joints, D feature width (263 for 22 joints), N sequences.
"""
import csv
import os
import re
import shutil
import zlib
from dataclasses import dataclass, fields, replace

import numpy as np
import torch

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
    leg_joints: tuple = ()    # (knee, ankle) of one leg: its two bones set uniform_skeleton's root scale

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
    leg_joints=(5, 8),    # HumanML3D's l_idx1, l_idx2: the right thigh and shin
)

_KIT21_CHAINS = ((0, 11, 12, 13, 14, 15), (0, 16, 17, 18, 19, 20), (0, 1, 2, 3, 4), (3, 5, 6, 7), (3, 8, 9, 10))
KIT21 = Skeleton(
    name="kit21",
    joint_names=("root", "torso", "chest", "neck", "head", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder",
                 "l_elbow", "l_wrist", "r_hip", "r_knee", "r_ankle", "r_heel", "r_toe", "l_hip", "l_knee",
                 "l_ankle", "l_heel", "l_toe"),
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
    leg_joints=(17, 18),  # HumanML3D's KIT l_idx1, l_idx2
)


SKELETONS = {s.name: s for s in (SMPL22, KIT21)}


def skeleton_to_dict(skeleton):
    """A Skeleton as plain str/int/float/lists: what a checkpoint stores (torch.load(weights_only=True) reads it)."""
    def plain(v):
        return [plain(u) for u in v] if isinstance(v, (tuple, list)) else (v.item() if isinstance(v, np.generic) else v)
    return {f.name: plain(getattr(skeleton, f.name)) for f in fields(Skeleton)}


def resolve_skeleton(s):
    """A checkpoint's skeleton -> Skeleton: a skeleton_to_dict dict, or the name of a built-in skeleton
    ('smpl22', 'kit21': what checkpoints stored before skeletons travelled with them)."""
    def tuples(v):
        return tuple(tuples(u) for u in v) if isinstance(v, (tuple, list)) else v
    if isinstance(s, Skeleton):
        return s
    if isinstance(s, str):
        if s not in SKELETONS:
            raise DataError(f"unknown skeleton {s!r}: a checkpoint names one of {', '.join(SKELETONS)} "
                            "or stores its own")
        return SKELETONS[s]
    try:
        return Skeleton(**{k: tuples(v) for k, v in s.items()})
    except (AttributeError, TypeError) as e:
        raise DataError(f"the checkpoint's skeleton is not readable ({e})") from None


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


# ----------------------------------------------------------------------------------------------
# Features: HumanML3D's representation (DESIGN.md §2), numpy in and out
# ----------------------------------------------------------------------------------------------
# Quaternions are (..., 4) arrays (w, x, y, z). Every function broadcasts over leading dimensions.


def qmul(q, r):
    """Hamilton product q·r: rotate by r first, then by q."""
    w1, x1, y1, z1 = np.moveaxis(q, -1, 0)
    w2, x2, y2, z2 = np.moveaxis(r, -1, 0)
    return np.stack([w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
                     w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
                     w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
                     w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2], axis=-1)


def qinv(q):
    """Inverse of a unit quaternion: its conjugate."""
    return q * np.array([1.0, -1.0, -1.0, -1.0])


def qrot(q, v):
    """Rotate (..., 3) vectors v by unit quaternions q (same formula as HumanML3D's qrot)."""
    uv = np.cross(q[..., 1:], v)
    return v + 2 * (q[..., :1] * uv + np.cross(q[..., 1:], uv))


def qbetween(u, v):
    """The shortest-arc rotation taking direction u to direction v: normalize([|u||v| + u·v, u × v]).
    Undefined (NaN) when u = −v exactly, as in HumanML3D."""
    w = np.sqrt((u * u).sum(-1) * (v * v).sum(-1)) + (u * v).sum(-1)
    q = np.concatenate([w[..., None], np.cross(u, v)], axis=-1)
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def qfix(q):
    """Flip signs along axis 0 (time) so consecutive quaternions have a positive dot product."""
    flip = np.cumsum((q[1:] * q[:-1]).sum(-1) < 0, axis=0) % 2 == 1   # (T-1, ...)
    out = q.copy()
    out[1:][flip] *= -1
    return out


def quat_to_matrix(q):
    """(..., 4) unit quaternions -> (..., 3, 3) rotation matrices (M @ v rotates v)."""
    w, x, y, z = np.moveaxis(q, -1, 0)
    m = np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
                  2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
                  2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], axis=-1)
    return m.reshape(q.shape[:-1] + (3, 3))


def quat_to_6d(q):
    """(..., 4) -> (..., 6): the matrix's first two COLUMNS (images of x and y), column 0 first, as
    HumanML3D's quaternion_to_cont6d_np: [M00, M10, M20, M01, M11, M21]."""
    m = quat_to_matrix(q)
    return np.concatenate([m[..., :, 0], m[..., :, 1]], axis=-1)


def gaussian_smooth(x, sigma):
    """Gaussian smoothing along axis 0, equal to scipy.ndimage.gaussian_filter1d(x, sigma, axis=0,
    mode='nearest') with its default truncate=4.0: taps out to int(4σ + 0.5), edges repeat the end value."""
    radius = int(4.0 * sigma + 0.5)
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    padded = np.pad(x, [(radius, radius)] + [(0, 0)] * (x.ndim - 1), mode="edge")
    return sum(w * padded[k:k + len(x)] for k, w in enumerate(taps))


# ----------------------------------------------------------------------------------------------
# Inverse kinematics and the uniform skeleton
# ----------------------------------------------------------------------------------------------


def _normalize(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _facing(joints, skeleton, swap_hips=False):
    """(T, J, 3) -> (T, 3) horizontal, unnormalized forward direction: y × across, where across is the
    normalized sum of the right-minus-left hip and shoulder vectors (left-minus-right hips if swap_hips)."""
    r_hip, l_hip, r_sdr, l_sdr = skeleton.face_joints
    hips = joints[:, r_hip] - joints[:, l_hip]
    across = _normalize((-hips if swap_hips else hips) + joints[:, r_sdr] - joints[:, l_sdr])
    return np.cross(np.array([0.0, 1.0, 0.0]), across)


def inverse_kinematics(joints, skeleton, smooth_sigma_frames=0.0, identity_frame0=True):
    """(T, J, 3) positions -> (T, J, 4) quaternions, as HumanML3D's Skeleton.inverse_kinematics_np.

    [:, 0] is the root rotation taking the (optionally Gaussian-smoothed) forward direction to +Z, identity at
    frame 0. [:, c] for every other joint c rotates the bone parent->c: the rest direction rest_dirs[c] is
    taken to the observed bone direction by R · q[c], where R is the product of the root and the earlier
    joints of c's chain (every chain starts from the root rotation, also the arm chains that branch at the spine).
    """
    joints = np.asarray(joints, dtype=np.float64)
    # HumanML3D's inverse_kinematics_np unpacks face_joint_idx as (l_hip, r_hip, sdr_r, sdr_l) although it is
    # given (r_hip, l_hip, sdr_r, sdr_l), so its hip vector is left-minus-right while its shoulder vector is
    # right-minus-left (process_file's face-+Z step uses right-minus-left for both). Only this swapped
    # version reproduces the published features (ric, rot6d, velocities to ~1e-5; right-minus-left hips are
    # off by ~0.5, see tests/test_features.py), so we keep it; the wider shoulders still set the direction.
    forward = _facing(joints, skeleton, swap_hips=True)
    if smooth_sigma_frames > 0:
        forward = gaussian_smooth(forward, smooth_sigma_frames)
    root = qbetween(_normalize(forward), np.array([0.0, 0.0, 1.0]))   # (T, 4)
    # frame 0 is identity (the line is commented out in HumanML3D's skeleton.py, but the published
    # features need it: without it rows differ by up to ~0.2); it makes row 0's angular velocity a jump
    if identity_frame0:
        root[0] = (1.0, 0.0, 0.0, 0.0)
    rest = np.asarray(skeleton.rest_dirs, dtype=np.float64)
    quat = np.zeros(joints.shape[:-1] + (4,))
    quat[:, 0] = root
    for chain in skeleton.chains:
        R = root
        for p, c in zip(chain[:-1], chain[1:]):
            local = qmul(qinv(R), qbetween(rest[c], _normalize(joints[:, c] - joints[:, p])))
            quat[:, c] = local
            R = qmul(R, local)
    return quat


def _chain_fk(quat, root_pos, skeleton):
    """The inverse of inverse_kinematics for positions: (T, J, 4), (T, 3) -> (T, J, 3) with the skeleton's
    bone lengths (HumanML3D's forward_kinematics_np, per-chain like the IK)."""
    offsets = skeleton.offsets()
    pos = np.zeros(quat.shape[:-1] + (3,))
    pos[:, 0] = root_pos
    for chain in skeleton.chains:
        R = quat[:, 0]
        for p, c in zip(chain[:-1], chain[1:]):
            R = qmul(R, quat[:, c])
            pos[:, c] = pos[:, p] + qrot(R, np.broadcast_to(offsets[c], R.shape[:-1] + (3,)))
    return pos


def uniform_skeleton(joints, skeleton):
    """Retarget (T, J, 3) positions to the skeleton's bone lengths (DESIGN §2 step 1): unsmoothed IK, then
    FK with the new lengths; the root trajectory is scaled by the ratio of the leg_joints bone lengths
    (measured on frame 0) so that strides stay in proportion to the new legs."""
    joints = np.asarray(joints, dtype=np.float64)
    src = sum(np.linalg.norm(joints[0, j] - joints[0, skeleton.parents[j]]) for j in skeleton.leg_joints)
    tgt = sum(skeleton.bone_lengths[j] for j in skeleton.leg_joints)
    quat = inverse_kinematics(joints, skeleton, smooth_sigma_frames=0.0)
    return _chain_fk(quat, joints[:, 0] * (tgt / src), skeleton)


# ----------------------------------------------------------------------------------------------
# Joints <-> features
# ----------------------------------------------------------------------------------------------


def feature_slices(skeleton):
    """Named column ranges of the (T-1, D) feature rows, for losses and reports (a skeleton or its J)."""
    J = skeleton if isinstance(skeleton, int) else skeleton.num_joints
    return {"root": slice(0, 4),                               # angular vel, linear vel xz, height
            "ric": slice(4, 4 + 3 * (J - 1)),                  # root-relative positions, facing frame
            "rot6d": slice(4 + 3 * (J - 1), 4 + 9 * (J - 1)),  # 6D rotations of the IK quaternions
            "vel": slice(4 + 9 * (J - 1), 12 * J - 5),         # joint velocities, facing frame
            "contact": slice(12 * J - 5, 12 * J - 1)}          # foot contacts, left then right


def velocity_mask(skeleton):
    """(D,) bool: the channels that are per-frame rates (root angular and linear velocity, joint velocities)."""
    sl = feature_slices(skeleton)
    mask = np.zeros(sl["contact"].stop, dtype=bool)
    mask[0:3] = True
    mask[sl["vel"]] = True
    return mask


def _rate_scale(feats, factor):
    J, rest = divmod(feats.shape[-1] + 1, 12)                   # D = 12 J - 1 for any skeleton
    assert rest == 0, f"{feats.shape[-1]} is not a feature width (12 J - 1)"
    return feats * np.where(velocity_mask(J), factor, 1.0).astype(feats.dtype)


def features_per_second(feats, fps):
    """(..., D) numpy features with per-frame velocity channels -> the same with velocities per second.
    Exact for [0] too: it is arcsin(sin(θ/2)) = θ/2 for a per-frame yaw θ, linear in θ, so fps·[0] is half
    the yaw rate in rad/s."""
    return _rate_scale(feats, fps)


def features_per_frame(feats, fps):
    """The inverse of features_per_second."""
    return _rate_scale(feats, 1.0 / fps)


def joints_to_features(joints, skeleton=SMPL22, fps=None, hml3d_frame0=True):
    """(T, J, 3) joint positions (metres, Y up) -> (T-1, D) float32 HumanML3D features (DESIGN §2 steps 2-8).

    At 20 fps this is HumanML3D's process_file without the uniform_skeleton step (call uniform_skeleton
    first for raw data). At another native fps the smoothing (σ = 1 s) and the contact threshold (the same
    foot speed) are defined in seconds, while the velocity channels stay per frame at the file's own rate,
    so the files read like HumanML3D's (see features_per_second).

    hml3d_frame0: HumanML3D's frame-0 conventions: frame 0 faces +Z by its raw hips and shoulders, but the
    rotation features use the smoothed (and hip-swapped) forward with frame 0 forced to identity, so row 0's
    angular velocity holds a jump between the two. False: frame 0 faces +Z by the same smoothed forward as
    every other frame, so there is no jump. The embedded data uses False: a jump in a rate channel is not
    a rate, and it would be scaled wrongly when a clip is resampled to another framerate.
    """
    fps = skeleton.fps if fps is None else fps
    p = np.array(joints, dtype=np.float64)                        # (T, J, 3)
    T = len(p)
    # step 2: on the floor, root at the xz origin, frame 0 facing +Z (right-minus-left hips and shoulders here)
    p[..., 1] -= p[..., 1].min()
    p -= p[0, 0] * np.array([1.0, 0.0, 1.0])
    if hml3d_frame0:
        forward0 = _facing(p[:1], skeleton)
    else:  # the smoothed forward of the IK below, at frame 0 (smoothing commutes with a turn about y)
        forward0 = gaussian_smooth(_facing(p, skeleton, swap_hips=True), 1.0 * fps)[:1]
    p = qrot(qbetween(_normalize(forward0), np.array([[0.0, 0.0, 1.0]])), p)
    # step 4: a foot joint is in contact when its squared displacement per frame is below 0.002 m² at 20 fps
    disp2 = ((p[1:] - p[:-1]) ** 2).sum(-1)                       # (T-1, J)
    contact = disp2[:, skeleton.feet_left + skeleton.feet_right] < 0.002 * (20.0 / fps) ** 2
    # step 5: rotations from IK with the forward direction smoothed over 1 s (σ = 20 frames at 20 fps)
    quat = inverse_kinematics(p, skeleton, smooth_sigma_frames=1.0 * fps, identity_frame0=hml3d_frame0)
    # qbetween keeps w >= 0, so the root quaternion jumps from q to -q when the facing passes 180° from
    # frame 0's; the arcsin below would then give that row's angle the wrong sign (HumanML3D does, and its
    # recovered heading stays off by ~2 rows' turn from there on). qfix keeps the sign continuous; without
    # such a turn (all the reference files) it changes nothing.
    r = qfix(quat[:, 0])                                          # (T, 4) world -> facing frame
    # step 6: root angular velocity (a half angle), linear velocity in the next frame's facing frame
    ang = np.arcsin(qmul(r[1:], qinv(r[:-1]))[:, 2])              # (T-1,)
    lin = qrot(r[1:], p[1:, 0] - p[:-1, 0])[:, [0, 2]]            # (T-1, 2)
    # step 7: root-relative positions and joint velocities, both in the frame's facing frame
    ric = qrot(r[:, None], p - p[:, :1] * np.array([1.0, 0.0, 1.0]))[:, 1:]   # (T, J-1, 3)
    vel = qrot(r[:-1, None], p[1:] - p[:-1])                      # (T-1, J, 3)
    # step 8: the layout; row t describes frame t (velocities: from t to t+1)
    feats = np.concatenate([
        ang[:, None],                       # [0]        root angular velocity about y, half-angle per frame
        lin,                                # [1:3]      root linear velocity xz, per frame, facing frame
        p[:-1, 0, 1:2],                     # [3]        root height
        ric[:-1].reshape(T - 1, -1),        # ric        (J-1)*3 positions relative to the root, facing frame
        quat_to_6d(quat[:-1, 1:]).reshape(T - 1, -1),   # rot6d  (J-1)*6 IK rotations, 6D
        vel.reshape(T - 1, -1),             # vel        J*3 joint velocities, per frame, facing frame
        contact,                            # contact    4: feet_left then feet_right
    ], axis=-1)
    assert feats.shape[1] == skeleton.feature_dim, (feats.shape, skeleton.feature_dim)
    return feats.astype(np.float32)


def features_to_joints(features, skeleton=SMPL22):
    """(..., N, D) features -> (..., N, J, 3) positions, one frame per row, as HumanML3D's recover_from_ric.

    T-1 feature rows give the first T-1 of the T frames they came from (HumanML3D's published new_joints
    have as many frames as new_joint_vecs rows for this reason). Frame 0 faces +Z at the xz origin.
    """
    f = np.asarray(features, dtype=np.float64)
    J = skeleton.num_joints
    assert f.shape[-1] == skeleton.feature_dim, (f.shape, skeleton.feature_dim)
    # integrate the half-angles: frame t's yaw uses rows 0..t-1, frame 0 is the identity
    a = np.cumsum(np.concatenate([np.zeros_like(f[..., :1, 0]), f[..., :-1, 0]], axis=-1), axis=-1)  # (..., N)
    r = np.stack([np.cos(a), np.zeros_like(a), np.sin(a), np.zeros_like(a)], axis=-1)              # (..., N, 4)
    step = np.zeros(f.shape[:-1] + (3,))
    step[..., 1:, [0, 2]] = f[..., :-1, 1:3]
    root = np.cumsum(qrot(qinv(r), step), axis=-2)                # (..., N, 3)
    root[..., 1] = f[..., 3]
    ric = f[..., feature_slices(skeleton)["ric"]].reshape(f.shape[:-1] + (J - 1, 3))
    rest = qrot(qinv(r)[..., None, :], ric) + (root * np.array([1.0, 0.0, 1.0]))[..., None, :]
    return np.concatenate([root[..., None, :], rest], axis=-2)    # (..., N, J, 3)


# ----------------------------------------------------------------------------------------------
# Datasets in the HumanML3D layout
# ----------------------------------------------------------------------------------------------
LAYOUT = """expected layout (HumanML3D's):
  DIR/new_joint_vecs/<id>.npy   (T, 263) features (251 for KIT)
  DIR/texts/<id>.txt            lines 'caption#word/POS ...#start#end' (start/end in seconds, 0.0#0.0 = whole)
  DIR/train.txt val.txt test.txt  one id per line
  DIR/Mean.npy Std.npy          optional; computed from the train split when absent
  DIR/meta.csv                  optional: id,fps[,action] per sequence (else 20 fps, 12.5 for KIT)
HumanML3D is made from AMASS with the scripts of https://github.com/EricGuo5513/HumanML3D
(KIT-ML from the same repository's instructions); nothing is downloaded by this project."""
KIT_SOURCE = """KIT-ML in this layout: new_joint_vecs (T, 251) for KIT's 21 joints at 12.5 fps, new_joints (T, 21, 3),
texts, train/val/test.txt, Mean.npy/Std.npy. It is the KIT Motion-Language Dataset (Plappert et al. 2016,
https://motion-annotation.humanoids.kit.edu/dataset/) processed by HumanML3D's scripts; the README of
https://github.com/EricGuo5513/HumanML3D says where to get the processed KIT-ML folder."""
BVH_LAYOUT = """expected layout (a folder of BVH files, --data bvh):
  DIR/**/*.bvh                  one hierarchy (same joints and parents, any order), any framerate per file
  DIR/texts/<stem>.txt          optional captions: plain lines, or HumanML3D's 'caption#tokens#start#end'
  DIR/labels.csv                optional: file,caption[,action] (one row per caption; file = stem or name.bvh)
  DIR/train.txt val.txt test.txt  optional, stems; else files ordered by CRC-32 of the stem: last 10% (at least
                                one) test, the 10% before val, the rest train (under 3 files: all in every split)"""

DATASETS = {"humanml3d": SMPL22, "kit": KIT21, "synthetic": SMPL22, "bvh": None}   # bvh: the files' own skeleton


class DataError(Exception):
    """A user-facing problem with the data: the message says what is wrong and what was expected."""


@dataclass
class MotionSet:
    """Sequences of one split: features in per-second units at each sequence's native framerate."""
    names: list
    features: list                # (T_i, D) float32, velocity channels per second
    fps: np.ndarray               # (N,) native framerates
    captions: list                # N lists of strings
    actions: list                 # N labels ('' when the dataset has none)
    skeleton: object = SMPL22
    mean: np.ndarray = None       # (D,) statistics of the train split, per-second units
    std: np.ndarray = None

    def __len__(self):
        return len(self.names)

    def durations(self):
        return np.array([(len(x) - 1) / f for x, f in zip(self.features, self.fps)])

    def subset(self, keep):
        """The sequences whose indices are in keep, same statistics."""
        return MotionSet([self.names[i] for i in keep], [self.features[i] for i in keep], self.fps[list(keep)],
                         [self.captions[i] for i in keep], [self.actions[i] for i in keep], self.skeleton,
                         self.mean, self.std)


def _read_ids(path):
    with open(path) as f:
        return [line.strip() for line in f if line.strip()]


def _read_texts(path, plain=False):
    """Parse a HumanML3D text file -> list of (caption, start_s, end_s); plain: a line without '#' fields is a
    whole-motion caption."""
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            parts = line.split("#")
            if len(parts) < 4 and plain:
                out.append((line, 0.0, 0.0))
                continue
            if len(parts) < 4:
                raise DataError(f"{path}:{n}: expected 'caption#tokens#start#end', got {line[:60]!r}")
            try:
                start, end = float(parts[2]), float(parts[3])
            except ValueError:
                raise DataError(f"{path}:{n}: start/end are not numbers: {parts[2]!r}, {parts[3]!r}") from None
            start = 0.0 if np.isnan(start) else start
            end = 0.0 if np.isnan(end) else end
            out.append((parts[0].strip(), start, end))
    return out


def group_std(std, skeleton):
    """HumanML3D's statistics: one std per channel group (root parts, ric, rot6d, vel, contacts)."""
    std = std.copy()
    sl = feature_slices(skeleton)
    for s in (slice(0, 1), slice(1, 3), slice(3, 4), sl["ric"], sl["rot6d"], sl["vel"], sl["contact"]):
        std[s] = std[s].mean()
    return np.maximum(std, 1e-3)


def _layout_items(name, data_dir, split, skeleton):
    """(id, per-frame features, fps, [(caption, start, end)], action) of one split in the HumanML3D layout."""
    layout = LAYOUT + ("\n" + KIT_SOURCE if name == "kit" else "")
    if not data_dir or not os.path.isdir(data_dir):
        raise DataError(f"dataset directory {data_dir!r} not found\n{layout}")
    for need in ("new_joint_vecs", "texts", f"{split}.txt"):
        if not os.path.exists(os.path.join(data_dir, need)):
            raise DataError(f"{data_dir} has no {need}\n{layout}")
    meta = {}
    meta_path = os.path.join(data_dir, "meta.csv")
    if os.path.exists(meta_path):
        with open(meta_path, newline="") as f:
            for n, row in enumerate(csv.DictReader(f), 2):
                try:
                    meta[row["id"]] = (float(row["fps"]), row.get("action") or "")
                except (KeyError, TypeError, ValueError):
                    raise DataError(f"{meta_path}:{n}: expected columns id,fps[,action]") from None
    for sid in _read_ids(os.path.join(data_dir, f"{split}.txt")):
        vec_path = os.path.join(data_dir, "new_joint_vecs", sid + ".npy")
        txt_path = os.path.join(data_dir, "texts", sid + ".txt")
        if not os.path.exists(vec_path) or not os.path.exists(txt_path):
            continue  # HumanML3D's split files list ids that some preparations drop; T2M skips them too
        try:
            x = np.load(vec_path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise DataError(f"{vec_path}: cannot read ({e})") from None
        if x.ndim != 2 or x.shape[1] != skeleton.feature_dim or not np.isfinite(x).all():
            raise DataError(f"{vec_path}: expected finite ({'T'}, {skeleton.feature_dim}) features for {name}, "
                            f"got shape {x.shape}")
        fps, action = meta.get(sid, (skeleton.fps, ""))
        yield sid, x.astype(np.float32), fps, _read_texts(txt_path), action


def load_dataset(name, data_dir, split="train", fps_mode="native", min_seconds=None, with_stats=True):
    """Load one split of a dataset in the HumanML3D layout, or a folder of BVH files (name 'bvh', see
    load_bvh_folder) -> MotionSet (features per second).

    fps_mode 'fixed' resamples every sequence to 20 fps first: the peers' preprocessing, our baseline.
    Sub-segments of a text file ('#start#end' not 0) become sequences of their own, as in T2M's loader.
    Sequences shorter than min_seconds are left out: 1 s, or 0.5 s for BVH files (Bandai's in-place cycles
    last 0.63-1 s, GAMES-105's 100 fps walk 0.99 s).
    """
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}")
    min_seconds = (0.5 if name == "bvh" else 1.0) if min_seconds is None else min_seconds
    if name == "bvh":
        skeleton, items = load_bvh_folder(data_dir, split)
    else:
        skeleton, items = DATASETS[name], _layout_items(name, data_dir, split, DATASETS[name])
    names, feats, fpss, caps, acts = [], [], [], [], []
    for sid, x, fps, texts, action in items:
        x = features_per_second(x, fps)
        whole = [c for c, start, end in texts if start == 0.0 and end == 0.0]
        parts = [(c, start, end) for c, start, end in texts if start != 0.0 or end != 0.0]
        pieces = [(sid, x, whole)] if whole or not parts else []
        for k, (caption, start, end) in enumerate(parts):
            a, b = int(round(start * fps)), int(round(end * fps))
            pieces.append((f"{sid}#{k}", x[a:b], [caption]))
        for pid, px, pcaps in pieces:
            if (len(px) - 1) / fps < min_seconds:
                continue
            if fps_mode == "fixed":
                px = resample(px, fps, 20.0)
            names.append(pid)
            feats.append(px)
            fpss.append(20.0 if fps_mode == "fixed" else fps)
            caps.append(pcaps)
            acts.append(action)
    if not names:
        raise DataError(f"{data_dir}: no usable sequences (of at least {min_seconds:g} s) in the {split} split\n"
                        + (BVH_LAYOUT if name == "bvh" else LAYOUT))
    ms = MotionSet(names, feats, np.array(fpss), caps, acts, skeleton)
    if with_stats:
        ms.mean, ms.std = _statistics(data_dir, skeleton, ms if split == "train" else None, name)
    return ms


def _statistics(data_dir, skeleton, train, name):
    """Mean/Std in per-second units. Mean.npy/Std.npy hold per-frame values at the dataset's nominal rate
    (skeleton.fps), exactly HumanML3D's files; computed from the train split when absent."""
    mp, sp = os.path.join(data_dir, "Mean.npy"), os.path.join(data_dir, "Std.npy")
    if name != "bvh" and os.path.exists(mp) and os.path.exists(sp):
        try:
            mean, std = np.load(mp, allow_pickle=False), np.load(sp, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise DataError(f"{mp} or {sp}: cannot read ({e})") from None
        if mean.shape != (skeleton.feature_dim,) or std.shape != (skeleton.feature_dim,):
            raise DataError(f"{mp}: expected shape ({skeleton.feature_dim},), got {mean.shape} / {std.shape}")
        return (features_per_second(mean[None].astype(np.float32), skeleton.fps)[0],
                np.abs(features_per_second(std[None].astype(np.float32), skeleton.fps)[0]))
    if train is None:
        train = load_dataset(name, data_dir, "train", with_stats=False)
    allx = np.concatenate(train.features, 0)
    return allx.mean(0), group_std(allx.std(0), skeleton)


def interpolate(x, fps, t):
    """Rows of x (T, D) sampled at fps, read at times t (any shape, seconds) by linear interpolation -> t.shape + (D,)."""
    pos = t * fps
    k0 = np.minimum(np.floor(pos).astype(int), len(x) - 1)
    k1 = np.minimum(k0 + 1, len(x) - 1)
    w = (pos - k0)[..., None].astype(np.float32)
    return x[k0] * (1 - w) + x[k1] * w


def resample(x, fps, new_fps):
    """Linearly interpolate rows (T, D) sampled at fps onto a grid at new_fps covering the same duration."""
    duration = (len(x) - 1) / fps
    return interpolate(x, fps, np.arange(int(np.floor(duration * new_fps + 1e-6)) + 1) / new_fps)


# ----------------------------------------------------------------------------------------------
# Clips at random framerates (the paper's training unit)
# ----------------------------------------------------------------------------------------------

FPS_CHOICES = (10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 100.0, 120.0)


class ClipSampler:
    """Draw, per sequence, a framerate s <= its native rate and m frames at rate s around a random centre.

    All sequences live in one flat tensor; a clip is gathered by linear interpolation between the two
    native frames around each timestamp, so memory depends on m, never on the sequence's framerate.
    Features are normalized with the train statistics. Velocity channels are per second, so they mean
    the same thing at every clip rate (the decoder is told s as well).
    """

    def __init__(self, ms, mean, std, time_norm=True):
        self.flat = torch.from_numpy((np.concatenate(ms.features, 0) - mean) / std).float()  # (sum T_i, D)
        lengths = np.array([len(x) for x in ms.features])
        self.offset = torch.from_numpy(np.concatenate([[0], np.cumsum(lengths)[:-1]])).long()
        self.length = torch.from_numpy(lengths).long()
        self.fps = torch.from_numpy(ms.fps).float()
        self.duration = (self.length - 1).float() / self.fps
        self.time_norm = time_norm
        self.choices = torch.tensor(FPS_CHOICES)

    def __len__(self):
        return len(self.length)

    def gather(self, idx, t_sec):
        """Features (B, M, D) of sequences idx (B,) at times t_sec (B, M) seconds, by interpolation."""
        pos = t_sec * self.fps[idx, None]                        # (B, M) fractional native frame
        k0 = pos.floor().long().clamp(min=0)
        k0 = torch.minimum(k0, self.length[idx, None] - 1)
        k1 = torch.minimum(k0 + 1, self.length[idx, None] - 1)
        w = (pos - k0).clamp(0, 1)[..., None]                    # (B, M, 1)
        base = self.offset[idx, None]
        return self.flat[base + k0] * (1 - w) + self.flat[base + k1] * w

    def time_coord(self, idx, t_sec):
        """The decoder's time input: normalized to [0, 1] over the sequence, or raw seconds."""
        return t_sec / self.duration[idx, None] if self.time_norm else t_sec

    def sample(self, idx, m, generator=None, max_fps=None):
        """-> features (B, m, D), time coords (B, m), clip fps s (B,), idx (B,)."""
        B = len(idx)
        native = self.fps[idx]
        cap = native if max_fps is None else torch.clamp(native, max=max_fps)
        # s uniform over the standard rates up to the cap, or the cap itself (the native rate)
        allowed = self.choices[None, :] <= cap[:, None] + 1e-6    # (B, K)
        allowed = torch.cat([allowed, torch.ones(B, 1, dtype=torch.bool)], 1)
        options = torch.cat([self.choices[None].expand(B, -1), cap[:, None]], 1)
        pick = torch.multinomial(allowed.float(), 1, generator=generator)[:, 0]
        s = options[torch.arange(B), pick]                       # (B,)
        # a window of m frames at rate s around a random centre, kept inside the sequence; its start is
        # snapped to the native grid so that s = native (or native / k) reads original frames exactly
        # rather than midpoints that would blur the detail only a high rate holds
        dur = self.duration[idx]
        span = (m - 1) / s
        centre = torch.rand(B, generator=generator) * dur
        start = torch.minimum((centre - span / 2).clamp(min=0), (dur - span).clamp(min=0))
        start = torch.floor(start * native + 1e-4) / native
        t_sec = start[:, None] + torch.arange(m)[None] / s[:, None]  # (B, m)
        t_sec = torch.minimum(t_sec, dur[:, None])
        return self.gather(idx, t_sec), self.time_coord(idx, t_sec), s, idx


# ----------------------------------------------------------------------------------------------
# The embedded dataset on disk
# ----------------------------------------------------------------------------------------------


def generate_motions(num=2000, seed=0):
    """The embedded dataset's motions: procedural, deterministic by seed (see synthetic.py)."""
    from synthetic import generate_motions as generate   # synthetic.py builds on this module: import late
    return generate(num, seed)


def write_dataset(out_dir, motions, skeleton=SMPL22):
    """Write generated motions (dicts with name, joints, fps, captions, action, split) in the HumanML3D
    layout plus meta.csv (native fps, action). Files are written to a temp dir and renamed at the end."""
    tmp = out_dir.rstrip("/") + ".tmp"
    for sub in ("new_joint_vecs", "new_joints", "texts"):
        os.makedirs(os.path.join(tmp, sub), exist_ok=True)
    splits = {"train": [], "val": [], "test": []}
    train_feats = []
    for m in motions:
        x = joints_to_features(m["joints"], skeleton, fps=m["fps"], hml3d_frame0=False)
        np.save(os.path.join(tmp, "new_joint_vecs", m["name"] + ".npy"), x)
        np.save(os.path.join(tmp, "new_joints", m["name"] + ".npy"), m["joints"].astype(np.float32))
        with open(os.path.join(tmp, "texts", m["name"] + ".txt"), "w") as f:
            for c in m["captions"]:
                tokens = " ".join(w + "/OTHER" for w in re.findall(r"[a-z]+", c.lower()))
                f.write(f"{c}#{tokens}#0.0#0.0\n")
        splits[m["split"]].append(m["name"])
        if m["split"] == "train":
            train_feats.append(features_per_second(x, m["fps"]))
    for split, ids in splits.items():
        with open(os.path.join(tmp, f"{split}.txt"), "w") as f:
            f.write("\n".join(ids) + "\n")
    with open(os.path.join(tmp, "meta.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "fps", "action"])
        for m in motions:
            w.writerow([m["name"], m["fps"], m["action"]])
    allx = np.concatenate(train_feats, 0)
    # stored per frame at the nominal 20 fps, like HumanML3D's files (see _statistics)
    mean = features_per_frame(allx.mean(0)[None], skeleton.fps)[0]
    std = features_per_frame(group_std(allx.std(0), skeleton)[None], skeleton.fps)[0]
    np.save(os.path.join(tmp, "Mean.npy"), mean.astype(np.float32))
    np.save(os.path.join(tmp, "Std.npy"), std.astype(np.float32))
    if os.path.exists(out_dir):
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)


# ----------------------------------------------------------------------------------------------
# BVH files
# ----------------------------------------------------------------------------------------------
# BVH motion files: read any skeleton as joint positions, write joint positions back as a BVH.
#
#     joints, skeleton, fps = read_bvh("walk.bvh")                   # (T, J, 3) metres, Skeleton, 1 / Frame Time
#     write_bvh("out.bvh", joints, SMPL22, fps=20)                   # positions -> a BVH that Blender imports
#     bvh = read_bvh_channels("walk.bvh"); write_bvh_channels("copy.bvh", bvh)   # exact raw round trip
#     python -m pytest -q tests/test_bvh.py
#
# Conventions (BVH's own, as Blender's importer reads them):
# - Euler angles in degrees, intrinsic, in the listed order: CHANNELS ... Zrotation Yrotation Xrotation means
#   R = Rz · Ry · Rx. A child sits at parent_pos + parent_global_rot @ t, where t is the child's OFFSET, or its
#   position channels when it has them (any joint may: Bandai writes 6 channels on every joint).
# - Y is up (not checked). End Sites are not joints. Lines may end in LF, CRLF or a mix of both.
# - Units: read_bvh(scale=None) guesses metres per file unit from the body size (_guess_scale).


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


def read_bvh_channels(path):
    """Parse a BVH file into BVHData; any malformation raises ValueError('{path}: line N: ...')."""
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        lines = f.read().splitlines()             # text mode already maps CRLF and lone CR to LF

    def fail(msg):
        raise ValueError(f"{path}: {msg}")

    m = next((i for i, line in enumerate(lines) if line.strip().upper() == "MOTION"), None)
    if m is None:
        fail(f"no MOTION line in its {len(lines)} lines")
    toks = [(t, i + 1) for i, line in enumerate(lines[:m]) for t in line.split()]   # (token, line number)
    k = 0

    def take(what):
        nonlocal k
        if k >= len(toks):
            fail(f"line {m + 1}: HIERARCHY ends before {what}")
        k += 1
        return toks[k - 1]

    def number(what):
        t, ln = take(what)
        try:
            return float(t)
        except ValueError:
            fail(f"line {ln}: {what} {t!r} is not a number")

    t, ln = take("HIERARCHY")
    if t.upper() != "HIERARCHY":
        fail(f"line {ln}: expected HIERARCHY, found {t!r}")
    names, parents, offsets, channels, end_sites = [], [], [], [], []
    stack = []                                    # open blocks: joint index, or None for an End Site
    while k < len(toks):
        t, ln = take("")
        key = t.upper()
        if key in ("ROOT", "JOINT"):
            if (key == "ROOT") == bool(stack) or (stack and stack[-1] is None):
                fail(f"line {ln}: {t} is not allowed here")
            name = []
            while k < len(toks) and toks[k][1] == ln:  # the rest of the line, spaces and all
                name.append(take("a name")[0])
            if not name:
                fail(f"line {ln}: {t} without a name")
            names.append(" ".join(name))
            parents.append(stack[-1] if stack else -1)
            offsets.append(None)
            channels.append(())
            if take("'{'")[0] != "{":
                fail(f"line {ln}: expected '{{' after {t} {names[-1]}")
            stack.append(len(names) - 1)
        elif key == "END":
            if take("Site")[0].upper() != "SITE" or not stack or stack[-1] is None:
                fail(f"line {ln}: misplaced End Site")
            while k < len(toks) and toks[k][1] == ln:   # some exporters name the End Site: ignore it
                k += 1
            if take("'{'")[0] != "{":
                fail(f"line {ln}: expected '{{' after End Site")
            end_sites.append([stack[-1], None])
            stack.append(None)
        elif key == "OFFSET" and stack:
            xyz = [number("OFFSET value") for _ in range(3)]
            if stack[-1] is None:
                end_sites[-1][1] = np.array(xyz)
            else:
                offsets[stack[-1]] = xyz
        elif key == "CHANNELS" and stack and stack[-1] is not None:
            n = number("channel count")
            chans = tuple(take("a channel name")[0] for _ in range(int(n)))
            bad = [c for c in chans if c[:1].upper() + c[1:].lower() not in _CHANNELS]
            if bad or n != int(n) or n < 0:
                fail(f"line {ln}: bad CHANNELS {bad or n}")
            channels[stack[-1]] = chans
        elif t == "}" and stack:
            stack.pop()
        else:
            fail(f"line {ln}: unexpected {t!r} in HIERARCHY")
    if stack or not names:
        fail(f"line {m + 1}: HIERARCHY " + ("has an unclosed '{'" if stack else "has no ROOT"))
    missing = [n for n, o in zip(names, offsets) if o is None]
    if missing or any(e[1] is None for e in end_sites):
        fail(f"no OFFSET for {missing or 'an End Site'}")

    # MOTION: 'Frames: T', 'Frame Time: dt', then T rows of C numbers
    body = [(i + 1, line) for i, line in enumerate(lines[m + 1:], start=m + 1) if line.strip()]
    header = {}
    for (ln, line), key in zip(body[:2], ("frames", "frame time")):
        name, _, value = line.partition(":")
        try:
            header[key] = (int if key == "frames" else float)(value)
        except ValueError:
            name = ""
        if name.strip().lower() != key:
            fail(f"line {ln}: expected '{key.title()}: <number>', found {line.strip()!r}")
    if len(header) < 2 or header["frame time"] <= 0:
        fail(f"line {m + 1}: MOTION needs 'Frames:' and a positive 'Frame Time:'")
    T, C = header["frames"], sum(len(c) for c in channels)
    rows = body[2:]
    values = [line.split() for _, line in rows]
    for (ln, _), v in zip(rows, values):
        if len(v) != C:
            fail(f"line {ln}: {len(v)} values, expected {C} (one per channel)")
    if len(rows) != T:
        fail(f"line {rows[-1][0] if rows else body[1][0]}: 'Frames: {T}' but {len(rows)} frame lines (truncated?)")
    try:
        motion = np.array(values, dtype=np.float64).reshape(T, C)
    except ValueError:
        for (ln, _), v in zip(rows, values):
            for x in v:
                try:
                    float(x)
                except ValueError:
                    fail(f"line {ln}: {x!r} is not a number")
    return BVHData(names, parents, np.array(offsets, dtype=np.float64), channels, end_sites, motion,
                   header["frame time"])


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
    """(positions (T, J, 3) metres, Skeleton, fps) from a BVH file; scale = metres per file unit (None: guess)."""
    bvh = read_bvh_channels(path)
    pos = bvh_positions(bvh)
    scale = _guess_scale(pos) if scale is None else scale
    fps = 1.0 / bvh.frame_time                   # keep the file's rate: .0083333 -> 120.0005 (see round_fps)
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
    return Skeleton(name=name, joint_names=tuple(names), parents=tuple(int(p) for p in parents),
                    rest_dirs=tuple(map(tuple, dirs.tolist())), bone_lengths=tuple(lengths.tolist()),
                    chains=_chains(parents), face_joints=face, feet_left=left, feet_right=right,
                    fps=float(fps), leg_joints=leg)


def round_fps(fps, rel_tol=5e-4):
    """The intended rate: 120.0005 -> 120.0, 59.9988 -> 60.0, 29.97 stays 29.97 (rounded to 3 decimals)."""
    return float(round(fps)) if abs(fps - round(fps)) <= rel_tol * fps else round(fps, 3)


def _chains(parents):
    """Kinematic chains, each from the root or a branching joint down to a leaf (the first child continues
    the chain, the others start new ones): SMPL22's tree gives back _SMPL22_CHAINS."""
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
    """(..., 3, 3) shortest-arc rotations taking direction u to direction v (HumanML3D's qbetween, data.qbetween),
    plus the cases it leaves undefined: a zero vector gives the identity, opposite vectors a half-turn."""
    u, v = np.broadcast_arrays(_unit(u), _unit(v))
    q = np.concatenate([1.0 + (u * v).sum(-1, keepdims=True), np.cross(u, v)], axis=-1)   # (..., 4) w, xyz
    opposite = np.linalg.norm(q, axis=-1) < 1e-9
    if opposite.any():                            # any axis perpendicular to u will do
        uo = u[opposite]
        q[opposite] = np.concatenate([np.zeros((len(uo), 1)),
                                      _unit(np.cross(uo, np.eye(3)[np.abs(uo).argmin(-1)]))], axis=-1)
    return quat_to_matrix(_unit(q))


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


def write_bvh(path, joints, skeleton=SMPL22, fps=None, units="m", length_tol=1e-3):
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


def _bvh_read(path):
    try:
        return read_bvh(path)
    except (ValueError, OSError) as e:
        raise DataError(str(e)) from None


def _convert_bvh_folder(data_dir):
    """-> (stems, per-frame features, native fps, Skeleton) for every .bvh file under data_dir (sorted)."""
    if not data_dir or not os.path.isdir(data_dir):
        raise DataError(f"BVH directory {data_dir!r} not found\n{BVH_LAYOUT}")
    paths = sorted(os.path.join(d, f) for d, _, files in os.walk(data_dir, followlinks=True)
                   for f in files if f.lower().endswith(".bvh"))
    if not paths:
        raise DataError(f"{data_dir}: no .bvh files\n{BVH_LAYOUT}")
    key = [(p, os.stat(p).st_mtime_ns, os.stat(p).st_size) for p in paths]
    if _BVH_FOLDER.get("key") == key:
        return _BVH_FOLDER["value"]
    stems = [os.path.basename(p)[:-4] for p in paths]
    if len(set(stems)) < len(stems):
        twice = sorted({p for p, s in zip(paths, stems) if stems.count(s) > 1})
        raise DataError(f"{data_dir}: file names must be unique (captions and splits use them): {twice[:2]}")
    # the first file (sorted) sets the skeleton: its joint order, which joints are kept, and the bone lengths
    # every other file is retargeted to, as HumanML3D retargets all of AMASS to one subject (uniform_skeleton)
    ref_x, ref, _ = _bvh_read(paths[0])
    tree = {n: ref.joint_names[p] if p >= 0 else None for n, p in zip(ref.joint_names, ref.parents)}
    keep, skeleton = prune_skeleton(ref_x, ref)
    skeleton = replace(skeleton, name=os.path.basename(os.path.abspath(data_dir)))
    if len(skeleton.face_joints) != 4 or len(skeleton.feet_left) != 2 or len(skeleton.feet_right) != 2:
        raise DataError(f"{paths[0]}: cannot tell the hips, shoulders and feet (ankle, toe) from the joint names "
                        f"{', '.join(skeleton.joint_names)}; expected names such as LeftUpLeg, RightShoulder, "
                        "LeftFoot, LeftToe (any of Left/Right, L/R, _l/_r)")
    parent = [p if p >= 0 else j for j, p in enumerate(skeleton.parents)]
    feats, fps_list = [], []
    for path in paths:
        x, skel, fps = _bvh_read(path)
        other = {n: skel.joint_names[p] if p >= 0 else None for n, p in zip(skel.joint_names, skel.parents)}
        if other != tree:
            diff = sorted(set(tree.items()) ^ set(other.items()), key=str)[:4]
            raise DataError(f"{path} and {paths[0]} have different hierarchies (joint, parent: {diff}); "
                            "a folder must hold one skeleton")
        x = drop_tpose(x[:, [skel.joint_names.index(n) for n in ref.joint_names]][:, keep])
        lengths = np.linalg.norm(x[0] - x[0, parent], axis=-1)
        if np.abs(lengths - skeleton.bone_lengths).max() > 1e-3:   # another subject: the reference's bones
            x = uniform_skeleton(x, skeleton)
        fps = round_fps(fps)
        f = (joints_to_features(x, skeleton, fps=fps, hml3d_frame0=False) if len(x) > 2
             else np.zeros((0, skeleton.feature_dim), np.float32))
        if not np.isfinite(f).all():
            raise DataError(f"{path}: the features are not finite (a bone that changes length or a degenerate pose)")
        feats.append(f)
        fps_list.append(fps)
    _BVH_FOLDER.update(key=key, value=(stems, feats, fps_list, replace(skeleton, fps=fps_list[0])))
    return _BVH_FOLDER["value"]


def load_bvh_folder(data_dir, split):
    """-> (Skeleton, [(stem, per-frame features, fps, [(caption, start, end)], action)]) of one split of a
    folder of BVH files (BVH_LAYOUT). The features are HumanML3D's on the folder's own skeleton
    (hml3d_frame0=False, as the embedded data), each file at its own rate."""
    stems, feats, fps, skeleton = _convert_bvh_folder(data_dir)
    split_files = {s: os.path.join(data_dir, f"{s}.txt") for s in ("train", "val", "test")}
    if any(os.path.exists(p) for p in split_files.values()):
        if not os.path.exists(split_files[split]):
            raise DataError(f"{data_dir} has train/val/test files but no {split}.txt\n{BVH_LAYOUT}")
        ids = _read_ids(split_files[split])
        unknown = [i for i in ids if i not in stems]
        if unknown:
            raise DataError(f"{split_files[split]} lists {unknown[:3]}, not .bvh files of {data_dir}")
    elif len(stems) < 3:
        ids = stems
    else:  # a deterministic shuffle (CRC-32 of the name), so neighbours such as walk_001, walk_002 spread out
        order = sorted(stems, key=lambda s: (zlib.crc32(s.encode()), s))
        n, k = len(order), max(1, round(0.1 * len(order)))
        ids = {"train": order[:n - 2 * k], "val": order[n - 2 * k:n - k], "test": order[n - k:]}[split]
    texts, actions = {}, {}
    labels = os.path.join(data_dir, "labels.csv")
    if os.path.exists(labels):
        with open(labels, newline="", encoding="utf-8") as f:
            for n, row in enumerate(csv.DictReader(f), 2):
                if not row.get("file"):
                    raise DataError(f"{labels}:{n}: expected columns file,caption[,action]")
                stem = os.path.basename(row["file"].strip())
                stem = stem[:-4] if stem.lower().endswith(".bvh") else stem
                if (row.get("caption") or "").strip():
                    texts.setdefault(stem, []).append((row["caption"].strip(), 0.0, 0.0))
                if (row.get("action") or "").strip():
                    actions.setdefault(stem, row["action"].strip())
    for stem in ids:
        path = os.path.join(data_dir, "texts", stem + ".txt")
        if os.path.exists(path):
            texts[stem] = texts.get(stem, []) + _read_texts(path, plain=True)
    index = {s: i for i, s in enumerate(stems)}
    return skeleton, [(s, feats[index[s]], fps[index[s]], texts.get(s, []), actions.get(s, "")) for s in ids]


if __name__ == "__main__":
    import argparse
    import time
    parser = argparse.ArgumentParser(description="Write the embedded dataset in the HumanML3D layout.")
    parser.add_argument("--out", default="data/synthetic", help="output directory (replaced)")
    parser.add_argument("--num", type=int, default=2000, help="number of sequences")
    parser.add_argument("--seed", type=int, default=0, help="generator seed")
    args = parser.parse_args()
    t0 = time.time()
    write_dataset(args.out, generate_motions(args.num, args.seed))
    print(f"wrote {args.num} sequences to {args.out} in {time.time() - t0:.1f} s")
