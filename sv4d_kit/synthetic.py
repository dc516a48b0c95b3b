"""Procedural 4D scenes with exact ground truth (RGB, alpha, depth, cameras), rendered by analytic ray casting.

A scene is primitives (sphere, box, cylinder, cone, torus) with coloured surfaces and a motion over the clip time
t ∈ [0, 1]: the whole scene spins about +z, and parts spin, bob, pulse, slide or swing about a pivot. Two worlds:
"patterned" (the default, the bundled tiny model's) has 1–4 primitives with checkers, sectors, stripes, octants or
six-coloured faces, whose back sides cannot be told from their fronts; "simple" (an experiment of issue #20, a more
learnable distribution) has 1–3 primitives, each one colour or two or three bands across its own axis, so an
object's back is predictable from its front. `make_scene(seed, world=...)` is deterministic and always fits
inside the unit sphere at every time, so `render_orbit` with the default radius and field of view keeps it in frame.
Colours depend only on the surface point (patterns live in each primitive's own frame; Lambert shading with
world-fixed lights), so a point has the same colour in every view — the basis of the reprojection tests and metrics.

Camera conventions are those of `sv4d_kit.cameras` (world +z up, OpenCV axes, world-to-camera extrinsics, pixel
centres at +0.5). Seeds at or above `HELDOUT_SEED_START` are reserved for held-out evaluation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from sv4d_kit import cameras, checks
from sv4d_kit.checks import KitInputError

HELDOUT_SEED_START = 1_000_000
DEFAULT_RADIUS = 2.5  # camera distance from the origin
DEFAULT_FOV = 48.0  # vertical field of view (degrees): a 0.95-radius sphere at the origin fits with a margin
SAMPLE_SEED = 18  # the scene of data/ (see `write_sample_data`)
WORLDS = ("patterned", "simple")
DEFAULT_WORLD = "patterned"
_FIT_RADIUS = 0.95  # every scene is scaled so that it stays within this radius at all times

KINDS = ("sphere", "box", "cylinder", "cone", "torus")
# the surface patterns of each world's primitives, by kind; "solid" is one colour, "bands" are 2–3 colours in bands
# across the primitive's axis (the same seen from any side)
SIMPLE_PATTERNS = ("solid", "solid", "bands")
PATTERNS = {
    "sphere": ("sectors", "checker", "octants", "stripes"),
    "box": ("faces", "checker3d", "octants"),
    "cylinder": ("sectors", "checker", "stripes"),
    "cone": ("sectors", "checker"),
    "torus": ("sectors", "checker", "checker3d"),
}
PALETTE = (
    (0.86, 0.16, 0.16),  # red
    (0.96, 0.55, 0.10),  # orange
    (0.95, 0.83, 0.18),  # yellow
    (0.22, 0.68, 0.26),  # green
    (0.10, 0.62, 0.64),  # teal
    (0.16, 0.36, 0.86),  # blue
    (0.56, 0.26, 0.76),  # purple
    (0.95, 0.45, 0.66),  # pink
    (0.52, 0.33, 0.18),  # brown
    (0.42, 0.72, 0.95),  # sky
    (0.62, 0.84, 0.22),  # lime
    (0.58, 0.56, 0.16),  # olive
)
# Two world-fixed directional lights (key from above-front, fill from the other side) plus ambient light.
_LIGHTS = ((0.45, -0.35, 0.82, 0.5), (-0.6, 0.5, 0.1, 0.25))  # (direction x, y, z, strength)
_AMBIENT = 0.45


@dataclass(frozen=True)
class Motion:
    """One motion of a primitive; `amount` is radians (spin, swing), world units (bob, translate) or a fraction
    (pulse). Oscillations run `cycles` times over the clip starting at `phase` (in turns)."""

    kind: (
        str  # "spin" (about the primitive's local axis), "swing" (about `pivot`), "bob", "translate", "pulse"
    )
    amount: float
    axis: tuple[float, float, float] = (
        0.0,
        0.0,
        1.0,
    )  # local spin axis, world swing axis or direction of travel
    cycles: float = 1.0
    phase: float = 0.0
    pivot: tuple[float, float, float] = (0.0, 0.0, 0.0)


@dataclass(frozen=True)
class Primitive:
    """A shape in its own frame (centred at the origin, axis +z) placed by a rest pose, with a surface pattern."""

    kind: str  # one of KINDS
    size: tuple[
        float, ...
    ]  # sphere (r,), box half-extents (x, y, z), cylinder/cone (radius, half height), torus (R, r)
    position: tuple[float, float, float]  # rest centre
    rotation: tuple[tuple[float, ...], ...]  # rest orientation, local-to-world 3×3
    pattern: str  # "solid", "bands", "sectors", "checker", "stripes", "checker3d", "faces" or "octants"
    colors: tuple[tuple[float, float, float], ...]
    frequency: int = 4  # sectors / stripes / checks per turn or per size
    motions: tuple[Motion, ...] = ()

    @property
    def bound(self) -> float:
        """Radius of the bounding sphere about the local origin."""
        s = self.size
        return {
            "sphere": lambda: s[0],
            "box": lambda: math.sqrt(s[0] ** 2 + s[1] ** 2 + s[2] ** 2),
            "cylinder": lambda: math.hypot(s[0], s[1]),
            "cone": lambda: math.hypot(s[0], s[1]),
            "torus": lambda: s[0] + s[1],
        }[self.kind]()

    def extreme_points(self) -> torch.Tensor:
        """Local points whose convex hull (nearly) contains the shape, to measure how far it reaches. -> (K, 3)"""
        a = torch.linspace(0, 2 * math.pi, 65, dtype=torch.float64)[:-1]
        ring = torch.stack([torch.cos(a), torch.sin(a), torch.zeros_like(a)], dim=-1)  # (64, 3) unit circle
        s = self.size
        if self.kind == "sphere":  # a Fibonacci sphere
            i = torch.arange(400, dtype=torch.float64) + 0.5
            z, phi = 1 - 2 * i / 400, math.pi * (1 + math.sqrt(5)) * i
            rho = (1 - z * z).sqrt()
            return s[0] * torch.stack([rho * torch.cos(phi), rho * torch.sin(phi), z], dim=-1)
        if self.kind == "box":
            corners = torch.tensor(
                [[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=torch.float64
            )
            return corners * torch.tensor(s, dtype=torch.float64)
        if self.kind == "cylinder":
            return torch.cat([s[0] * ring + torch.tensor([0, 0, h]) for h in (-s[1], s[1])])
        if self.kind == "cone":
            return torch.cat([s[0] * ring - torch.tensor([0.0, 0.0, s[1]]), torch.tensor([[0.0, 0.0, s[1]]])])
        R, r = s  # torus: rings of the tube's outer half, at 9 heights
        b = torch.linspace(-math.pi / 2, math.pi / 2, 9, dtype=torch.float64)
        return torch.cat(
            [(R + r * torch.cos(v)) * ring + torch.tensor([0.0, 0.0, float(r * torch.sin(v))]) for v in b]
        )


@dataclass(frozen=True)
class Scene:
    """A procedural 4D object: primitives, a global spin about +z over the clip, and a global scale."""

    seed: int
    dynamic: bool
    primitives: tuple[Primitive, ...]
    spin: float = 0.0  # radians about +z from t = 0 to t = 1
    scale: float = 1.0

    def poses(self, times: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Per primitive, its local-to-world pose at each time: rotation (F, 3, 3), centre (F, 3), scale (F,)."""
        t = torch.as_tensor(times, dtype=torch.float64).reshape(-1)
        spin = _rotation(torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64), self.spin * t)  # (F, 3, 3)
        return [_pose(p, t, spin, self.scale) for p in self.primitives]

    def bounding_radius(self, times: torch.Tensor | None = None) -> float:
        """Largest distance from the origin the object reaches, over `times` or (by default) the whole clip."""
        times = torch.linspace(0, 1, 201, dtype=torch.float64) if times is None else times
        radii = []
        for prim, (R, c, s) in zip(self.primitives, self.poses(times)):
            points = c[:, None] + s[:, None, None] * (
                prim.extreme_points().float() @ R.transpose(1, 2)
            )  # (F, K, 3)
            radii.append(points.norm(dim=-1).max())
        return float(torch.stack(radii).max())

    def describe(self) -> str:
        """One line per primitive: kind, pattern and motions."""
        lines = [
            f"seed {self.seed} ({'dynamic' if self.dynamic else 'static'}), spin {math.degrees(self.spin):.0f}°"
        ]
        for p in self.primitives:
            motions = ", ".join(m.kind for m in p.motions) or "rigid"
            lines.append(f"  {p.kind} with {p.pattern} ({len(p.colors)} colours), {motions}")
        return "\n".join(lines)


