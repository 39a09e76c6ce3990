import CKernels
import Tensors

/// Multi-head self-attention: `c_attn` (C → 3C, split q, k, v), softmax(q·kᵀ/√hs)·v per head,
/// heads concatenated, `c_proj` (C → C). Causal (decoder) or bidirectional (encoder).
///
/// Each head runs in a C kernel (`lk_attention_forward/backward`) over blocks of eight query rows:
/// a causal block never computes the products above the diagonal, and the attention
/// probabilities are not kept — forward saves one number per query row (the log of its softmax
/// denominator) and backward recomputes the probabilities from q, k and it, instead of holding
/// B·heads·T² floats per layer.
public struct SelfAttention: Sendable {
    public let dim: Int
    public let nHead: Int
    public let causal: Bool
    public let cAttn: Linear
    public let cProj: Linear

    public init(_ layout: inout ParameterLayout, name: String, dim: Int, nHead: Int, causal: Bool,
                bias: Bool = true) {
        precondition(dim % nHead == 0, "dim must be divisible by nHead")
        self.dim = dim
        self.nHead = nHead
        self.causal = causal
        cAttn = Linear(&layout, name: "\(name).c_attn", in: dim, out: 3 * dim, bias: bias)
        cProj = Linear(&layout, name: "\(name).c_proj", in: dim, out: dim, bias: bias)
    }

    /// What forward saves for backward, for one (B, T).
    public final class Activations {
        public let qkv: FloatBuffer    // (B, T, 3C)
        public let y: FloatBuffer      // (B, T, C) heads concatenated, before c_proj
        public let lse: FloatBuffer    // (B, NH, T) log Σ exp of each query row's scaled scores

        public init(batch B: Int, time T: Int, dim C: Int, nHead NH: Int) {
            qkv = FloatBuffer(count: B * T * 3 * C)
            y = FloatBuffer(count: B * T * C)
            lse = FloatBuffer(count: B * NH * T)
        }
    }

    /// The two weights packed for the products of a forward or a backward (`pack`).
    public final class Packed {
        let attn, proj: RowProduct.PackedWeight

        public init(dim C: Int) {
            attn = RowProduct.PackedWeight(k: C, outputs: 3 * C)
            proj = RowProduct.PackedWeight(k: C, outputs: C)
        }
    }

    /// Scratch for one block of rows (`RowBlocks`), shareable by every attention layer of a
    /// model, with room for the two weights packed for the whole-batch passes.
    public final class Scratch {
        let rows: Int
        let dqkv: FloatBuffer          // (rows, 3C)
        let dy: FloatBuffer            // (rows, C)
        let work: [FloatBuffer]        // per thread: one head's kernel workspace
        let workPointers: [UnsafeMutablePointer<Float>]
        let packed: Packed

        /// For blocks of `rows` rows (whole sequences of T; by default `RowBlocks`' choice for a
        /// batch of B).
        public init(batch B: Int, time T: Int, dim C: Int, nHead NH: Int, rows: Int? = nil) {
            let rows = rows ?? RowBlocks.rows(batch: B, time: T, width: 3 * C)
            self.rows = rows
            dqkv = FloatBuffer(count: rows * 3 * C)
            dy = FloatBuffer(count: rows * C)
            work = (0 ..< Parallel.threads).map { _ in FloatBuffer(count: Int(lk_attention_work_size(Int64(T), Int64(C / NH)))) }
            workPointers = work.map(\.pointer)
            packed = Packed(dim: C)
        }

        /// Runs `body(head, workspace)` for every (sequence, head) pair b·NH + h of `heads`,
        /// split over the threads that have a workspace (those of the rank when the model was
        /// built).
        @inline(__always)
        func forEachHead(_ heads: Range<Int>, _ body: (Int, UnsafeMutablePointer<Float>) -> Void) {
            let works = workPointers
            Parallel.forEachPart(heads.count, maxParts: works.count) { r, part in
                for i in r { body(heads.lowerBound + i, works[part]) }
            }
        }
    }

    /// Packs both weights for the forward (`backward` false) or backward products of the blocks
    /// that follow.
    public func pack(backward: Bool, into p: Packed, _ arena: ParameterArena) {
        cAttn.pack(backward: backward, into: p.attn, arena)
        cProj.pack(backward: backward, into: p.proj, arena)
    }

