import Tensors

/// Fully connected layer `y = x · Wᵀ + b`, weight stored (out, in) as PyTorch's nn.Linear.
public struct Linear: Sendable {
    public let inFeatures: Int
    public let outFeatures: Int
    public let weight: ParameterRef
    public let bias: ParameterRef?

    public init(_ layout: inout ParameterLayout, name: String, in inFeatures: Int, out outFeatures: Int,
                bias: Bool = true) {
        self.inFeatures = inFeatures
        self.outFeatures = outFeatures
        weight = layout.add("\(name).weight", [outFeatures, inFeatures])
        self.bias = bias ? layout.add("\(name).bias", [outFeatures]) : nil
    }

    /// Uses an existing weight (weight tying); no bias.
    public init(tiedTo weight: ParameterRef) {
        precondition(weight.shape.count == 2)
        self.weight = weight
        outFeatures = weight.shape[0]
        inFeatures = weight.shape[1]
        bias = nil
    }

    /// x (N, in) → y (N, out), overwriting y; with `residual` (N, out), y = residual + x·Wᵀ + b
    /// (a transformer's skip connection joined as y is written; residual may be y).
    public func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, rows N: Int,
                        _ arena: ParameterArena, residual: UnsafePointer<Float>? = nil,
                        packed: RowProduct.PackedWeight? = nil) {
        // each output tile starts as the bias (and residual) and is written once (RowProduct)
        if let packed {
            precondition(packed.k == inFeatures && packed.outputs == outFeatures, "Linear.forward: the weight is not packed for x·Wᵀ")
            RowProduct.times(x, ldx: inFeatures, rows: N, packed, bias: bias.map { UnsafePointer(arena.param($0)) },
                             initial: residual, ldi: outFeatures, into: y, ldy: outFeatures)
            return
        }
        RowProduct.timesTransposed(x, rows: N, k: inFeatures, UnsafePointer(arena.param(weight)), outputs: outFeatures,
                                   bias: bias.map { UnsafePointer(arena.param($0)) }, adding: residual, into: y)
    }

    /// Packs the weight for several blocks of rows: for `forward(packed:)` (x·Wᵀ), or with
    /// `backward` for `backward(packed:)` (dy·W).
    public func pack(backward: Bool, into p: RowProduct.PackedWeight, _ arena: ParameterArena) {
        let (k, outputs) = backward ? (outFeatures, inFeatures) : (inFeatures, outFeatures)
        p.pack(UnsafePointer(arena.param(weight)), ldw: inFeatures, transposed: !backward, k: k, outputs: outputs)
    }

    /// Accumulates dW += dyᵀ·x, db += Σ dy and, when `dx` is given, dx += dy·W
    /// (or dx = dy·W when `accumulateInput` is false, which saves zeroing dx first).
    /// With `accumulateInput` false, dx may be the memory of x: x is read completely first.
    /// `multiplying` m scales the input gradient elementwise as it is stored: dx = (dy·W) ⊙ m
    /// (an activation's derivative, applied without another pass over dx). With `normalizedBy`,
    /// the layer's input was a LayerNorm's output and `x` is that LayerNorm's input: the weight
    /// gradient normalizes x's rows as it reads them.
    public func backward(_ dy: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>?,
                         rows N: Int, _ arena: ParameterArena, accumulateInput: Bool = true,
                         multiplying m: UnsafePointer<Float>? = nil, normalizedBy norm: RowProduct.Normalization? = nil,
                         packed: RowProduct.PackedWeight? = nil) {
        let I = inFeatures, O = outFeatures
        RowProduct.accumulateTransposedTimes(dy, x, rows: N, outputs: O, k: I, into: arena.grad(weight),
                                             columnSums: bias.map { arena.grad($0) }, normalizing: norm)
        if let dx, let packed {
            precondition(packed.k == O && packed.outputs == I, "Linear.backward: the weight is not packed for dy·W")
            RowProduct.times(dy, ldx: O, rows: N, packed, initial: accumulateInput ? UnsafePointer(dx) : nil, ldi: I,
                             multiplying: m, into: dx, ldy: I)
        } else if let dx {
            RowProduct.times(dy, rows: N, k: O, UnsafePointer(arena.param(weight)), outputs: I,
                             accumulate: accumulateInput, multiplying: m, into: dx)
        }
    }
}
