"""Seeded synthetic fluorescence microscopy data with exact ground truth.

Two generators:

* :func:`make_timelapse` -- a 2D+t time-lapse of moving, deforming, dividing cells,
  returned as a :class:`SyntheticTimelapse` (image ``(T, H, W)`` uint16, labels
  ``(T, H, W)`` int32 and a lineage table).
* :func:`make_zstack` -- a 3D z-stack of ellipsoidal cells, returned as a
  :class:`SyntheticZStack` (image and labels ``(Z, H, W)``, z first).

The ground truth is simulated first; the image is then rendered from the final
label volume (fluorophore density inside each label, PSF blur, uneven illumination,
background, photobleaching, Poisson-Gaussian camera noise). Every random draw comes
from generators seeded by ``seed``, so the same arguments always give the same
arrays. Geometry and camera noise use separate streams, so changing ``snr`` only
changes the image, never the labels.

Units: lengths in pixels (the lateral pixel size), time in frames, intensities in
photons before the camera and ADU (analog-to-digital units) after it. Coordinates
are ``(row, col)`` (``(z, row, col)`` in 3D).

Signal-to-noise ratio: ``snr`` is the contrast of a median-brightness cell at the
start of the movie, under unit illumination, divided by the noise of the background:
``signal_photons / sqrt(background_photons + read_noise**2)``. This is the CTC
convention ``|mean_fg - mean_bg| / std_bg`` up to texture, illumination and
bleaching; :data:`SNR_PRESETS` are the levels used in tests and benchmarks.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..errors import InputError

__all__ = [
    "SNR_PRESETS",
    "CellConfig",
    "DivisionConfig",
    "ImagingConfig",
    "LineageRow",
    "MotionConfig",
    "SyntheticTimelapse",
    "SyntheticZStack",
    "lineage_to_ctc_text",
    "make_timelapse",
    "make_zstack",
]

#: Signal-to-noise levels from very hard (1) to easy (7).
SNR_PRESETS: tuple[float, ...] = (1.0, 2.0, 4.0, 7.0)

_UINT16_MAX = 65535


# --------------------------------------------------------------------------- configs


@dataclass(frozen=True)
class CellConfig:
    """Cell size, shape and brightness.

    Attributes:
        radius_mean: mean equivalent radius of a cell, pixels.
        radius_sd: standard deviation of the radius across cells, pixels.
        aspect_sigma: log-normal sigma of the major/minor axis ratio.
        n_harmonics: number of Fourier harmonics (orders 2, 3, ...) on the outline.
        shape_amplitude: standard deviation of each harmonic's relative amplitude.
        shape_tau: correlation time of the outline deformation, frames.
        rotation_sd: standard deviation of the per-frame rotation, radians.
        growth_tau: time for a cell radius to relax to its target size, frames.
        brightness_sigma: log-normal sigma of the per-cell brightness (median 1).
        texture_amplitude: relative standard deviation of the internal texture.
        texture_wavelength: (min, max) wavelength of the texture, pixels.
        edge_falloff: relative brightness drop from the centre to the edge of a cell.
        min_area: objects smaller than this many pixels (voxels in 3D) are erased,
            so that the ground truth holds no specks at the field edge.
    """

    radius_mean: float = 10.0
    radius_sd: float = 1.5
    aspect_sigma: float = 0.15
    n_harmonics: int = 4
    shape_amplitude: float = 0.05
    shape_tau: float = 8.0
    rotation_sd: float = 0.05
    growth_tau: float = 25.0
    brightness_sigma: float = 0.3
    texture_amplitude: float = 0.15
    texture_wavelength: tuple[float, float] = (3.0, 8.0)
    edge_falloff: float = 0.25
    min_area: int = 8


@dataclass(frozen=True)
class MotionConfig:
    """Cell motion, crowding and the flow of cells through the field of view.

    Attributes:
        speed_sd: stationary standard deviation of each velocity component of the
            Ornstein-Uhlenbeck process, pixels/frame.
        velocity_tau: velocity correlation time, frames.
        drift: constant stage drift added to every cell, (row, col) pixels/frame.
        jump_prob: probability per cell and frame of a sudden jump.
        jump_scale: (min, max) jump length as a multiple of the cell radius; both
            above 1 so a jump always moves a cell further than its radius.
        contact: centre distance at which two cells repel, as a fraction of the sum
            of their radii. Below 1 the outlines touch and the pixel overlap is
            split between the two cells.
        repulsion_steps: relaxation sweeps of the soft repulsion per frame.
        clustering: fraction of initial cells placed in contact with another cell.
        entry_rate: expected number of cells entering through the edges per frame.
    """

    speed_sd: float = 0.8
    velocity_tau: float = 10.0
    drift: tuple[float, float] = (0.1, 0.15)
    jump_prob: float = 0.01
    jump_scale: tuple[float, float] = (1.3, 2.0)
    contact: float = 0.9
    repulsion_steps: int = 4
    clustering: float = 0.5
    entry_rate: float = 0.05


@dataclass(frozen=True)
class DivisionConfig:
    """Cell division.

    Attributes:
        rate: probability per cell and frame of starting mitosis.
        min_age: frames a cell must live before it may divide.
        rounding_frames: frames the mother spends rounding up before it splits.
        brighten: brightness factor of the mother at the end of rounding.
        max_cells_factor: no division while more than this multiple of the initial
            number of cells is alive, so long movies do not blow up.
    """

    rate: float = 0.02
    min_age: int = 15
    rounding_frames: int = 3
    brighten: float = 1.6
    max_cells_factor: float = 3.0


@dataclass(frozen=True)
class ImagingConfig:
    """Optics and camera.

    Attributes:
        psf_sigma: lateral Gaussian PSF sigma, pixels.
        psf_sigma_z: axial Gaussian PSF sigma for z-stacks, slices.
        illumination_falloff: relative illumination drop at the image corners.
        background: background (autofluorescence) level, photons/pixel.
        bleach_rate: photobleaching rate k, the signal decays as exp(-k t), 1/frame.
        depth_attenuation: signal loss per slice in z-stacks, exp(-a z), 1/slice.
        gain: camera gain, ADU/photon.
        read_noise: Gaussian read noise, photons (electrons) rms.
        offset: camera offset, ADU.
    """

    psf_sigma: float = 1.2
    psf_sigma_z: float = 2.5
    illumination_falloff: float = 0.25
    background: float = 30.0
    bleach_rate: float = 0.005
    depth_attenuation: float = 0.01
    gain: float = 2.0
    read_noise: float = 2.0
    offset: float = 100.0


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class LineageRow:
    """One track of the lineage: CTC's ``L B E P``.

    Attributes:
        label: the track's label in the label volume.
        first: first frame (inclusive) in which the label has pixels.
        last: last frame (inclusive) in which the label has pixels.
        parent: label of the mother track, 0 when none.
    """

    label: int
    first: int
    last: int
    parent: int


def lineage_to_ctc_text(lineage) -> str:
    """Format lineage rows as CTC ``res_track.txt`` text: one ``L B E P`` line each."""
    return "".join(f"{r.label} {r.first} {r.last} {r.parent}\n" for r in lineage)


@dataclass(frozen=True)
class SyntheticTimelapse:
    """A synthetic 2D+t time-lapse and its ground truth.

    Attributes:
        image: ``(T, H, W)`` uint16 camera image, ADU.
        labels: ``(T, H, W)`` int32 label volume; 0 is background and each cell keeps
            its label for its whole life, with no gaps.
        lineage: one :class:`LineageRow` per label, ordered by label.
    """

    image: np.ndarray
    labels: np.ndarray
    lineage: tuple[LineageRow, ...]

    def lineage_array(self) -> np.ndarray:
        """The lineage as an ``(N, 4)`` int64 array of ``label, first, last, parent``."""
        rows = [(r.label, r.first, r.last, r.parent) for r in self.lineage]
        return np.asarray(rows, dtype=np.int64).reshape(-1, 4)

    def write_lineage(self, path: str | Path) -> Path:
        """Write the lineage as a CTC track file (``L B E P`` lines) and return its path."""
        path = Path(path)
        path.write_text(lineage_to_ctc_text(self.lineage), encoding="utf-8")
        return path


@dataclass(frozen=True)
class SyntheticZStack:
    """A synthetic 3D z-stack and its ground truth.

    Attributes:
        image: ``(Z, H, W)`` uint16 camera image, ADU.
        labels: ``(Z, H, W)`` int32 labels of 3D objects, 0 is background.
        spacing: voxel size ``(z, row, col)`` in lateral pixels.
    """

    image: np.ndarray
    labels: np.ndarray
    spacing: tuple[float, float, float]


# --------------------------------------------------------------------------- validation


def _check_shape(shape, ndim: int, minimum: int = 16) -> tuple[int, ...]:
    try:
        out = tuple(int(s) for s in shape)
    except TypeError:
        raise InputError(f"shape: expected {ndim} integers, got {shape!r}") from None
    if len(out) != ndim or any(s < minimum for s in out):
        raise InputError(f"shape: expected {ndim} integers >= {minimum}, got {shape!r}")
    return out


def _check_positive(name: str, value: float) -> float:
    if not (isinstance(value, (int, float, np.integer, np.floating)) and value > 0):
        raise InputError(f"{name}: expected a positive number, got {value!r}")
    return float(value)


def _check_count(name: str, value: int, minimum: int) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise InputError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


# --------------------------------------------------------------------------- 2D cells


@dataclass
class _Cell:
    """Mutable simulation state of one 2D cell (internal)."""

    uid: int  # creation order; the public label is given when the cell first shows
    parent: int  # public label of the mother, 0 when none
    center: np.ndarray  # (2,) row, col, pixels
    velocity: np.ndarray  # (2,) pixels/frame
    radius: float  # equivalent radius sqrt(a*b), pixels
    target_radius: float
    aspect: float  # a / b >= 1
    angle: float  # orientation of the major axis, radians
    harmonics: np.ndarray  # (K,) complex relative amplitudes of orders 2..K+1
    brightness: float
    tex_k: np.ndarray  # (M, 2) texture wave vectors in the body frame, rad/pixel
    tex_phase: np.ndarray  # (M,)
    age: int = 0
    mitosis: int = -1  # frames of rounding done; -1 when not dividing
    label: int = 0  # public label, 0 until the cell first has pixels
    reach: float = field(default=0.0, init=False)

    @property
    def paint_id(self) -> int:
        # Cells not yet shown paint a provisional negative id, renamed on first sight,
        # so public labels follow the order of first appearance.
        return self.label if self.label else -self.uid

    def update_reach(self) -> None:
        # Bounding radius of the perturbed ellipse, plus a pixel of slack.
        a = self.radius * math.sqrt(self.aspect)
        self.reach = a * (1.0 + float(np.abs(self.harmonics).sum())) + 1.5


def _draw_radius(rng: np.random.Generator, cfg: CellConfig) -> float:
    return float(max(0.4 * cfg.radius_mean, rng.normal(cfg.radius_mean, cfg.radius_sd)))


def _draw_texture(rng: np.random.Generator, cfg: CellConfig, ndim: int, n: int = 3):
    wavelength = rng.uniform(*cfg.texture_wavelength, size=n)
    direction = rng.normal(size=(n, ndim))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    k = direction * (2 * np.pi / wavelength)[:, None]
    return k, rng.uniform(0, 2 * np.pi, size=n)


def _clip_harmonics(h: np.ndarray, limit: float = 0.35) -> np.ndarray:
    # Keeps the outline star-shaped and its radius positive.
    total = np.abs(h).sum()
    return h * (limit / total) if total > limit else h


def _new_cell(
    rng: np.random.Generator,
    cfg: CellConfig,
    motion: MotionConfig,
    uid: int,
    center,
    radius: float | None = None,
    parent: int = 0,
) -> _Cell:
    radius = _draw_radius(rng, cfg) if radius is None else radius
    k, phase = _draw_texture(rng, cfg, 2)
    h = rng.normal(0, cfg.shape_amplitude / math.sqrt(2), (cfg.n_harmonics, 2))
    cell = _Cell(
        uid=uid,
        parent=parent,
        center=np.asarray(center, dtype=float),
        velocity=rng.normal(0, motion.speed_sd, 2),
        radius=radius,
        target_radius=_draw_radius(rng, cfg),
        aspect=float(np.exp(abs(rng.normal(0, cfg.aspect_sigma)))),
        angle=float(rng.uniform(0, np.pi)),
        harmonics=_clip_harmonics(h[:, 0] + 1j * h[:, 1]),
        brightness=float(rng.lognormal(0.0, cfg.brightness_sigma)),
        tex_k=k,
        tex_phase=phase,
    )
    cell.update_reach()
    return cell


def _place_initial(rng, cfg: CellConfig, motion: MotionConfig, shape, n_cells: int):
    """Place ``n_cells`` cells inside the field, some in clusters, none overlapping."""
    cells: list[_Cell] = []
    height, width = shape
    for _ in range(n_cells):
        radius = _draw_radius(rng, cfg)
        for _attempt in range(200):
            if cells and rng.random() < motion.clustering:
                other = cells[rng.integers(len(cells))]
                theta = rng.uniform(0, 2 * np.pi)
                dist = motion.contact * (radius + other.radius) * 1.02
                center = other.center + dist * np.array([np.sin(theta), np.cos(theta)])
            else:
                center = rng.uniform([radius, radius], [height - radius, width - radius])
            if _fits(center, radius, cells, motion.contact, shape):
                break
        else:
            continue  # the field is full; fewer cells is better than overlapping ones
        cells.append(_new_cell(rng, cfg, motion, len(cells) + 1, center, radius))
    return cells


def _fits(center, radius, cells, contact, shape) -> bool:
    if not (0 <= center[0] < shape[0] and 0 <= center[1] < shape[1]):
        return False
    for other in cells:
        if np.hypot(*(center - other.center)) < contact * (radius + other.radius):
            return False
    return True


def _ou_step(x: np.ndarray, tau: float, sd: float, rng: np.random.Generator, size):
    """One frame of an Ornstein-Uhlenbeck process with correlation time ``tau``."""
    decay = math.exp(-1.0 / tau)
    return x * decay + rng.normal(0, sd * math.sqrt(1 - decay * decay), size)


def _step_cell(cell: _Cell, rng, cfg: CellConfig, motion: MotionConfig) -> None:
    """Advance one cell by one frame: motion, deformation, growth and rounding."""
    cell.velocity = _ou_step(cell.velocity, motion.velocity_tau, motion.speed_sd, rng, 2)
    cell.center = cell.center + cell.velocity + np.asarray(motion.drift, dtype=float)
    if rng.random() < motion.jump_prob:
        theta = rng.uniform(0, 2 * np.pi)
        length = rng.uniform(*motion.jump_scale) * cell.radius
        cell.center = cell.center + length * np.array([np.sin(theta), np.cos(theta)])
    noise = _ou_step(
        np.stack([cell.harmonics.real, cell.harmonics.imag], axis=1),
        cfg.shape_tau,
        cfg.shape_amplitude / math.sqrt(2),
        rng,
        (cfg.n_harmonics, 2),
    )
    cell.harmonics = _clip_harmonics(noise[:, 0] + 1j * noise[:, 1])
    cell.angle += float(rng.normal(0, cfg.rotation_sd))
    cell.tex_phase = cell.tex_phase + rng.normal(0, 0.1, cell.tex_phase.shape)
    cell.radius += (cell.target_radius - cell.radius) / cfg.growth_tau
    cell.age += 1
    if cell.mitosis >= 0:
        # Mitotic rounding: the outline relaxes to a smaller disc.
        cell.mitosis += 1
        cell.aspect = 1.0 + (cell.aspect - 1.0) * 0.4
        cell.harmonics = cell.harmonics * 0.4
        cell.radius *= 0.95
    cell.update_reach()


def _mitotic_boost(cell: _Cell, div: DivisionConfig) -> float:
    if cell.mitosis < 0:
        return 1.0
    progress = min(1.0, cell.mitosis / max(1, div.rounding_frames))
    return 1.0 + (div.brighten - 1.0) * progress


def _can_divide(cell: _Cell, shape, div: DivisionConfig) -> bool:
    # Only cells well inside the field divide, so both daughters are visible at birth.
    margin = 1.5 * cell.reach
    inside = all(margin <= c <= s - margin for c, s in zip(cell.center, shape, strict=True))
    return cell.mitosis < 0 and cell.age >= div.min_age and inside


def _daughters(mother: _Cell, rng, cfg, motion, uids: tuple[int, int]):
    """Two daughters side by side along a random axis, together as large as the mother."""
    theta = rng.uniform(0, 2 * np.pi)
    axis = np.array([np.sin(theta), np.cos(theta)])
    radius = mother.radius / math.sqrt(2)
    out = []
    for sign, uid in zip((1.0, -1.0), uids, strict=True):
        center = mother.center + sign * 0.97 * radius * axis
        cell = _new_cell(rng, cfg, motion, uid, center, radius, parent=mother.label)
        cell.velocity = mother.velocity + sign * 0.5 * motion.speed_sd * axis
        cell.brightness = mother.brightness * float(rng.lognormal(0.0, 0.1))
        out.append(cell)
    return out


def _entering_cell(rng, cfg, motion, uid: int, shape) -> _Cell:
    """A new cell just outside a random edge, moving inward."""
    radius = _draw_radius(rng, cfg)
    side = int(rng.integers(4))
    along = rng.uniform(0, shape[1 - side % 2])
    depth = -0.5 * radius
    if side == 0:  # top
        center, inward = (depth, along), (1.0, 0.0)
    elif side == 1:  # left
        center, inward = (along, depth), (0.0, 1.0)
    elif side == 2:  # bottom
        center, inward = (shape[0] - 1 - depth, along), (-1.0, 0.0)
    else:  # right
        center, inward = (along, shape[1] - 1 - depth), (0.0, -1.0)
    cell = _new_cell(rng, cfg, motion, uid, center, radius)
    cell.velocity = cell.velocity + 1.5 * motion.speed_sd * np.asarray(inward)
    return cell


def _repel(cells: list[_Cell], contact: float, steps: int) -> None:
    """Push overlapping cells apart until their centres are ``contact*(r_i+r_j)`` apart."""
    if len(cells) < 2:
        return
    centers = np.array([c.center for c in cells])
    radii = np.array([c.radius for c in cells])
    target = contact * (radii[:, None] + radii[None, :])
    for _ in range(steps):
        diff = centers[:, None, :] - centers[None, :, :]
        dist = np.hypot(diff[..., 0], diff[..., 1])
        np.fill_diagonal(dist, np.inf)
        overlap = np.clip(target - dist, 0.0, None)
        if not overlap.any():
            break
        # Coincident centres get a fixed direction so the result stays deterministic.
        safe = np.where(dist > 1e-6, dist, 1.0)
        unit = np.where((dist > 1e-6)[..., None], diff / safe[..., None], [1.0, 0.0])
        centers = centers + 0.5 * (overlap[..., None] * unit).sum(axis=1)
    for cell, center in zip(cells, centers, strict=True):
        cell.center = center


def _far_outside(cell: _Cell, shape) -> bool:
    return any(
        c < -2 * cell.reach or c > s - 1 + 2 * cell.reach
        for c, s in zip(cell.center, shape, strict=True)
    )


# --------------------------------------------------------------------------- 2D raster


@dataclass
class _Footprint:
    """A cell's bounding box and normalised distance field in it (internal)."""

    cell: _Cell
    box: tuple[slice, slice]
    dist: np.ndarray  # (h, w) float32, <= 1 inside the outline
    u: np.ndarray  # (h, w) body-frame coordinates, pixels
    v: np.ndarray


