import Tensors
#if canImport(Glibc)
import Glibc
#endif

/// AdamW with bias correction and decoupled weight decay, PyTorch semantics:
/// `p *= 1 − lr·wd; m = β1·m + (1−β1)·g; v = β2·v + (1−β2)·g²;
///  p −= lr/(1−β1ᵗ) · m / (√v/√(1−β2ᵗ) + ε)`.
public final class AdamW: Optimizer {
    public let beta1: Float
    public let beta2: Float
    public let eps: Float
    public let weightDecay: Float
    public let m: FloatBuffer
    public let v: FloatBuffer
    public var step = 0
    public var kind: String { "adamw" }
    public var state: [(name: String, buffer: FloatBuffer)] { [("exp_avg", m), ("exp_avg_sq", v)] }
    let groups: [(range: Range<Int>, decay: Bool)]

    public init(layout: ParameterLayout, beta1: Float = 0.9, beta2: Float = 0.999, eps: Float = 1e-8,
                weightDecay: Float = 0.01, decayPolicy: WeightDecayPolicy = .matrices) {
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        self.weightDecay = weightDecay
        m = FloatBuffer(count: layout.count)
        v = FloatBuffer(count: layout.count)
        groups = decayPolicy.groups(layout)
    }

    public func update(_ arena: ParameterArena, lr: Double, gradScale: Float = 1) {
        step += 1
        let c = AdamCorrection(step: step, lr: lr, beta1: beta1, beta2: beta2)
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
                p[i] = p[i] * decay - c.stepSize * mi / (vi.squareRoot() * c.invBc2Sqrt + e)
            }
        }
    }
}

/// Adam with bias correction and weight decay as L2 added to the gradient (PyTorch's Adam):
/// `g += wd·p; m = β1·m + (1−β1)·g; v = β2·v + (1−β2)·g²; p −= lr/(1−β1ᵗ) · m / (√v/√(1−β2ᵗ) + ε)`.
/// Unlike AdamW, the decay passes through the adaptive scaling.
public final class Adam: Optimizer {
    public let beta1: Float
    public let beta2: Float
    public let eps: Float
    public let weightDecay: Float
    public let m: FloatBuffer
    public let v: FloatBuffer
    public var step = 0
    public var kind: String { "adam" }
    public var state: [(name: String, buffer: FloatBuffer)] { [("exp_avg", m), ("exp_avg_sq", v)] }
    let groups: [(range: Range<Int>, decay: Bool)]

    public init(layout: ParameterLayout, beta1: Float = 0.9, beta2: Float = 0.999, eps: Float = 1e-8,
                weightDecay: Float = 0, decayPolicy: WeightDecayPolicy = .matrices) {
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        self.weightDecay = weightDecay
        m = FloatBuffer(count: layout.count)
        v = FloatBuffer(count: layout.count)
        groups = decayPolicy.groups(layout)
    }

    public func update(_ arena: ParameterArena, lr: Double, gradScale: Float = 1) {
        step += 1
        let c = AdamCorrection(step: step, lr: lr, beta1: beta1, beta2: beta2)
        let b1 = beta1, b2 = beta2, e = eps, oneMinusB1 = 1 - beta1, oneMinusB2 = 1 - beta2
        let p = arena.parameters.pointer, g = arena.gradients.pointer, mp = m.pointer, vp = v.pointer
        for group in groups {
            let wd: Float = group.decay ? weightDecay : 0
            for i in group.range {
                let grad = g[i] * gradScale + wd * p[i]
                let mi = b1 * mp[i] + oneMinusB1 * grad
                let vi = b2 * vp[i] + oneMinusB2 * grad * grad
                mp[i] = mi
                vp[i] = vi
                p[i] -= c.stepSize * mi / (vi.squareRoot() * c.invBc2Sqrt + e)
            }
        }
    }
}

/// Adam's bias corrections for update t: the step size lr/(1−β1ᵗ) and 1/√(1−β2ᵗ).
struct AdamCorrection {
    let stepSize: Float
    let invBc2Sqrt: Float

    init(step: Int, lr: Double, beta1: Float, beta2: Float) {
        let t = Double(step)
        stepSize = Float(lr / (1 - pow(Double(beta1), t)))
        invBc2Sqrt = Float(1 / (1 - pow(Double(beta2), t)).squareRoot())
    }
}
