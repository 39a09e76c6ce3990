import CKernels
import Tensors
#if canImport(Glibc)
import Glibc
#endif

/// Gaussian error linear unit: exact `0.5·x·(1 + erf(x/√2))` by default, or PyTorch's
/// `approximate="tanh"` form.
public enum GELU: String, Codable, Sendable {
    case erf
    case tanh

    private static let sqrt2OverPi: Float = 0.79788456080286536

    /// out[i] = gelu(x[i]).
    public func forward(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, count n: Int) {
        switch self {
        case .erf:
            Parallel.forEachPart(n, grain: 1 << 12) { r, _ in
                lk_gelu_erf_forward(x + r.lowerBound, out + r.lowerBound, Int64(r.count))
            }
        case .tanh:
            for i in 0 ..< n {
                let v = x[i]
                out[i] = 0.5 * v * (1 + tanhf(Self.sqrt2OverPi * (v + 0.044715 * v * v * v)))
            }
        }
    }

    /// out[i] = gelu(x[i]), and x[i] replaced by gelu'(x[i]): what backward needs from the
    /// pre-activation (the output for the next layer's weight gradient, the derivative for the
    /// chain rule) in one pass, sharing the erf. `x` is consumed.
    public func forwardReplacingWithDerivative(_ x: UnsafeMutablePointer<Float>, _ out: UnsafeMutablePointer<Float>,
                                               count n: Int) {
        switch self {
        case .erf:
            Parallel.forEachPart(n, grain: 1 << 12) { r, _ in
                lk_gelu_erf_forward_derivative(x + r.lowerBound, out + r.lowerBound, Int64(r.count))
            }
        case .tanh:
            for i in 0 ..< n {
                let v = x[i]
                let u = Self.sqrt2OverPi * (v + 0.044715 * v * v * v)
                let t = tanhf(u)
                let du = Self.sqrt2OverPi * (1 + 3 * 0.044715 * v * v)
                out[i] = 0.5 * v * (1 + t)
                x[i] = 0.5 * (1 + t) + 0.5 * v * (1 - t * t) * du
            }
        }
    }
}