def _footprint(cell: _Cell, shape) -> _Footprint | None:
    """Normalised distance ``rho / r_outline(phi)`` in the cell's bounding box."""
    r0 = max(0, math.floor(cell.center[0] - cell.reach))
    r1 = min(shape[0], math.ceil(cell.center[0] + cell.reach) + 1)
    c0 = max(0, math.floor(cell.center[1] - cell.reach))
    c1 = min(shape[1], math.ceil(cell.center[1] + cell.reach) + 1)
    if r0 >= r1 or c0 >= c1:
        return None
    dr = np.arange(r0, r1, dtype=np.float32)[:, None] - np.float32(cell.center[0])
    dc = np.arange(c0, c1, dtype=np.float32)[None, :] - np.float32(cell.center[1])
    cos, sin = np.float32(math.cos(cell.angle)), np.float32(math.sin(cell.angle))
    u = dr * cos + dc * sin
    v = dc * cos - dr * sin
    a = cell.radius * math.sqrt(cell.aspect)
    b = cell.radius / math.sqrt(cell.aspect)
    ellipse = np.sqrt((u / np.float32(a)) ** 2 + (v / np.float32(b)) ** 2)
    phi = np.arctan2(v, u)
    orders = np.arange(2, 2 + len(cell.harmonics))
    # Re(h_k e^{i k phi}) = Re(h_k) cos(k phi) - Im(h_k) sin(k phi)
    kphi = phi[..., None] * orders.astype(np.float32)
    perturbation = 1.0 + (
        np.cos(kphi) @ cell.harmonics.real.astype(np.float32)
        - np.sin(kphi) @ cell.harmonics.imag.astype(np.float32)
    )
    dist = (ellipse / perturbation).astype(np.float32)
    return _Footprint(cell, (slice(r0, r1), slice(c0, c1)), dist, u, v)


