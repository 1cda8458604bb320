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
from dataclasses import dataclass, fields

import numpy as np
import torch

import guard
from guard import DataError   # a user-facing problem with the data: one line (guard.report_errors)

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
    # HumanML3D's t2m_raw_offsets (its paramUtil.py); +X is the body's left, +Y up, +Z forward
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
        skeleton = Skeleton(**{k: tuples(v) for k, v in s.items()})
    except (AttributeError, TypeError) as e:
        raise DataError(f"the checkpoint's skeleton is not readable ({e})") from None
    return next((b for b in SKELETONS.values() if b == skeleton), skeleton)   # a built-in one is that one


def forward_kinematics(local_rot, root_pos, skeleton):
    """(T, J, 3, 3) local rotations (each relative to its parent's frame, the root's global), (T, 3) root position
    -> (T, J, 3) joint positions: a child is at parent_pos + parent_global_rot @ offset[child]."""
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
# Features: HumanML3D's representation (its motion_representation.ipynb), numpy in and out
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
    """Retarget (T, J, 3) positions to the skeleton's bone lengths, as HumanML3D's uniform_skeleton (step 1 of
    process_file in its motion_representation.ipynb): unsmoothed IK, then FK with the new lengths; the root
    trajectory is scaled by the ratio of the leg_joints bone lengths (measured on frame 0) so that strides stay
    in proportion to the new legs."""
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


def features_per_second(feats, fps):
    """(..., D) numpy features with per-frame velocity channels -> the same with velocities per second.
    Exact for [0] too: it is arcsin(sin(θ/2)) = θ/2 for a per-frame yaw θ, linear in θ, so fps·[0] is half
    the yaw rate in rad/s."""
    J, rest = divmod(feats.shape[-1] + 1, 12)                   # D = 12 J - 1 for any skeleton
    assert rest == 0, f"{feats.shape[-1]} is not a feature width (12 J - 1)"
    return feats * np.where(velocity_mask(J), fps, 1.0).astype(feats.dtype)


def features_per_frame(feats, fps):
    """The inverse of features_per_second."""
    return features_per_second(feats, 1.0 / fps)


def round_fps(fps, rel_tol=5e-4):
    """The intended rate of a file's 1 / frame time: 120.0005 -> 120.0, 59.9988 -> 60.0, 29.97 stays 29.97
    (rounded to 3 decimals)."""
    return float(round(fps)) if abs(fps - round(fps)) <= rel_tol * fps else round(fps, 3)