@dataclass
class RenderOutput:
    """Rendered frames of F times seen from N cameras; image tensors are (F, N, C, H, W) = (T, V, C, H, W)."""

    rgb: torch.Tensor  # (F, N, 3, H, W) in [0, 1], composited on white
    alpha: torch.Tensor  # (F, N, 1, H, W) coverage in [0, 1]
    depth: torch.Tensor  # (F, N, 1, H, W) camera z of the pixel-centre ray's hit, 0 where it misses
    extrinsics: torch.Tensor  # (N, 4, 4) world-to-camera
    intrinsics: torch.Tensor  # (N, 3, 3)
    times: torch.Tensor  # (F,)
    part: torch.Tensor | None = None  # (F, N, 1, H, W) int64: primitive the centre ray hits, -1 on a miss

    def rgba(self) -> torch.Tensor:
        """Straight (un-premultiplied) colour with alpha. -> (F, N, 4, H, W)"""
        color = ((self.rgb - (1 - self.alpha)) / self.alpha.clamp_min(1e-6)).clamp(0, 1)
        color = torch.where(self.alpha > 0, color, torch.ones_like(color))
        return torch.cat([color, self.alpha], dim=2)


# ----------------------------------------------------------------------------------------------------------------
# Poses


def _rotation(axis: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rodrigues: rotation matrices about a unit axis (3,) by angles (F,). -> (F, 3, 3)"""
    axis = axis / axis.norm()
    x, y, z = axis.tolist()
    k = torch.tensor([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]], dtype=torch.float64)
    a = angle.reshape(-1, 1, 1)
    return torch.eye(3, dtype=torch.float64) + torch.sin(a) * k + (1 - torch.cos(a)) * (k @ k)


def _pose(p: Primitive, t: torch.Tensor, spin: torch.Tensor, scale: float):
    """Apply a primitive's motions in order, then the scene spin and scale. -> R (F, 3, 3), c (F, 3), s (F,)"""
    R = torch.tensor(p.rotation, dtype=torch.float64).expand(len(t), 3, 3)
    c = torch.tensor(p.position, dtype=torch.float64).expand(len(t), 3)
    s = torch.ones_like(t)
    for m in p.motions:
        axis = torch.tensor(m.axis, dtype=torch.float64)
        wave = torch.sin(2 * math.pi * (m.cycles * t + m.phase))
        if m.kind == "spin":
            R = R @ _rotation(axis, m.amount * t)
        elif m.kind == "swing":
            Rw = _rotation(axis, m.amount * wave)
            pivot = torch.tensor(m.pivot, dtype=torch.float64)
            c = pivot + ((c - pivot).unsqueeze(1) @ Rw.transpose(1, 2)).squeeze(1)
            R = Rw @ R
        elif m.kind == "bob":
            c = c + m.amount * wave[:, None] * axis
        elif m.kind == "translate":
            c = c + m.amount * (t[:, None] - 0.5) * axis
        elif m.kind == "pulse":
            s = s * (1 + m.amount * wave)
        else:
            raise KitInputError(f"motion kind must be spin, swing, bob, translate or pulse, got {m.kind!r}")
    c = (c.unsqueeze(1) @ spin.transpose(1, 2)).squeeze(1)
    return (spin @ R).float(), (scale * c).float(), (scale * s).float()


# ----------------------------------------------------------------------------------------------------------------
# Scenes


def _random_rotation(rng: np.random.Generator, max_tilt_deg: float) -> np.ndarray:
    """Yaw about z, then tilt the z axis by up to `max_tilt_deg`, then yaw again."""

    def rz(a):
        return np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])

    tilt = math.radians(rng.uniform(0, max_tilt_deg))
    rx = np.array([[1, 0, 0], [0, math.cos(tilt), -math.sin(tilt)], [0, math.sin(tilt), math.cos(tilt)]])
    return rz(rng.uniform(0, 2 * math.pi)) @ rx @ rz(rng.uniform(0, 2 * math.pi))