def _paint(labels: np.ndarray, score: np.ndarray, fp: _Footprint) -> None:
    """Claim the pixels inside ``fp`` where this cell is nearer (normalised) than any other.

    Pixel overlaps between touching cells go to the cell whose outline is relatively
    farther away (smaller normalised distance), like a power diagram; exact ties go to
    the cell painted first (the lower label), so the result is deterministic.
    """
    sub_score = score[fp.box]
    claim = (fp.dist <= 1.0) & (fp.dist < sub_score)
    sub_score[claim] = fp.dist[claim]
    labels[fp.box][claim] = fp.cell.paint_id


def _keep_largest_component(labels: np.ndarray, box, label: int, min_area: int) -> int:
    """Erase all but the largest connected piece of ``label`` in ``box``; return its area."""
    sub = labels[box]
    mask = sub == label
    area = int(mask.sum())
    if area == 0:
        return 0
    pieces, n = ndimage.label(mask)
    if n > 1:
        sizes = np.bincount(pieces.ravel())[1:]
        keep = int(np.argmax(sizes)) + 1
        sub[mask & (pieces != keep)] = 0
        area = int(sizes[keep - 1])
    if area < min_area:
        sub[mask] = 0
        return 0
    return area


def _texture(k: np.ndarray, phase: np.ndarray, coords, amplitude: float) -> np.ndarray:
    """Smooth random texture ``1 + amplitude * noise`` (unit-variance noise) in a box."""
    wave = np.zeros(coords[0].shape, dtype=np.float32)
    for kj, pj in zip(k, phase, strict=True):
        arg = sum(np.float32(kj[i]) * coords[i] for i in range(len(coords))) + np.float32(pj)
        wave += np.cos(arg)
    wave *= np.float32(amplitude / math.sqrt(len(phase) / 2))
    return np.clip(1.0 + wave, 0.0, None)


