import Tensors
#if canImport(Glibc)
import Glibc
#endif

/// The recurrent cells, with PyTorch's gate order and equations.
public enum RecurrentCell: String, Codable, Sendable {
    /// Elman RNN: `h = tanh(W_ih·x + b_ih + W_hh·h₋ + b_hh)`.
    case rnn
    /// LSTM, gates (i, f, g, o): `c = f⊙c₋ + i⊙g; h = o⊙tanh(c)`.
    case lstm
    /// GRU, gates (r, z, n): `n = tanh(W_in·x + b_in + r⊙(W_hn·h₋ + b_hn)); h = (1−z)⊙n + z⊙h₋`.
    case gru

    /// Gates per hidden unit (rows of W_ih / W_hh per unit).
    public var gates: Int {
        switch self { case .rnn: 1; case .lstm: 4; case .gru: 3 }
    }
}

@inline(__always) private func sigmoid(_ x: Float) -> Float { 1 / (1 + expf(-x)) }

/// One recurrent layer over a (B, T, I) sequence, trained by backpropagation through time.
/// Parameters are named as PyTorch's nn.RNN/LSTM/GRU (`weight_ih_l{k}`, `weight_hh_l{k}`,
/// `bias_ih_l{k}`, `bias_hh_l{k}`), weights stored (gates·H, in).
///
/// Input projections of all steps are one GEMM; each step adds h₋·W_hhᵀ (one small GEMM over the
/// batch rows of that step, read with a stride); backward runs the steps in reverse and ends with
/// one GEMM each for dW_ih, dW_hh and dx.
public struct RecurrentLayer: Sendable {
    public let cell: RecurrentCell
    public let input: Int
    public let hidden: Int
    public let weightIH: ParameterRef
    public let weightHH: ParameterRef
    public let biasIH: ParameterRef
    public let biasHH: ParameterRef

    public init(_ layout: inout ParameterLayout, prefix: String, layer k: Int, cell: RecurrentCell, input: Int, hidden: Int) {
        self.cell = cell
        self.input = input
        self.hidden = hidden
        let G = cell.gates * hidden
        weightIH = layout.add("\(prefix).weight_ih_l\(k)", [G, input])
        weightHH = layout.add("\(prefix).weight_hh_l\(k)", [G, hidden])
        biasIH = layout.add("\(prefix).bias_ih_l\(k)", [G])
        biasHH = layout.add("\(prefix).bias_hh_l\(k)", [G])
    }

    /// What forward saves, for one (B, T).
    public final class Activations {
        let xi: FloatBuffer     // (B, T, G) W_ih·x + b_ih; backward reuses it for ∂/∂(input projection)
        let hh: FloatBuffer     // (B, T, G) W_hh·h₋ + b_hh; backward reuses it for ∂/∂(hidden projection)
        let act: FloatBuffer    // (B, T, G) gate activations (RNN: h; LSTM: i, f, g, o; GRU: r, z, n)
        let c: FloatBuffer      // (B, T, H) LSTM cell state
        public let h: FloatBuffer      // (B, T, H) outputs
        let hPrev: FloatBuffer  // (B, T, H) h₋ of each step (zeros at t = 0)
        let dCarry: FloatBuffer // (B, H) ∂/∂h₋ flowing to the previous step
        let dCell: FloatBuffer  // (B, H) ∂/∂c₋ (LSTM)
        let c0: FloatBuffer     // (B, H) LSTM cell state before t = 0
        let packedHH: RowProduct.PackedWeight // W_hh for the time steps (forward: h₋·W_hhᵀ; backward: dhh·W_hh)

        public init(batch B: Int, time T: Int, cell: RecurrentCell, hidden H: Int) {
            let G = cell.gates * H
            xi = FloatBuffer(count: B * T * G)
            hh = FloatBuffer(count: B * T * G)
            act = FloatBuffer(count: B * T * G)
            c = FloatBuffer(count: cell == .lstm ? B * T * H : 0)
            h = FloatBuffer(count: B * T * H)
            hPrev = FloatBuffer(count: B * T * H)
            dCarry = FloatBuffer(count: B * H)
            dCell = FloatBuffer(count: cell == .lstm ? B * H : 0)
            c0 = FloatBuffer(count: cell == .lstm ? B * H : 0)
            packedHH = RowProduct.PackedWeight(k: H, outputs: G)
        }
    }

