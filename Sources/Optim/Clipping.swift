import Tensors

/// Global L2 norm of a gradient buffer, accumulated in Double.
public func globalNorm(_ gradients: UnsafePointer<Float>, count: Int) -> Double {
    Kernels.sumOfSquares(gradients, count: count).squareRoot()
}

/// Gradient-norm clipping as a pure function (PyTorch's `clip_grad_norm_`): the factor to
/// multiply gradients by, `min(1, maxNorm / (norm + 1e-6))`, and the pre-clip norm.
/// A nil or non-positive `maxNorm` disables clipping.
public func clipScale(norm: Double, maxNorm: Double?) -> (scale: Float, norm: Double) {
    guard let maxNorm, maxNorm > 0 else { return (1, norm) }
    let coefficient = Float(maxNorm) / Float(norm + 1e-6)
    return (min(coefficient, 1), norm)
}
