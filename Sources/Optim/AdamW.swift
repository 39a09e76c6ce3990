import Tensors

/// Which tensors weight decay applies to.
public enum WeightDecayPolicy: String, Codable, Sendable {
    /// Tensors with two or more dimensions (weights and embeddings), not biases or norms.
    case matrices
    /// Every tensor.
    case all
}

/// AdamW with bias correction and decoupled weight decay, PyTorch semantics:
/// `p *= 1 − lr·wd; m = β1·m + (1−β1)·g; v = β2·v + (1−β2)·g²;
///  p −= lr/(1−β1ᵗ) · m / (√v/√(1−β2ᵗ) + ε)`.
/// Owns the two moment buffers, each as long as the parameter arena.
public final class AdamW {
    public let beta1: Float
    public let beta2: Float
    public let eps: Float
    public let weightDecay: Float
    public let m: FloatBuffer
    public let v: FloatBuffer
    /// Number of updates applied so far (t of the bias correction is `step + 1` for the next one).
    public var step = 0
    /// Ranges of the arena with their weight-decay flag.
    let groups: [(range: Range<Int>, decay: Bool)]

    public init(layout: ParameterLayout, beta1: Float = 0.9, beta2: Float = 0.999, eps: Float = 1e-8,
                weightDecay: Float = 0.01, decayPolicy: WeightDecayPolicy = .matrices) {
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        self.weightDecay = weightDecay
        m = FloatBuffer(count: layout.count)
        v = FloatBuffer(count: layout.count)
        groups = layout.entries.map { e in
            (e.range, decayPolicy == .all || e.shape.count >= 2)
        }
    }

    /// Applies one update with learning rate `lr` to `arena`, using gradients multiplied by `gradScale`
    /// (the clip factor, folded in so the gradients need no separate pass).
    public func update(_ arena: ParameterArena, lr: Double, gradScale: Float = 1) {
        step += 1
        let t = Double(step)
        let bc1 = 1 - pow(Double(beta1), t)
        let bc2Sqrt = (1 - pow(Double(beta2), t)).squareRoot()
        let stepSize = Float(lr / bc1)
        let invBc2Sqrt = Float(1 / bc2Sqrt)
        let b1 = beta1, b2 = beta2, e = eps, oneMinusB1 = 1 - beta1, oneMinusB2 = 1 - beta2
        let p = arena.parameters.pointer, g = arena.gradients.pointer, mp = m.pointer, vp = v.pointer
        for group in groups {
            let decay: Float = group.decay ? Float(1 - lr * Double(weightDecay)) : 1
            for i in group.range {
                let grad = g[i] * gradScale
                let mi = b1 * mp[i] + oneMinusB1 * grad
                let vi = b2 * vp[i] + oneMinusB2 * grad * grad
                mp[i] = mi
                vp[i] = vi
                let denom = vi.squareRoot() * invBc2Sqrt + e
                p[i] = p[i] * decay - stepSize * mi / denom
            }
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif

extension AdamW {
    /// The tail of every training step: gradients hold a sum over `count` target tokens; divide
    /// by it, take the global norm, clip to `maxNorm`, and update with `lr` — in two passes over
    /// the gradients (norm, then the fused update). Returns the pre-clip norm of the mean gradient.
    @discardableResult
    public func step(_ arena: ParameterArena, summedOver count: Double, lr: Double, maxNorm: Double?) -> Double {
        let norm = globalNorm(arena.gradients.pointer, count: arena.count) / count
        let clip = clipScale(norm: norm, maxNorm: maxNorm)
        update(arena, lr: lr, gradScale: clip.scale / Float(count))
        return norm
    }
}