    /// x (B, T, I) → acts.h (B, T, H), from the initial state `h0` (B, H) and, for the LSTM, `c0`
    /// (zeros when nil). The state is an input only: backward does not reach it (truncated BPTT).
    public func forward(_ x: UnsafePointer<Float>, _ acts: Activations, batch B: Int, time T: Int, _ arena: ParameterArena,
                        h0: UnsafePointer<Float>? = nil, c0: UnsafePointer<Float>? = nil) {
        let H = hidden, G = cell.gates * H
        let xi = acts.xi.pointer, hh = acts.hh.pointer, act = acts.act.pointer, h = acts.h.pointer, hp = acts.hPrev.pointer
        RowProduct.timesTransposed(x, rows: B * T, k: input, UnsafePointer(arena.param(weightIH)), outputs: G,
                                   bias: UnsafePointer(arena.param(biasIH)), into: xi)
        let bhh = arena.param(biasHH)
        acts.packedHH.pack(arena.param(weightHH), ldw: H, transposed: true, k: H, outputs: G)
        if cell == .lstm {
            if let c0 { acts.c0.pointer.update(from: c0, count: B * H) } else { acts.c0.zero() }
        }
        for t in 0 ..< T {
            // hh_t = h₋·W_hhᵀ + b_hh over the B rows of step t (row stride T·G)
            if t == 0 {
                for b in 0 ..< B {
                    (hh + b * T * G).update(from: bhh, count: G)
                    if let h0 { (hp + b * T * H).update(from: h0 + b * H, count: H) } else { (hp + b * T * H).update(repeating: 0, count: H) }
                }
                if h0 != nil {
                    RowProduct.times(hp, ldx: T * H, rows: B, acts.packedHH, accumulate: true, into: hh, ldy: T * G)
                }
            } else {
                for b in 0 ..< B {
                    (hp + (b * T + t) * H).update(from: h + (b * T + t - 1) * H, count: H)
                    (hh + (b * T + t) * G).update(from: bhh, count: G)
                }
                RowProduct.times(hp + t * H, ldx: T * H, rows: B, acts.packedHH, accumulate: true, into: hh + t * G,
                                 ldy: T * G)
            }
            for b in 0 ..< B {
                let r = b * T + t
                let xr = xi + r * G, hr = hh + r * G, ar = act + r * G, out = h + r * H, prev = hp + r * H
                switch cell {
                case .rnn:
                    for j in 0 ..< H { let v = tanhf(xr[j] + hr[j]); ar[j] = v; out[j] = v }
                case .lstm:
                    let c = acts.c.pointer + r * H
                    let cPrev = t == 0 ? acts.c0.pointer + b * H : acts.c.pointer + (r - 1) * H
                    for j in 0 ..< H {
                        let i = sigmoid(xr[j] + hr[j]), f = sigmoid(xr[H + j] + hr[H + j])
                        let g = tanhf(xr[2 * H + j] + hr[2 * H + j]), o = sigmoid(xr[3 * H + j] + hr[3 * H + j])
                        ar[j] = i; ar[H + j] = f; ar[2 * H + j] = g; ar[3 * H + j] = o
                        let cv = f * cPrev[j] + i * g
                        c[j] = cv
                        out[j] = o * tanhf(cv)
                    }
                case .gru:
                    for j in 0 ..< H {
                        let rg = sigmoid(xr[j] + hr[j]), z = sigmoid(xr[H + j] + hr[H + j])
                        let n = tanhf(xr[2 * H + j] + rg * hr[2 * H + j])
                        ar[j] = rg; ar[H + j] = z; ar[2 * H + j] = n
                        out[j] = (1 - z) * n + z * prev[j]
                    }
                }
            }
        }
    }

    /// The state after the last step: h (and c) of step T−1 for each row, into (B, H) buffers.
    public func finalState(_ acts: Activations, batch B: Int, time T: Int, h: UnsafeMutablePointer<Float>,
                           c: UnsafeMutablePointer<Float>?) {
        let H = hidden
        for b in 0 ..< B {
            (h + b * H).update(from: acts.h.pointer + (b * T + T - 1) * H, count: H)
            if let c, cell == .lstm { (c + b * H).update(from: acts.c.pointer + (b * T + T - 1) * H, count: H) }
        }
    }