def joints_to_features(joints, skeleton=SMPL22, fps=None, hml3d_frame0=True):
    """(T, J, 3) joint positions (metres, Y up) -> (T-1, D) float32 HumanML3D features: steps 2-8 of HumanML3D's
    process_file (motion_representation.ipynb), numbered below; step 1 is uniform_skeleton (call it first for raw data).

    At a native fps other than 20 the smoothing (σ = 1 s) and the contact threshold (the same foot speed) are
    defined in seconds, while the velocity channels stay per frame at the file's own rate, so the files read like
    HumanML3D's (see features_per_second).

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
  DIR/meta.csv                  optional: id,fps[,action], a line per sequence (else 20 fps, 12.5 for KIT)
HumanML3D is made from AMASS with the scripts of https://github.com/EricGuo5513/HumanML3D
(KIT-ML from the same repository's instructions); nothing is downloaded by this project."""
KIT_SOURCE = """KIT-ML in this layout: new_joint_vecs (T, 251) for KIT's 21 joints at 12.5 fps, new_joints (T, 21, 3),
texts, train/val/test.txt, Mean.npy/Std.npy. It is the KIT Motion-Language Dataset (Plappert et al. 2016,
https://motion-annotation.humanoids.kit.edu/dataset/) processed by HumanML3D's scripts; the README of
https://github.com/EricGuo5513/HumanML3D says where to get the processed KIT-ML folder."""
DATASETS = {"humanml3d": SMPL22, "kit": KIT21, "synthetic": SMPL22}   # a folder of BVH files: bvh.load_bvh_folder




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
    skeleton: object = SMPL22
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
    sl = feature_slices(skeleton)
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
        x = features_per_second(x, fps)
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
                yield pid, resample(px, fps, 20.0), 20.0, pcaps, action
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
                     resolve_skeleton(index["skeleton"]), store=store)


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
    index.update(rows=int(sum(index["length"])), digest=h.hexdigest(), skeleton=skeleton_to_dict(skeleton),
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


def load_dataset(name, data_dir, split="train", fps_mode="native", min_seconds=1.0, with_stats=True):
    """Load one split of a dataset in the HumanML3D layout -> MotionSet (features per second) read from its
    store (built on first use: see stored); see pieces for fps_mode and min_seconds. A folder of BVH files
    is read by bvh.load_bvh_folder instead."""
    if name == "bvh":
        raise DataError("a folder of BVH files is loaded by bvh.load_bvh_folder(data_dir, split), "
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
        return tuple(features_per_second(a.astype(np.float32), skeleton.fps) for a in (mean, std))
    if train is None:
        train = load_dataset(name, data_dir, "train", with_stats=False)
    return train_statistics(train)


def interpolate(x, fps, t, kind="linear"):
    """Rows of x (T, D) sampled at fps, read at times t (any shape, seconds) -> t.shape + (D,): linear
    between the two frames around each time, or "cubic": the Catmull-Rom spline through the four frames
    around it (tangents (x[k+1] - x[k-1]) / 2, the end frames repeated), the usual way to upsample motion."""
    pos = np.clip(t * fps, 0, len(x) - 1)                      # past the last frame: hold it
    k = np.minimum(np.floor(pos).astype(int), len(x) - 1)
    w = (pos - k)[..., None].astype(np.float32)
    at = lambda j: x[np.clip(j, 0, len(x) - 1)]                  # noqa: E731
    p1, p2 = at(k), at(k + 1)
    if kind == "linear":
        return p1 * (1 - w) + p2 * w
    p0, p3 = at(k - 1), at(k + 2)
    return p1 + 0.5 * w * (p2 - p0 + w * (2 * p0 - 5 * p1 + 4 * p2 - p3 + w * (3 * (p1 - p2) + p3 - p0)))


def resample(x, fps, new_fps, kind="linear"):
    """Interpolate rows (T, D) sampled at fps onto a grid at new_fps covering the same duration."""
    duration = (len(x) - 1) / fps
    return interpolate(x, fps, np.arange(int(np.floor(duration * new_fps + 1e-6)) + 1) / new_fps, kind)


# ----------------------------------------------------------------------------------------------
# Clips at random framerates (the paper's training unit)
# ----------------------------------------------------------------------------------------------

MIN_CLIP_FPS = 20.0   # clip rates go down to the evaluation's 20 fps (or a slower native rate itself)


class ClipSampler:
    """Draw, per sequence, a clip of m frames at a framerate s = native / k that reads its own frames.

    k is uniform over 1 .. K_i, K_i the largest step that keeps s >= 20 fps (native 120: 120, 60, 40, 30,
    24 or 20 fps; native 20: only 20), so every target is a stored frame, never a blend of two (a blend
    blurs rotations and turns foot contacts fractional). The window of m frames lies wholly inside the
    sequence, its first frame uniform over every place it fits; a step whose window would not fit is not
    drawn (a sequence shorter than m frames gives its native rate and repeats its last frame).
    `lowpass`: a target at native / k is the box average of the k native frame intervals around it, the
    anti-aliasing that goes with the integrated time encoding (nerm.TimeEncoding): a clip at 20 fps then
    holds what a 20 fps camera sees. Each clip's frames are read from the MotionSet (MotionSet.rows: one read
    of the store per clip) and normalized with the train statistics, so the sampler holds no copy of the data
    and memory depends on m and the batch, never on the dataset or the framerate. Velocity channels are per
    second, so they mean the same at every rate; times are in seconds and the model normalizes them itself
    (nerm.INRDecoder), so the sampler hands it each clip's sequence duration too.
    """

    def __init__(self, ms, mean, std, lowpass=False):
        self.ms, self.lowpass = ms, lowpass
        self.mean, self.std = torch.as_tensor(mean).float(), torch.as_tensor(std).float()
        lengths = np.array([len(x) for x in ms.features])
        self.length = torch.from_numpy(lengths).long()
        self.fps = torch.from_numpy(ms.fps).float()
        self.duration = torch.from_numpy((lengths - 1) / ms.fps).float()

    def __len__(self):
        return len(self.length)

    def steps(self, idx, m, max_fps=None):
        """The smallest and largest k (B,) allowed for sequences idx: s = native / k >= 20 fps (k = 1 always
        allowed) and m frames k apart inside the sequence; max_fps (train_inr.py --progressive-steps) asks
        for s <= max_fps, which may go below 20 fps (native 30 -> 15) and yields where the window would
        not fit."""
        native, last = self.fps[idx].double(), (self.length[idx] - 1).double()
        fits = torch.floor(last / (m - 1)).clamp(min=1)                           # the window fits
        k_max = torch.minimum(torch.floor(native / MIN_CLIP_FPS + 1e-6).clamp(min=1), fits)
        k_min = torch.ones_like(k_max) if max_fps is None else torch.ceil(native / max_fps - 1e-6).clamp(min=1)
        k_min = torch.minimum(k_min, fits)
        return k_min.long(), torch.maximum(k_min, k_max).long()

    def sample(self, idx, m, generator=None, max_fps=None):
        """-> features (B, m, D), times (B, m) seconds, clip fps s (B,), idx (B,)."""
        B = len(idx)
        k_min, k_max = self.steps(idx, m, max_fps)
        k = k_min + (torch.rand(B, generator=generator) * (k_max - k_min + 1)).long().clamp(max=k_max - k_min)
        s = self.fps[idx] / k                                    # (B,) clip rate
        last = self.length[idx] - 1
        room = (last - (m - 1) * k).clamp(min=0)                 # the latest first frame that keeps the window inside
        first = (torch.rand(B, generator=generator) * (room + 1)).long().clamp(max=room)
        frame = torch.minimum(first[:, None] + k[:, None] * torch.arange(m), last[:, None])  # (B, m) native frames
        t_sec = frame.float() / self.fps[idx, None]
        return self.gather(idx, frame, k), t_sec, s, idx

    def gather(self, idx, frame, k):
        """Normalized features (B, m, D) of sequences idx (B,) at native frames frame (B, m), each one, or with
        lowpass the box of k (B,) frame intervals around it (end frames of an even box weigh 1/2), clamped
        to the sequence. Each clip reads the rows from its first to its last frame (and the box around them)."""
        out = np.empty(tuple(frame.shape) + (self.mean.shape[0],), np.float32)
        for b, (i, f, kb) in enumerate(zip(idx.tolist(), frame.numpy(), k.tolist())):
            last, half = int(self.length[i]) - 1, kb // 2 if self.lowpass else 0
            lo, hi = max(int(f[0]) - half, 0), min(int(f[-1]) + half, last)
            span = self.ms.rows(i, lo, hi + 1)                   # (hi - lo + 1, D) per second
            if not self.lowpass:
                out[b] = span[f - lo]
                continue
            out[b] = 0
            for o in range(-half, half + 1):                     # offsets |o| <= k / 2 around each frame
                w = ((2 * abs(o) < kb) + 0.5 * (2 * abs(o) == kb)) / kb
                out[b] += np.float32(w) * span[np.clip(f + o, 0, last) - lo]
        return (torch.from_numpy(out) - self.mean) / self.std
