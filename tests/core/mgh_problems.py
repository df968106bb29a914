"""The 14 systems of nonlinear equations of Moré, Garbow and Hillstrom (ACM TOMS 7(1), 1981,
"Testing unconstrained optimization software"), as MINPACK's ``hybrd`` is tested on them.

Each problem is ``F(x) = 0`` with ``F: R^n -> R^n``, written here in torch, batch-last:
``F(x)`` takes ``x: (n, B)`` and returns ``(n, B)``, every column its own point. Problems 4 (Wood)
and 6 (Watson) are the gradients of the paper's least-squares functions (stationarity
conditions), as in MINPACK's test driver. Each carries its standard start ``x0`` (the paper's
``x_s``) and, where one is known in closed form, a root.

For the fixed-point tools the system is posed as ``z = f(z) = z - F(z)``, whose fixed points are
the roots of ``F``; the residual the driver reports, ``||f(z) - z||``, is then exactly ``||F(z)||``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

Tensor = torch.Tensor


def _rosenbrock(x: Tensor) -> Tensor:
    return torch.stack([1 - x[0], 10 * (x[1] - x[0] ** 2)])


def _powell_singular(x: Tensor) -> Tensor:
    return torch.stack(
        [
            x[0] + 10 * x[1],
            math.sqrt(5) * (x[2] - x[3]),
            (x[1] - 2 * x[2]) ** 2,
            math.sqrt(10) * (x[0] - x[3]) ** 2,
        ]
    )


def _powell_badly_scaled(x: Tensor) -> Tensor:
    return torch.stack([1e4 * x[0] * x[1] - 1, torch.exp(-x[0]) + torch.exp(-x[1]) - 1.0001])


def _wood(x: Tensor) -> Tensor:
    t1 = x[1] - x[0] ** 2
    t2 = x[3] - x[2] ** 2
    return torch.stack(
        [
            -200 * x[0] * t1 - (1 - x[0]),
            200 * t1 + 20.2 * (x[1] - 1) + 19.8 * (x[3] - 1),
            -180 * x[2] * t2 - (1 - x[2]),
            180 * t2 + 20.2 * (x[3] - 1) + 19.8 * (x[1] - 1),
        ]
    )


def _helical_valley(x: Tensor) -> Tensor:
    x1, x2, x3 = x[0], x[1], x[2]
    safe = torch.where(x1 == 0, torch.ones_like(x1), x1)
    theta = torch.atan(x2 / safe) / (2 * math.pi) + 0.5 * (x1 < 0)
    # at x1 = 0 the paper takes theta = sign(x2) / 4 (Fortran's sign: +1/4 at x2 = 0)
    theta = torch.where(x1 == 0, torch.where(x2 < 0, -0.25, 0.25).to(x.dtype), theta)
    r = torch.sqrt(x1**2 + x2**2)
    return torch.stack([10 * (x3 - 10 * theta), 10 * (r - 1), x3])


def _watson(x: Tensor) -> Tensor:
    """The gradient (halved) of ``sum_i r_i^2`` over 29 points ``t_i = i / 29`` plus the
    terms ``x1`` and ``x2 - x1^2 - 1``."""
    n = x.shape[0]
    t = torch.arange(1, 30, dtype=x.dtype, device=x.device) / 29  # (29,)
    j = torch.arange(n, dtype=x.dtype, device=x.device)  # exponent j - 1 for x_j
    powers = t[:, None] ** j  # (29, n): t_i^(j-1)
    # d/dx_j of sum_k x_k t^(k-1) ... the paper's first sum: sum_{j>=2} (j-1) x_j t^(j-2)
    dpow = torch.zeros_like(powers)
    dpow[:, 1:] = j[1:] * t[:, None] ** (j[1:] - 1)
    s1 = dpow @ x  # (29, B)
    s2 = powers @ x  # (29, B)
    r = s1 - s2**2 - 1  # residuals r_i
    # F_k = sum_i t_i^(k-2) ((k-1) - 2 t_i s2_i) r_i: the gradient of 0.5 sum r_i^2 in x_k
    tk = t[:, None] ** (j - 1)  # (29, n): t_i^(k-2)
    out = (tk * j).T @ r - tk.T @ (2 * t[:, None] * s2 * r)
    extra = x[1] - x[0] ** 2 - 1
    out = out.clone()
    out[0] = out[0] + x[0] * (1 - 2 * extra)
    out[1] = out[1] + extra
    return out


def _chebyquad(x: Tensor) -> Tensor:
    """``F_i = mean_j T_i(2 x_j - 1) - integral of T_i over [-1, 1] / 2`` (shifted Chebyshev)."""
    n = x.shape[0]
    y = 2 * x - 1
    prev, cur = torch.ones_like(y), y
    rows = []
    for i in range(1, n + 1):
        val = cur.mean(dim=0)
        if i % 2 == 0:
            val = val + 1.0 / (i * i - 1)
        rows.append(val)
        prev, cur = cur, 2 * y * cur - prev
    return torch.stack(rows)


def _brown_almost_linear(x: Tensor) -> Tensor:
    n = x.shape[0]
    s = x.sum(dim=0) - (n + 1)
    out = x + s
    return torch.cat([out[:-1], (x.prod(dim=0) - 1)[None]])


def _shift(x: Tensor, k: int) -> Tensor:
    """``x_{i+k}`` with zeros past either end, ``(n, B)``."""
    out = torch.zeros_like(x)
    if k > 0:
        out[:-k] = x[k:]
    else:
        out[-k:] = x[:k]
    return out


def _grid(x: Tensor) -> tuple[Tensor, float]:
    n = x.shape[0]
    h = 1.0 / (n + 1)
    t = torch.arange(1, n + 1, dtype=x.dtype, device=x.device) * h
    return t[:, None], h


def _discrete_boundary_value(x: Tensor) -> Tensor:
    t, h = _grid(x)
    return 2 * x - _shift(x, -1) - _shift(x, 1) + h**2 * (x + t + 1) ** 3 / 2


def _discrete_integral_equation(x: Tensor) -> Tensor:
    t, h = _grid(x)
    tt = t[:, 0]
    c = (x + t + 1) ** 3  # (n, B)
    lower = torch.tril(torch.ones(tt.shape[0], tt.shape[0], dtype=x.dtype, device=x.device))
    # Green's function of u'' on [0, 1]: (1 - t_k) t_j for j <= k, t_k (1 - t_j) for j > k
    green = lower * ((1 - tt)[:, None] * tt[None, :]) + (1 - lower) * (
        tt[:, None] * (1 - tt)[None, :]
    )
    return x + h / 2 * (green @ c)


def _trigonometric(x: Tensor) -> Tensor:
    n = x.shape[0]
    k = torch.arange(1, n + 1, dtype=x.dtype, device=x.device)[:, None]
    cos = torch.cos(x)
    return n - cos.sum(dim=0) + k * (1 - cos) - torch.sin(x)


def _variably_dimensioned(x: Tensor) -> Tensor:
    n = x.shape[0]
    k = torch.arange(1, n + 1, dtype=x.dtype, device=x.device)[:, None]
    s = (k * (x - 1)).sum(dim=0)
    return x - 1 + k * (s * (1 + 2 * s**2))


def _broyden_tridiagonal(x: Tensor) -> Tensor:
    return (3 - 2 * x) * x - _shift(x, -1) - 2 * _shift(x, 1) + 1


def _broyden_banded(x: Tensor) -> Tensor:
    q = x * (1 + x)
    band = sum(_shift(q, k) for k in (-5, -4, -3, -2, -1, 1))
    return x * (2 + 5 * x**2) + 1 - band


@dataclass(frozen=True)
class MGHProblem:
    """One instance: problem ``number`` (the paper's numbering of the 14 systems) at size ``n``.

    ``x0`` is the standard start; ``root`` a root in closed form where one is known (None
    otherwise); ``has_root`` False where the problem has no root at this size (Chebyquad n = 8).
    """

    number: int
    name: str
    n: int
    F: Callable[[Tensor], Tensor]
    x0: tuple[float, ...]
    root: tuple[float, ...] | None = None
    has_root: bool = True

    @property
    def label(self) -> str:
        return f"{self.name} n={self.n}"

    def residual_map(self, z: Tensor) -> Tensor:
        """``F`` on ``z: (n, B)``."""
        return self.F(z)

    def fixed_point_map(self, z: Tensor) -> Tensor:
        """``f(z) = z - F(z)`` on ``z: (n, B)``: its fixed points are the roots of ``F``."""
        return z - self.F(z)

    def F_np(self, x: np.ndarray) -> np.ndarray:
        """``F`` on one point ``x: (n,)`` in float64 NumPy (for SciPy)."""
        xt = torch.as_tensor(np.asarray(x, dtype=np.float64)).reshape(self.n, 1)
        return self.F(xt)[:, 0].numpy()

    def norm(self, x: np.ndarray | Tensor) -> float:
        """``||F(x)||_2`` at one point, in float64 (inf where it overflows)."""
        with np.errstate(over="ignore", invalid="ignore"):
            return float(np.linalg.norm(self.F_np(np.asarray(x, dtype=np.float64))))


def _problem(number: int, name: str, n: int, F, x0, root=None, has_root=True) -> MGHProblem:
    x0 = tuple(float(v) for v in x0)
    assert len(x0) == n
    return MGHProblem(
        number,
        name,
        n,
        F,
        x0,
        None if root is None else tuple(float(v) for v in root),
        has_root,
    )


def _grid_start(n: int) -> list[float]:
    h = 1.0 / (n + 1)
    return [(j * h) * (j * h - 1) for j in range(1, n + 1)]


def make_problem(number: int, n: int | None = None) -> MGHProblem:
    """Problem ``number`` (1..14) at size ``n`` (fixed for 1-5) with its standard start."""
    if number == 1:
        return _problem(1, "Rosenbrock", 2, _rosenbrock, [-1.2, 1.0], [1.0, 1.0])
    if number == 2:
        return _problem(2, "Powell singular", 4, _powell_singular, [3, -1, 0, 1], [0, 0, 0, 0])
    if number == 3:
        return _problem(3, "Powell badly scaled", 2, _powell_badly_scaled, [0, 1])
    if number == 4:
        return _problem(4, "Wood", 4, _wood, [-3, -1, -3, -1], [1, 1, 1, 1])
    if number == 5:
        return _problem(5, "helical valley", 3, _helical_valley, [-1, 0, 0], [1, 0, 0])
    assert n is not None, "problems 6-14 need n"
    if number == 6:
        return _problem(6, "Watson", n, _watson, [0.0] * n)
    if number == 7:
        start = [j / (n + 1) for j in range(1, n + 1)]
        # Chebyquad has roots for n = 1..7 and 9, none for n = 8 (nor n >= 10)
        return _problem(7, "Chebyquad", n, _chebyquad, start, has_root=n <= 7 or n == 9)
    if number == 8:
        return _problem(8, "Brown almost-linear", n, _brown_almost_linear, [0.5] * n, [1.0] * n)
    if number == 9:
        return _problem(9, "discrete boundary value", n, _discrete_boundary_value, _grid_start(n))
    if number == 10:
        return _problem(
            10, "discrete integral equation", n, _discrete_integral_equation, _grid_start(n)
        )
    if number == 11:
        return _problem(11, "trigonometric", n, _trigonometric, [1.0 / n] * n)
    if number == 12:
        start = [1 - j / n for j in range(1, n + 1)]
        return _problem(12, "variably dimensioned", n, _variably_dimensioned, start, [1.0] * n)
    if number == 13:
        return _problem(13, "Broyden tridiagonal", n, _broyden_tridiagonal, [-1.0] * n)
    if number == 14:
        return _problem(14, "Broyden banded", n, _broyden_banded, [-1.0] * n)
    raise ValueError(f"no MGH problem {number}")


#: The 14 classic systems, one instance each (the sizes of MINPACK's hybrd test where it has
#: one; n = 10 for the variable-size problems 8-14, n = 6 for Watson, n = 7 for Chebyquad).
CLASSIC: tuple[MGHProblem, ...] = (
    make_problem(1),
    make_problem(2),
    make_problem(3),
    make_problem(4),
    make_problem(5),
    make_problem(6, 6),
    make_problem(7, 7),
    make_problem(8, 10),
    make_problem(9, 10),
    make_problem(10, 10),
    make_problem(11, 10),
    make_problem(12, 10),
    make_problem(13, 10),
    make_problem(14, 10),
)

#: Further sizes from MINPACK's hybrd test (standard starts): Watson n = 9, Chebyquad
#: n = 5, 6, 8 (no root), 9, Brown n = 30, 40, the integral equation at n = 1.
EXTRA: tuple[MGHProblem, ...] = (
    make_problem(6, 9),
    make_problem(7, 5),
    make_problem(7, 6),
    make_problem(7, 8),
    make_problem(7, 9),
    make_problem(8, 30),
    make_problem(8, 40),
    make_problem(10, 1),
)

#: Roots that MINPACK's own hybrd test prints from the standard starts (``test_hybrd`` of the
#: MINPACK distribution, 16 digits): an independent check of the definitions above, as ``F``
#: must vanish there. Keys ``(number, n)``.
MINPACK_ROOTS: dict[tuple[int, int], tuple[float, ...]] = {
    (3, 2): (0.1098159327798559e-04, 0.9106146740037904e01),
    (4, 4): (-0.9679740249513952, 0.9471391408446626, -0.9695163103174519, 0.9512476657649955),
    (6, 6): (
        -0.1572508640134011e-01,
        0.1012434869369118e01,
        -0.2329916259567960,
        0.1260430087800365e01,
        -0.1513728922723441e01,
        0.9929964324318560,
    ),
    (7, 7): (
        0.5806914977912385e-01,
        0.2351716115667845,
        0.3380440957994889,
        0.4999999991484015,
        0.6619559063505691,
        0.7648283868041619,
        0.9419308505514702,
    ),
    (9, 10): (
        -0.4316498251876486e-01,
        -0.8157715653538729e-01,
        -0.1144857143805310,
        -0.1409735768625996,
        -0.1599086961819857,
        -0.1698772023127759,
        -0.1690899837812081,
        -0.1552495352218312,
        -0.1253558916789345,
        -0.7541653368589182e-01,
    ),
    (10, 1): (-0.1528138835625800,),
    (13, 10): (
        -0.5707221307212121,
        -0.6818069509055232,
        -0.7022100775689857,
        -0.7055106309936168,
        -0.7049061557572888,
        -0.7014966060124587,
        -0.6918893211477919,
        -0.6657965141985400,
        -0.5960351099566767,
        -0.4164122574358191,
    ),
    (14, 10): (
        -0.4283028636053099,
        -0.4765964242962535,
        -0.5196524638125549,
        -0.5580993246169652,
        -0.5925061569509362,
        -0.6245036821428087,
        -0.6232394714478015,
        -0.6213938418388717,
        -0.6204535966122983,
        -0.5864692707477792,
    ),
}

#: A root reached: ``||F(x)||_2 <= ROOT_RTOL max(1, ||F(x0)||_2)``.
ROOT_RTOL = 1e-8


def reached_root(p: MGHProblem, x: np.ndarray | Tensor) -> bool:
    """Whether ``x`` is a root of ``p`` to :data:`ROOT_RTOL` (relative to the start)."""
    fx = p.norm(np.asarray(x, dtype=np.float64))
    return bool(np.isfinite(fx)) and fx <= ROOT_RTOL * max(1.0, p.norm(np.asarray(p.x0)))


@dataclass(frozen=True)
class Run:
    """One method on one problem: the status name (ours) or SciPy's success flag, the steps
    (our iterations; SciPy's ``nit`` or, for hybr, ``nfev``), the map evaluations, the end
    point and whether it is a root."""

    method: str
    status: str
    steps: int
    f_evals: int
    x: tuple[float, ...]
    root: bool


def run_ours(
    p: MGHProblem, solver: str, line_search: bool, *, max_iter: int, tol: float = 1e-10
) -> Run:
    """Our ``solver`` on ``z = z - F(z)`` from ``p.x0`` through the driver's :func:`iterate`,
    float64; map evaluations counted column by column (autograd Jacobian passes excluded)."""
    from implicit_viz.core.driver import iterate
    from implicit_viz.core.status import Status

    count = [0]

    def f(z: Tensor) -> Tensor:
        if not z.requires_grad:
            count[0] += z.shape[-1]
        return p.fixed_point_map(z)

    z0 = torch.tensor([p.x0], dtype=torch.float64)
    opts = {"line_search": line_search}
    *_, last = iterate(f, solver, z0, solver_options=opts, tol=tol, max_iter=max_iter)
    x = last.z[0].numpy()
    name = f"{solver} {'globalized' if line_search else 'plain'}"
    status = Status(int(last.status[0])).label
    return Run(name, status, last.k, count[0], tuple(map(float, x)), reached_root(p, x))


def run_scipy(p: MGHProblem, method: str, *, max_iter: int = 1000) -> Run:
    """SciPy's ``root`` with ``method`` ``"hybr"`` (MINPACK's hybrd: steps are its map
    evaluations) or ``"broyden1"`` (Armijo line search, ``fatol`` 1e-11) from ``p.x0``."""
    import warnings

    import scipy.optimize

    x0 = np.asarray(p.x0, dtype=np.float64)
    count = [0]

    def fun(x: np.ndarray) -> np.ndarray:
        count[0] += 1
        return p.F_np(x)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if method == "hybr":
            sol = scipy.optimize.root(fun, x0, method="hybr", options={"xtol": 1e-13})
            steps = int(sol.nfev)
        else:
            opts = {"maxiter": max_iter, "fatol": 1e-11, "line_search": "armijo"}
            try:
                sol = scipy.optimize.root(fun, x0, method=method, options=opts)
                steps = int(getattr(sol, "nit", 0))
            except (ValueError, OverflowError, np.linalg.LinAlgError):
                return Run(method, "error", max_iter, count[0], tuple(x0), False)
    x = np.asarray(sol.x, dtype=np.float64)
    status = "success" if sol.success else "failure"
    return Run(method, status, steps, count[0], tuple(map(float, x)), reached_root(p, x))
