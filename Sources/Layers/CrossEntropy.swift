import Tensors
#if canImport(Glibc)
import Glibc
#endif

/// Softmax cross-entropy over the last dimension, with an ignore index.
public enum CrossEntropy {
    /// The target value that contributes neither loss nor gradient.
    public static let ignoreIndex: Int32 = -1

    /// logits (N, V) → probs (N, V). Returns the summed loss (Double) and the number of
    /// counted (non-ignored) targets. Targets must be in 0..<V or the ignore index.
    public static func forward(logits: UnsafePointer<Float>, targets: UnsafePointer<Int32>,
                               probs: UnsafeMutablePointer<Float>, rows N: Int, vocab V: Int)
        -> (loss: Double, count: Int) {
        var loss = 0.0, count = 0
        for n in 0 ..< N {
            let l = logits + n * V, p = probs + n * V
            let (mx, s) = VectorMath.softmax(l, p, V)
            let t = targets[n]
            if t == ignoreIndex { continue }
            precondition(t >= 0 && Int(t) < V, "target \(t) out of range 0..<\(V)")
            // log-sum-exp form for accuracy: -log p_t = log Σ e^(l - mx) - (l_t - mx)
            loss += Double(logf(s) - (l[Int(t)] - mx))
            count += 1
        }
        return (loss, count)
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
