"""
The motion representation NeRM learns, HumanML3D's: skeletons, forward and inverse kinematics, the feature
rows (root velocities, joint positions, rotations, velocities, foot contacts) to and from joint positions,
and reading a motion at other times (interpolate, resample). Pure numpy; data.py reads datasets with it.

    python -m pytest -q tests/test_features.py     # against HumanML3D's own joint/feature pairs

Shape letters: T frames, J joints, D feature width (263 for 22 joints).
"""
from dataclasses import dataclass, fields

import numpy as np

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
# Reading a motion at other times
# ----------------------------------------------------------------------------------------------


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
