import Tensors
import XCTest

/// Deterministic test data: N(0, std) values keyed by `seed`.
public func randomValues(_ count: Int, seed: UInt64, std: Float = 1) -> [Float] {
    let rng = CounterRNG(seed: seed, purpose: .initialisation, 999)
    return (0 ..< count).map { std * rng.normal(UInt64($0)) }
}

/// Fills a pointer with N(0, std) values keyed by `seed`.
public func fillRandom(_ p: UnsafeMutablePointer<Float>, count: Int, seed: UInt64, std: Float = 1) {
    let v = randomValues(count, seed: seed, std: std)
    for i in 0 ..< count { p[i] = v[i] }
}

/// Σ w_i · y_i in Double: a scalar probe loss whose gradient w.r.t. y is w.
public func weightedSum(_ y: UnsafePointer<Float>, _ w: [Float]) -> Double {
    var s = 0.0
    for i in 0 ..< w.count { s += Double(y[i]) * Double(w[i]) }
    return s
}

/// Central finite differences of `loss` with respect to `values[i]` for the given indices
/// (perturbing in place and restoring), compared with `analytic`. Fails when the largest
/// absolute difference exceeds `tolerance` × max(|analytic|∞, floor).
public func assertGradientsMatch(_ values: UnsafeMutablePointer<Float>, analytic: [Float], indices: [Int]? = nil,
                                 eps: Float = 1e-2, tolerance: Double = 1e-2, floor: Double = 1e-3,
                                 _ what: String, loss: () -> Double,
                                 file: StaticString = #filePath, line: UInt = #line) {
    let idx = indices ?? Array(0 ..< analytic.count)
    var worst = 0.0, worstIndex = -1, scale = floor
    for i in idx { scale = max(scale, Double(abs(analytic[i]))) }
    for i in idx {
        let saved = values[i]
        values[i] = saved + eps
        let up = loss()
        values[i] = saved - eps
        let down = loss()
        values[i] = saved
        let numeric = (up - down) / Double(2 * eps)
        let err = abs(numeric - Double(analytic[i]))
        if err > worst { worst = err; worstIndex = i }
    }
    XCTAssertLessThanOrEqual(worst / scale, tolerance,
                             "\(what): worst finite-difference mismatch \(worst) at index \(worstIndex) (scale \(scale))",
                             file: file, line: line)
}

/// Asserts |a − b| ≤ tol · max(1, |b|) element-wise (for arrays of equal length).
public func assertClose(_ a: [Float], _ b: [Float], relative tol: Float, _ what: String,
                        file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.count, b.count, "\(what): length", file: file, line: line)
    var worst: Float = 0, at = -1
    for i in 0 ..< min(a.count, b.count) {
        let e = abs(a[i] - b[i]) / max(1, abs(b[i]))
        if e > worst { worst = e; at = i }
    }
    XCTAssertLessThanOrEqual(worst, tol, "\(what): worst relative error \(worst) at \(at)", file: file, line: line)
}

/// ‖a − b‖ / ‖b‖ (b nonzero), in Double.
public func relativeError(_ a: [Float], _ b: [Float]) -> Double {
    var num = 0.0, den = 0.0
    for i in 0 ..< min(a.count, b.count) {
        let d = Double(a[i]) - Double(b[i])
        num += d * d
        den += Double(b[i]) * Double(b[i])
    }
    return (num / max(den, 1e-30)).squareRoot()
}
