#if canImport(Glibc)
import Glibc
#endif
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
    /// about a quarter of the core's L2 cache of it (`l2Bytes`), in whole sequences — 512 KB, two
    /// sequences of 128 for the default model, where L2 is 2 MB (2.0–2.6% faster steps than the
    /// whole batch at once); one sequence where it is 1 MB, so that the hidden layer and its GELU
    /// output still fit together. With several threads per rank, the whole batch: the passes split
    /// a block over the cores differently (products by rows or by columns, heads by sequence), so
    /// it would not stay in one core's L2, and blocks measured 0.4–2% slower. An L2 size outside
    /// 256 KB … 32 MB is taken as the nearer bound. The block size never changes a result.
    public static func rows(batch B: Int, time T: Int, width: Int, l2Bytes: Int = l2CacheBytes,
                            threads: Int = Parallel.threads) -> Int {
        guard threads == 1 else { return Swift.max(B, 1) * T }
        let target = Swift.max(1, Swift.min(Swift.max(l2Bytes, 256 << 10), 32 << 20) / 16 / Swift.max(width, 1))
        return Swift.max(1, Swift.min(B, target / Swift.max(T, 1))) * T
    }

    /// The size of one core's L2 cache as the C library reports it (2 MB when it reports none).
    public static let l2CacheBytes: Int = {
        let reported = sysconf(Int32(_SC_LEVEL2_CACHE_SIZE))
        return reported > 0 ? reported : 2 << 20
    }()

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
