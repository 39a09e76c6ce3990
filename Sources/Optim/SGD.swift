import Tensors

/// Stochastic gradient descent with momentum (optionally Nesterov) and L2 weight decay, PyTorch
/// semantics (dampening 0): `d = g + wd·p; b = μ·b + d; d = nesterov ? d + μ·b : b; p −= lr·d`.
/// Without momentum it is plain `p −= lr·(g + wd·p)`.
public final class SGD: Optimizer {
    public let momentum: Float
    public let nesterov: Bool
    public let weightDecay: Float
    public let buffer: FloatBuffer
    public var step = 0
    public var kind: String { "sgd" }
    public var state: [(name: String, buffer: FloatBuffer)] { momentum > 0 ? [("momentum_buffer", buffer)] : [] }
    let groups: [(range: Range<Int>, decay: Bool)]

    public init(layout: ParameterLayout, momentum: Float = 0, nesterov: Bool = false, weightDecay: Float = 0,
                decayPolicy: WeightDecayPolicy = .matrices) {
        precondition(!nesterov || momentum > 0, "Nesterov momentum needs momentum > 0")
        self.momentum = momentum
        self.nesterov = nesterov
        self.weightDecay = weightDecay
        buffer = FloatBuffer(count: momentum > 0 ? layout.count : 0)
        groups = decayPolicy.groups(layout)
    }

    public func update(_ arena: ParameterArena, lr: Double, gradScale: Float = 1) {
        step += 1
        let rate = Float(lr), mu = momentum
        let p = arena.parameters.pointer, g = arena.gradients.pointer, b = buffer.pointer
        for group in groups {
            let wd: Float = group.decay ? weightDecay : 0
            if mu == 0 {
                for i in group.range { p[i] -= rate * (g[i] * gradScale + wd * p[i]) }
            } else if nesterov {
                for i in group.range {
                    let d = g[i] * gradScale + wd * p[i]
                    let bi = mu * b[i] + d
                    b[i] = bi
                    p[i] -= rate * (d + mu * bi)
                }
            } else {
                for i in group.range {
                    let bi = mu * b[i] + g[i] * gradScale + wd * p[i]
                    b[i] = bi
                    p[i] -= rate * bi
                }
            }
        }
    }
}
