import CKernels
import Tensors
#if canImport(Glibc)
import Glibc
#endif

/// What Adam and AdamW share: hyper-parameters, the two moment buffers (each as long as the
/// arena), the arena's weight-decay groups and the update; the two optimizers differ only in how
/// weight decay enters it.
public final class AdamMoments {
    public let beta1: Float
    public let beta2: Float
    public let eps: Float
    public let weightDecay: Float
    public let m: FloatBuffer
    public let v: FloatBuffer
    let groups: [(range: Range<Int>, decay: Bool)]

    init(layout: ParameterLayout, beta1: Float, beta2: Float, eps: Float, weightDecay: Float, decayPolicy: WeightDecayPolicy) {
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        self.weightDecay = weightDecay
        m = FloatBuffer(count: layout.count)
        v = FloatBuffer(count: layout.count)
        groups = decayPolicy.groups(layout)
    }

    var state: [(name: String, buffer: FloatBuffer)] { [("exp_avg", m), ("exp_avg_sq", v)] }

    /// One Adam update (`step` counts from 1) over every weight-decay group: gradients scaled by
    /// `gradScale`, plus `l2`·p for decayed groups (Adam's L2 form), and decayed groups' parameters
    /// multiplied by 1 − lr·wd first when `decoupled` (AdamW's form).
    func update(_ arena: ParameterArena, step: Int, lr: Double, gradScale: Float, decoupled: Bool) {
        let c = correction(step: step, lr: lr)
        let p = arena.parameters.pointer, g = arena.gradients.pointer, mp = m.pointer, vp = v.pointer
        let b1 = beta1, b2 = beta2, e = eps, oneMinusB1 = 1 - beta1, oneMinusB2 = 1 - beta2
        for group in groups {
            let decay: Float = group.decay && decoupled ? Float(1 - lr * Double(weightDecay)) : 1
            let l2: Float = group.decay && !decoupled ? weightDecay : 0
            let start = group.range.lowerBound
            Parallel.forEachPart(group.range.count, grain: 1 << 14) { r, _ in
                let o = start + r.lowerBound
                lk_adam_update(p + o, g + o, mp + o, vp + o, Int64(r.count), gradScale, l2, b1, b2,
                               oneMinusB1, oneMinusB2, decay, c.stepSize, c.invBc2Sqrt, e)
            }
        }
    }

    /// The bias corrections of update `step`: the step size lr/(1−β1ᵗ) and 1/√(1−β2ᵗ).
    func correction(step: Int, lr: Double) -> (stepSize: Float, invBc2Sqrt: Float) {
        let t = Double(step)
        return (Float(lr / (1 - pow(Double(beta1), t))), Float(1 / (1 - pow(Double(beta2), t)).squareRoot()))
    }
}

/// AdamW with bias correction and decoupled weight decay, PyTorch semantics:
/// `p *= 1 − lr·wd; m = β1·m + (1−β1)·g; v = β2·v + (1−β2)·g²;
///  p −= lr/(1−β1ᵗ) · m / (√v/√(1−β2ᵗ) + ε)`.
public final class AdamW: Optimizer {
    public let moments: AdamMoments
    public var step = 0
    public var kind: String { "adamw" }
    public var state: [(name: String, buffer: FloatBuffer)] { moments.state }

    public init(layout: ParameterLayout, beta1: Float = 0.9, beta2: Float = 0.999, eps: Float = 1e-8,
                weightDecay: Float = 0.01, decayPolicy: WeightDecayPolicy = .matrices) {
        moments = AdamMoments(layout: layout, beta1: beta1, beta2: beta2, eps: eps, weightDecay: weightDecay, decayPolicy: decayPolicy)
    }

    public func update(_ arena: ParameterArena, lr: Double, gradScale: Float = 1) {
        step += 1
        moments.update(arena, step: step, lr: lr, gradScale: gradScale, decoupled: true)
    }
}

/// Adam with bias correction and weight decay as L2 added to the gradient (PyTorch's Adam):
/// `g += wd·p; m = β1·m + (1−β1)·g; v = β2·v + (1−β2)·g²; p −= lr/(1−β1ᵗ) · m / (√v/√(1−β2ᵗ) + ε)`.
/// Unlike AdamW, the decay passes through the adaptive scaling.
public final class Adam: Optimizer {
    public let moments: AdamMoments
    public var step = 0
    public var kind: String { "adam" }
    public var state: [(name: String, buffer: FloatBuffer)] { moments.state }

    public init(layout: ParameterLayout, beta1: Float = 0.9, beta2: Float = 0.999, eps: Float = 1e-8,
                weightDecay: Float = 0, decayPolicy: WeightDecayPolicy = .matrices) {
        moments = AdamMoments(layout: layout, beta1: beta1, beta2: beta2, eps: eps, weightDecay: weightDecay, decayPolicy: decayPolicy)
    }

    public func update(_ arena: ParameterArena, lr: Double, gradScale: Float = 1) {
        step += 1
        moments.update(arena, step: step, lr: lr, gradScale: gradScale, decoupled: false)
    }
}
