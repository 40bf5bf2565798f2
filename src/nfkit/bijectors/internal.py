r"""Internal coordinates of a molecule: bond lengths, bond angles and torsions ↔ Cartesian
positions, through a Z-matrix, with the exact log-determinant (Noé et al. 2019, Science 365,
supplementary "mixed coordinate transformation"; Köhler et al. 2021).

A Z-matrix lists the atoms in placement order, each with up to three atoms placed before it:
row :math:`(i, j, k, l)` puts atom :math:`i` at distance :math:`b` from :math:`j`, at angle
:math:`\theta = \angle ijk` and torsion :math:`\varphi` (the dihedral :math:`i j k l`). The
first three rows fix the global position and orientation, so that the map is a bijection of
:math:`\mathbb R^{3N}` (up to sets of measure zero): row 0 holds atom :math:`a_0`'s position
(translation), row 1 atom :math:`a_1` in spherical coordinates around its bond partner
(:math:`b`, polar angle, azimuth: two of the three rotations), row 2 atom :math:`a_2` by bond,
angle and a torsion about its bond axis relative to the laboratory's :math:`z` direction (the
third rotation). Each atom after the first is spherical coordinates in a frame built from
atoms placed before it, so the Jacobian is block-triangular and

.. math:: \log\left|\det\frac{\partial x}{\partial z}\right|
          = \sum_{\text{rows } r \ge 1} \log\big(b_r^2 \sin\theta_r\big)

(:math:`\theta_1` the polar angle). Placement uses the natural-extension reference frame
(NeRF; Parsons et al. 2005, J. Comput. Chem. 26). Bonds must be positive, angles in
:math:`(0, \pi)`, torsions are read in :math:`(-\pi, \pi]`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from nfkit.bijectors.base import Bijector, Context, Pair

__all__ = ["InternalCoordinates", "dihedral", "zmatrix_from_bonds"]


def dihedral(p0: Tensor, p1: Tensor, p2: Tensor, p3: Tensor) -> Tensor:
    """The torsion angle of four points ``(..., 3)`` in radians (IUPAC sign convention)."""
    b0, b1, b2 = p0 - p1, p2 - p1, p3 - p2
    b1 = b1 / b1.norm(dim=-1, keepdim=True)
    v = b0 - (b0 * b1).sum(-1, keepdim=True) * b1
    w = b2 - (b2 * b1).sum(-1, keepdim=True) * b1
    return torch.atan2((torch.cross(b1, v, dim=-1) * w).sum(-1), (v * w).sum(-1))


def _angle(p0: Tensor, p1: Tensor, p2: Tensor) -> Tensor:
    """The angle at ``p1`` between ``p0`` and ``p2``."""
    u, v = p0 - p1, p2 - p1
    return torch.atan2(torch.cross(u, v, dim=-1).norm(dim=-1), (u * v).sum(-1))


def _place(a: Tensor, b: Tensor, c: Tensor, bond: Tensor, angle: Tensor, torsion: Tensor) -> Tensor:
    """The point ``d`` with ``|cd| = bond``, angle ``bcd`` and dihedral ``abcd`` (NeRF)."""
    bc = c - b
    bc = bc / bc.norm(dim=-1, keepdim=True)
    n = torch.cross(b - a, bc, dim=-1)
    n = n / n.norm(dim=-1, keepdim=True)
    m = torch.cross(n, bc, dim=-1)
    along = -bond * torch.cos(angle)
    across = bond * torch.sin(angle)
    return (
        c
        + along[..., None] * bc
        + (across * torch.cos(torsion))[..., None] * m
        + (across * torch.sin(torsion))[..., None] * n
    )


class InternalCoordinates(Bijector):
    r"""Internal coordinates ``z`` ↔ Cartesian positions ``x`` of ``N`` atoms (see the
    module): ``forward`` builds the molecule, ``inverse`` measures it.

    ``z`` holds three numbers per Z-matrix row, in row order: row 0 the first atom's
    position, row 1 (bond, polar angle, azimuth), every later row (bond, angle, torsion).
    ``x`` holds the atoms' positions in atom order, ``(..., 3N)``.

    Args:
        zmatrix: rows ``[i]``, ``[i, j]``, ``[i, j, k]``, then ``[i, j, k, l]``: every atom
            once, each referring to atoms placed before it (:func:`zmatrix_from_bonds`
            makes one from a molecule's bonds).

    Example:
        >>> import math, torch, nfkit.bijectors as nfb
        >>> water = nfb.InternalCoordinates([[0], [1, 0], [2, 0, 1]])  # O, H, H
        >>> z = torch.tensor([0.0, 0.0, 0.0, 0.096, 1.0, 0.3, 0.096, 1.824, 0.5])
        >>> x = water.forward(z).reshape(3, 3)
        >>> round(float((x[1] - x[0]).norm()), 3), round(math.degrees(1.824), 1)
        (0.096, 104.5)
        >>> torch.allclose(water.inverse(water.forward(z)), z, atol=1e-6)
        True

    """

    forward_min_event_ndims = 1

    def __init__(self, zmatrix: Sequence[Sequence[int]]) -> None:
        super().__init__()
        rows = [list(map(int, row)) for row in zmatrix]
        n = len(rows)
        atoms = [row[0] for row in rows]
        if sorted(atoms) != list(range(n)):
            raise ValueError(f"the Z-matrix must list atoms 0..{n - 1} once each, got {atoms}")
        placed: set[int] = set()
        for r, row in enumerate(rows):
            if len(row) != min(r, 3) + 1:
                raise ValueError(
                    f"Z-matrix row {r} must name {min(r, 3)} reference atoms, got {row}"
                )
            if any(ref not in placed for ref in row[1:]) or len(set(row)) != len(row):
                raise ValueError(f"Z-matrix row {r} ({row}) refers to an atom not placed yet")
            placed.add(row[0])
        self.zmatrix = rows
        self.atoms = n

    def _check(self, value: Tensor) -> None:
        if value.shape[-1] != 3 * self.atoms:
            raise ValueError(
                f"InternalCoordinates of {self.atoms} atoms acts on {3 * self.atoms} values, "
                f"got {value.shape[-1]}"
            )

    def _forward_and_log_det(self, z: Tensor, context: Context) -> Pair:
        self._check(z)
        values = z.reshape(*z.shape[:-1], self.atoms, 3)
        positions: list[Tensor | None] = [None] * self.atoms
        log_det = z.new_zeros(z.shape[:-1])
        up = z.new_tensor([0.0, 0.0, 1.0])
        for r, row in enumerate(self.zmatrix):
            b, angle, turn = values[..., r, 0], values[..., r, 1], values[..., r, 2]
            if r == 0:
                positions[row[0]] = values[..., r, :]
                continue
            ref = [positions[i] for i in row[1:]]
            if r == 1:
                direction = torch.stack(
                    [angle.sin() * turn.cos(), angle.sin() * turn.sin(), angle.cos()], -1
                )
                positions[row[0]] = ref[0] + b[..., None] * direction
            else:
                far = ref[2] if r >= 3 else ref[1] + up
                positions[row[0]] = _place(far, ref[1], ref[0], b, angle, turn)
            log_det = log_det + 2 * b.abs().log() + angle.sin().abs().log()
        x = torch.stack(positions, -2)  # type: ignore[arg-type]
        return x.reshape(z.shape), log_det

    def _inverse_and_log_det(self, x: Tensor, context: Context) -> Pair:
        self._check(x)
        p = x.reshape(*x.shape[:-1], self.atoms, 3)
        up = x.new_tensor([0.0, 0.0, 1.0])
        out = []
        for r, row in enumerate(self.zmatrix):
            xi = p[..., row[0], :]
            if r == 0:
                out.append(xi)
                continue
            xj = p[..., row[1], :]
            bond = (xi - xj).norm(dim=-1)
            if r == 1:
                v = xi - xj
                polar = torch.atan2(v[..., :2].norm(dim=-1), v[..., 2])
                out.append(torch.stack([bond, polar, torch.atan2(v[..., 1], v[..., 0])], -1))
                continue
            xk = p[..., row[2], :]
            far = p[..., row[3], :] if r >= 3 else xk + up
            angle = _angle(xi, xj, xk)
            out.append(torch.stack([bond, angle, dihedral(far, xk, xj, xi)], -1))
        z = torch.stack(out, -2)
        log_det = -(2 * z[..., 1:, 0].log() + z[..., 1:, 1].sin().log()).sum(-1)
        return z.reshape(x.shape), log_det


def zmatrix_from_bonds(
    bonds: Sequence[tuple[int, int]], atoms: int, root: int = 0
) -> list[list[int]]:
    """A Z-matrix from a molecule's bond graph: atoms in breadth-first order from ``root``,
    each bonded to the atom that places it, its angle along bonds, its torsion about the same
    bond as an already placed sibling's (relative to that sibling) or along bonds, and any
    placed atom where the graph has too few.

    Raises:
        ValueError: the bonds do not connect every atom.

    """
    neighbours: dict[int, list[int]] = {a: [] for a in range(atoms)}
    for a, b in bonds:
        neighbours[a].append(b)
        neighbours[b].append(a)
    order, parent = [root], {root: -1}
    for atom in order:
        for other in sorted(neighbours[atom]):
            if other not in parent:
                parent[other] = atom
                order.append(other)
    if len(order) != atoms:
        raise ValueError(f"the bonds connect {len(order)} of {atoms} atoms")
    rows: list[list[int]] = []
    for atom in order:
        refs: list[int] = []
        chain = parent[atom]
        while chain != -1 and len(refs) < min(len(rows), 3):
            refs.append(chain)
            chain = parent[chain]
        placed = order[: len(rows)]
        siblings = [a for a in placed if parent[a] == parent[atom] and a not in refs]
        if len(rows) >= 3 and len(refs) >= 2 and siblings:
            # A torsion about the same bond as a sibling's, measured from that sibling: the
            # three hydrogens of a methyl group then have near-constant torsions of +-120
            # degrees instead of three copies of the group's rotation (Noé et al. 2019).
            refs[2:] = [siblings[-1]]
        for other in placed:  # not enough ancestors: any placed atom will do
            if len(refs) == min(len(rows), 3):
                break
            if other not in refs:
                refs.append(other)
        rows.append([atom, *refs])
    return rows