def _random_size(rng: np.random.Generator, kind: str, radius: float) -> tuple[float, ...]:
    """Shape parameters whose bounding sphere has the given radius."""
    if kind == "sphere":
        return (radius,)
    if kind == "box":
        h = rng.uniform(0.6, 1.4, size=3)
        return tuple(float(v) for v in radius * h / np.linalg.norm(h))
    if kind in ("cylinder", "cone"):
        r = radius * rng.uniform(0.45, 0.8)
        return (r, math.sqrt(radius**2 - r**2))
    return (radius * (1 - (f := rng.uniform(0.22, 0.38))), radius * f)  # torus: R + r = radius


def _random_primitive(
    rng: np.random.Generator, kind: str, radius: float, position, rotation, world: str
) -> Primitive:
    pattern = str(rng.choice(SIMPLE_PATTERNS if world == "simple" else PATTERNS[kind]))
    n_colors = {"faces": 6, "octants": 4, "solid": 1}.get(pattern, int(rng.integers(2, 4)))
    colors = tuple(PALETTE[i] for i in rng.permutation(len(PALETTE))[:n_colors])
    frequency = int(rng.integers(3, 7)) if pattern in ("sectors", "stripes") else int(rng.integers(2, 4))
    if pattern == "bands":
        frequency = n_colors
    return Primitive(
        kind=kind,
        size=_random_size(rng, kind, radius),
        position=tuple(float(v) for v in position),
        rotation=tuple(tuple(float(v) for v in row) for row in rotation),
        pattern=pattern,
        colors=colors,
        frequency=frequency,
    )


