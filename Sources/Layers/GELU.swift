import Tensors
#if canImport(Glibc)
import Glibc
#endif

/// Gaussian error linear unit: exact `0.5·x·(1 + erf(x/√2))` by default, or PyTorch's
/// `approximate="tanh"` form.
public enum GELU: String, Codable, Sendable {
    case erf
    case tanh

    typealias V = VectorMath.V
    private static let invSqrt2: Float = 0.70710678118654752
    private static let invSqrt2Pi: Float = 0.39894228040143268
    private static let sqrt2OverPi: Float = 0.79788456080286536

    @inline(__always) private static func erfForward(_ v: V) -> V {
        0.5 * v * (1 + VectorMath.erf(v * invSqrt2))
    }

    /// gelu'(v) for the erf form: Φ(v) + v·φ(v).
    @inline(__always) private static func erfDerivative(_ v: V) -> V {
        let cdf = 0.5 * (1 + VectorMath.erf(v * invSqrt2))
        return cdf.addingProduct(v, invSqrt2Pi * VectorMath.exp(-0.5 * v * v))
    }

    /// out[i] = gelu(x[i]).
    public func forward(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, count n: Int) {
        switch self {
        case .erf:
            var i = 0
            while i + 16 <= n {    // two independent vectors per iteration hide the polynomial's latency
                let a = VectorMath.load(x + i, 8), b = VectorMath.load(x + i + 8, 8)
                VectorMath.store(Self.erfForward(a), out + i, 8)
                VectorMath.store(Self.erfForward(b), out + i + 8, 8)
                i += 16
            }
            while i < n {
                let m = min(8, n - i)
                VectorMath.store(Self.erfForward(VectorMath.load(x + i, m)), out + i, m)
                i += 8
            }
        case .tanh:
            for i in 0 ..< n {
                let v = x[i]
                out[i] = 0.5 * v * (1 + tanhf(Self.sqrt2OverPi * (v + 0.044715 * v * v * v)))
            }
        }
    }

    /// d[i] = gelu'(x[i]) · d[i], in place: the gradient w.r.t. the GELU output becomes the
    /// gradient w.r.t. its input.
    public func backwardInPlace(_ x: UnsafePointer<Float>, _ d: UnsafeMutablePointer<Float>, count n: Int) {
        switch self {
        case .erf:
            var i = 0
            while i + 16 <= n {
                let a = VectorMath.load(x + i, 8), b = VectorMath.load(x + i + 8, 8)
                VectorMath.store(Self.erfDerivative(a) * VectorMath.load(d + i, 8), d + i, 8)
                VectorMath.store(Self.erfDerivative(b) * VectorMath.load(d + i + 8, 8), d + i + 8, 8)
                i += 16
            }
            while i < n {
                let m = min(8, n - i)
                VectorMath.store(Self.erfDerivative(VectorMath.load(x + i, m)) * VectorMath.load(d + i, m), d + i, m)
                i += 8
            }
        case .tanh:
            for i in 0 ..< n {
                let v = x[i]
                let u = Self.sqrt2OverPi * (v + 0.044715 * v * v * v)
                let t = tanhf(u)
                let du = Self.sqrt2OverPi * (1 + 3 * 0.044715 * v * v)
                d[i] *= 0.5 * (1 + t) + 0.5 * v * (1 - t * t) * du
            }
        }
    }
}
