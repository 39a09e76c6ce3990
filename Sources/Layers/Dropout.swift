import Tensors

/// Inverted dropout: keeps each element with probability 1-p and scales it by 1/(1-p);
/// identity in eval. The mask is a pure function of (seed, site, global sample, element), so it
/// does not depend on how samples are spread over ranks and micro-batches.
public struct Dropout: Sendable {
    public let p: Float
    /// Distinguishes the dropout sites of a model (each gets its own stream).
    public let site: UInt64

    public init(p: Float, site: UInt64) {
        precondition(p >= 0 && p < 1, "dropout probability must be in [0, 1)")
        self.p = p
        self.site = site
    }

    /// Whether this dropout changes anything in training.
    public var isActive: Bool { p > 0 }

    /// out = x ⊙ mask, with mask ∈ {0, 1/(1-p)} stored for backward. `x` and `out` may alias.
    /// Activations are `samples` rows of `perSample` elements; row b is global sample `firstSample + b`.
    public func forward(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>,
                        mask: UnsafeMutablePointer<Float>, samples: Int, perSample: Int,
                        firstSample: Int, seed: UInt64, training: Bool) {
        let n = samples * perSample
        guard training && isActive else {
            if UnsafePointer(out) != x { out.update(from: x, count: n) }
            return
        }
        let keep = 1 - p, scale = 1 / keep
        for b in 0 ..< samples {
            let rng = CounterRNG(seed: seed, purpose: .dropout, site, UInt64(firstSample + b))
            let base = b * perSample
            for i in 0 ..< perSample {
                let m: Float = rng.uniform(UInt64(i)) < keep ? scale : 0
                mask[base + i] = m
                out[base + i] = x[base + i] * m
            }
        }
    }

    /// dx += dout ⊙ mask (or dx += dout when inactive).
    public func backward(_ dout: UnsafePointer<Float>, mask: UnsafePointer<Float>,
                         _ dx: UnsafeMutablePointer<Float>, count n: Int, training: Bool) {
        if training && isActive {
            for i in 0 ..< n { dx[i] += dout[i] * mask[i] }
        } else {
            Kernels.add(dout, into: dx, count: n)
        }
    }

    /// d *= mask in place (the backward of dropout when the gradient buffer is reused).
    public func backwardInPlace(_ d: UnsafeMutablePointer<Float>, mask: UnsafePointer<Float>, count n: Int,
                                training: Bool) {
        guard training && isActive else { return }
        for i in 0 ..< n { d[i] *= mask[i] }
    }
}