def _random_motions(rng: np.random.Generator, prim: Primitive, main: Primitive | None) -> tuple[Motion, ...]:
    """One or two motions for a primitive; `main` is the body a secondary part hangs from (None for the body)."""
    options = ["spin", "bob", "pulse"] + (["swing", "swing"] if main is not None else ["translate"])
    motions = []
    for kind in rng.choice(options, size=int(rng.integers(1, 3)), replace=False):
        sign = float(rng.choice([-1.0, 1.0]))
        phase = float(rng.uniform(0, 1))
        if kind == "spin":
            motions.append(Motion("spin", sign * rng.uniform(0.5, 2.0) * math.pi))
        elif kind == "bob":
            motions.append(
                Motion("bob", rng.uniform(0.08, 0.18), cycles=float(rng.integers(1, 3)), phase=phase)
            )
        elif kind == "pulse":
            motions.append(
                Motion("pulse", rng.uniform(0.1, 0.25), cycles=float(rng.integers(1, 3)), phase=phase)
            )
        elif kind == "translate":
            a = rng.uniform(0, 2 * math.pi)
            motions.append(Motion("translate", rng.uniform(0.2, 0.4), axis=(math.cos(a), math.sin(a), 0.0)))
        else:  # swing like a pendulum about the point where the part meets the body
            offset = np.array(prim.position) - np.array(main.position)
            u = offset / np.linalg.norm(offset)
            axis = np.cross(u, [0.0, 0.0, 1.0])
            axis = axis if np.linalg.norm(axis) > 1e-3 else np.array([1.0, 0.0, 0.0])
            pivot = np.array(main.position) + u * 0.8 * main.bound
            motions.append(
                Motion(
                    "swing",
                    sign * math.radians(rng.uniform(20, 45)),
                    axis=tuple(float(v) for v in axis / np.linalg.norm(axis)),
                    pivot=tuple(float(v) for v in pivot),
                    phase=phase,
                )
            )
    return tuple(motions)


def make_scene(seed: int, dynamic: bool = True, world: str = DEFAULT_WORLD) -> Scene:
    """A random 4D object of `world` (one of WORLDS), deterministic in `seed`; `dynamic=False` gives the same
    object at rest (t = 0 pose without any motion). The scene stays inside a sphere of radius 0.95 at every time."""
    seed = checks.integer("seed", seed, minimum=0)
    world = checks.one_of("world", world, WORLDS)
    rng = np.random.default_rng(seed)
    n = int(rng.choice([1, 2, 2, 3, 3, 4] if world == "patterned" else [1, 1, 2, 2, 3]))
    main_radius = rng.uniform(0.45, 0.6)
    main = _random_primitive(
        rng, str(rng.choice(KINDS)), main_radius, (0.0, 0.0, 0.0), _random_rotation(rng, 50), world
    )
    prims = [replace(main, motions=_random_motions(rng, main, None))]
    for _ in range(n - 1):
        u = rng.normal(size=3)
        u[2] *= 0.6  # parts sit around the body rather than on top of it
        u /= np.linalg.norm(u)
        radius = main_radius * rng.uniform(0.35, 0.6)
        position = u * (main_radius * rng.uniform(0.75, 1.0) + radius * rng.uniform(0.3, 0.6))
        part = _random_primitive(
            rng, str(rng.choice(KINDS)), radius, position, _random_rotation(rng, 90), world
        )
        prims.append(replace(part, motions=_random_motions(rng, part, main)))
    spin = float(rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 1.5) * math.pi) if rng.uniform() < 0.75 else 0.0
    scene = Scene(seed=int(seed), dynamic=True, primitives=tuple(prims), spin=spin)
    scene = replace(scene, scale=_FIT_RADIUS / scene.bounding_radius())
    if not dynamic:
        scene = replace(
            scene, dynamic=False, spin=0.0, primitives=tuple(replace(p, motions=()) for p in prims)
        )
    return scene


def training_seeds(n: int, start: int = 0) -> list[int]:
    """`n` consecutive seeds for training, all below `HELDOUT_SEED_START`."""
    n, start = checks.integer("n", n, minimum=0), checks.integer("start", start, minimum=0)
    if start + n > HELDOUT_SEED_START:
        raise KitInputError(f"training seeds need start + n <= {HELDOUT_SEED_START}, got {n}, {start}")
    return list(range(start, start + n))


def heldout_seeds(n: int, start: int = HELDOUT_SEED_START) -> list[int]:
    """`n` consecutive seeds reserved for held-out evaluation (>= `HELDOUT_SEED_START`)."""
    n = checks.integer("n", n, minimum=0)
    start = checks.integer("start", start, minimum=HELDOUT_SEED_START)
    return list(range(start, start + n))


# ----------------------------------------------------------------------------------------------------------------
# Ray-primitive intersection (local frame, unit directions d, origins o: (M, 3)); misses are +inf.

_INF = float("inf")


