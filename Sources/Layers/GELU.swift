import Tensors
#if canImport(Glibc)
import Glibc
#endif

/// Gaussian error linear unit: exact `0.5·x·(1 + erf(x/√2))` by default, or PyTorch's
/// `approximate="tanh"` form.
public enum GELU: String, Codable, Sendable {
    case erf
    case tanh

    private static let invSqrt2: Float = 0.70710678118654752
    private static let invSqrt2Pi: Float = 0.39894228040143268
    private static let sqrt2OverPi: Float = 0.79788456080286536

    /// out[i] = gelu(x[i]).
    public func forward(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, count n: Int) {
        switch self {
        case .erf:
            var i = 0
            while i < n {
                let m = min(8, n - i)
                let v = VectorMath.load(x + i, m)
                VectorMath.store(0.5 * v * (1 + VectorMath.erf(v * Self.invSqrt2)), out + i, m)
                i += 8
            }
        case .tanh:
            for i in 0 ..< n {
                let v = x[i]
                out[i] = 0.5 * v * (1 + tanhf(Self.sqrt2OverPi * (v + 0.044715 * v * v * v)))
            }
        }
    }

    /// dx[i] += gelu'(x[i]) · dout[i].
    public func backward(_ x: UnsafePointer<Float>, _ dout: UnsafePointer<Float>,
                         _ dx: UnsafeMutablePointer<Float>, count n: Int) {
        switch self {
        case .erf:
            var i = 0
            while i < n {
                let m = min(8, n - i)
                let v = VectorMath.load(x + i, m)
                let cdf = 0.5 * (1 + VectorMath.erf(v * Self.invSqrt2))
                let pdf = Self.invSqrt2Pi * VectorMath.exp(-0.5 * v * v)
                let d = VectorMath.load(dx + i, m) + (cdf + v * pdf) * VectorMath.load(dout + i, m)
                VectorMath.store(d, dx + i, m)
                i += 8
            }
        case .tanh:
            for i in 0 ..< n {
                let v = x[i]
                let u = Self.sqrt2OverPi * (v + 0.044715 * v * v * v)
                let t = tanhf(u)
                let du = Self.sqrt2OverPi * (1 + 3 * 0.044715 * v * v)
                dx[i] += (0.5 * (1 + t) + 0.5 * v * (1 - t * t) * du) * dout[i]
            }
        }
    }
}