def _render_cell(density, labels, fp: _Footprint, cfg: CellConfig, boost: float) -> None:
    """Write the cell's fluorophore density (relative units) into its own pixels."""
    mask = labels[fp.box] == fp.cell.paint_id
    if not mask.any():
        return
    tex = _texture(fp.cell.tex_k, fp.cell.tex_phase, (fp.u, fp.v), cfg.texture_amplitude)
    profile = 1.0 - np.float32(cfg.edge_falloff) * np.minimum(fp.dist, 1.0) ** 2
    value = np.float32(fp.cell.brightness * boost) * tex * profile
    density[fp.box][mask] = value[mask]


# --------------------------------------------------------------------------- imaging


def _illumination(shape2d, falloff: float, rng: np.random.Generator) -> np.ndarray:
    """Vignetting: ``1 - falloff * r^2`` around an off-centre optical axis, ``(H, W)``."""
    height, width = shape2d
    center = np.array([height, width]) / 2 + rng.normal(0, 0.1, 2) * [height, width]
    rr = (np.arange(height, dtype=np.float32)[:, None] - center[0]) / (height / 2)
    cc = (np.arange(width, dtype=np.float32)[None, :] - center[1]) / (width / 2)
    field = 1.0 - np.float32(falloff / 2) * (rr**2 + cc**2)
    return np.clip(field, 0.2, None).astype(np.float32)


