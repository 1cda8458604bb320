"""
Embedded dataset: procedurally generated human motions on the SMPL22 skeleton, with HumanML3D-style captions.

    python prepare.py synthetic --out data/synthetic --num 2000   # write it in the HumanML3D layout (+ meta.csv), ~25 s
    python -m pytest -q tests/test_synthetic.py

train_inr.py writes it on first use (data.open_split); nothing here runs on import.

A motion is a set of continuous functions of time in seconds (joint angles, heading, root path) that forward
kinematics turns into joint positions, sampled at the sequence's native framerate: one of {20, 30, 50, 60, 100,
120} for training, 100 or 120 for the held-out splits (val, test), so that each holds ~100 sequences at each high
rate; the mix of the training split would give ~35, too few for the real-vs-real floor of the high-rate measures
to sit well below the models' figures. The same content exists at every rate (`generate_motions(fps=120)`
renders the same sequences at 120 fps), and the fast parts, punches that extend in 60-100 ms, 6-12 Hz hand
shakes, stomps, kicks and jump landings, are what a 20 fps sampling misses: NeRM's reason to learn at native
framerates.
Bone lengths are SMPL22's exactly. Angles are in degrees; +X is the body's left, +Y up, +Z forward.
"""
import re

import numpy as np

from motion import SMPL22, forward_kinematics, joints_to_features
from writer import DatasetWriter

FRAMERATES = (20.0, 30.0, 50.0, 60.0, 100.0, 120.0)
HELD_OUT_RATES = (100.0, 120.0)
SPEEDS = ("slow", "normal", "fast")
_J = {name: j for j, name in enumerate(SMPL22.joint_names)}
_LEGS = {side: (SMPL22.bone_lengths[_J[side + "_knee"]], SMPL22.bone_lengths[_J[side + "_ankle"]]) for side in "lr"}
_LEG = (sum(_LEGS["l"]) + sum(_LEGS["r"])) / 2  # thigh + shank, metres (the skeleton's legs differ by 1 cm)
_FLIP = np.outer([-1.0, 1, 1], [-1.0, 1, 1])  # R * _FLIP = S R S, S = diag(-1, 1, 1): a rotation in a mirror

# ---- rotations and time profiles -------------------------------------------------------------------------


def _rot(axis, deg):
    """(..., 3, 3) right-handed rotation about the x, y or z axis by deg (...) degrees."""
    a = np.radians(np.asarray(deg, dtype=np.float64))
    c, s = np.cos(a), np.sin(a)
    i, j = {"x": (1, 2), "y": (2, 0), "z": (0, 1)}[axis]
    m = np.zeros(a.shape + (3, 3))
    m[..., 3 - i - j, 3 - i - j] = 1
    m[..., i, i], m[..., j, j], m[..., i, j], m[..., j, i] = c, c, -s, s
    return m


# Anatomical names, written for the left side (mirroring gives the right).
def _flex(deg):    # a hanging segment (thigh, upper arm, forearm) swings forward; negative: backward
    return _rot("x", -deg)


def _knee(deg):    # the shank folds back; a segment pointing up (spine, pelvis) tips forward
    return _rot("x", deg)


def _abduct(deg):  # a left limb moves out to the side
    return _rot("z", deg)


def _ss(u):
    """Smoothstep, 0 before 0 and 1 after 1: starts and stops with zero velocity."""
    u = np.clip(u, 0.0, 1.0)
    return u * u * (3 - 2 * u)


def _bump(t, start, rise, hold, fall):
    """0 -> 1 over `rise` seconds, held, back to 0 over `fall`: one repetition of a movement."""
    return _ss((t - start) / rise) - _ss((t - start - rise - hold) / fall)


def _impact(t, at, tau):
    """The body's answer to an impact at time `at`: starts at full rate (a sharp onset), peaks at 1 after tau s."""
    u = np.maximum(t - at, 0.0) / tau
    return u * np.exp(1 - u)


def _env(t, dur, ramp=0.8):
    """Start from standing and stop again: 0 -> 1 -> 0 with `ramp`-second transitions."""
    return _ss(t / ramp) * _ss((dur - t) / ramp)


