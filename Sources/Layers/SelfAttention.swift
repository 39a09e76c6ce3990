import CKernels
import Tensors

/// Multi-head self-attention: `c_attn` (C → 3C, split q, k, v), softmax(q·kᵀ/√hs)·v per head,
/// heads concatenated, `c_proj` (C → C). Causal (decoder) or bidirectional (encoder).
///
/// Each head runs in a C kernel (`lk_attention_forward/backward`) over blocks of four query rows:
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

    /// Scratch shareable by every attention layer of a model.
    public final class Scratch {
        let dqkv: FloatBuffer          // (B, T, 3C)
        let dy: FloatBuffer            // (B, T, C)
        let work: [FloatBuffer]        // per thread: one head's kernel workspace
        let workPointers: [UnsafeMutablePointer<Float>]

        public init(batch B: Int, time T: Int, dim C: Int, nHead NH: Int) {
            dqkv = FloatBuffer(count: B * T * 3 * C)
            dy = FloatBuffer(count: B * T * C)
            work = (0 ..< Parallel.threads).map { _ in FloatBuffer(count: Int(lk_attention_work_size(Int64(T), Int64(C / NH)))) }
            workPointers = work.map(\.pointer)
        }

        /// Runs `body(head, workspace)` for every (sequence, head) pair b·NH + h, split over the
        /// threads that have a workspace (those of the rank when the model was built).
        @inline(__always)
        func forEachHead(_ count: Int, _ body: (Int, UnsafeMutablePointer<Float>) -> Void) {
            let works = workPointers
            Parallel.forEachPart(count, maxParts: works.count) { r, part in
                for i in r { body(i, works[part]) }
            }
        }
    }

    /// x (B, T, C) → out (B, T, C); with `residual` (B, T, C), out = residual + attention(x).
    public func forward(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>,
                        _ acts: Activations, _ scratch: Scratch, batch B: Int, time T: Int, _ arena: ParameterArena,
                        residual: UnsafePointer<Float>? = nil) {
        let C = dim, NH = nHead, hs = C / NH, C3 = 3 * C
        let scale = 1 / Float(hs).squareRoot()
        cAttn.forward(x, acts.qkv.pointer, rows: B * T, arena)
        let qkv = acts.qkv.pointer, y = acts.y.pointer, lse = acts.lse.pointer
        let isCausal: Int32 = causal ? 1 : 0
        scratch.forEachHead(B * NH) { i, work in
            let b = i / NH, h = i % NH
            let q = qkv + b * T * C3 + h * hs
            lk_attention_forward(q, q + C, q + 2 * C, Int64(C3), y + b * T * C + h * hs, Int64(C),
                                 Int64(T), Int64(hs), isCausal, scale, lse + i * T, work)
        }
        cProj.forward(acts.y.pointer, out, rows: B * T, arena, residual: residual)
    }

    /// dx = ∂L/∂x (overwritten) given dout = ∂L/∂out; parameter gradients accumulate. With
    /// `normalizedBy`, x is the input of the LayerNorm whose output the layer took
    /// (`Linear.backward(normalizedBy:)`).
    public func backward(_ dout: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>,
                         _ acts: Activations, _ scratch: Scratch, batch B: Int, time T: Int, _ arena: ParameterArena,
                         normalizedBy norm: RowProduct.Normalization? = nil) {
        let C = dim, NH = nHead, hs = C / NH, C3 = 3 * C
        let scale = 1 / Float(hs).squareRoot()
        cProj.backward(dout, acts.y.pointer, scratch.dy.pointer, rows: B * T, arena, accumulateInput: false)
        let qkv = acts.qkv.pointer, y = acts.y.pointer, lse = acts.lse.pointer
        let dqkv = scratch.dqkv.pointer, dy = scratch.dy.pointer
        let isCausal: Int32 = causal ? 1 : 0
        scratch.forEachHead(B * NH) { i, work in
            let b = i / NH, h = i % NH
            let q = qkv + b * T * C3 + h * hs, dq = dqkv + b * T * C3 + h * hs, row = b * T * C + h * hs
            lk_attention_backward(q, q + C, q + 2 * C, Int64(C3), y + row, Int64(C), lse + i * T,
                                  dy + row, Int64(C), dq, dq + C, dq + 2 * C, Int64(C3), Int64(T), Int64(hs),
                                  isCausal, scale, work)
        }
        cAttn.backward(scratch.dqkv.pointer, x, dx, rows: B * T, arena, accumulateInput: false, normalizedBy: norm)
    }
}
