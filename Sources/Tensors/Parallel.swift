import Dispatch

/// A rank's own kernels (the Linear products' rows, attention heads, GELU, LayerNorm rows) split
/// over the threads the rank owns — as many as its BLAS threads. With one thread (the data-parallel layout: one rank per
/// core) everything runs inline. The split never changes a result: each part writes its own
/// outputs and nothing is summed across parts.
public enum Parallel {
    /// Threads per rank; `BLAS.setThreads` keeps it equal to OpenBLAS's.
    nonisolated(unsafe) public private(set) static var threads = 1

    static func setThreads(_ n: Int) { threads = max(1, n) }

    /// Calls `body(range, part)` for up to `threads` (and at most `maxParts`) contiguous parts of
    /// 0..<n, part in 0..<parts, with the part boundaries multiples of `grain`.
    @inline(__always)
    public static func forEachPart(_ n: Int, grain: Int = 1, maxParts: Int = .max, _ body: (Range<Int>, Int) -> Void) {
        let units = (n + grain - 1) / grain
        let parts = min(threads, units, maxParts)
        if parts <= 1 { body(0 ..< n, 0); return }
        // The parts touch disjoint memory through raw pointers: the closure is sent as is.
        withoutActuallyEscaping(body) { body in
            let shared = Unchecked(body)
            DispatchQueue.concurrentPerform(iterations: parts) { p in
                let lo = min(n, units * p / parts * grain), hi = min(n, units * (p + 1) / parts * grain)
                shared.value(lo ..< hi, p)
            }
        }
    }
}

private struct Unchecked<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}
