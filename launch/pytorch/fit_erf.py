"""Fits the rational function behind the GELU kernels' erf (Sources/CKernels/gelu.h).

erf(z) = z * P(z^2) / Q(z^2) on [0, 3.92], P of degree 6 and Q of degree 4 with Q(0) = 1 (erf is odd,
so this covers [-3.92, 3.92]; beyond, erf rounds to +-1 in single precision). The fit is a weighted
linear least-squares problem, z*P - erf*Q = 0, reweighted by 1/Q and by the error (Lawson) until the
worst absolute error levels out. Prints the coefficients as single-precision literals, lowest degree
first, and the worst absolute error in double precision. Needs numpy only.
"""
import math

import numpy as np

LIMIT = 3.92


def fit(p=6, q=4, iterations=80):
    z = np.concatenate([(1 - np.cos(np.linspace(0, np.pi, 6000))) * LIMIT / 2, np.linspace(0, LIMIT, 6000)])
    f = np.array([math.erf(v) for v in z])
    s = z * z
    w = np.ones_like(z)
    den = np.ones_like(z)
    for _ in range(iterations):
        A = np.concatenate([np.stack([z * s**i for i in range(p + 1)], 1),
                            np.stack([-f * s**j for j in range(1, q + 1)], 1)], 1)
        W = w / den
        c, *_ = np.linalg.lstsq(A * W[:, None], f * W, rcond=None)
        num = z * np.polyval(c[:p + 1][::-1], s)
        den = 1 + s * np.polyval(c[p + 1:][::-1], s)
        err = num / den - f
        w = w * np.sqrt(np.abs(err) + 1e-30)
        w /= w.max()
    return c[:p + 1], c[p + 1:], np.abs(err).max()


def main():
    P, Q, worst = fit()
    print("P (z^0 .. z^12 in steps of z^2):", ", ".join(f"{float(np.float32(v))!r}f" for v in P))
    print("Q (z^2 .. z^8):", ", ".join(f"{float(np.float32(v))!r}f" for v in Q))
    print(f"worst absolute error {worst:.3g}")


if __name__ == "__main__":
    main()