def _signal_scale(snr: float, imaging: ImagingConfig) -> float:
    """Photons of a median cell for the requested SNR (see module docstring)."""
    return snr * math.sqrt(imaging.background + imaging.read_noise**2)


def _camera(photons: np.ndarray, imaging: ImagingConfig, rng) -> np.ndarray:
    """Poisson shot noise, Gaussian read noise, gain and offset; uint16 ADU."""
    adu = rng.standard_normal(photons.shape, dtype=np.float32)
    adu *= np.float32(imaging.read_noise)
    adu += rng.poisson(photons)
    adu *= np.float32(imaging.gain)
    adu += np.float32(imaging.offset)
    np.rint(adu, out=adu)
    np.clip(adu, 0, _UINT16_MAX, out=adu)
    return adu.astype(np.uint16)


class _FrameRenderer:
    """Blur, bleach and photograph frames on a worker thread as the simulation goes.

    Each frame has its own noise generator, so the result does not depend on the
    order in which frames are rendered. numpy's samplers and scipy's filters release
    the GIL, so rendering overlaps with the (Python-heavy) simulation of later frames.
    """

    def __init__(self, density, illum, scale: float, imaging: ImagingConfig, seeds):
        self.density = density
        self.illum = illum
        self.scale = scale
        self.imaging = imaging
        self.seeds = seeds
        self.image = np.empty(density.shape, dtype=np.uint16)
        self._pool = ThreadPoolExecutor(max_workers=2)
        self._jobs = []

    def submit(self, t: int) -> None:
        self._jobs.append(self._pool.submit(self._render, t))

    def finish(self) -> np.ndarray:
        """Wait for every submitted frame and return the ``(T, H, W)`` uint16 image."""
        try:
            for job in self._jobs:
                job.result()
        finally:
            self._pool.shutdown()
        return self.image

    def _render(self, t: int) -> None:
        imaging = self.imaging
        blurred = ndimage.gaussian_filter(self.density[t], imaging.psf_sigma, mode="nearest")
        blurred *= np.float32(self.scale * math.exp(-imaging.bleach_rate * t))
        blurred += np.float32(imaging.background)
        blurred *= self.illum
        self.image[t] = _camera(blurred, imaging, np.random.default_rng(self.seeds[t]))