    /// Backpropagation through time. `dh` (B, T, H) is ∂L/∂h from above and is consumed (used as
    /// scratch); dx = ∂L/∂x is overwritten; parameter gradients accumulate.
    public func backward(_ dh: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>,
                         _ acts: Activations, batch B: Int, time T: Int, _ arena: ParameterArena) {
        let H = hidden, G = cell.gates * H
        let act = acts.act.pointer, hp = acts.hPrev.pointer
        // Backward overwrites xi with ∂/∂(input projection) and hh with ∂/∂(hidden projection).
        let dxi = acts.xi.pointer, dhh = acts.hh.pointer
        let carry = acts.dCarry.pointer
        acts.dCarry.zero()
        if cell == .lstm { acts.dCell.zero() }
        acts.packedHH.pack(arena.param(weightHH), ldw: H, transposed: false, k: G, outputs: H)
        for t in stride(from: T - 1, through: 0, by: -1) {
            for b in 0 ..< B {
                let r = b * T + t
                let d = dh + r * H, ar = act + r * G, cr = carry + b * H
                let gi = dxi + r * G, gh = dhh + r * G
                for j in 0 ..< H { d[j] += cr[j] }
                switch cell {
                case .rnn:
                    for j in 0 ..< H { let v = d[j] * (1 - ar[j] * ar[j]); gi[j] = v; gh[j] = v }
                case .lstm:
                    let c = acts.c.pointer + r * H, dc = acts.dCell.pointer + b * H
                    for j in 0 ..< H {
                        let i = ar[j], f = ar[H + j], g = ar[2 * H + j], o = ar[3 * H + j]
                        let tc = tanhf(c[j])
                        let cPrev: Float = t == 0 ? acts.c0[b * H + j] : acts.c.pointer[(r - 1) * H + j]
                        let dcj = dc[j] + d[j] * o * (1 - tc * tc)
                        let di = dcj * g * i * (1 - i), df = dcj * cPrev * f * (1 - f)
                        let dg = dcj * i * (1 - g * g), dO = d[j] * tc * o * (1 - o)
                        gi[j] = di; gi[H + j] = df; gi[2 * H + j] = dg; gi[3 * H + j] = dO
                        gh[j] = di; gh[H + j] = df; gh[2 * H + j] = dg; gh[3 * H + j] = dO
                        dc[j] = dcj * f
                    }
                case .gru:
                    let prev = hp + r * H
                    for j in 0 ..< H {
                        let rg = ar[j], z = ar[H + j], n = ar[2 * H + j]
                        let hn = gh[2 * H + j]    // still W_hn·h₋ + b_hn: overwritten just below
                        let dnPre = d[j] * (1 - z) * (1 - n * n)
                        let dzPre = d[j] * (prev[j] - n) * z * (1 - z)
                        let drPre = dnPre * hn * rg * (1 - rg)
                        gi[j] = drPre; gi[H + j] = dzPre; gi[2 * H + j] = dnPre
                        gh[j] = drPre; gh[H + j] = dzPre; gh[2 * H + j] = dnPre * rg
                        cr[j] = d[j] * z    // the direct path z⊙h₋; the GEMM below adds the rest
                    }
                }
            }
            // carry = dhh_t · W_hh (GRU: added to its direct path)
            if t > 0 {
                RowProduct.times(dhh + t * G, ldx: T * G, rows: B, acts.packedHH, accumulate: cell == .gru, into: carry,
                                 ldy: H)
            }
        }
        // dW_hh += Σ_t dhh_tᵀ·h₋ ; db_hh ; dW_ih += dxiᵀ·x ; db_ih ; dx = dxi·W_ih
        RowProduct.accumulateTransposedTimes(dhh, hp, rows: B * T, outputs: G, k: H, into: arena.grad(weightHH),
                                             columnSums: arena.grad(biasHH))
        RowProduct.accumulateTransposedTimes(dxi, x, rows: B * T, outputs: G, k: input, into: arena.grad(weightIH),
                                             columnSums: arena.grad(biasIH))
        RowProduct.times(dxi, rows: B * T, k: G, UnsafePointer(arena.param(weightIH)), outputs: input, accumulate: false,
                         into: dx)
    }
}
