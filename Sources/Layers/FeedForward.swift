import Tensors

/// Position-wise feed-forward block: Linear(C → d_ff) → GELU → Dropout → Linear(d_ff → C) → Dropout.
public struct FeedForward: Sendable {
    public let dim: Int
    public let hidden: Int
    public let cFc: Linear
    public let cProj: Linear
    public let gelu: GELU
    public let dropHidden: Dropout
    public let dropOut: Dropout

    public init(_ layout: inout ParameterLayout, name: String, dim: Int, hidden: Int? = nil,
                gelu: GELU = .erf, dropout: Float = 0, site: UInt64, bias: Bool = true) {
        self.dim = dim
        self.hidden = hidden ?? 4 * dim
        self.gelu = gelu
        cFc = Linear(&layout, name: "\(name).c_fc", in: dim, out: self.hidden, bias: bias)
        cProj = Linear(&layout, name: "\(name).c_proj", in: self.hidden, out: dim, bias: bias)
        dropHidden = Dropout(p: dropout, site: site)
        dropOut = Dropout(p: dropout, site: site + 1)
    }

    /// What forward saves for backward: only the pre-activation (and dropout masks); backward
    /// recomputes the GELU output rather than keeping a second (N, 4C) buffer per block, and
    /// replaces `h` by the GELU's derivative as it goes (backward consumes the activations).
    public final class Activations {
        let h: FloatBuffer      // (N, H) before GELU
        let maskHidden: FloatBuffer
        let maskOut: FloatBuffer

        public init(rows N: Int, dim C: Int, hidden H: Int, dropout: Bool) {
            h = FloatBuffer(count: N * H)
            maskHidden = FloatBuffer(count: dropout ? N * H : 0)
            maskOut = FloatBuffer(count: dropout ? N * C : 0)
        }
    }

    /// Forward and backward scratch, shareable by every feed-forward block of a model.
    public final class Scratch {
        let g: FloatBuffer      // (N, H) GELU output after dropout; in backward, then its gradient
        let dproj: FloatBuffer  // (N, C), only with dropout

        public init(rows N: Int, dim C: Int, hidden H: Int, dropout: Bool) {
            g = FloatBuffer(count: N * H)
            dproj = FloatBuffer(count: dropout ? N * C : 0)
        }
    }

    /// x (B, T, C) → out (B, T, C); with `residual` (B, T, C), out = residual + mlp(x). Row block
    /// b belongs to global sample `firstSample + b`.
    public func forward(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, _ acts: Activations,
                        _ scratch: Scratch, batch B: Int, time T: Int, firstSample: Int, seed: UInt64, training: Bool,
                        _ arena: ParameterArena, residual: UnsafePointer<Float>? = nil) {
        let N = B * T, H = hidden, C = dim
        let g = scratch.g.pointer
        cFc.forward(x, acts.h.pointer, rows: N, arena)
        gelu.forward(acts.h.pointer, g, count: N * H)
        dropHidden.forward(g, g, mask: acts.maskHidden.pointer, samples: B,
                           perSample: T * H, firstSample: firstSample, seed: seed, training: training)
        if training && dropOut.isActive {
            cProj.forward(g, out, rows: N, arena)
            dropOut.forward(out, out, mask: acts.maskOut.pointer, samples: B, perSample: T * C,
                            firstSample: firstSample, seed: seed, training: training)
            if let residual { Kernels.add(residual, into: out, count: N * C) }
        } else { // the residual joins as the projection is written
            cProj.forward(g, out, rows: N, arena, residual: residual)
        }
    }

    /// dx = ∂L/∂x (overwritten, or added when `accumulateInput`); parameter gradients accumulate.
    /// With `normalizedBy`, x is the input of the LayerNorm whose output the block took
    /// (`Linear.backward(normalizedBy:)`).
    public func backward(_ dout: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>,
                         _ acts: Activations, _ scratch: Scratch, rows N: Int, training: Bool, _ arena: ParameterArena,
                         accumulateInput: Bool = false, normalizedBy norm: RowProduct.Normalization? = nil) {
        let H = hidden, C = dim
        var dp = dout
        if training && dropOut.isActive {
            for i in 0 ..< N * C { scratch.dproj[i] = dout[i] * acts.maskOut[i] }
            dp = UnsafePointer(scratch.dproj.pointer)
        }
        // g = drop(gelu(h)) recomputed, and h ← gelu'(h) in the same pass
        let g = scratch.g.pointer, h = acts.h.pointer
        gelu.forwardReplacingWithDerivative(h, g, count: N * H)
        dropHidden.backwardInPlace(g, mask: acts.maskHidden.pointer, count: N * H, training: training)
        // ∂L/∂g overwrites g: Linear.backward has finished reading its input when it writes dx.
        if training && dropHidden.isActive {
            cProj.backward(dp, g, g, rows: N, arena, accumulateInput: false)
            dropHidden.backwardInPlace(g, mask: acts.maskHidden.pointer, count: N * H, training: training)
            Kernels.multiply(g, by: h, count: N * H)
        } else { // ∂L/∂h = ∂L/∂g ⊙ gelu'(h) as the product is stored
            cProj.backward(dp, g, g, rows: N, arena, accumulateInput: false, multiplying: h)
        }
        cFc.backward(g, x, dx, rows: N, arena, accumulateInput: accumulateInput, normalizedBy: norm)
    }
}