# --------------------------------------------------------------------------- 2D+t driver


def make_timelapse(
    n_frames: int = 50,
    shape: tuple[int, int] = (256, 256),
    n_cells: int = 12,
    snr: float = 4.0,
    seed: int = 0,
    *,
    division_rate: float | None = None,
    cells: CellConfig | None = None,
    motion: MotionConfig | None = None,
    division: DivisionConfig | None = None,
    imaging: ImagingConfig | None = None,
) -> SyntheticTimelapse:
    """Simulate a 2D+t fluorescence time-lapse of cells with exact ground truth.

    Args:
        n_frames: number of frames T.
        shape: frame size ``(H, W)``, pixels.
        n_cells: number of cells in the first frame (fewer if they do not fit).
        snr: signal-to-noise ratio of a median cell at frame 0 (module docstring).
        seed: seed of every random draw; same arguments give the same result.
        division_rate: shortcut for ``division.rate`` (probability per cell and frame).
        cells, motion, division, imaging: model parameters; defaults when ``None``.

    Returns:
        :class:`SyntheticTimelapse` with image ``(T, H, W)`` uint16, labels
        ``(T, H, W)`` int32 (labels numbered 1..N by first appearance) and lineage.
    """
    n_frames = _check_count("n_frames", n_frames, 1)
    shape = _check_shape(shape, 2)
    n_cells = _check_count("n_cells", n_cells, 0)
    snr = _check_positive("snr", snr)
    cells_cfg = cells or CellConfig()
    motion = motion or MotionConfig()
    division = division or DivisionConfig()
    imaging = imaging or ImagingConfig()
    if division_rate is not None:
        if not 0 <= division_rate <= 1:
            raise InputError(
                f"division_rate: expected a probability in [0, 1], got {division_rate}"
            )
        division = replace(division, rate=float(division_rate))

    geometry_seed, illum_seed, noise_seed = np.random.SeedSequence(seed).spawn(3)
    labels = np.zeros((n_frames, *shape), dtype=np.int32)
    density = np.zeros((n_frames, *shape), dtype=np.float32)
    illum = _illumination(shape, imaging.illumination_falloff, np.random.default_rng(illum_seed))
    renderer = _FrameRenderer(
        density, illum, _signal_scale(snr, imaging), imaging, noise_seed.spawn(n_frames)
    )
    sim = _Simulation(shape, cells_cfg, motion, division, np.random.default_rng(geometry_seed))
    try:
        lineage = sim.run(labels, density, n_cells, on_frame=renderer.submit)
    finally:
        image = renderer.finish()
    return SyntheticTimelapse(image=image, labels=labels, lineage=lineage)


