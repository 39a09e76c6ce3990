import CKernels
import Tensors

/// Layer normalisation over the last dimension, biased variance, as PyTorch's nn.LayerNorm
/// (the row loops are C kernels: their sums vectorise there).
public struct LayerNorm: Sendable {
    public let dim: Int
    public let eps: Float
    public let weight: ParameterRef
    public let bias: ParameterRef

    public init(_ layout: inout ParameterLayout, name: String, dim: Int, eps: Float = 1e-5) {
        self.dim = dim
        self.eps = eps
        weight = layout.add("\(name).weight", [dim])
        bias = layout.add("\(name).bias", [dim])
    }

    /// x (N, C) → out (N, C); saves mean and 1/std per row for backward.
    public func forward(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>,
                        mean: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>,
                        rows N: Int, _ arena: ParameterArena) {
        let w = arena.param(weight), b = arena.param(bias), C = dim
        Parallel.forEachPart(N, grain: 64) { r, _ in
            let o = r.lowerBound
            lk_layernorm_forward(x + o * C, out + o * C, mean + o, rstd + o, w, b, Int64(r.count), Int64(C), eps)
        }
    }

    /// The statistics saved by `forward` with this layer's weights: a following Linear layer's
    /// weight gradient reads the LayerNorm's input through them (`Linear.backward(normalizedBy:)`)
    /// instead of a recomputed output.
    public func normalization(mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>, _ arena: ParameterArena)
        -> RowProduct.Normalization {
        RowProduct.Normalization(mean: mean, rstd: rstd, gamma: arena.param(weight), beta: arena.param(bias))
    }

    /// dx = base + ∂L/∂x: the residual stream's gradient joins in the same pass (base nil:
    /// dx = ∂L/∂x; base may be dx itself to accumulate). dw, db accumulate (on one thread: their
    /// sums over rows keep one order).
    public func backward(_ dout: UnsafePointer<Float>, _ x: UnsafePointer<Float>,
                         mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>,
                         _ dx: UnsafeMutablePointer<Float>, base: UnsafePointer<Float>?, rows N: Int,
                         _ arena: ParameterArena) {
        lk_layernorm_backward(dout, x, mean, rstd, arena.param(weight), arena.grad(weight), arena.grad(bias), dx, base,
                              Int64(N), Int64(dim))
    }
}