def _schedule(rng, lo, hi, period, before=0.0, after=0.0):
    """Repetitions: (reps, start times, duration). A random pause, `before` s of set-up, reps periods, `after` s
    to wind down, another pause; the duration lies in [2, 10] s, so fewer reps are drawn when 10 s can't hold them."""
    lead, tail = rng.uniform(0.3, 1.0) + before, rng.uniform(0.5, 1.2) + after
    reps = int(rng.integers(lo, min(hi, int((10 - lead - tail) // period)) + 1))
    return reps, lead + period * np.arange(reps), max(2.0, lead + reps * period + tail)

# ---- a pose, and its joint positions ---------------------------------------------------------------------


def _pose(t, rot, yaw=0.0, xz=None, air=0.0, pelvis=None, pin=("l_ankle", "r_ankle")):
    """What a motion specifies over the times t: rot, local rotations by joint name; yaw, the heading (deg);
    xz, the root path (m); air, the flight height (m); pelvis, a pelvis rotation the legs do not follow (a lean,
    a bow); pin, the joints kept over the path (the feet stay put while the body bends), () for the root."""
    T = len(t)
    return dict(rot=rot, yaw=np.broadcast_to(yaw, (T,)).astype(float), air=np.broadcast_to(air, (T,)),
                xz=np.zeros((T, 2)) if xz is None else xz, pelvis=pelvis, pin=pin)


def _swap(name):
    return {"l": "r", "r": "l"}[name[0]] + name[1:] if name[1] == "_" else name


def _mirror(pose):
    """The left-right mirror image of a pose: swap l_ and r_ joints, reflect x."""
    return dict(pose, rot={_swap(n): m * _FLIP for n, m in pose["rot"].items()}, yaw=-pose["yaw"],
                xz=pose["xz"] * [-1, 1], pin=tuple(_swap(n) for n in pose["pin"]),
                pelvis=None if pose["pelvis"] is None else pose["pelvis"] * _FLIP)


def _both(left, side):
    """Left-limb rotations placed on 'left', 'right' or 'both' sides."""
    right = {_swap(n): m * _FLIP for n, m in left.items()}
    return {"left": left, "right": right, "both": {**left, **right}}[side]


# HumanML3D's rest directions hang the shoulders under the collars and put the head level with the neck. These
# make a person stand as in HumanML3D's files: shoulders out and up from the collars, head up and forward of the
# neck, toes 5 cm below the ankles. Applied after the actions' rotations (which start from this stance).
_POSTURE = {"l_collar": _rot("z", 120.0), "r_collar": _rot("z", -120.0), "neck": _rot("x", -55.0),
            "l_ankle": _rot("x", 20.0), "r_ankle": _rot("x", 20.0)}
_REST = forward_kinematics(np.broadcast_to(np.eye(3), (1, 22, 3, 3)), np.zeros((1, 3)), SMPL22)[0]


def _joints(t, pose):
    """(T, 22, 3) joint positions of a pose: FK, then feet pinned or root on its path, lowest joint on the floor."""
    T = len(t)
    local = np.broadcast_to(np.eye(3), (T, 22, 3, 3)).copy()
    for name, m in pose["rot"].items():
        local[:, _J[name]] = m
    for name, m in _POSTURE.items():
        local[:, _J[name]] = local[:, _J[name]] @ m
        if "collar" in name:  # the arm hangs as before: undo the collar's turn below the shoulder
            local[:, _J[name.replace("collar", "shoulder")]] = m.T @ local[:, _J[name.replace("collar", "shoulder")]]
    local[:, 0] = _rot("y", pose["yaw"])
    if pose["pelvis"] is not None:  # the legs keep their orientation: undo the pelvis rotation at the hips
        local[:, 0] = local[:, 0] @ pose["pelvis"]
        for hip in (_J["l_hip"], _J["r_hip"]):
            local[:, hip] = pose["pelvis"].transpose(0, 2, 1) @ local[:, hip]
    pos = forward_kinematics(local, np.zeros((T, 3)), SMPL22)
    target = pose["xz"]
    if pose["pin"]:  # move the body so the pinned feet sit where they stand at rest, around the path
        pin = [_J[n] for n in pose["pin"]]
        rx, rz = _REST[pin][:, [0, 2]].mean(0)
        c, s = np.cos(np.radians(pose["yaw"])), np.sin(np.radians(pose["yaw"]))
        target = target + np.stack([c * rx + s * rz, c * rz - s * rx], -1) - pos[:, pin][:, :, [0, 2]].mean(1)
    pos[:, :, [0, 2]] += target[:, None]
    pos[:, :, 1] += pose["air"][:, None] - pos[:, :, 1].min(1, keepdims=True)  # on the floor, or in flight
    return pos

# ---- stepping: walk, run, turn in place ------------------------------------------------------------------


def _stride(psi):
    """One leg through a stride, psi in [0, 1): (position in [-1, 1] (+1 forward), foot down?, progress u in the
    stance or the swing). The stance sweeps linearly from +1 to -1, so the planted foot moves back relative to the
    pelvis at the constant rate the body moves forward. The swing is a cubic that leaves and lands at that rate
    (it overshoots a little, as real legs do). One foot lands as the other lifts: no double support."""
    down = psi < 0.5
    u = np.where(down, 2 * psi, 2 * psi - 1)
    swing = -4 * u ** 3 + 6 * u ** 2 - 1 - 2 * (2 * u ** 3 - 3 * u ** 2 + u)  # Hermite, -1 -> +1 with slopes -2
    return np.where(down, 1 - 2 * u, swing), down, u


def _reach(side, knee):
    """Hip-to-ankle distance of a leg whose knee is flexed by `knee` degrees."""
    thigh, shank = _LEGS[side]
    return np.sqrt(thigh ** 2 + shank ** 2 + 2 * thigh * shank * np.cos(np.radians(knee)))


def _leg_ik(side, z, depth):
    """Hip and knee flexion (deg) that put the ankle z ahead of and depth below the hip (law of cosines)."""
    thigh, shank = _LEGS[side]
    r = np.minimum(np.hypot(z, depth), thigh + shank - 1e-9)
    knee = np.pi - np.arccos((thigh ** 2 + shank ** 2 - r ** 2) / (2 * thigh * shank))
    hip = np.arctan2(z, depth) + np.arccos((thigh ** 2 + r ** 2 - shank ** 2) / (2 * thigh * r))  # knee ahead
    return np.degrees(hip), np.degrees(knee)


def _legs(t, e, freq, amp, clear, bend, load, sign=1):
    """Stepping legs, the right half a stride after the left, scaled by the envelope e: side -> (hip flexion,
    knee flexion, stride angle), degrees. freq: strides per second; amp: stride angle of the hip-ankle line; clear:
    metres the swinging foot rises above the floor; bend: knee flexion at heel strike and toe-off (from a straight
    knee the foot could only lift with a snap); load: more flexion mid-stance; sign=-1 walks backward."""
    phases = {side: _stride((freq * t + half) % 1.0) for side, half in (("l", 0.0), ("r", 0.5))}
    angle = {s: e * sign * amp * pos for s, (pos, _, _) in phases.items()}
    knee = {s: e * (bend + np.where(down, load * np.sin(np.pi * u) ** 2, 0)) for s, (_, down, u) in phases.items()}
    legs = {}
    for side, other in (("l", "r"), ("r", "l")):
        _, down, u = phases[side]
        reach = _reach(side, knee[side])  # the ankle on the stride line, at the knee's reach
        depth = reach * np.cos(np.radians(angle[side]))
        # in the air, the ankle keeps above the planted foot's floor (measured as if both legs were this one)
        floor = _reach(side, knee[other]) * np.cos(np.radians(angle[other])) - e * clear * np.sin(np.pi * u) ** 2
        z = reach * np.sin(np.radians(angle[side]))
        legs[side] = (*_leg_ik(side, z, np.where(down, depth, np.minimum(depth, floor))), angle[side])
    return legs


def _gait(legs, e, arm, elbow):
    """Joint rotations for stepping legs, arms swinging with the opposite leg, a pelvis turning with the legs."""
    rot = {}
    for side, other in (("l", "r"), ("r", "l")):
        hip, knee, _ = legs[side]
        rot[side + "_hip"], rot[side + "_knee"], rot[side + "_ankle"] = _flex(hip), _knee(knee), _knee(hip - knee)
        forward = legs[other][2]
        rot[side + "_shoulder"] = _flex(arm * forward) @ _abduct((6 if side == "l" else -6) * e)
        rot[side + "_elbow"] = _flex(e * elbow + 0.3 * arm * forward)  # more bent as the arm comes forward
    twist = -0.15 * (legs["l"][2] - legs["r"][2])
    rot["spine1"] = _rot("y", -twist)  # the chest turns back against the pelvis
    return rot, _rot("y", twist)


def _planted_speed(legs, dt):
    """Forward speed (m/s, body frame) that keeps the lower foot planted, from legs sampled every dt seconds: the
    walk's root path comes from its feet, so they do not skate."""
    z, depth = [], []
    for s in "lr":
        (thigh, shank), hip, shin = _LEGS[s], np.radians(legs[s][0]), np.radians(legs[s][0] - legs[s][1])
        z.append(thigh * np.sin(hip) + shank * np.sin(shin))
        depth.append(thigh * np.cos(hip) + shank * np.cos(shin))
    moved = np.diff(np.array(z), axis=1, prepend=np.array(z)[:, :1])
    return -np.take_along_axis(moved, np.argmax(depth, axis=0)[None], 0)[0] / dt  # the lowest foot is down


# ---- actions: each draws its parameters and returns (params, duration in s, pose as a function of t) ----------

def _walk(rng, run=False):
    speed, dur = str(rng.choice(SPEEDS)), rng.uniform(3, 8 if run else 10)
    dirs = ("forward", "turn left", "turn right", "circle left", "circle right") + (() if run else ("backward",))
    direction = str(rng.choice(dirs))
    v, freq = ({"slow": (2.2, 1.25), "normal": (3.0, 1.4), "fast": (4.0, 1.55)} if run else
               {"slow": (0.8, 0.8), "normal": (1.3, 0.95), "fast": (1.8, 1.1)})[speed]  # m/s, strides/s
    back = direction == "backward"
    v *= 0.6 if back else 1.0
    amp = np.degrees(np.arcsin(min(v / (4 * _LEG * freq), 0.85)))  # a stance covers 2 L sin(amp) in half a stride
    t_turn, radius = rng.uniform(0.5, dur / 2), rng.uniform(2.0, 4.0) * (2 if run else 1)
    gait = (freq, amp, 0.2 if run else 0.07, 20 if run else 10, 25 if run else 8, -1 if back else 1)

    def pose(t):
        tau = np.arange(0, dur + 2e-3, 1e-3)  # one 1 kHz grid whatever the framerate: one path for all rates
        forward = _planted_speed(_legs(tau, _env(tau, dur), *gait), 1e-3) * 1e-3  # metres per step
        yaw = {"forward": 0 * tau, "backward": 0 * tau, "turn left": 90 * _ss((tau - t_turn) / 1.2),
               "circle left": np.degrees(np.cumsum(np.abs(forward)) / radius)}[direction.replace("right", "left")]
        path = np.cumsum(forward[:, None] * np.stack([np.sin(np.radians(yaw)), np.cos(np.radians(yaw))], -1), 0)
        e = _env(t, dur)
        rot, twist = _gait(_legs(t, e, *gait), e, 1.0 if run else 0.8, 90 if run else 15)
        p = _pose(t, rot, yaw=np.interp(t, tau, yaw), xz=np.stack([np.interp(t, tau, x) for x in path.T], -1),
                  pelvis=twist @ _knee((12 if run else 3) * e), pin=())  # runners lean into the run
        return _mirror(p) if direction.endswith("right") else p
    return dict(direction=direction, speed=speed), dur, pose


def _run(rng):
    return _walk(rng, run=True)


def _turn(rng):
    direction, angle = str(rng.choice(["left", "right"])), int(rng.choice([90, 180, 360]))
    speed = str(rng.choice(SPEEDS))
    turn_time = angle / {"slow": 80, "normal": 140, "fast": 220}[speed] * 1.5  # deg/s; smoothstep peaks at 1.5x
    start = rng.uniform(0.4, 1.0)
    dur = max(2.0, start + turn_time + rng.uniform(0.6, 1.2))

    def pose(t):
        e = _bump(t, start - 0.2, 0.3, turn_time - 0.2, 0.3)  # step in place while turning
        rot, _ = _gait(_legs(t, e, 1.6, 0.0, 0.08, 8, 0), e, 0.0, 10)
        p = _pose(t, rot, yaw=angle * _ss((t - start) / turn_time))
        return _mirror(p) if direction == "right" else p
    return dict(direction=direction, angle=angle, speed=speed), dur, pose


def _side_step(rng):
    direction, speed = str(rng.choice(["left", "right"])), str(rng.choice(SPEEDS))
    period, width = {"slow": 1.2, "normal": 0.9, "fast": 0.65}[speed], rng.uniform(0.25, 0.45)
    reps, starts, dur = _schedule(rng, 2, 6, period)

    def pose(t):
        half = period / 2  # the leading foot steps out, then the trailing foot joins it
        lead = width * sum(_ss((t - s) / half) for s in starts)
        trail = width * sum(_ss((t - s - half) / half) for s in starts)
        out = np.degrees(np.arcsin((lead - trail) / (2 * _LEG)))  # both hips open: both feet stay planted
        rot = {}
        for side, delay in (("left", 0.0), ("right", half)):
            lift = 25 * sum(np.sin(np.pi * np.clip((t - s - delay) / half, 0, 1)) for s in starts)
            rot.update(_both({"l_hip": _abduct(out) @ _flex(lift), "l_knee": _knee(2 * lift),
                              "l_ankle": _knee(-lift)}, side))
        p = _pose(t, rot, xz=np.stack([(lead + trail) / 2, 0 * t], -1), pin=())
        return _mirror(p) if direction == "right" else p
    return dict(direction=direction, speed=speed, reps=reps), dur, pose


def _jump(rng):
    direction, height = str(rng.choice(["in place", "forward"])), str(rng.choice(["low", "high"]))
    h = rng.uniform(0.12, 0.22) if height == "low" else rng.uniform(0.3, 0.45)
    flight = 2 * np.sqrt(2 * h / 9.81)  # ballistic: up and down at g
    dist = rng.uniform(0.3, 0.8) if direction == "forward" else 0.0
    reps, starts, dur = _schedule(rng, 1, 3, 0.5 + flight + 0.8, before=0.5)  # starts: take-offs

    def pose(t):
        crouch, air, tuck, ahead = (np.zeros(len(t)) for _ in range(4))
        for s in starts:
            u = (t - s) / flight
            inside = (u > 0) & (u < 1)
            crouch += _bump(t, s - 0.5, 0.35, 0.0, 0.15) + 0.8 * _impact(t, s + flight, 0.1)  # load; land, absorb
            air += np.where(inside, 4 * h * u * (1 - u), 0)
            tuck += np.where(inside, np.sin(np.pi * u), 0)
            ahead += dist * np.clip(u, 0, 1)
        hip, knee = 55 * crouch + 25 * tuck, 110 * crouch + 50 * tuck  # knee = 2 hip: the hips stay over the feet
        rot = _both({"l_hip": _flex(hip), "l_knee": _knee(knee), "l_ankle": _knee(hip - knee),
                     "l_shoulder": _flex(150 * tuck - 50 * crouch), "l_elbow": _flex(20 * crouch)}, "both")
        return _pose(t, rot, air=air, xz=np.stack([0 * t, ahead], -1), pelvis=_knee(25 * crouch))
    return dict(direction=direction, height=height, reps=reps), dur, pose


def _jumping_jacks(rng):
    speed = str(rng.choice(SPEEDS))
    period, h = {"slow": 1.3, "normal": 1.0, "fast": 0.75}[speed], rng.uniform(0.05, 0.1)
    reps, starts, dur = _schedule(rng, 2, 8, period, after=0.2)

    def pose(t):
        on = (t > starts[0]) & (t < starts[-1] + period)
        ph = np.where(on, 2 * np.pi * (t - starts[0]) / period, 0)
        spread = (1 - np.cos(ph)) / 2
        land = (1 - np.abs(np.sin(ph))) * _bump(t, starts[0] - 0.2, 0.2, starts[-1] - starts[0] + period, 0.2)
        rot = _both({"l_shoulder": _abduct(165 * spread), "l_hip": _abduct(12 * spread) @ _flex(10 * land),
                     "l_knee": _knee(25 * land), "l_ankle": _knee(-15 * land)}, "both")
        hop = np.clip((ph % np.pi / np.pi - 0.2) / 0.6, 0, 1)  # a ballistic hop mid-way through every half cycle
        return _pose(t, rot, air=4 * h * hop * (1 - hop))
    return dict(speed=speed, reps=reps), dur, pose


def _squat(rng):
    speed, depth = str(rng.choice(SPEEDS)), str(rng.choice(["deep", "shallow"]))
    period = {"slow": 3.0, "normal": 2.0, "fast": 1.3}[speed]
    reps, starts, dur = _schedule(rng, 1, 5, period)

    def pose(t):
        down = (1.0 if depth == "deep" else 0.55) * sum(_bump(t, s, 0.4 * period, 0.1 * period, 0.4 * period)
                                                        for s in starts)
        hip, knee = 95 * down, 120 * down
        rot = _both({"l_hip": _flex(hip), "l_knee": _knee(knee), "l_ankle": _knee(hip - knee),
                     "l_shoulder": _flex(80 * down)}, "both")  # arms forward for balance
        return _pose(t, rot, pelvis=_knee(35 * down))
    return dict(speed=speed, depth=depth, reps=reps), dur, pose


def _bow(rng):
    speed, depth = str(rng.choice(SPEEDS)), str(rng.choice(["deep", "shallow"]))
    down_time, angle = {"slow": 1.2, "normal": 0.8, "fast": 0.5}[speed], 70 if depth == "deep" else 30
    reps, starts, dur = _schedule(rng, 1, 2, 2.2 * down_time + 1.2)

    def pose(t):
        b = angle * sum(_bump(t, s, down_time, 0.6, 1.2 * down_time) for s in starts)
        rot = _both({"l_shoulder": _flex(b)}, "both")  # the arms keep hanging vertically
        rot.update(spine1=_knee(0.2 * b), spine2=_knee(0.2 * b))
        return _pose(t, rot, pelvis=_knee(0.6 * b))  # bend mostly at the hips
    return dict(speed=speed, depth=depth, reps=reps), dur, pose


def _punch_arm(guard, p):
    """Left arm from a boxing guard (fist by the chin) to a straight punch at the centre line."""
    return {"l_shoulder": _rot("y", -10 * guard - 5 * p) @ _flex(45 * guard + 45 * p),
            "l_elbow": _flex(115 * guard - 110 * p)}


def _punch(rng):
    side, speed = str(rng.choice(["left", "right", "both"])), str(rng.choice(SPEEDS))
    interval, extend = {"slow": (0.9, 0.1), "normal": (0.6, 0.08), "fast": (0.4, 0.06)}[speed]
    reps, starts, dur = _schedule(rng, 2 if side == "both" else 1, 6, interval, before=0.5, after=0.6)

    def pose(t):
        guard = _bump(t, starts[0] - 0.5, 0.4, starts[-1] - starts[0] + 0.6, 0.5)
        # 60-100 ms extension, brief hold, quick retraction: too fast for 20 fps. "both" alternates, left first
        hits = [_bump(t, s, extend, 0.05, 0.15) for s in starts]
        left = sum(h for k, h in enumerate(hits) if side == "left" or (side == "both" and k % 2 == 0))
        right = sum(h for k, h in enumerate(hits) if side == "right" or (side == "both" and k % 2 == 1))
        rot = {**_punch_arm(guard, left), **_both(_punch_arm(guard, right), "right")}
        rot["spine1"] = rot["spine2"] = _rot("y", -10 * (left - right))  # the punching shoulder drives forward
        return _pose(t, rot)
    return dict(side=side, speed=speed, reps=reps), dur, pose


def _kick(rng):
    side, speed = str(rng.choice(["left", "right"])), str(rng.choice(SPEEDS))
    chamber, snap = {"slow": (0.35, 0.16), "normal": (0.25, 0.12), "fast": (0.18, 0.09)}[speed]
    reps, starts, dur = _schedule(rng, 1, 3, chamber + 1.2)

    def pose(t):
        c = sum(_bump(t, s, chamber, 0.32, 0.3) for s in starts)  # knee up (the "chamber")
        x = sum(_bump(t, s + chamber + 0.02, snap, 0.05, 0.12) for s in starts)  # the shank snaps out
        rot = {"l_hip": _flex(60 * c + 30 * x), "l_knee": _knee(95 * c - 95 * x), "l_ankle": _knee(20 * c)}
        rot.update(_both({"l_shoulder": _abduct(20 * c), "l_elbow": _flex(60 * c)}, "both"))
        p = _pose(t, rot, pelvis=_knee(-10 * c), pin=("r_ankle",))  # lean back over the standing foot
        return _mirror(p) if side == "right" else p
    return dict(side=side, speed=speed, reps=reps), dur, pose


def _stomp(rng):
    side, speed = str(rng.choice(["left", "right"])), str(rng.choice(SPEEDS))
    lift_time = {"slow": 0.6, "normal": 0.4, "fast": 0.28}[speed]
    reps, starts, dur = _schedule(rng, 1, 4, lift_time + 0.9)

    def pose(t):
        drop = starts + lift_time + 0.1
        # the foot accelerates into the floor for 100 ms and stops dead: an onset 20 fps cannot place
        lift = sum(_ss((t - s) / lift_time) - np.clip((t - d) / 0.1, 0, 1) ** 2 for s, d in zip(starts, drop))
        jolt = sum(_impact(t, d + 0.1, 0.06) for d in drop)  # both knees give on impact
        rot = {"l_hip": _flex(55 * lift + 6 * jolt), "l_knee": _knee(85 * lift + 12 * jolt),
               "l_ankle": _knee(-30 * lift - 6 * jolt), "r_hip": _flex(6 * jolt), "r_knee": _knee(12 * jolt),
               "r_ankle": _knee(-6 * jolt)}
        rot.update(_both({"l_shoulder": _abduct(12 * lift)}, "both"))
        p = _pose(t, rot, pin=("r_ankle",))
        return _mirror(p) if side == "right" else p
    return dict(side=side, speed=speed, reps=reps), dur, pose


def _wave(rng):
    side, speed = str(rng.choice(["left", "right", "both"])), str(rng.choice(SPEEDS))
    freq, lead, dur = {"slow": 1.2, "normal": 2.0, "fast": 3.0}[speed], rng.uniform(0.3, 0.8), rng.uniform(2.5, 7)

    def pose(t):
        up = _bump(t, lead, 0.5, dur - lead - 1.3, 0.5)
        # upper arm out to the side, forearm up, swinging side to side in the frontal plane
        rot = {"l_shoulder": _flex(15 * up) @ _abduct(100 * up),
               "l_elbow": _rot("z", up * (80 + 25 * np.sin(2 * np.pi * freq * t)))}
        return _pose(t, _both(rot, side))
    return dict(side=side, speed=speed), dur, pose


def _raise_arms(rng):
    side, speed = str(rng.choice(["left", "right", "both"])), str(rng.choice(SPEEDS))
    direction = str(rng.choice(["up", "forward", "sideways"]))
    rise, hold = {"slow": 1.0, "normal": 0.6, "fast": 0.35}[speed], rng.uniform(0.4, 1.2)
    reps, starts, dur = _schedule(rng, 1, 3, 2 * rise + hold + 0.5)

    def pose(t):
        r = sum(_bump(t, s, rise, hold, rise) for s in starts)
        arm = {"up": _flex(170 * r), "forward": _flex(90 * r), "sideways": _abduct(90 * r)}[direction]
        return _pose(t, _both({"l_shoulder": arm}, side))
    return dict(side=side, direction=direction, speed=speed, reps=reps), dur, pose


def _clap(rng):
    speed = str(rng.choice(SPEEDS))
    freq = {"slow": 1.2, "normal": 2.0, "fast": 3.2}[speed]
    reps, starts, dur = _schedule(rng, 2, 10, 1 / freq, before=0.4, after=0.4)

    def pose(t):
        up = _bump(t, starts[0] - 0.4, 0.4, starts[-1] - starts[0], 0.4)
        # |sin| has a cusp: the hands meet at speed and bounce apart, as in a real clap (at -27 deg they touch)
        apart = up * np.abs(np.sin(np.pi * freq * (t - starts[0])))
        arm = {"l_shoulder": _rot("y", 35 * apart - 27 * up) @ _flex(65 * up), "l_elbow": _flex(40 * up)}
        return _pose(t, _both(arm, "both"))
    return dict(speed=speed, reps=reps), dur, pose


def _shake(rng):
    part, speed = str(rng.choice(["head", "left hand", "right hand"])), str(rng.choice(SPEEDS))
    freq = {"slow": 6.0, "normal": 9.0, "fast": 12.0}[speed] / (2 if part == "head" else 1)  # Hz
    burst = rng.uniform(0.8, 1.5)
    reps, starts, dur = _schedule(rng, 1, 3, burst + 0.8, before=0.4)

    def pose(t):
        osc = np.sin(2 * np.pi * freq * t) * sum(_bump(t, s, 0.1, burst - 0.2, 0.1) for s in starts)
        if part == "head":  # the head joint sits forward of the neck: a yaw moves it sideways
            return _pose(t, {"neck": _rot("y", 40 * osc) @ _rot("z", 10 * osc)})
        up = _bump(t, starts[0] - 0.4, 0.4, starts[-1] - starts[0] + burst, 0.4)
        arm = {"l_shoulder": _flex(45 * up), "l_elbow": _rot("y", 30 * osc) @ _flex(80 * up)}
        return _pose(t, _both(arm, part.split()[0]))
    return dict(part=part, speed=speed, reps=reps), dur, pose


_ACTION_FNS = {"walk": _walk, "run": _run, "jump": _jump, "squat": _squat, "bow": _bow, "turn": _turn,
               "punch": _punch, "kick": _kick, "stomp": _stomp, "wave": _wave, "raise_arms": _raise_arms,
               "clap": _clap, "shake": _shake, "jumping_jacks": _jumping_jacks, "side_step": _side_step}
ACTIONS = tuple(_ACTION_FNS)  # in this order: the seeded class order below indexes it

# ---- captions in HumanML3D's style: templates filled with synonyms of the parameters ----------------------

_WHO = (("a person", "their"), ("someone", "their"), ("the person", "their"), ("a man", "his"), ("the man", "his"),
        ("a woman", "her"), ("the woman", "her"))
_NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
_WORDS = {  # "field:value" -> synonyms (may hold {their}); a value missing here is written as itself
    "speed:slow": ("slowly", "at a slow pace", "gently", "unhurriedly"),
    "speed:normal": ("", "at a normal pace", "at a steady pace", "casually"),
    "speed:fast": ("quickly", "fast", "rapidly", "at a fast pace", "energetically"),
    "pace:slow": ("slow", "careful", "leisurely"), "pace:normal": ("steady", "normal", "regular"),
    "pace:fast": ("quick", "fast", "brisk"),
    "direction:forward": ("forward", "straight ahead", "forwards"),
    "direction:backward": ("backward", "backwards", "in reverse"),
    "direction:turn left": ("forward and turns left", "and then turns to the left", "ahead and veers left"),
    "direction:turn right": ("forward and turns right", "and then turns to the right", "ahead and veers right"),
    "direction:circle left": ("in a circle to the left", "in a counterclockwise circle", "in a curve to the left"),
    "direction:circle right": ("in a circle to the right", "in a clockwise circle", "in a curve to the right"),
    "direction:left": ("to the left", "left", "to {their} left"),
    "direction:right": ("to the right", "right", "to {their} right"),
    "direction:in place": ("in place", "on the spot", "straight up"),
    "direction:up": ("above {their} head", "overhead", "straight up"),
    "direction:sideways": ("out to the side", "sideways", "to shoulder height at the side"),
    "height:low": ("a little", "low", "slightly"), "height:high": ("high", "very high", "high into the air"),
    "depth:deep": ("deeply", "low", "all the way down"), "depth:shallow": ("slightly", "halfway", "a little"),
    "angle:90": ("a quarter turn", "ninety degrees"), "angle:180": ("around", "half a turn", "180 degrees"),
    "angle:360": ("a full circle", "all the way around", "a full turn"),
    "hands:left": ("{their} left hand", "the left hand", "{their} left arm"),
    "hands:right": ("{their} right hand", "the right hand", "{their} right arm"),
    "hands:both": ("both hands", "both arms", "both of {their} hands"),
    "foot:left": ("{their} left foot", "{their} left leg", "the left foot"),
    "foot:right": ("{their} right foot", "{their} right leg", "the right foot"),
    "part:head": ("{their} head", "{their} head from side to side"),
    "part:left hand": ("{their} left hand", "out {their} left hand", "{their} left wrist"),
    "part:right hand": ("{their} right hand", "out {their} right hand", "{their} right wrist"),
    **{f"cnt:{n}": (w,) for n, w in ((1, "once"), (2, "twice"))},
    **{f"cnt:{n}": (f"{_NUMBERS[n]} times",) for n in range(3, 11)},
    **{f"num:{n}": (_NUMBERS[n],) for n in range(1, 11)},
}
_FIELDS = {"speed": "speed", "pace": "speed", "direction": "direction", "height": "height", "depth": "depth",
           "angle": "angle", "hands": "side", "foot": "side", "part": "part", "cnt": "reps", "num": "reps"}
_TEMPLATES = {  # four per action, three drawn per sequence; fields as in _FIELDS, plus {who} and {their}
    "walk": ("{who} walks {direction} {speed}.", "{who} is walking {direction} {speed}.",
             "{who} takes {pace} steps {direction}.", "with {pace} steps, {who} walks {direction}."),
    "run": ("{who} runs {direction} {speed}.", "{who} is running {direction} {speed}.",
            "{who} jogs {direction} at a {pace} pace.", "at a {pace} pace, {who} runs {direction}."),
    "jump": ("{who} jumps {height} {direction} {cnt}.", "{who} jumps {direction} {cnt}.",
             "{who} leaps {direction} {cnt}, landing with bent knees.", "{who} crouches and jumps {height} {cnt}."),
    "squat": ("{who} squats {depth} {cnt} {speed}.", "{who} bends {their} knees and squats {depth} {cnt}.",
              "{who} crouches {depth} and stands back up {cnt}.", "{who} does squats {speed}, {cnt}."),
    "bow": ("{who} bows {depth} {cnt}.", "{who} bends forward at the waist {speed} {cnt}.",
            "{who} bows {speed}.", "{who} leans forward in a bow {depth} {cnt}."),
    "turn": ("{who} turns {direction} {angle}.", "{who} turns {angle} {direction} {speed}.",
             "standing in place, {who} turns {direction} {speed}.", "{who} rotates {angle} {direction} on the spot."),
    "punch": ("{who} punches {speed} with {hands} {cnt}.", "{who} throws punches with {hands} {speed}.",
              "{who} punches forward {cnt} using {hands}.", "{who} is boxing, punching {speed} with {hands}."),
    "kick": ("{who} kicks with {foot} {cnt}.", "{who} kicks forward {speed} with {foot}.",
             "{who} kicks {cnt} using {foot}.", "{who} lifts {foot} and kicks {speed}, {cnt}."),
    "stomp": ("{who} stomps {foot} {cnt}.", "{who} stamps {foot} on the ground {speed}.",
              "{who} lifts {foot} and stomps it down hard {cnt}.", "{who} stomps {speed} with {foot}."),
    "wave": ("{who} waves {hands} {speed}.", "{who} raises {hands} and waves {speed}.",
             "{who} is waving {hands} {speed}.", "{who} waves hello with {hands}."),
    "raise_arms": ("{who} raises {hands} {direction} {cnt}.", "{who} lifts {hands} {direction} {speed}.",
                   "{who} stretches {hands} {direction} {cnt}.", "{who} moves {hands} {direction} {speed}."),
    "clap": ("{who} claps {their} hands {cnt}.", "{who} claps {cnt} {speed}.", "{who} applauds {speed}.",
             "{who} brings {their} hands together {speed}, {cnt}."),
    "shake": ("{who} shakes {part} {speed}.", "{who} shakes {part} {cnt}.", "{who} is shaking {part} {speed}.",
              "{who} gives {part} a {pace} shake."),
    "jumping_jacks": ("{who} does {num} jumping jacks {speed}.", "{who} does jumping jacks {speed}.",
                      "{who} jumps and spreads {their} arms and legs {cnt}.", "{who} performs {num} star jumps."),
    "side_step": ("{who} side steps {direction} {speed}.", "{who} steps sideways {direction} {cnt}.",
                  "{who} shuffles {direction} {speed}.", "{who} moves {direction} with sideways steps."),
}


def _captions(action, params, rng):
    """Three different captions: three different templates, each with its own subject and synonyms."""
    out = []
    for k in rng.permutation(len(_TEMPLATES[action]))[:3]:
        who, their = _WHO[rng.integers(len(_WHO))]
        fields = {"who": who, "their": their}
        for field, param in _FIELDS.items():
            if param in params:
                words = _WORDS.get(f"{field}:{params[param]}", (str(params[param]),))
                fields[field] = words[rng.integers(len(words))]
        text = _TEMPLATES[action][k].format(**fields).format(their=their)  # a synonym may hold {their}
        out.append(" ".join(text.split()).replace(" .", ".").replace(" ,", ","))
    return out

# ---- the dataset -----------------------------------------------------------------------------------------


def generate_motions(num=2000, seed=0, fps=None):
    """The embedded dataset: `num` procedurally generated motions, deterministic in (seed, index).

    Returns a list of dicts: name ('000123'), joints (T, 22, 3) float32 metres, fps (native, drawn from
    FRAMERATES, or from HELD_OUT_RATES for val and test), duration (s, in [2, 10]; T = round(duration * fps)),
    action (one of ACTIONS), params (direction, speed, side, reps...), captions (3 different strings), split
    ('train' | 'val' | 'test', about 80/10/10).
    fps: sample every sequence at this rate instead (the same motions: ground truth at any framerate).
    """
    return list(_motions(num, seed, fps))


def _motions(num, seed, fps=None):
    """generate_motions one at a time (2,000 sequences of joints take ~200 MB)."""
    order = np.random.default_rng(seed).permutation(len(ACTIONS))  # classes balanced, in a seeded order
    for i in range(num):
        rng = np.random.default_rng([seed, i])  # one stream per sequence: sequence i does not depend on num
        action = ACTIONS[order[i % len(ACTIONS)]]
        params, dur, pose = _ACTION_FNS[action](rng)
        native = float(rng.choice(FRAMERATES))
        captions, u = _captions(action, params, rng), rng.random()
        split = "train" if u < 0.8 else "val" if u < 0.9 else "test"
        if split != "train":  # drawn last: a training sequence is the same whatever the held-out rates
            native = float(rng.choice(HELD_OUT_RATES))
        rate = native if fps is None else float(fps)
        t = np.arange(int(round(dur * rate))) / rate
        yield dict(name=f"{i:06d}", joints=_joints(t, pose(t)).astype(np.float32), fps=rate, duration=dur,
                   action=action, params=params, captions=captions, split=split)


def _text_line(caption):
    """A caption as a line of HumanML3D's texts/<id>.txt: 'caption#tokens#start#end', whole motion (0.0#0.0).
    The tokens' part-of-speech tags are OTHER: no tagger is run (only T2M's evaluator reads them)."""
    tokens = " ".join(w + "/OTHER" for w in re.findall(r"[a-z]+", caption.lower()))
    return f"{caption}#{tokens}#0.0#0.0"


def write_dataset(out, num=2000, seed=0):
    """Write generate_motions(num, seed) into the new folder out in the HumanML3D layout (+ meta.csv) through
    writer.DatasetWriter; an existing out is refused. Features are computed at each sequence's native rate with
    hml3d_frame0=False (no jump in a rate channel at row 0); new_joints holds the generated joints themselves.
    Returns the number of sequences written."""
    splits = {"train": [], "val": [], "test": []}
    with DatasetWriter(out, SMPL22) as writer:
        for m in _motions(num, seed):
            x = joints_to_features(m["joints"], SMPL22, fps=m["fps"], hml3d_frame0=False)
            writer.add(m["name"], x, m["joints"], m["fps"], [_text_line(c) for c in m["captions"]], m["action"],
                       train=m["split"] == "train")
            splits[m["split"]].append(m["name"])
        writer.finish(splits)
    return len(writer.meta)