def _hit_sphere(o, d, size):
    r = size[0]
    b = (o * d).sum(-1)
    disc = b * b - ((o * o).sum(-1) - r * r)
    root = disc.clamp_min(0).sqrt()
    t = torch.where(-b - root > 0, -b - root, -b + root)
    t = torch.where((disc >= 0) & (t > 0), t, _INF)
    return t, (o + t.clamp_max(1e6)[:, None] * d) / r


def _hit_box(o, d, size):
    h = torch.tensor(size, dtype=o.dtype)
    d_safe = torch.where(d.abs() < 1e-9, torch.full_like(d, 1e-9), d)
    t1, t2 = (-h - o) / d_safe, (h - o) / d_safe
    t_near, axis = torch.minimum(t1, t2).max(-1)
    t_far = torch.maximum(t1, t2).min(-1).values
    t = torch.where(t_near > 0, t_near, t_far)
    t = torch.where((t_near <= t_far) & (t_far > 0), t, _INF)
    normal = torch.nn.functional.one_hot(axis, 3).to(o.dtype) * -torch.sign(d_safe)
    return t, normal


def _closest(*candidates):
    """Nearest of several (t, normal) candidates per ray."""
    ts = torch.stack([c[0] for c in candidates])  # (K, M)
    best = ts.argmin(0)
    t = ts.gather(0, best[None])[0]
    normals = torch.stack([c[1] for c in candidates])  # (K, M, 3)
    return t, normals.gather(0, best[None, :, None].expand(1, -1, 3))[0]


def _hit_cap(o, d, z, radius, sign):
    """The disc z = const (normal `sign` · z) of the given radius."""
    dz = torch.where(d[:, 2].abs() < 1e-9, torch.full_like(d[:, 2], 1e-9), d[:, 2])
    t = (z - o[:, 2]) / dz
    p = o + t.clamp(-1e6, 1e6)[:, None] * d
    t = torch.where((t > 0) & (p[:, 0] ** 2 + p[:, 1] ** 2 <= radius * radius), t, _INF)
    normal = torch.zeros_like(o)
    normal[:, 2] = sign
    return t, normal


def _hit_cylinder(o, d, size):
    r, h = size
    a = (d[:, :2] ** 2).sum(-1).clamp_min(1e-12)
    b = (o[:, :2] * d[:, :2]).sum(-1)
    disc = b * b - a * ((o[:, :2] ** 2).sum(-1) - r * r)
    t = (-b - disc.clamp_min(0).sqrt()) / a
    p = o + t.clamp(-1e6, 1e6)[:, None] * d
    t = torch.where((disc >= 0) & (t > 0) & (p[:, 2].abs() <= h), t, _INF)
    side_normal = torch.cat([p[:, :2] / r, torch.zeros_like(p[:, 2:])], dim=-1)
    return _closest((t, side_normal), _hit_cap(o, d, h, r, 1.0), _hit_cap(o, d, -h, r, -1.0))


def _hit_cone(o, d, size):
    # Apex at z = +h, base of radius r at z = -h: x² + y² = k² (h − z)² with k = r / 2h.
    r, h = size
    k2 = (r / (2 * h)) ** 2
    w = h - o[:, 2]
    a = (d[:, :2] ** 2).sum(-1) - k2 * d[:, 2] ** 2
    b = (o[:, :2] * d[:, :2]).sum(-1) + k2 * w * d[:, 2]
    c = (o[:, :2] ** 2).sum(-1) - k2 * w * w
    disc = b * b - a * c
    root = disc.clamp_min(0).sqrt()
    a_safe = torch.where(a.abs() < 1e-9, torch.full_like(a, 1e-9), a)
    sides = []
    for t in ((-b - root) / a_safe, (-b + root) / a_safe):
        p = o + t.clamp(-1e6, 1e6)[:, None] * d
        t = torch.where((disc >= 0) & (t > 0) & (p[:, 2] >= -h) & (p[:, 2] <= h), t, _INF)
        normal = torch.cat([p[:, :2], k2 * (h - p[:, 2:])], dim=-1)
        sides.append((t, normal / normal.norm(dim=-1, keepdim=True).clamp_min(1e-12)))
    return _closest(*sides, _hit_cap(o, d, -h, r, -1.0))


