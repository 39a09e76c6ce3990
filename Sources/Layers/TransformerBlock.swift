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

    /// What forward saves for backward, for one (B, T). The LayerNorm outputs are not kept:
    /// backward's weight gradients normalize the LayerNorms' inputs as they read them.
    public final class Activations {
        let ln1Mean, ln1Rstd: FloatBuffer
        let attnMask: FloatBuffer
        let x1: FloatBuffer              // residual after attention
        let ln2Mean, ln2Rstd: FloatBuffer
        let attn: SelfAttention.Activations
        let mlp: FeedForward.Activations

        public init(batch B: Int, time T: Int, dim C: Int, nHead: Int, dropout: Bool) {
            let N = B * T
            ln1Mean = FloatBuffer(count: N); ln1Rstd = FloatBuffer(count: N)
            attnMask = FloatBuffer(count: dropout ? N * C : 0)
            x1 = FloatBuffer(count: N * C)
            ln2Mean = FloatBuffer(count: N); ln2Rstd = FloatBuffer(count: N)
            attn = SelfAttention.Activations(batch: B, time: T, dim: C, nHead: nHead)
            mlp = FeedForward.Activations(rows: N, dim: C, hidden: 4 * C, dropout: dropout)
        }
    }

    /// Scratch shared by all blocks of a model: they run one after another.
    public final class Scratch {
        let lnOut: FloatBuffer           // (N, C) a LayerNorm's output
        let dLn: FloatBuffer             // (N, C) ∂L/∂(ln_k output)
        let dx1: FloatBuffer             // (N, C)
        let dAttnOut: FloatBuffer        // (N, C), only with dropout
        let attn: SelfAttention.Scratch
        let mlp: FeedForward.Scratch

        public init(batch B: Int, time T: Int, dim C: Int, nHead: Int, dropout: Bool) {
            let N = B * T
            lnOut = FloatBuffer(count: N * C)
            dLn = FloatBuffer(count: N * C)
            dx1 = FloatBuffer(count: N * C)
            dAttnOut = FloatBuffer(count: dropout ? N * C : 0)
            attn = SelfAttention.Scratch(batch: B, time: T, dim: C, nHead: nHead)
            mlp = FeedForward.Scratch(rows: N, dim: C, hidden: 4 * C, dropout: dropout)
        }
    }

    /// x (B, T, C) → out (B, T, C); `x` is kept (saved for backward).
    public func forward(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, _ acts: Activations,
                        _ scratch: Scratch, batch B: Int, time T: Int, firstSample: Int, seed: UInt64, training: Bool,
                        _ arena: ParameterArena) {
        let N = B * T, C = dim
        let x1 = acts.x1.pointer, lnOut = scratch.lnOut.pointer
        ln1.forward(x, lnOut, mean: acts.ln1Mean.pointer, rstd: acts.ln1Rstd.pointer, rows: N, arena)
        if training && attnDrop.isActive {
            attn.forward(lnOut, x1, acts.attn, scratch.attn, batch: B, time: T, arena)
            attnDrop.forward(x1, x1, mask: acts.attnMask.pointer, samples: B, perSample: T * C,
                             firstSample: firstSample, seed: seed, training: training)
            Kernels.add(x, into: x1, count: N * C)
        } else { // the skip connections join as the projections are written
            attn.forward(lnOut, x1, acts.attn, scratch.attn, batch: B, time: T, arena, residual: x)
        }
        ln2.forward(x1, lnOut, mean: acts.ln2Mean.pointer, rstd: acts.ln2Rstd.pointer, rows: N, arena)
        mlp.forward(lnOut, out, acts.mlp, scratch.mlp, batch: B, time: T, firstSample: firstSample, seed: seed,
                    training: training, arena, residual: UnsafePointer(x1))
    }

    /// dx = ∂L/∂x (overwritten) given dout = ∂L/∂out.
    public func backward(_ dout: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>,
                         _ acts: Activations, _ scratch: Scratch, batch B: Int, time T: Int, training: Bool,
                         _ arena: ParameterArena) {
        let N = B * T, C = dim
        // MLP branch: out = x1 + mlp(ln2(x1))
        mlp.backward(dout, acts.x1.pointer, scratch.dLn.pointer, acts.mlp, scratch.mlp, rows: N, training: training, arena,
                     normalizedBy: ln2.normalization(mean: acts.ln2Mean.pointer, rstd: acts.ln2Rstd.pointer, arena))
        ln2.backward(scratch.dLn.pointer, acts.x1.pointer, mean: acts.ln2Mean.pointer, rstd: acts.ln2Rstd.pointer,
                     scratch.dx1.pointer, base: dout, rows: N, arena)   // dx1 = dout + through ln2
        // Attention branch: x1 = x + drop(attn(ln1(x)))
        var dAttn = UnsafePointer(scratch.dx1.pointer)
        if training && attnDrop.isActive {
            for i in 0 ..< N * C { scratch.dAttnOut[i] = scratch.dx1[i] * acts.attnMask[i] }
            dAttn = UnsafePointer(scratch.dAttnOut.pointer)
        }
        attn.backward(dAttn, x, scratch.dLn.pointer, acts.attn, scratch.attn, batch: B, time: T, arena,
                      normalizedBy: ln1.normalization(mean: acts.ln1Mean.pointer, rstd: acts.ln1Rstd.pointer, arena))
        ln1.backward(scratch.dLn.pointer, x, mean: acts.ln1Mean.pointer, rstd: acts.ln1Rstd.pointer, dx,
                     base: scratch.dx1.pointer, rows: N, arena)                   // dx = dx1 + through ln1
    }
}