    /// x (B, T, C) → out (B, T, C) for the whole batch, block by block; with `residual`
    /// (B, T, C), out = residual + attention(x).
    public func forward(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>,
                        _ acts: Activations, _ scratch: Scratch, batch B: Int, time T: Int, _ arena: ParameterArena,
                        residual: UnsafePointer<Float>? = nil) {
        pack(backward: false, into: scratch.packed, arena)
        for s in RowBlocks(batch: B, time: T, rows: scratch.rows) {
            let o = s.lowerBound * T * dim
            forward(x + o, out + o, acts, scratch, sequences: s, time: T, arena, residual: residual.map { $0 + o },
                    packed: scratch.packed)
        }
    }

    /// The sequences `s` of the batch, with x, out and residual pointing at their first row (the
    /// activations are kept at the block's rows), with the weights in `packed` (`pack(backward: false)`).
    public func forward(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, _ acts: Activations,
                        _ scratch: Scratch, sequences s: Range<Int>, time T: Int, _ arena: ParameterArena,
                        residual: UnsafePointer<Float>? = nil, packed: Packed) {
        let C = dim, NH = nHead, hs = C / NH, C3 = 3 * C, n = s.count * T, first = s.lowerBound * T
        let scale = 1 / Float(hs).squareRoot()
        let qkv = acts.qkv.pointer, y = acts.y.pointer, lse = acts.lse.pointer
        cAttn.forward(x, qkv + first * C3, rows: n, arena, packed: packed.attn)
        let isCausal: Int32 = causal ? 1 : 0
        scratch.forEachHead(s.lowerBound * NH ..< s.upperBound * NH) { i, work in
            let b = i / NH, h = i % NH
            let q = qkv + b * T * C3 + h * hs
            lk_attention_forward(q, q + C, q + 2 * C, Int64(C3), y + b * T * C + h * hs, Int64(C),
                                 Int64(T), Int64(hs), isCausal, scale, lse + i * T, work)
        }
        cProj.forward(y + first * C, out, rows: n, arena, residual: residual, packed: packed.proj)
    }

    /// dx = ∂L/∂x (overwritten) given dout = ∂L/∂out for the whole batch, block by block;
    /// parameter gradients accumulate. With `normalizedBy`, x is the input of the LayerNorm whose
    /// output the layer took (`Linear.backward(normalizedBy:)`).
    public func backward(_ dout: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>,
                         _ acts: Activations, _ scratch: Scratch, batch B: Int, time T: Int, _ arena: ParameterArena,
                         normalizedBy norm: RowProduct.Normalization? = nil) {
        pack(backward: true, into: scratch.packed, arena)
        for s in RowBlocks(batch: B, time: T, rows: scratch.rows) {
            let first = s.lowerBound * T, o = first * dim
            backward(dout + o, x + o, dx + o, acts, scratch, sequences: s, time: T, arena,
                     normalizedBy: norm?.rows(from: first), packed: scratch.packed)
        }
    }

    /// The sequences `s`, with dout, x, dx (and the normalization) at their first row; the blocks
    /// of a batch go in order (the weight gradients sum over rows in one order). The weights are
    /// in `packed` (`pack(backward: true)`).
    public func backward(_ dout: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>,
                         _ acts: Activations, _ scratch: Scratch, sequences s: Range<Int>, time T: Int,
                         _ arena: ParameterArena, normalizedBy norm: RowProduct.Normalization? = nil, packed: Packed) {
        let C = dim, NH = nHead, hs = C / NH, C3 = 3 * C, n = s.count * T, first = s.lowerBound * T
        precondition(n <= scratch.rows, "SelfAttention: a block of \(n) rows exceeds the scratch's \(scratch.rows)")
        let scale = 1 / Float(hs).squareRoot()
        let qkv = acts.qkv.pointer, y = acts.y.pointer, lse = acts.lse.pointer
        let dqkv = scratch.dqkv.pointer, dy = scratch.dy.pointer
        cProj.backward(dout, y + first * C, dy, rows: n, arena, accumulateInput: false, packed: packed.proj)
        let isCausal: Int32 = causal ? 1 : 0
        scratch.forEachHead(s.lowerBound * NH ..< s.upperBound * NH) { i, work in
            let b = i / NH, h = i % NH, local = (b - s.lowerBound) * T
            let q = qkv + b * T * C3 + h * hs, dq = dqkv + local * C3 + h * hs, row = local * C + h * hs
            lk_attention_backward(q, q + C, q + 2 * C, Int64(C3), y + b * T * C + h * hs, Int64(C), lse + i * T,
                                  dy + row, Int64(C), dq, dq + C, dq + 2 * C, Int64(C3), Int64(T), Int64(hs),
                                  isCausal, scale, work)
        }
        cAttn.backward(dqkv, x, dx, rows: n, arena, accumulateInput: false, normalizedBy: norm, packed: packed.attn)
    }
}
