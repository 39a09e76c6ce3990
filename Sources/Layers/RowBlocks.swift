import Tensors

/// A batch's sequences taken a few at a time by the transformer's block-wise passes, so that a
/// block's intermediate activations (the widest an (n, 4C) hidden layer) stay in the core's L2
/// cache between the product that writes them and the pass that reads them, instead of
/// streaming the whole batch's through memory at every step of a layer. Every row's results
/// and every sum over rows (the weight gradients, taken block after block in order) are the
/// same as for the batch in one piece.
public struct RowBlocks: Sequence {
    public let batch: Int
    /// Sequences per block (the last may have fewer).
    public let sequences: Int

    /// Blocks of whole sequences of T, at most `rows` rows each (at least one sequence).
    public init(batch B: Int, time T: Int, rows: Int) {
        batch = B
        sequences = Swift.max(1, rows / Swift.max(T, 1))
    }

    /// Rows per block for up to B sequences of T whose widest activation row is `width` floats:
    /// about 512 KB of it, in whole sequences (2 of 128 for the default model: 2.0–2.6% faster
    /// steps than the whole batch at once). With several threads per rank, the whole batch: the
    /// passes split a block over the cores differently (products by rows or by columns, heads by
    /// sequence), so it would not stay in one core's L2, and blocks measured 0.4–2% slower.
    public static func rows(batch B: Int, time T: Int, width: Int) -> Int {
        guard Parallel.threads == 1 else { return Swift.max(B, 1) * T }
        let target = Swift.max(1, (1 << 17) / Swift.max(width, 1))
        return Swift.max(1, Swift.min(B, target / Swift.max(T, 1))) * T
    }

    public func makeIterator() -> AnyIterator<Range<Int>> {
        var next = 0
        let batch = batch, step = sequences
        return AnyIterator {
            guard next < batch else { return nil }
            defer { next += step }
            return next ..< Swift.min(batch, next + step)
        }
    }
}
