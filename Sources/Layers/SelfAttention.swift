import Tensors
#if canImport(Glibc)
import Glibc
#endif

/// Multi-head self-attention: `c_attn` (C → 3C, split q, k, v), softmax(q·kᵀ/√hs)·v per head,
/// heads concatenated, `c_proj` (C → C). Causal (decoder) or bidirectional (encoder).
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

    /// Buffers for one (B, T): saved activations and backward scratch.
    public final class Activations {
        public let qkv: FloatBuffer    // (B, T, 3C)
        public let att: FloatBuffer    // (B, NH, T, T) softmax probabilities
        public let y: FloatBuffer      // (B, T, C) heads concatenated, before c_proj
        let dqkv: FloatBuffer          // (B, T, 3C)
        let dy: FloatBuffer            // (B, T, C)
        let dAtt: FloatBuffer          // (T, T) scratch, one head at a time

        public init(batch B: Int, time T: Int, dim C: Int, nHead NH: Int) {
            qkv = FloatBuffer(count: B * T * 3 * C)
            att = FloatBuffer(count: B * NH * T * T)
            y = FloatBuffer(count: B * T * C)
            dqkv = FloatBuffer(count: B * T * 3 * C)
            dy = FloatBuffer(count: B * T * C)
            dAtt = FloatBuffer(count: T * T)
        }
    }

    /// x (B, T, C) → out (B, T, C).
    public func forward(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>,
                        _ acts: Activations, batch B: Int, time T: Int, _ arena: ParameterArena) {
        let C = dim, NH = nHead, hs = C / NH, C3 = 3 * C
        let scale = 1 / Float(hs).squareRoot()
        cAttn.forward(x, acts.qkv.pointer, rows: B * T, arena)
        for b in 0 ..< B {
            for h in 0 ..< NH {
                let q = acts.qkv.pointer + b * T * C3 + h * hs, k = q + C, v = q + 2 * C
                let p = acts.att.pointer + (b * NH + h) * T * T
                sgemm(.none, .transposed, m: T, n: T, k: hs, alpha: scale, a: q, lda: C3, b: k, ldb: C3,
                      beta: 0, c: p, ldc: T)
                for t in 0 ..< T {
                    let row = p + t * T
                    let len = causal ? t + 1 : T
                    VectorMath.softmax(row, row, len)
                    if len < T { (row + len).update(repeating: 0, count: T - len) }
                }
                sgemm(.none, .none, m: T, n: hs, k: T, a: p, lda: T, b: v, ldb: C3,
                      beta: 0, c: acts.y.pointer + b * T * C + h * hs, ldc: C)
            }
        }
        cProj.forward(acts.y.pointer, out, rows: B * T, arena)
    }

    /// dx += ∂L/∂x given dout = ∂L/∂out; parameter gradients accumulate.
    public func backward(_ dout: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>,
                         _ acts: Activations, batch B: Int, time T: Int, _ arena: ParameterArena) {
        let C = dim, NH = nHead, hs = C / NH, C3 = 3 * C
        let scale = 1 / Float(hs).squareRoot()
        acts.dy.zero()
        cProj.backward(dout, acts.y.pointer, acts.dy.pointer, rows: B * T, arena)
        acts.dqkv.zero()
        let dp = acts.dAtt.pointer
        for b in 0 ..< B {
            for h in 0 ..< NH {
                let q = acts.qkv.pointer + b * T * C3 + h * hs, k = q + C, v = q + 2 * C
                let dq = acts.dqkv.pointer + b * T * C3 + h * hs, dk = dq + C, dv = dq + 2 * C
                let p = acts.att.pointer + (b * NH + h) * T * T
                let dyh = acts.dy.pointer + b * T * C + h * hs
                // dP = dY · Vᵀ ; dV += Pᵀ · dY
                sgemm(.none, .transposed, m: T, n: T, k: hs, a: dyh, lda: C, b: v, ldb: C3, beta: 0, c: dp, ldc: T)
                sgemm(.transposed, .none, m: T, n: hs, k: T, a: p, lda: T, b: dyh, ldb: C, beta: 1, c: dv, ldc: C3)
                // dS = P ⊙ (dP − Σ_j P·dP) · scale
                for t in 0 ..< T {
                    let pr = p + t * T, dr = dp + t * T
                    let len = causal ? t + 1 : T
                    var dot: Float = 0
                    for j in 0 ..< len { dot += pr[j] * dr[j] }
                    for j in 0 ..< len { dr[j] = pr[j] * (dr[j] - dot) * scale }
                    if len < T { (dr + len).update(repeating: 0, count: T - len) }
                }
                // dQ += dS · K ; dK += dSᵀ · Q
                sgemm(.none, .none, m: T, n: hs, k: T, a: dp, lda: T, b: k, ldb: C3, beta: 1, c: dq, ldc: C3)
                sgemm(.transposed, .none, m: T, n: hs, k: T, a: dp, lda: T, b: q, ldb: C3, beta: 1, c: dk, ldc: C3)
            }
        }
        cAttn.backward(acts.dqkv.pointer, x, dx, rows: B * T, arena)
    }
}
