/// Elementwise kernels over raw pointers. They allocate nothing and are written so that the
/// optimiser vectorises them (simple counted loops over unsafe pointers).
public enum Kernels {
    /// y[i] += x[i]
    @inlinable @inline(__always)
    public static func add(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count n: Int) {
        Parallel.forEachPart(n, grain: 1 << 12) { r, _ in
            for i in r { y[i] += x[i] }
        }
    }

    /// y[i] *= x[i]
    @inlinable @inline(__always)
    public static func multiply(_ y: UnsafeMutablePointer<Float>, by x: UnsafePointer<Float>, count n: Int) {
        Parallel.forEachPart(n, grain: 1 << 12) { r, _ in
            for i in r { y[i] *= x[i] }
        }
    }

    /// Sum of squares, accumulated in Double in blocks (stable and vectorisable).
    @inlinable
    public static func sumOfSquares(_ x: UnsafePointer<Float>, count n: Int) -> Double {
        var total = 0.0
        var i = 0
        let block = 1024
        while i < n {
            let end = min(i + block, n)
            var acc: SIMD8<Float> = .zero
            var j = i
            while j + 8 <= end {
                let v = UnsafeRawPointer(x + j).loadUnaligned(as: SIMD8<Float>.self)
                acc = acc.addingProduct(v, v)
                j += 8
            }
            var s = Double(acc.sum())
            while j < end { s += Double(x[j]) * Double(x[j]); j += 1 }
            total += s
            i = end
        }
        return total
    }

    /// out[r, c] = 0 for r < rows, c < cols, rows `stride` floats apart.
    @inlinable @inline(__always)
    public static func clearRows(_ out: UnsafeMutablePointer<Float>, rows: Int, cols: Int, stride: Int) {
        if stride == cols {
            Parallel.forEachPart(rows * cols, grain: 1 << 14) { r, _ in (out + r.lowerBound).update(repeating: 0, count: r.count) }
        } else {
            for r in 0 ..< rows { (out + r * stride).update(repeating: 0, count: cols) }
        }
    }
}
