import Tensors

/// Lookup table (num, dim): row `id` is the embedding of index `id`.
public struct Embedding: Sendable {
    public let num: Int
    public let dim: Int
    public let weight: ParameterRef

    public init(_ layout: inout ParameterLayout, name: String, num: Int, dim: Int) {
        self.num = num
        self.dim = dim
        weight = layout.add("\(name).weight", [num, dim])
    }

    /// out[n] = W[ids[n]], for n in 0..<count. Ids must be in range.
    public func forward(_ ids: UnsafePointer<Int32>, _ out: UnsafeMutablePointer<Float>, count: Int,
                        _ arena: ParameterArena) {
        let C = dim, W = arena.param(weight)
        for n in 0 ..< count {
            let id = Int(ids[n])
            precondition(id >= 0 && id < num, "embedding index \(id) out of range 0..<\(num)")
            let src = W + id * C, dst = out + n * C
            dst.update(from: src, count: C)
        }
    }

    /// dW[ids[n]] += dout[n].
    public func backward(_ ids: UnsafePointer<Int32>, _ dout: UnsafePointer<Float>, count: Int,
                         _ arena: ParameterArena) {
        let C = dim, G = arena.grad(weight)
        for n in 0 ..< count {
            let dst = G + Int(ids[n]) * C, src = dout + n * C
            for c in 0 ..< C { dst[c] += src[c] }
        }
    }
}

/// Learned position embedding (blockSize, dim), added to a (B, T, dim) activation.
public struct PositionEmbedding: Sendable {
    public let blockSize: Int
    public let dim: Int
    public let weight: ParameterRef

    public init(_ layout: inout ParameterLayout, name: String, blockSize: Int, dim: Int) {
        self.blockSize = blockSize
        self.dim = dim
        weight = layout.add("\(name).weight", [blockSize, dim])
    }

    /// out[b, t] += P[t].
    public func forward(_ out: UnsafeMutablePointer<Float>, batch B: Int, time T: Int, _ arena: ParameterArena) {
        precondition(T <= blockSize)
        let C = dim, P = arena.param(weight)
        for b in 0 ..< B { Kernels.add(P, into: out + b * T * C, count: T * C) }
    }

    /// dP[t] += Σ_b dout[b, t].
    public func backward(_ dout: UnsafePointer<Float>, batch B: Int, time T: Int, _ arena: ParameterArena) {
        let C = dim, G = arena.grad(weight)
        for b in 0 ..< B { Kernels.add(dout + b * T * C, into: G, count: T * C) }
    }
}