def _hit_torus(o, d, size, steps: int = 96):
    # Sphere tracing on the exact distance function sqrt((|p_xy| - R)² + z²) - r, from where the ray enters the
    # bounding sphere; |p_xy|² = C + 2Bt + At² is updated in closed form. Converged or escaped rays drop out.
    R, r = size
    ox, oy, oz = o.T.contiguous()
    dx, dy, dz = d.T.contiguous()
    A, B, C = dx * dx + dy * dy, ox * dx + oy * dy, ox * ox + oy * oy
    b = B + oz * dz
    disc = b * b - (C + oz * oz - (R + r) ** 2)
    root = disc.clamp_min(0).sqrt()
    t_hit = torch.full_like(b, _INF)
    rays = (disc > 0).nonzero()[:, 0]
    t, t_exit = (-b - root).clamp_min(0)[rays], (-b + root)[rays]
    A, B2, C, oz, dz = A[rays], 2 * B[rays], C[rays], oz[rays], dz[rays]
    tol = 1e-4 * (R + r)
    for step in range(steps):
        rho = (C + t * (B2 + t * A)).clamp_min(0).sqrt()
        dist = torch.hypot(rho - R, oz + t * dz) - r
        t = t + dist
        if step % 8 == 7:
            hit, done = dist < tol, (dist < tol) | (t > t_exit)
            t_hit[rays[hit]] = t[hit]
            keep = ~done
            rays, t, t_exit, A, B2, C, oz, dz = (v[keep] for v in (rays, t, t_exit, A, B2, C, oz, dz))
            if len(rays) == 0:
                break
    p = o + t_hit.clamp_max(1e6)[:, None] * d
    ring = torch.nn.functional.normalize(p * torch.tensor([1.0, 1.0, 0.0]), dim=-1) * R
    return t_hit, torch.nn.functional.normalize(p - ring, dim=-1)


_HIT = {
    "sphere": _hit_sphere,
    "box": _hit_box,
    "cylinder": _hit_cylinder,
    "cone": _hit_cone,
    "torus": _hit_torus,
}


