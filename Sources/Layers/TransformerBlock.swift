import Tensors

/// Pre-LN residual block: `x += drop(attn(ln_1(x))); x += mlp(ln_2(x))`.
public struct TransformerBlock: Sendable {
    public let dim: Int
    public let ln1: LayerNorm
    public let attn: SelfAttention
    public let attnDrop: Dropout
    public let ln2: LayerNorm
    public let mlp: FeedForward

    /// `name` is the block's prefix (e.g. `transformer.h.0`); `site` the first of its dropout sites.
    public init(_ layout: inout ParameterLayout, name: String, dim: Int, nHead: Int, causal: Bool,
                gelu: GELU, dropout: Float, site: UInt64, bias: Bool = true) {
        self.dim = dim
        ln1 = LayerNorm(&layout, name: "\(name).ln_1", dim: dim)
        attn = SelfAttention(&layout, name: "\(name).attn", dim: dim, nHead: nHead, causal: causal, bias: bias)
        attnDrop = Dropout(p: dropout, site: site)
        ln2 = LayerNorm(&layout, name: "\(name).ln_2", dim: dim)
        mlp = FeedForward(&layout, name: "\(name).mlp", dim: dim, gelu: gelu, dropout: dropout,
                          site: site + 1, bias: bias)
    }

    public final class Activations {
        let ln1Out, ln1Mean, ln1Rstd: FloatBuffer
        let attnOut, attnMask: FloatBuffer
        let x1: FloatBuffer              // residual after attention
        let ln2Out, ln2Mean, ln2Rstd: FloatBuffer
        let mlpOut: FloatBuffer
        let attn: SelfAttention.Activations
        let mlp: FeedForward.Activations
        let dLn: FloatBuffer             // (N, C) scratch for ∂L/∂ln_k output
        let dx1: FloatBuffer             // (N, C)
        let dAttnOut: FloatBuffer        // (N, C), only with dropout

        public init(batch B: Int, time T: Int, dim C: Int, nHead: Int, dropout: Bool) {
            let N = B * T
            ln1Out = FloatBuffer(count: N * C); ln1Mean = FloatBuffer(count: N); ln1Rstd = FloatBuffer(count: N)
            attnOut = FloatBuffer(count: N * C); attnMask = FloatBuffer(count: dropout ? N * C : 0)
            x1 = FloatBuffer(count: N * C)
            ln2Out = FloatBuffer(count: N * C); ln2Mean = FloatBuffer(count: N); ln2Rstd = FloatBuffer(count: N)
            mlpOut = FloatBuffer(count: N * C)
            attn = SelfAttention.Activations(batch: B, time: T, dim: C, nHead: nHead)
            mlp = FeedForward.Activations(rows: N, dim: C, hidden: 4 * C, dropout: dropout)
            dLn = FloatBuffer(count: N * C)
            dx1 = FloatBuffer(count: N * C)
            dAttnOut = FloatBuffer(count: dropout ? N * C : 0)
        }
    }

    /// x (B, T, C) → out (B, T, C); `x` is kept (saved for backward).
    public func forward(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, _ acts: Activations,
                        batch B: Int, time T: Int, firstSample: Int, seed: UInt64, training: Bool,
                        _ arena: ParameterArena) {
        let N = B * T, C = dim
        ln1.forward(x, acts.ln1Out.pointer, mean: acts.ln1Mean.pointer, rstd: acts.ln1Rstd.pointer, rows: N, arena)
        attn.forward(acts.ln1Out.pointer, acts.attnOut.pointer, acts.attn, batch: B, time: T, arena)
        attnDrop.forward(acts.attnOut.pointer, acts.attnOut.pointer, mask: acts.attnMask.pointer, samples: B,
                         perSample: T * C, firstSample: firstSample, seed: seed, training: training)
        Kernels.sum(x, acts.attnOut.pointer, into: acts.x1.pointer, count: N * C)
        ln2.forward(acts.x1.pointer, acts.ln2Out.pointer, mean: acts.ln2Mean.pointer, rstd: acts.ln2Rstd.pointer,
                    rows: N, arena)
        mlp.forward(acts.ln2Out.pointer, acts.mlpOut.pointer, acts.mlp, batch: B, time: T,
                    firstSample: firstSample, seed: seed, training: training, arena)
        Kernels.sum(acts.x1.pointer, acts.mlpOut.pointer, into: out, count: N * C)
    }

    /// dx += ∂L/∂x given dout = ∂L/∂out.
    public func backward(_ dout: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>,
                         _ acts: Activations, batch B: Int, time T: Int, training: Bool, _ arena: ParameterArena) {
        let N = B * T, C = dim
        // MLP branch: x2 = x1 + mlp(ln2(x1))
        acts.dx1.pointer.update(from: dout, count: N * C)
        acts.dLn.zero()
        mlp.backward(dout, acts.ln2Out.pointer, acts.dLn.pointer, acts.mlp, rows: N, training: training, arena)
        ln2.backward(acts.dLn.pointer, acts.x1.pointer, mean: acts.ln2Mean.pointer, rstd: acts.ln2Rstd.pointer,
                     acts.dx1.pointer, rows: N, arena)
        // Attention branch: x1 = x + drop(attn(ln1(x)))
        Kernels.add(acts.dx1.pointer, into: dx, count: N * C)
        var dAttn = UnsafePointer(acts.dx1.pointer)
        if training && attnDrop.isActive {
            for i in 0 ..< N * C { acts.dAttnOut[i] = acts.dx1[i] * acts.attnMask[i] }
            dAttn = UnsafePointer(acts.dAttnOut.pointer)
        }
        acts.dLn.zero()
        attn.backward(dAttn, acts.ln1Out.pointer, acts.dLn.pointer, acts.attn, batch: B, time: T, arena)
        ln1.backward(acts.dLn.pointer, x, mean: acts.ln1Mean.pointer, rstd: acts.ln1Rstd.pointer, dx, rows: N, arena)
    }
}
