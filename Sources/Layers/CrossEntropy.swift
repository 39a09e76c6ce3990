import CKernels

/// Softmax cross-entropy over the last dimension, with an ignore index.
public enum CrossEntropy {
    /// The target value that contributes neither loss nor gradient.
    public static let ignoreIndex: Int32 = -1

    /// logits (N, V) → probs (N, V). Returns the summed loss (Double) and the number of
    /// counted (non-ignored) targets, added to `previous` row after row (the sums of a batch
    /// whose rows come in several calls). Targets must be in 0..<V or the ignore index. One pass
    /// per row in C (`lk_cross_entropy_forward`): max, e^(x − max) with their sum, probabilities,
    /// and −log p_t in log-sum-exp form, log Σ e^(x − max) − (x_t − max).
    public static func forward(logits: UnsafePointer<Float>, targets: UnsafePointer<Int32>,
                               probs: UnsafeMutablePointer<Float>, rows N: Int, vocab V: Int,
                               continuing previous: (loss: Double, count: Int) = (0, 0)) -> (loss: Double, count: Int) {
        var loss = previous.loss, count = Int64(previous.count)
        let bad = lk_cross_entropy_forward(logits, targets, probs, Int64(N), Int64(V), ignoreIndex, &loss, &count)
        precondition(bad < 0, "target \(bad < 0 ? 0 : targets[Int(bad)]) out of range 0..<\(V)")
        return (loss, Int(count))
    }

    /// dlogits = (probs − onehot(target)) · scale for counted rows, 0 for ignored rows
    /// (overwrites dlogits, which may be `probs` itself; it is the start of the backward pass).
    public static func backward(probs: UnsafeMutablePointer<Float>, targets: UnsafePointer<Int32>,
                                dlogits: UnsafeMutablePointer<Float>, rows N: Int, vocab V: Int,
                                scale: Float) {
        for n in 0 ..< N {
            let p = probs + n * V, d = dlogits + n * V
            let t = targets[n]
            if t == ignoreIndex { d.update(repeating: 0, count: V); continue }
            for v in 0 ..< V { d[v] = p[v] * scale }
            d[Int(t)] -= scale
        }
    }
}
