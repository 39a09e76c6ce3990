"""Fits the polynomial behind the GELU kernels' normal CDF (Sources/CKernels/kernels.c).

erfc(z) = t * P(t) * exp(-z*z) with t = 1 / (1 + z/2): for z in [0, inf), t runs over (0, 1] and
erfc(z) * exp(z*z) / t is smooth there, so a degree-9 polynomial fits it to a relative error below
1e-7 (minimax by iteratively reweighted least squares). Prints the coefficients, highest degree
first, and the worst relative error. Needs numpy only.
"""
import math

import numpy as np


def scaled_erfc(z):
    """erfc(z) * exp(z*z) in double precision, also where erfc underflows."""
    if z < 5:
        return math.erfc(z) * math.exp(z * z)
    s = 0.0  # continued fraction, converged for z >= 5
    for n in range(60, 0, -1):
        s = n / 2.0 / (z + s)
    return 1 / (math.sqrt(math.pi) * (z + s))


def main(degree=9):
    z = np.concatenate([np.linspace(0, 6, 300001), np.linspace(6, 25, 20001)])
    t = 1 / (1 + 0.5 * z)
    f = np.array([scaled_erfc(v) for v in z]) / t
    V = np.vander(t, degree + 1)
    w = np.ones_like(f)
    for _ in range(40):
        coef, *_ = np.linalg.lstsq((V / f[:, None]) * w[:, None], w, rcond=None)
        err = np.abs(V @ coef / f - 1)
        w = w * (1 + err / err.max())
        w /= w.max()
    print("coefficients (t^%d .. t^0):" % degree)
    for c in coef:
        print(f"  {float(c)!r}")
    print(f"worst relative error {np.max(np.abs(V @ coef - f) / f):.3g}")


if __name__ == "__main__":
    main()
