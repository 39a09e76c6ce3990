import Tensors

/// An update rule over the flat arena. Its state is a set of named buffers, each as long as the
/// arena (written into checkpoints as `NAME.<parameter>`), plus the number of updates applied.
public protocol Optimizer: AnyObject {
    /// `sgd`, `adam` or `adamw`.
    var kind: String { get }
    /// Updates applied so far.
    var step: Int { get set }
    /// The state buffers by name (e.g. `exp_avg`, `exp_avg_sq`, `momentum_buffer`).
    var state: [(name: String, buffer: FloatBuffer)] { get }
    /// One update with learning rate `lr`, using the gradients multiplied by `gradScale`.
    func update(_ arena: ParameterArena, lr: Double, gradScale: Float)
}

extension Optimizer {
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

/// Which tensors weight decay applies to.
public enum WeightDecayPolicy: String, Codable, Sendable {
    /// Tensors with two or more dimensions (weights and embeddings), not biases or norms.
    case matrices
    /// Every tensor.
    case all

    /// The arena's ranges with their weight-decay flag.
    public func groups(_ layout: ParameterLayout) -> [(range: Range<Int>, decay: Bool)] {
        layout.entries.map { ($0.range, self == .all || $0.shape.count >= 2) }
    }
}
