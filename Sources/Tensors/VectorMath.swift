/// Vectorised transcendental functions on SIMD8<Float> (the hot paths of softmax and
/// cross-entropy), accurate to a few ulp, so elementwise kernels stream memory once.
public enum VectorMath {
    public typealias V = SIMD8<Float>

    /// e^x (Cephes-style: range reduction by ln 2, degree-6 polynomial, exponent bits).
    /// Rounding to an integer uses the 1.5·2²³ trick, which keeps everything in SIMD lanes.
    @inlinable @inline(__always)
    public static func exp(_ x: V) -> V {
        let lo = V(repeating: -87.3), hi = V(repeating: 88.37)
        var x = x.replacing(with: lo, where: x .< lo).replacing(with: hi, where: x .> hi)
        let magic: Float = 12_582_912    // 1.5·2²³: adding it rounds to the nearest integer
        let t = V(repeating: magic).addingProduct(x, V(repeating: 1.44269504088896341))
        let n = t - magic
        x = x.addingProduct(n, V(repeating: -0.693359375))
        x = x.addingProduct(n, V(repeating: 2.12194440e-4))
        let x2 = x * x
        var y = V(repeating: 1.3981999507e-3).addingProduct(V(repeating: 1.9875691500e-4), x)
        y = V(repeating: 8.3334519073e-3).addingProduct(y, x)
        y = V(repeating: 4.1665795894e-2).addingProduct(y, x)
        y = V(repeating: 1.6666665459e-1).addingProduct(y, x)
        y = V(repeating: 5.0000001201e-1).addingProduct(y, x)
        y = (x + 1).addingProduct(y, x2)
        let k = unsafeBitCast(t, to: SIMD8<UInt32>.self) &- magic.bitPattern   // n as a two's-complement integer
        return y * unsafeBitCast((k &+ 127) &<< 23, to: V.self)
    }

    /// Loads up to 8 elements (the rest padded with `pad`).
    @inlinable @inline(__always)
    public static func load(_ p: UnsafePointer<Float>, _ n: Int, pad: Float = 0) -> V {
        if n >= 8 { return UnsafeRawPointer(p).loadUnaligned(as: V.self) }
        var v = V(repeating: pad)
        for i in 0 ..< n { v[i] = p[i] }
        return v
    }

    /// Stores the first `n` (≤ 8) lanes.
    @inlinable @inline(__always)
    public static func store(_ v: V, _ p: UnsafeMutablePointer<Float>, _ n: Int) {
        if n >= 8 { UnsafeMutableRawPointer(p).storeBytes(of: v, as: V.self); return }
        for i in 0 ..< n { p[i] = v[i] }
    }

    /// Largest of x[0..<n].
    @inlinable @inline(__always)
    public static func max(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
        var m = V(repeating: -.infinity)
        var i = 0
        while i < n { let v = load(x + i, n - i, pad: -.infinity); m.replace(with: v, where: v .> m); i += 8 }
        return m.max()
    }

    /// out[i] = e^(x[i] − shift) (out may be x); returns Σ of the results.
    @inlinable @inline(__always)
    public static func expShifted(_ x: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>, _ n: Int,
                                  shift: Float) -> Float {
        var s = V.zero
        var i = 0
        while i + 8 <= n {
            let e = exp(UnsafeRawPointer(x + i).loadUnaligned(as: V.self) - shift)
            UnsafeMutableRawPointer(out + i).storeBytes(of: e, as: V.self)
            s += e
            i += 8
        }
        var total = s.sum()
        if i < n {
            let m = n - i
            let e = exp(load(x + i, m) - shift)
            for k in 0 ..< m { out[i + k] = e[k]; total += e[k] }
        }
        return total
    }

    /// Softmax of x[0..<n] written to out (may alias x); returns the largest x and Σ e^(x − max)
    /// (what a log-sum-exp needs).
    @inlinable @inline(__always) @discardableResult
    public static func softmax(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, _ n: Int)
        -> (max: Float, sum: Float) {
        let mx = max(x, n)
        let sum = expShifted(x, into: out, n, shift: mx), inv = 1 / sum
        var i = 0
        while i < n { let m = Swift.min(8, n - i); store(load(out + i, m) * inv, out + i, m); i += 8 }
        return (mx, sum)
    }
}