def _pattern_color(prim: Primitive, p: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """Surface colour at local points p with local normals n. (M, 3), (M, 3) -> (M, 3)"""
    k, L = prim.frequency, prim.bound
    angle = torch.atan2(p[:, 1], p[:, 0]) / (2 * math.pi) + 0.5  # in [0, 1]
    if prim.pattern == "solid":
        index = torch.zeros_like(angle)
    elif prim.pattern == "bands":
        index = torch.floor(k * (p[:, 2] / L + 1) / 2).clamp(0, k - 1)
    elif prim.pattern == "sectors":
        index = torch.floor(k * angle)
    elif prim.pattern == "checker":
        index = torch.floor(2 * k * angle) + torch.floor(k * (p[:, 2] / L + 1))
    elif prim.pattern == "stripes":
        index = torch.floor(k * (p[:, 0] / L + 1))
    elif prim.pattern == "checker3d":
        index = torch.floor(1.5 * k * p / L).sum(-1)
    elif prim.pattern == "faces":
        axis = n.abs().argmax(-1)
        index = 2 * axis + (n.gather(1, axis[:, None])[:, 0] < 0)
    else:  # octants
        index = (p[:, 0] > 0).long() + 2 * (p[:, 1] > 0).long() + 4 * (p[:, 2] > 0).long()
    palette = torch.tensor(prim.colors, dtype=torch.float32)
    return palette[index.long() % len(prim.colors)]


# ----------------------------------------------------------------------------------------------------------------
# Rendering


def _cast(
    scene: Scene, poses, origins: torch.Tensor, dirs: torch.Tensor, shade: bool, with_part: bool = False
):
    """Nearest hits of rays from N cameras at F times: origins (N, 3), unit dirs (N, P, 3).

    Returns the ray distance (F, N, P) (+inf on a miss) and, if `shade`, the shaded colour (F, N, P, 3); with
    `with_part` also the index of the primitive hit (F, N, P) int64 (-1 on a miss) as a third value.
    """
    F, N, P = poses[0][0].shape[0], origins.shape[0], dirs.shape[1]
    best_t = torch.full((F * N * P,), _INF)
    best_part = torch.full((F * N * P,), -1, dtype=torch.int64) if with_part else None
    color = torch.zeros(F * N * P, 3) if shade else None
    normal = torch.zeros(F * N * P, 3) if shade else None
    for k, (prim, (R, c, s)) in enumerate(zip(scene.primitives, poses)):
        # 1. Cull against the primitive's bounding sphere (all rays, cheap).
        oc = origins[None] - c[:, None]  # (F, N, 3)
        b = torch.einsum("npk,fnk->fnp", dirs, oc)
        radius = (s * prim.bound * 1.001)[:, None]
        disc = b * b - ((oc * oc).sum(-1) - radius * radius)[..., None]  # (F, N, P)
        candidates = ((disc > 0) & (b < disc.clamp_min(0).sqrt())).reshape(-1).nonzero()[:, 0]
        if len(candidates) == 0:
            continue
        f = candidates // (N * P)
        # 2. Intersect the candidates in the primitive's frame: x_local = Rᵀ (x − c) / s.
        o_local = torch.einsum("fnk,fkj->fnj", oc, R) / s[:, None, None]  # (F, N, 3)
        o_l = o_local.reshape(F * N, 3)[candidates // P]
        d_l = (dirs[None] @ R[:, None]).reshape(F * N * P, 3)[candidates]  # (F, N, P, 3) -> (M, 3): Rᵀ d
        t_local, n_local = _HIT[prim.kind](o_l, d_l, prim.size)
        t = t_local * s[f]
        closer = t < best_t[candidates]
        idx = candidates[closer]
        best_t[idx] = t[closer]
        if with_part:
            best_part[idx] = k
        if shade:
            p_local = o_l[closer] + t_local[closer, None] * d_l[closer]
            color[idx] = _pattern_color(prim, p_local, n_local[closer])
            normal[idx] = (R[f[closer]] @ n_local[closer].unsqueeze(-1)).squeeze(-1)
    if not shade:
        if with_part:
            return best_t.reshape(F, N, P), None, best_part.reshape(F, N, P)
        return best_t.reshape(F, N, P), None
    light = torch.full((F * N * P,), _AMBIENT)
    for *direction, strength in _LIGHTS:
        ldir = torch.tensor(direction) / torch.tensor(direction).norm()
        light += strength * (normal @ ldir).clamp_min(0)
    color = color * light.clamp_max(1.0)[:, None]
    return best_t.reshape(F, N, P), color.reshape(F, N, P, 3)


def _check_render_args(extrinsics, K, height, width, times, supersample):
    E = torch.as_tensor(extrinsics, dtype=torch.float32)
    E = E[None] if E.ndim == 2 else E
    if E.ndim != 3 or E.shape[1:] != (4, 4) or not bool(torch.isfinite(E).all()):
        raise KitInputError(
            f"extrinsics must be finite (N, 4, 4) world-to-camera matrices, got {tuple(E.shape)}"
        )
    K = torch.as_tensor(K, dtype=torch.float32)
    if K.shape not in ((3, 3), (E.shape[0], 3, 3)) or not bool(torch.isfinite(K).all()):
        raise KitInputError(
            f"K must be finite (3, 3) or (N={E.shape[0]}, 3, 3) intrinsics, got {tuple(K.shape)}"
        )
    K = K.expand(E.shape[0], 3, 3).clone()
    if bool((K[:, 0, 0] <= 0).any() or (K[:, 1, 1] <= 0).any()):
        raise KitInputError("K must have positive focal lengths K[0, 0] and K[1, 1]")
    height, width = cameras._check_pixels("height", height), cameras._check_pixels("width", width)
    t = cameras._check_range("times", times, 0.0, 1.0).float().reshape(-1)
    if t.numel() == 0:
        raise KitInputError("times must hold at least one value in [0, 1]")
    return E, K, height, width, t, checks.integer("supersample", supersample, 1, 8)


def render(
    scene: Scene,
    extrinsics: torch.Tensor,
    K: torch.Tensor,
    height: int,
    width: int,
    times,
    supersample: int = 2,
) -> RenderOutput:
    """Ray-cast a scene from N cameras at F times.

    extrinsics (N, 4, 4) world-to-camera, K (3, 3) or (N, 3, 3), times (F,) in [0, 1]. Colour and alpha average
    supersample² rays per pixel; depth and `part` (the primitive hit) come from the one ray through each pixel
    centre.
    """
    E, K, H, W, times, ss = _check_render_args(extrinsics, K, height, width, times, supersample)
    N, F = E.shape[0], times.numel()
    poses = scene.poses(times)
    # Sub-pixel sample positions: an ss×ss grid inside each pixel, (H*ss*W*ss, 2) in row-major order.
    sub = cameras.pixel_centers(H * ss, W * ss) / ss
    origins, dirs = cameras.pixel_rays(E, K, sub)  # (N, 3), (N, H*ss*W*ss, 3)
    rgb, alpha = [], []
    chunk = max(1, (1 << 21) // (N * dirs.shape[1]))  # about 2M rays at a time
    for f0 in range(0, F, chunk):
        part = [(R[f0 : f0 + chunk], c[f0 : f0 + chunk], s[f0 : f0 + chunk]) for R, c, s in poses]
        t, color = _cast(scene, part, origins, dirs, shade=True)
        hit = torch.isfinite(t).float()[..., None]  # (f, N, P, 1)
        premult = torch.cat([color * hit, hit], dim=-1)  # (f, N, P, 4)
        # (f, N, H*ss*W*ss, 4) -> (f, N, 4, H, W): average each ss×ss block
        premult = premult.reshape(-1, N, H, ss, W, ss, 4).mean(dim=(3, 5)).permute(0, 1, 4, 2, 3)
        rgb.append(premult[:, :, :3] + (1 - premult[:, :, 3:]))  # composite on white
        alpha.append(premult[:, :, 3:])
    # Depth: one ray per pixel centre; camera z = ray distance × (d · optical axis).
    origins, dirs = cameras.pixel_rays(E, K, cameras.pixel_centers(H, W))
    t, _, hit_part = _cast(scene, poses, origins, dirs, shade=False, with_part=True)
    z = torch.where(torch.isfinite(t), t * torch.einsum("npk,nk->np", dirs, E[:, 2, :3]), torch.zeros_like(t))
    depth = z.reshape(F, N, 1, H, W)
    rgb = torch.cat(rgb).clamp(0, 1)
    part = hit_part.reshape(F, N, 1, H, W)
    return RenderOutput(rgb, torch.cat(alpha).clamp(0, 1), depth, E, K, times, part)


def scene_motion(scene: Scene, part_ids, points, t_from: float, t_to: float) -> torch.Tensor:
    """Move surface points with the scene from time `t_from` to `t_to` (clip times in [0, 1]).

    `points` (M, 3) are world points on the scene at `t_from` and `part_ids` (M,) the primitive each lies on (as in
    `RenderOutput.part`); a point is taken to its primitive's frame by the pose at `t_from` (inverse) and back to
    the world by the pose at `t_to`: x' = c' + s' R' Rᵀ (x − c) / s. Points with part -1 stay put. -> (M, 3)
    """
    points = torch.as_tensor(points, dtype=torch.float32)
    ids = torch.as_tensor(part_ids)
    if points.ndim != 2 or points.shape[-1] != 3 or not bool(torch.isfinite(points).all()):
        raise KitInputError(f"points must be finite (M, 3) world points, got shape {tuple(points.shape)}")
    if ids.shape != points.shape[:1] or ids.is_floating_point() or ids.dtype == torch.bool:
        raise KitInputError(
            f"part_ids must be (M={points.shape[0]},) integers, got {tuple(ids.shape)} {ids.dtype}"
        )
    if bool(((ids < -1) | (ids >= len(scene.primitives))).any()):
        raise KitInputError(f"part_ids must be in [-1, {len(scene.primitives) - 1}]")
    times = cameras._check_range("times", [t_from, t_to], 0.0, 1.0)
    moved = points.clone()
    for k, (R, c, s) in enumerate(scene.poses(times)):
        sel = ids == k
        if not bool(sel.any()):
            continue
        local = (points[sel] - c[0]) @ R[0] / s[0]  # Rᵀ (x − c) / s for row vectors
        moved[sel] = c[1] + s[1] * (local @ R[1].T)
    return moved


def render_orbit(
    scene: Scene,
    azimuths_deg,
    elevation_deg=0.0,
    radius: float = DEFAULT_RADIUS,
    fov_deg: float = DEFAULT_FOV,
    size: int = 64,
    num_frames: int = 21,
    supersample: int = 2,
) -> RenderOutput:
    """Render `num_frames` evenly spaced times (0 … 1) from cameras on an orbit around the origin.

    `azimuths_deg` is a list (one camera each); `elevation_deg` one number or a list of the same length.
    """
    azimuths, elevations = cameras.camera_trajectory(azimuths_deg, elevation_deg)
    num_frames = checks.integer("num_frames", num_frames, minimum=1)
    size = cameras._check_pixels("size", size)
    E = cameras.orbit_extrinsics(azimuths, elevations, radius)
    K = cameras.intrinsics(fov_deg, size, size)
    times = torch.linspace(0, 1, int(num_frames)) if num_frames > 1 else torch.zeros(1)
    return render(scene, E, K, size, size, times, supersample)


# ----------------------------------------------------------------------------------------------------------------
# Sample data


def write_sample_data(
    folder,
    seed: int = SAMPLE_SEED,
    size: int = 256,
    num_frames: int = 21,
    azimuth_deg: float = 30.0,
    elevation_deg: float = 10.0,
    fps: int = 10,
    supersample: int = 3,
) -> list[Path]:
    """Write the kit's sample inputs into `folder`: object.png (RGB on white, t = 0), object_rgba.png (RGBA),
    moving_object.gif and moving_object.mp4 (`num_frames` frames over t ∈ [0, 1]), all from one camera."""
    import imageio.v2 as imageio

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = render_orbit(
        make_scene(seed),
        [azimuth_deg],
        elevation_deg,
        size=size,
        num_frames=num_frames,
        supersample=supersample,
    )
    frames = (out.rgb[:, 0].permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()  # (F, H, W, 3)
    rgba = (out.rgba()[0, 0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()  # (H, W, 4)
    paths = [folder / n for n in ("object.png", "object_rgba.png", "moving_object.gif", "moving_object.mp4")]
    imageio.imwrite(paths[0], frames[0])
    imageio.imwrite(paths[1], rgba)
    imageio.mimwrite(paths[2], list(frames), duration=1000 / fps, loop=0)
    imageio.mimwrite(paths[3], list(frames), fps=fps, codec="libx264", quality=8, macro_block_size=16)
    return paths