class _Simulation:
    """The 2D+t cell simulation (internal): ground-truth labels and fluorophore density.

    Cells are rasterised frame by frame so that a cell that loses all its pixels (it
    left the field, or shrank below ``min_area`` at the edge) is dropped at once: no
    label ever reappears after a gap.
    """

    def __init__(self, shape, cfg: CellConfig, motion: MotionConfig, div: DivisionConfig, rng):
        self.shape = shape
        self.cfg = cfg
        self.motion = motion
        self.div = div
        self.rng = rng
        self.next_uid = 1
        self.next_label = 1
        self.spans: dict[int, list[int]] = {}  # public label -> [first, last, parent]

    def run(self, labels: np.ndarray, density: np.ndarray, n_cells: int, on_frame=None):
        """Fill labels ``(T, H, W)`` int32 and density ``(T, H, W)`` float32 (zeroed).

        ``on_frame(t)`` is called as soon as frame ``t`` is final. Returns the lineage.
        """
        score = np.empty(self.shape, dtype=np.float32)
        alive = _place_initial(self.rng, self.cfg, self.motion, self.shape, n_cells)
        self.next_uid = len(alive) + 1
        max_cells = max(1, int(self.div.max_cells_factor * max(n_cells, 1)))
        for t in range(len(labels)):
            if t > 0:
                alive = self.advance(alive, max_cells)
            alive = self.draw(t, alive, labels[t], density[t], score)
            if on_frame is not None:
                on_frame(t)
        return self.lineage()

    def draw(self, t: int, alive: list[_Cell], frame, density, score) -> list[_Cell]:
        """Rasterise and render frame ``t``; return the cells still in the game."""
        score.fill(np.inf)
        footprints = [fp for fp in (_footprint(c, self.shape) for c in alive) if fp]
        for fp in footprints:
            _paint(frame, score, fp)
        visible = set()
        for fp in footprints:
            cell = fp.cell
            if _keep_largest_component(frame, fp.box, cell.paint_id, self.cfg.min_area) == 0:
                continue
            if not cell.label:
                self.first_sight(cell, t, frame[fp.box])
            self.spans[cell.label][1] = t
            visible.add(cell.uid)
            _render_cell(density, frame, fp, self.cfg, _mitotic_boost(cell, self.div))
        # A cell seen before but invisible now has gone for good; one never seen is
        # kept until it is far outside (an entering cell not yet in).
        return [
            c for c in alive if c.uid in visible or not (c.label or _far_outside(c, self.shape))
        ]

    def first_sight(self, cell: _Cell, t: int, sub_frame: np.ndarray) -> None:
        sub_frame[sub_frame == -cell.uid] = self.next_label
        cell.label = self.next_label
        self.next_label += 1
        self.spans[cell.label] = [t, t, cell.parent]

    def advance(self, alive: list[_Cell], max_cells: int) -> list[_Cell]:
        """Move every cell one frame on, complete or start divisions, add entering cells."""
        rng, cfg, motion, div = self.rng, self.cfg, self.motion, self.div
        out: list[_Cell] = []
        for cell in alive:
            if cell.mitosis >= div.rounding_frames:
                out.extend(_daughters(cell, rng, cfg, motion, (self.next_uid, self.next_uid + 1)))
                self.next_uid += 2
                continue
            _step_cell(cell, rng, cfg, motion)
            starts = rng.random() < div.rate
            if starts and len(alive) < max_cells and _can_divide(cell, self.shape, div):
                cell.mitosis = 0
            out.append(cell)
        for _ in range(rng.poisson(motion.entry_rate)):
            out.append(_entering_cell(rng, cfg, motion, self.next_uid, self.shape))
            self.next_uid += 1
        _repel(out, motion.contact, motion.repulsion_steps)
        for cell in out:
            cell.update_reach()
        return out

    def lineage(self) -> tuple[LineageRow, ...]:
        rows = []
        for label, (first, last, parent) in sorted(self.spans.items()):
            # A daughter keeps its mother only if it shows right after the mother ends.
            if parent and self.spans[parent][1] != first - 1:
                parent = 0
            rows.append(LineageRow(label, first, last, parent))
        return tuple(rows)


# --------------------------------------------------------------------------- 3D z-stack


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3x3 rotation matrix."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


@dataclass
class _Blob:
    """An ellipsoidal cell in a z-stack, physical units of lateral pixels (internal)."""

    label: int
    center: np.ndarray  # (3,) z, row, col in lateral pixels (z already scaled)
    axes: np.ndarray  # (3,) semi-axes
    rotation: np.ndarray  # (3, 3) rows are the body axes
    lobes: np.ndarray  # (3, 3) unit vectors of the P2 shape perturbation
    lobe_amp: np.ndarray  # (3,)
    brightness: float
    tex_k: np.ndarray
    tex_phase: np.ndarray


def _place_blobs(rng, cfg: CellConfig, motion: MotionConfig, extent, n_cells):
    blobs: list[_Blob] = []
    for _ in range(n_cells):
        radius = _draw_radius(rng, cfg)
        for _attempt in range(200):
            if blobs and rng.random() < motion.clustering:
                other = blobs[rng.integers(len(blobs))]
                direction = rng.normal(size=3)
                direction /= np.linalg.norm(direction)
                dist = motion.contact * (radius + other.axes.mean()) * 1.02
                center = other.center + dist * direction
            else:
                center = rng.uniform(0, extent)
            inside = np.all(center >= 0) and np.all(center <= extent)
            clear = all(
                np.linalg.norm(center - b.center) >= motion.contact * (radius + b.axes.mean())
                for b in blobs
            )
            if inside and clear:
                break
        else:
            continue
        stretch = np.exp(rng.normal(0, cfg.aspect_sigma, 3))
        stretch /= np.cbrt(stretch.prod())  # keep the volume of a sphere of `radius`
        lobes = rng.normal(size=(3, 3))
        lobes /= np.linalg.norm(lobes, axis=1, keepdims=True)
        k, phase = _draw_texture(rng, cfg, 3)
        blobs.append(
            _Blob(
                label=len(blobs) + 1,
                center=center,
                axes=radius * stretch,
                rotation=_random_rotation(rng),
                lobes=lobes,
                lobe_amp=np.clip(rng.normal(0, cfg.shape_amplitude, 3), -0.12, 0.12),
                brightness=float(rng.lognormal(0.0, cfg.brightness_sigma)),
                tex_k=k,
                tex_phase=phase,
            )
        )
    return blobs


