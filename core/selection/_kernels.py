"""Fused CPU loops (numba, compiled on first use and cached on disk) for the class-mean passes.

Each loop reads a block of feature rows once and writes only its own rows' outputs, so the
callers in :mod:`._linalg` can run disjoint row ranges on several threads (the loops
release the GIL). The callers state the formulas and error bounds. :func:`available` is
False when numba cannot be imported; the callers then use their torch code instead.
"""

from __future__ import annotations

import importlib
from types import ModuleType

import numpy as np

_nb: ModuleType | None
try:  # numba comes with umap-learn (a dependency); the torch path covers its absence
    _nb = importlib.import_module("numba")
except Exception:  # noqa: BLE001 - any import failure means "not available"
    _nb = None

#: float32 -> bfloat16 round-to-nearest-even: add 0x7FFF plus the lowest kept bit, keep 16 bits.
_BF16_HALF = 0x7FFF


def available() -> bool:
    """True when the compiled loops can be used."""
    return _nb is not None


if _nb is not None:
    _jit = _nb.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})

    @_jit
    def class_sums(x, codes, sums):  # pragma: no cover - compiled
        """``sums[codes[i], :] += x[i, :]`` for every row (x float32 [b, D], sums float64 [C, D])."""
        n, d = x.shape
        for i in range(n):
            row = sums[codes[i]]
            xi = x[i]
            for j in range(d):
                row[j] += xi[j]

    @_jit
    def class_sums_and_max_abs(x, xbits, codes, sums):  # pragma: no cover - compiled
        """:func:`class_sums` that also returns the bits of ``max |x_ij|`` (``xbits`` = ``x``
        viewed as uint32; ``bits & 0x7FFFFFFF`` orders finite floats by magnitude; the result
        is meaningful when every sum is finite)."""
        n, d = x.shape
        top = np.uint32(0)
        for i in range(n):
            row = sums[codes[i]]
            xi = x[i]
            bi = xbits[i]
            for j in range(d):
                row[j] += xi[j]
                a = bi[j] & np.uint32(0x7FFFFFFF)
                top = a if a > top else top
        return top

    @_jit
    def own_and_shifted(x, codes, means, centre, own, out_bf16, out_f32, mode):  # pragma: no cover
        """Per row i of the block ``x`` (float32 [b, D]):

        * ``own[i] = sqrt(sum_j (x_ij - means[codes_i, j])^2)``, float64 arithmetic (float32 out);
        * ``mode`` 0: nothing else; 1 or 2: ``z_ij = fl32(x_ij - centre_j)`` (the row shifted
          by the float32 centre) written as bfloat16 bits (round to nearest even) into
          ``out_bf16`` (mode 1) or as float32 into ``out_f32`` (mode 2).
        """
        n, d = x.shape
        z = np.empty(d, dtype=np.float32)
        zbits = z.view(np.uint32)
        for i in range(n):
            xi = x[i]
            mu = means[codes[i]]
            acc = 0.0
            for j in range(d):
                t = np.float64(xi[j]) - mu[j]
                acc += t * t
            own[i] = np.sqrt(acc)
            if mode == 1:
                for j in range(d):
                    z[j] = xi[j] - centre[j]
                ob = out_bf16[i]
                for j in range(d):
                    b = zbits[j]
                    ob[j] = np.uint16(
                        (b + np.uint32(_BF16_HALF) + ((b >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
                    )
            elif mode == 2:
                of = out_f32[i]
                for j in range(d):
                    of[j] = xi[j] - centre[j]

    @_nb.njit(cache=True, nogil=True, fastmath={"reassoc", "contract", "nnan", "nsz"})
    def nearest_candidates(y_bf16, y_f32, use_bf16, offset, slack, nearest, n_cand):  # pragma: no cover
        """Per row i: ``w_c = fl32(offset_c + y_ic)`` (``offset`` float32, ``y`` = the block's
        matmul output as bfloat16 bits or float32), ``nearest[i] = argmin_c w_c`` (first c on
        ties) and ``n_cand[i] = #{c : w_c <= min_c w_c + slack[i]}``; ``n_cand[i] = C`` when
        the minimum or the limit is not finite (float32 overflow: the caller re-checks the
        row). The inputs hold no NaN (checked before selection), hence ``nnan`` here; the
        minimum is taken over 16 interleaved lanes so that the loop vectorises."""
        if use_bf16:
            n, c_n = y_bf16.shape
        else:
            n, c_n = y_f32.shape
        bits = np.empty(c_n, dtype=np.uint32)
        w = bits.view(np.float32)
        lanes = np.empty(16, dtype=np.float32)
        full = c_n - c_n % 16
        for i in range(n):
            if use_bf16:
                yb = y_bf16[i]
                for c in range(c_n):
                    bits[c] = np.uint32(yb[c]) << np.uint32(16)
            else:
                yf = y_f32[i]
                for c in range(c_n):
                    w[c] = yf[c]
            for c in range(c_n):
                w[c] = offset[c] + w[c]
            lanes[:] = np.inf
            for c0 in range(0, full, 16):
                for lane in range(16):
                    v = w[c0 + lane]
                    lanes[lane] = v if v < lanes[lane] else lanes[lane]
            best = np.float32(np.inf)
            for lane in range(16):
                best = lanes[lane] if lanes[lane] < best else best
            for c in range(full, c_n):
                best = w[c] if w[c] < best else best
            limit = best + np.float32(slack[i])
            k = 0
            for c in range(c_n):
                k += w[c] <= limit
            arg = 0
            while arg < c_n - 1 and w[arg] != best:
                arg += 1
            nearest[i] = arg
            n_cand[i] = k if (abs(best) < np.inf and abs(limit) < np.inf) else c_n
