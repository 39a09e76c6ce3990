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

    /// The two weights packed for the products of a forward or a backward (`pack`).
    public final class Packed {
        let fc, proj: RowProduct.PackedWeight

        public init(dim C: Int, hidden H: Int) {
            fc = RowProduct.PackedWeight(k: C, outputs: H)
            proj = RowProduct.PackedWeight(k: H, outputs: C)
        }
    }

    /// Forward and backward scratch for one block of rows (`RowBlocks`), shareable by every
    /// feed-forward block of a model, with room for the two weights packed for the whole-batch
    /// passes.
    public final class Scratch {
        let rows: Int
        let g: FloatBuffer      // (rows, H) GELU output after dropout; in backward, then its gradient
        let dproj: FloatBuffer  // (rows, C), only with dropout
        let packed: Packed

        /// For blocks of up to `rows` rows.
        public init(rows: Int, dim C: Int, hidden H: Int, dropout: Bool) {
            self.rows = rows
            g = FloatBuffer(count: rows * H)
            dproj = FloatBuffer(count: dropout ? rows * C : 0)
            packed = Packed(dim: C, hidden: H)
        }
    }

    /// Packs both weights for the forward (`backward` false) or backward products of the blocks
    /// that follow.
    public func pack(backward: Bool, into p: Packed, _ arena: ParameterArena) {
        cFc.pack(backward: backward, into: p.fc, arena)
        cProj.pack(backward: backward, into: p.proj, arena)
    }

    /// x (B, T, C) → out (B, T, C) for the whole batch, block by block; with `residual`
    /// (B, T, C), out = residual + mlp(x). Row block b belongs to global sample `firstSample + b`.
    public func forward(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, _ acts: Activations,
                        _ scratch: Scratch, batch B: Int, time T: Int, firstSample: Int, seed: UInt64, training: Bool,
                        _ arena: ParameterArena, residual: UnsafePointer<Float>? = nil) {
        pack(backward: false, into: scratch.packed, arena)
        for s in RowBlocks(batch: B, time: T, rows: scratch.rows) {
            let o = s.lowerBound * T * dim
            forward(x + o, out + o, acts, scratch, sequences: s, time: T, firstSample: firstSample, seed: seed,
                    training: training, arena, residual: residual.map { $0 + o }, packed: scratch.packed)
        }
    }

    /// One block of rows: the sequences `s` of the batch, with x, out and residual pointing at
    /// the block's first row (the activations are kept at the block's rows), with the weights in
    /// `packed` (`pack(backward: false)`).
    public func forward(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, _ acts: Activations,
                        _ scratch: Scratch, sequences s: Range<Int>, time T: Int, firstSample: Int, seed: UInt64,
                        training: Bool, _ arena: ParameterArena, residual: UnsafePointer<Float>? = nil,
                        packed: Packed) {
        let n = s.count * T, first = s.lowerBound * T, H = hidden, C = dim
        precondition(n <= scratch.rows, "FeedForward: a block of \(n) rows exceeds the scratch's \(scratch.rows)")
        let h = acts.h.pointer + first * H, g = scratch.g.pointer
        cFc.forward(x, h, rows: n, arena, packed: packed.fc)
        gelu.forward(h, g, count: n * H)
        dropHidden.forward(g, g, mask: acts.maskHidden.pointer + (dropHidden.isActive ? first * H : 0), samples: s.count,
                           perSample: T * H, firstSample: firstSample + s.lowerBound, seed: seed, training: training)
        if training && dropOut.isActive {
            cProj.forward(g, out, rows: n, arena, packed: packed.proj)
            dropOut.forward(out, out, mask: acts.maskOut.pointer + first * C, samples: s.count, perSample: T * C,
                            firstSample: firstSample + s.lowerBound, seed: seed, training: training)
            if let residual { Kernels.add(residual, into: out, count: n * C) }
        } else { // the residual joins as the projection is written
            cProj.forward(g, out, rows: n, arena, residual: residual, packed: packed.proj)
        }
    }

    /// dx = ∂L/∂x (overwritten, or added when `accumulateInput`) for the whole batch, block by
    /// block; parameter gradients accumulate. With `normalizedBy`, x is the input of the
    /// LayerNorm whose output the block took (`Linear.backward(normalizedBy:)`).
    public func backward(_ dout: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>,
                         _ acts: Activations, _ scratch: Scratch, rows N: Int, training: Bool, _ arena: ParameterArena,
                         accumulateInput: Bool = false, normalizedBy norm: RowProduct.Normalization? = nil) {
        pack(backward: true, into: scratch.packed, arena)
        for first in stride(from: 0, to: N, by: scratch.rows) {
            let r = first ..< min(N, first + scratch.rows), o = first * dim
            backward(dout + o, x + o, dx + o, acts, scratch, rows: r, training: training, arena,
                     accumulateInput: accumulateInput, normalizedBy: norm?.rows(from: first), packed: scratch.packed)
        }
    }

    /// One block of rows `r`, with dout, x, dx (and the normalization) at the block's first row;
    /// the blocks of a batch go in order (the weight gradients sum over rows in one order). The
    /// weights are in `packed` (`pack(backward: true)`).
    public func backward(_ dout: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>,
                         _ acts: Activations, _ scratch: Scratch, rows r: Range<Int>, training: Bool,
                         _ arena: ParameterArena, accumulateInput: Bool = false,
                         normalizedBy norm: RowProduct.Normalization? = nil, packed: Packed) {
        let n = r.count, H = hidden, C = dim
        precondition(n <= scratch.rows, "FeedForward: a block of \(n) rows exceeds the scratch's \(scratch.rows)")
        var dp = dout
        if training && dropOut.isActive {
            let d = scratch.dproj.pointer, mask = acts.maskOut.pointer + r.lowerBound * C
            for i in 0 ..< n * C { d[i] = dout[i] * mask[i] }
            dp = UnsafePointer(d)
        }
        // g = drop(gelu(h)) recomputed, and h ← gelu'(h) in the same pass
        let g = scratch.g.pointer, h = acts.h.pointer + r.lowerBound * H
        let maskHidden = acts.maskHidden.pointer + (dropHidden.isActive ? r.lowerBound * H : 0)
        gelu.forwardReplacingWithDerivative(h, g, count: n * H)
        dropHidden.backwardInPlace(g, mask: maskHidden, count: n * H, training: training)
        // ∂L/∂g overwrites g: Linear.backward has finished reading its input when it writes dx.
        if training && dropHidden.isActive {
            cProj.backward(dp, g, g, rows: n, arena, accumulateInput: false, packed: packed.proj)
            dropHidden.backwardInPlace(g, mask: maskHidden, count: n * H, training: training)
            Kernels.multiply(g, by: h, count: n * H)
        } else { // ∂L/∂h = ∂L/∂g ⊙ gelu'(h) as the product is stored
            cProj.backward(dp, g, g, rows: n, arena, accumulateInput: false, multiplying: h, packed: packed.proj)
        }
        cFc.backward(g, x, dx, rows: n, arena, accumulateInput: accumulateInput, normalizedBy: norm,
                     packed: packed.fc)
    }
}