def _blob_footprint(blob: _Blob, shape, z_scale: float):
    """Box and normalised distance field of a blob in voxel coordinates."""
    reach = blob.axes.max() * (1 + np.abs(blob.lobe_amp).sum()) + 1.5
    scale = np.array([z_scale, 1.0, 1.0])
    lo = np.maximum(0, np.floor((blob.center - reach) / scale)).astype(int)
    hi = np.minimum(shape, np.ceil((blob.center + reach) / scale) + 1).astype(int)
    if np.any(lo >= hi):
        return None
    grids = np.meshgrid(
        *[
            (np.arange(lo[i], hi[i], dtype=np.float32) * scale[i] - blob.center[i]).astype(
                np.float32
            )
            for i in range(3)
        ],
        indexing="ij",
        sparse=True,
    )
    body = [sum(np.float32(blob.rotation[j, i]) * grids[i] for i in range(3)) for j in range(3)]
    ellipsoid = np.sqrt(sum((body[j] / np.float32(blob.axes[j])) ** 2 for j in range(3)))
    rho = np.sqrt(sum(g * g for g in grids)) + np.float32(1e-6)
    perturbation = np.float32(1.0)
    for lobe, amp in zip(blob.lobes, blob.lobe_amp, strict=True):
        cosine = sum(np.float32(lobe[i]) * grids[i] for i in range(3)) / rho
        perturbation = perturbation + np.float32(amp) * (1.5 * cosine**2 - 0.5)
    dist = (ellipsoid / perturbation).astype(np.float32)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    return box, dist, body


def make_zstack(
    n_slices: int = 32,
    shape: tuple[int, int] = (128, 128),
    n_cells: int = 10,
    snr: float = 4.0,
    seed: int = 0,
    *,
    z_scale: float = 2.0,
    cells: CellConfig | None = None,
    motion: MotionConfig | None = None,
    imaging: ImagingConfig | None = None,
) -> SyntheticZStack:
    """Simulate a 3D fluorescence z-stack of ellipsoidal cells with exact ground truth.

    Args:
        n_slices: number of slices Z.
        shape: slice size ``(H, W)``, pixels.
        n_cells: number of cells to place (fewer if they do not fit).
        snr: signal-to-noise ratio of a median cell in the top slice.
        seed: seed of every random draw.
        z_scale: slice spacing in lateral pixels (anisotropy), > 0.
        cells, motion, imaging: model parameters (``motion`` only sets ``contact``
            and ``clustering``); defaults when ``None``. The axial PSF sigma
            ``imaging.psf_sigma_z`` (slices) is normally larger than the lateral one.

    Returns:
        :class:`SyntheticZStack` with image ``(Z, H, W)`` uint16 and labels
        ``(Z, H, W)`` int32 (3D objects numbered 1..N, z first).
    """
    n_slices = _check_count("n_slices", n_slices, 1)
    shape = _check_shape(shape, 2)
    n_cells = _check_count("n_cells", n_cells, 0)
    snr = _check_positive("snr", snr)
    z_scale = _check_positive("z_scale", z_scale)
    cfg = cells or CellConfig()
    motion = motion or MotionConfig()
    imaging = imaging or ImagingConfig()

    geometry_seed, illum_seed, noise_seed = np.random.SeedSequence(seed).spawn(3)
    rng = np.random.default_rng(geometry_seed)
    volume = (n_slices, *shape)
    extent = np.array([(n_slices - 1) * z_scale, shape[0] - 1, shape[1] - 1], dtype=float)
    blobs = _place_blobs(rng, cfg, motion, extent, n_cells)

    labels = np.zeros(volume, dtype=np.int32)
    score = np.full(volume, np.inf, dtype=np.float32)
    footprints = []
    for blob in blobs:
        fp = _blob_footprint(blob, volume, z_scale)
        if fp is None:
            continue
        box, dist, body = fp
        claim = (dist <= 1.0) & (dist < score[box])
        score[box][claim] = dist[claim]
        labels[box][claim] = blob.label
        footprints.append((blob, box, dist, body))

    density = np.zeros(volume, dtype=np.float32)
    for blob, box, dist, body in footprints:
        if _keep_largest_component(labels, box, blob.label, cfg.min_area) == 0:
            continue
        mask = labels[box] == blob.label
        tex = _texture(blob.tex_k, blob.tex_phase, body, cfg.texture_amplitude)
        profile = 1.0 - np.float32(cfg.edge_falloff) * np.minimum(dist, 1.0) ** 2
        value = np.float32(blob.brightness) * tex * profile
        density[box][mask] = np.broadcast_to(value, mask.shape)[mask]

    illum = _illumination(shape, imaging.illumination_falloff, np.random.default_rng(illum_seed))
    sigma = (imaging.psf_sigma_z, imaging.psf_sigma, imaging.psf_sigma)
    blurred = ndimage.gaussian_filter(density, sigma, mode="nearest")
    depth = np.exp(-imaging.depth_attenuation * np.arange(n_slices, dtype=np.float32))
    scale = np.float32(_signal_scale(snr, imaging))
    photons = illum * (scale * depth[:, None, None] * blurred + np.float32(imaging.background))
    image = _camera(photons, imaging, np.random.default_rng(noise_seed))

    labels = _compact_labels(labels)
    return SyntheticZStack(image=image, labels=labels, spacing=(z_scale, 1.0, 1.0))


def _compact_labels(labels: np.ndarray) -> np.ndarray:
    """Renumber the labels present to 1..N, keeping their order."""
    present = np.unique(labels)
    present = present[present != 0]
    lut = np.zeros(int(labels.max(initial=0)) + 1, dtype=np.int32)
    lut[present] = np.arange(1, len(present) + 1, dtype=np.int32)
    return lut[labels]
