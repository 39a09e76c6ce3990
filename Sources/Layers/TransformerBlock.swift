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

    /// Scratch for one block of rows (`RowBlocks`), shared by all blocks of a model: they run one
    /// after another.
    public final class Scratch {
        public let rows: Int
        let lnOut: FloatBuffer           // (rows, C) a LayerNorm's output
        let dLn: FloatBuffer             // (rows, C) ∂L/∂(ln_k output)
        let dx1: FloatBuffer             // (rows, C)
        let dAttnOut: FloatBuffer        // (rows, C), only with dropout
        let attn: SelfAttention.Scratch
        let mlp: FeedForward.Scratch
        let packed: Packed               // the room the whole-batch passes pack into

        /// For batches of up to B sequences of T, in blocks of `rows` rows (whole sequences; by
        /// default `RowBlocks`' choice).
        public init(batch B: Int, time T: Int, dim C: Int, nHead: Int, dropout: Bool, rows: Int? = nil) {
            let rows = rows ?? RowBlocks.rows(batch: B, time: T, width: 4 * C)
            precondition(rows >= T, "TransformerBlock.Scratch: blocks of \(rows) rows hold no whole sequence of \(T)")
            self.rows = rows
            lnOut = FloatBuffer(count: rows * C)
            dLn = FloatBuffer(count: rows * C)
            dx1 = FloatBuffer(count: rows * C)
            dAttnOut = FloatBuffer(count: dropout ? rows * C : 0)
            attn = SelfAttention.Scratch(batch: B, time: T, dim: C, nHead: nHead, rows: rows)
            mlp = FeedForward.Scratch(rows: rows, dim: C, hidden: 4 * C, dropout: dropout)
            packed = Packed(attn: attn.packed, mlp: mlp.packed)
        }
    }

    /// The block's four weights packed for the products of a forward or a backward (`pack`).
    public final class Packed {
        let attn: SelfAttention.Packed
        let mlp: FeedForward.Packed

        public convenience init(dim C: Int) {
            self.init(attn: SelfAttention.Packed(dim: C), mlp: FeedForward.Packed(dim: C, hidden: 4 * C))
        }

        init(attn: SelfAttention.Packed, mlp: FeedForward.Packed) {
            self.attn = attn
            self.mlp = mlp
        }
    }

    /// Packs the weights for the forward (`backward` false) or backward passes that follow.
    public func pack(backward: Bool, into p: Packed, _ arena: ParameterArena) {
        attn.pack(backward: backward, into: p.attn, arena)
        mlp.pack(backward: backward, into: p.mlp, arena)
    }

    /// x (B, T, C) → out (B, T, C); `x` is kept (saved for backward). The whole block runs on a
    /// few sequences at a time (`RowBlocks`).
    public func forward(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, _ acts: Activations,
                        _ scratch: Scratch, batch B: Int, time T: Int, firstSample: Int, seed: UInt64, training: Bool,
                        _ arena: ParameterArena) {
        pack(backward: false, into: scratch.packed, arena)
        for s in RowBlocks(batch: B, time: T, rows: scratch.rows) {
            forward(x, out, acts, scratch, sequences: s, time: T, firstSample: firstSample, seed: seed, training: training,
                    arena, packed: scratch.packed)
        }
    }

    /// The sequences `s` of the batch (at most `scratch`'s rows; x, out and the activations are
    /// the whole batch's), with the weights in `packed` (`pack(backward: false)`).
    public func forward(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, _ acts: Activations,
                        _ scratch: Scratch, sequences s: Range<Int>, time T: Int, firstSample: Int, seed: UInt64,
                        training: Bool, _ arena: ParameterArena, packed: Packed) {
        let C = dim, lnOut = scratch.lnOut.pointer
        let n = s.count * T, first = s.lowerBound * T, o = first * C
        let xb = x + o, x1 = acts.x1.pointer + o
        ln1.forward(xb, lnOut, mean: acts.ln1Mean.pointer + first, rstd: acts.ln1Rstd.pointer + first, rows: n, arena)
        if training && attnDrop.isActive {
            attn.forward(lnOut, x1, acts.attn, scratch.attn, sequences: s, time: T, arena, packed: packed.attn)
            attnDrop.forward(x1, x1, mask: acts.attnMask.pointer + o, samples: s.count, perSample: T * C,
                             firstSample: firstSample + s.lowerBound, seed: seed, training: training)
            Kernels.add(xb, into: x1, count: n * C)
        } else { // the skip connections join as the projections are written
            attn.forward(lnOut, x1, acts.attn, scratch.attn, sequences: s, time: T, arena, residual: xb,
                         packed: packed.attn)
        }
        ln2.forward(x1, lnOut, mean: acts.ln2Mean.pointer + first, rstd: acts.ln2Rstd.pointer + first, rows: n, arena)
        mlp.forward(lnOut, out + o, acts.mlp, scratch.mlp, sequences: s, time: T, firstSample: firstSample, seed: seed,
                    training: training, arena, residual: UnsafePointer(x1), packed: packed.mlp)
    }

    /// dx = ∂L/∂x (overwritten) given dout = ∂L/∂out, a few sequences at a time, in order.
    public func backward(_ dout: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>,
                         _ acts: Activations, _ scratch: Scratch, batch B: Int, time T: Int, training: Bool,
                         _ arena: ParameterArena) {
        pack(backward: true, into: scratch.packed, arena)
        for s in RowBlocks(batch: B, time: T, rows: scratch.rows) {
            backward(dout, x, dx, acts, scratch, sequences: s, time: T, training: training, arena, packed: scratch.packed)
        }
    }

    /// The sequences `s` of the batch (x, dout, dx and the activations are the whole batch's),
    /// with the weights in `packed` (`pack(backward: true)`). The parameter gradients sum over
    /// rows in the order of the calls: a batch's blocks go in order.
    public func backward(_ dout: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>,
                         _ acts: Activations, _ scratch: Scratch, sequences s: Range<Int>, time T: Int, training: Bool,
                         _ arena: ParameterArena, packed: Packed) {
        let C = dim, dLn = scratch.dLn.pointer, dx1 = scratch.dx1.pointer
        let n = s.count * T, first = s.lowerBound * T, o = first * C
        let mean1 = acts.ln1Mean.pointer + first, rstd1 = acts.ln1Rstd.pointer + first
        let mean2 = acts.ln2Mean.pointer + first, rstd2 = acts.ln2Rstd.pointer + first
        let xb = x + o, x1 = acts.x1.pointer + o, doutb = dout + o
        // MLP branch: out = x1 + mlp(ln2(x1))
        mlp.backward(doutb, x1, dLn, acts.mlp, scratch.mlp, rows: first ..< first + n, training: training, arena,
                     normalizedBy: ln2.normalization(mean: mean2, rstd: rstd2, arena), packed: packed.mlp)
        ln2.backward(dLn, x1, mean: mean2, rstd: rstd2, dx1, base: doutb, rows: n, arena) // dx1 = dout + through ln2
        // Attention branch: x1 = x + drop(attn(ln1(x)))
        var dAttn = UnsafePointer(dx1)
        if training && attnDrop.isActive {
            let d = scratch.dAttnOut.pointer, mask = acts.attnMask.pointer + o
            for i in 0 ..< n * C { d[i] = dx1[i] * mask[i] }
            dAttn = UnsafePointer(d)
        }
        attn.backward(dAttn, xb, dLn, acts.attn, scratch.attn, sequences: s, time: T, arena,
                      normalizedBy: ln1.normalization(mean: mean1, rstd: rstd1, arena), packed: packed.attn)
        ln1.backward(dLn, xb, mean: mean1, rstd: rstd1, dx + o, base: dx1, rows: n, arena) // dx = dx1 + through ln1
    }
}
