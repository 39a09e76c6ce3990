import CKernels
import Foundation
import TestSupport
import XCTest
@testable import Tensors

final class SGEMMTests: XCTestCase {
    /// Naive row-major reference for C = alpha·op(A)·op(B) + beta·C.
    func reference(_ ta: Transpose, _ tb: Transpose, m: Int, n: Int, k: Int, alpha: Float, a: [Float], b: [Float],
                   beta: Float, c: [Float]) -> [Float] {
        var out = c
        for i in 0 ..< m {
            for j in 0 ..< n {
                var s: Double = 0
                for p in 0 ..< k {
                    let av = ta == .none ? a[i * k + p] : a[p * m + i]
                    let bv = tb == .none ? b[p * n + j] : b[j * k + p]
                    s += Double(av) * Double(bv)
                }
                out[i * n + j] = alpha * Float(s) + beta * c[i * n + j]
            }
        }
        return out
    }

    func testAllFourTransposeCases() {
        let m = 5, n = 7, k = 3
        for (ta, tb) in [(Transpose.none, Transpose.none), (.none, .transposed), (.transposed, .none), (.transposed, .transposed)] {
            let a = randomValues(m * k, seed: 1), b = randomValues(k * n, seed: 2), c0 = randomValues(m * n, seed: 3)
            let expected = reference(ta, tb, m: m, n: n, k: k, alpha: 0.5, a: a, b: b, beta: 2, c: c0)
            var c = c0
            a.withUnsafeBufferPointer { ap in
                b.withUnsafeBufferPointer { bp in
                    c.withUnsafeMutableBufferPointer { cp in
                        sgemm(ta, tb, m: m, n: n, k: k, alpha: 0.5, a: ap.baseAddress!, lda: ta == .none ? k : m,
                              b: bp.baseAddress!, ldb: tb == .none ? n : k, beta: 2, c: cp.baseAddress!, ldc: n)
                    }
                }
            }
            assertClose(c, expected, relative: 1e-5, "sgemm \(ta) \(tb)")
        }
    }

    /// beta 0 ignores what C held (NaN included) and touches only the m×n window of a strided C.
    func testBetaZeroOverwritesOnlyTheWindow() {
        let m = 4, n = 3, k = 5, ldc = 6
        let a = randomValues(m * k, seed: 4), b = randomValues(k * n, seed: 5)
        var c = [Float](repeating: .nan, count: m * ldc)
        for i in 0 ..< m { c[i * ldc + n] = 42 }
        let expected = reference(.none, .none, m: m, n: n, k: k, alpha: 1, a: a, b: b, beta: 0, c: [Float](repeating: 0, count: m * n))
        a.withUnsafeBufferPointer { ap in
            b.withUnsafeBufferPointer { bp in
                c.withUnsafeMutableBufferPointer { cp in
                    sgemm(.none, .none, m: m, n: n, k: k, a: ap.baseAddress!, lda: k, b: bp.baseAddress!, ldb: n,
                          beta: 0, c: cp.baseAddress!, ldc: ldc)
                }
            }
        }
        assertClose((0 ..< m * n).map { c[($0 / n) * ldc + $0 % n] }, expected, relative: 1e-5, "beta 0 window")
        for i in 0 ..< m {
            XCTAssertEqual(c[i * ldc + n], 42, "row \(i): the column after the window")
            XCTAssert(c[i * ldc + n + 1 ..< i * ldc + ldc].allSatisfy(\.isNaN), "row \(i): the rest of the stride")
        }
    }

    func testStridedViewsUseLeadingDimension() {
        // A is the left 2 columns of a 3×4 matrix: lda = 4.
        let wide: [Float] = [1, 2, 9, 9, 3, 4, 9, 9, 5, 6, 9, 9]
        let b: [Float] = [1, 0, 0, 1]   // identity 2×2
        var c = [Float](repeating: 0, count: 6)
        wide.withUnsafeBufferPointer { ap in
            b.withUnsafeBufferPointer { bp in
                c.withUnsafeMutableBufferPointer { cp in
                    sgemm(.none, .none, m: 3, n: 2, k: 2, a: ap.baseAddress!, lda: 4, b: bp.baseAddress!, ldb: 2,
                          c: cp.baseAddress!, ldc: 2)
                }
            }
        }
        XCTAssertEqual(c, [1, 2, 3, 4, 5, 6])
    }
}

final class CounterRNGTests: XCTestCase {
    func testSplitMixMatchesTheSequentialGenerator() {
        XCTAssertEqual(SplitMix64.output(state: 1_234_567, index: 0), 6_457_827_717_110_365_317)
        XCTAssertEqual(SplitMix64.output(state: 1_234_567, index: 1), 3_203_168_211_198_807_973)
        XCTAssertEqual(SplitMix64.output(state: 1_234_567, index: 2), 9_817_491_932_198_370_423)
    }

    func testDrawsArePureFunctionsOfTheirKey() {
        let a = CounterRNG(seed: 7, purpose: .dropout, 3, 4)
        let b = CounterRNG(seed: 7, purpose: .dropout, 3, 4)
        let c = CounterRNG(seed: 7, purpose: .dropout, 3, 5)
        XCTAssertEqual(a.bits(10), b.bits(10))
        XCTAssertNotEqual(a.bits(10), c.bits(10))
        XCTAssertNotEqual(CounterRNG(seed: 7, purpose: .initialisation, 3, 4).bits(10), a.bits(10))
    }

    func testNormalHasUnitMoments() {
        let rng = CounterRNG(seed: 42, purpose: .initialisation)
        let n = 200_000
        var s = 0.0, s2 = 0.0
        for i in 0 ..< n { let v = Double(rng.normal(UInt64(i))); s += v; s2 += v * v }
        XCTAssertEqual(s / Double(n), 0, accuracy: 0.01)
        XCTAssertEqual(s2 / Double(n), 1, accuracy: 0.01)
    }

    func testUniformIsInUnitInterval() {
        let rng = CounterRNG(seed: 1, purpose: .dropout)
        var below = 0
        for i in 0 ..< 100_000 {
            let u = rng.uniform(UInt64(i))
            XCTAssert(u >= 0 && u < 1)
            if u < 0.3 { below += 1 }
        }
        XCTAssertEqual(Double(below) / 100_000, 0.3, accuracy: 0.01)
    }
}

final class ArenaTests: XCTestCase {
    func testLayoutIsContiguousAndNamed() {
        var layout = ParameterLayout()
        let a = layout.add("a.weight", [3, 4])
        let b = layout.add("a.bias", [3])
        XCTAssertEqual(a.offset, 0)
        XCTAssertEqual(b.offset, 12)
        XCTAssertEqual(layout.count, 15)
        let arena = ParameterArena(layout: layout)
        XCTAssertEqual(arena.parameters.count, arena.gradients.count)
        arena.param(b)[2] = 5
        XCTAssertEqual(arena.values(of: "a.bias"), [0, 0, 5])
        XCTAssertNil(arena.values(of: "missing"))
    }

    func testSumOfSquaresAccumulatesInDouble() {
        let v = randomValues(10_001, seed: 9)
        let buf = FloatBuffer(v)
        let expected = v.reduce(0.0) { $0 + Double($1) * Double($1) }
        XCTAssertEqual(Kernels.sumOfSquares(buf.pointer, count: v.count), expected, accuracy: expected * 1e-6)
    }
}

/// The cross-entropy kernel against double precision, at row lengths that take the sixteen-lane,
/// eight-lane and one-at-a-time parts, on every path the CPU has.
final class CrossEntropyKernelTests: XCTestCase {
    override func tearDown() {
        lk_set_isa_avx512(1) // back to the default: the best path the CPU has
        super.tearDown()
    }

    /// (probabilities, loss, count, the bad row or −1) for rows of `width`
    func run(_ logits: [Float], _ targets: [Int32], width V: Int) -> ([Float], Double, Int64, Int64) {
        var probs = [Float](repeating: .nan, count: logits.count), loss = 0.0, count: Int64 = 0
        let bad = lk_cross_entropy_forward(logits, targets, &probs, Int64(targets.count), Int64(V), -1, &loss, &count)
        return (probs, loss, count, bad)
    }

    func testMatchesDoublePrecision() {
        for avx512 in RowProductTests.paths {
            lk_set_isa_avx512(avx512 ? 1 : 0)
            for V in [1, 5, 8, 13, 16, 24, 31, 64, 256, 263] {
                let N = 3
                let x = randomValues(N * V, seed: UInt64(V), std: 3)
                let targets: [Int32] = [Int32(V - 1), -1, Int32(V / 2)]
                let (probs, loss, count, bad) = run(x, targets, width: V)
                XCTAssertEqual(bad, -1)
                XCTAssertEqual(count, 2, "the ignored row does not count, V=\(V)")
                var expected = 0.0
                for n in 0 ..< N {
                    let row = x[n * V ..< (n + 1) * V].map(Double.init)
                    let m = row.max()!
                    let e = row.map { Foundation.exp($0 - m) }
                    let s = e.reduce(0, +)
                    assertClose(Array(probs[n * V ..< (n + 1) * V]), e.map { Float($0 / s) }, relative: 1e-6, "softmax V=\(V) row \(n)")
                    if targets[n] >= 0 { expected += Foundation.log(s) - (row[Int(targets[n])] - m) }
                }
                XCTAssertEqual(loss, expected, accuracy: 2e-6 * max(1, expected), "Σ −log p_t, V=\(V)")
            }
        }
    }

    /// The kernels' e^x (vexp.h, shared with attention and GELU's derivative) against the library
    /// over [−20, 0], the arguments its callers give it: in rows of sixteen led by a 0, the row's
    /// max, each probability over the first is e^x up to one rounding of the product by 1/Σ.
    func testExponentialsMatchTheLibrary() {
        for avx512 in RowProductTests.paths {
            lk_set_isa_avx512(avx512 ? 1 : 0)
            var xs: [Float] = []
            var x: Float = -20
            while x < 0 { xs.append(x); x += 0.00731 }
            let rows = (xs.count + 14) / 15
            var logits = [Float](repeating: 0, count: rows * 16)
            for (i, v) in xs.enumerated() { logits[i / 15 * 16 + 1 + i % 15] = v }
            let (probs, _, _, bad) = run(logits, [Int32](repeating: 0, count: rows), width: 16)
            XCTAssertEqual(bad, -1)
            var worst = 0.0
            for (i, v) in xs.enumerated() {
                let row = i / 15 * 16
                let e = Double(probs[row + 1 + i % 15]) / Double(probs[row])
                worst = max(worst, abs(e - Foundation.exp(Double(v))) / Foundation.exp(Double(v)))
            }
            XCTAssertLessThan(worst, 4e-7 + 6e-8, "relative error of e^x, \(avx512 ? "AVX-512" : "AVX2")")
        }
    }

    /// Sixteen lanes give the eight-lane bits (the sums add in the same order).
    func testWidthsAgreeToTheBit() throws {
        try XCTSkipIf(RowProductTests.paths.count < 2, "this CPU has no AVX-512")
        for V in [16, 40, 256, 263] {
            let x = randomValues(7 * V, seed: 11, std: 5)
            let targets = (0 ..< 7).map { Int32($0 * 3 % V) }
            lk_set_isa_avx512(0)
            let narrow = run(x, targets, width: V)
            lk_set_isa_avx512(1)
            let wide = run(x, targets, width: V)
            let differ = zip(narrow.0, wide.0).filter { $0.bitPattern != $1.bitPattern }.count
            XCTAssertEqual(differ, 0, "probabilities that differ, V=\(V)")
            XCTAssertEqual(narrow.1.bitPattern, wide.1.bitPattern, "loss, V=\(V)")
        }
    }

    /// Far below the max, e^x underflows to (almost) zero instead of wrapping its exponent; a NaN
    /// logit makes its row NaN and leaves the others alone; a target out of range names its row.
    func testEdges() {
        for avx512 in RowProductTests.paths {
            lk_set_isa_avx512(avx512 ? 1 : 0)
            var x = [Float](repeating: 0, count: 2 * 24)
            x[1] = -200
            x[24 + 5] = .nan
            let (probs, loss, _, bad) = run(x, [0, 0], width: 24)
            XCTAssertEqual(bad, -1)
            XCTAssertEqual(probs[1], 0, accuracy: 1e-37, "e^-200")
            XCTAssertEqual(Double(probs[0]), 1.0 / 23, accuracy: 1e-7)
            XCTAssertTrue(probs[24 ..< 48].allSatisfy(\.isNaN), "the NaN row")
            XCTAssertTrue(loss.isNaN, "the NaN row's loss")
            XCTAssertEqual(run([Float](repeating: 0, count: 3 * 8), [1, 8, 2], width: 8).3, 1, "target 8 of 8")
            XCTAssertEqual(run([Float](repeating: 0, count: 2 * 8), [0, -2], width: 8).3, 1, "target -2")
        }
    }
}

final class CKernelsTests: XCTestCase {
    override func tearDown() {
        lk_set_isa_avx512(1) // back to the default: the best path the CPU has
        super.tearDown()
    }

    func testGELUKernelsMatchTheDefinition() {
        for avx512 in RowProductTests.paths {
            XCTAssertEqual(lk_set_isa_avx512(avx512 ? 1 : 0) != 0, avx512)
            checkGELU(label: avx512 ? "AVX-512" : "AVX2")
        }
    }

    /// Sixteen lanes give the eight-lane bits, over the whole range (tails, zeros, the far tails).
    func testGELUWidthsAgreeToTheBit() throws {
        try XCTSkipIf(RowProductTests.paths.count < 2, "this CPU has no AVX-512")
        let x = randomValues(4099, seed: 8, std: 4) + [0, -0.0, 1e-30, -1e-30, 9, -9, 20, -20, 1e4, -1e4]
        func run() -> ([Float], [Float]) {
            var out = [Float](repeating: 0, count: x.count), out2 = out, d = x
            lk_gelu_erf_forward(x, &out, Int64(x.count))
            lk_gelu_erf_forward_derivative(&d, &out2, Int64(x.count))
            XCTAssertEqual(out, out2)
            return (out, d)
        }
        lk_set_isa_avx512(0)
        let (narrow, narrowD) = run()
        lk_set_isa_avx512(1)
        let (wide, wideD) = run()
        XCTAssertEqual(narrow.map(\.bitPattern), wide.map(\.bitPattern), "gelu")
        XCTAssertEqual(narrowD.map(\.bitPattern), wideD.map(\.bitPattern), "gelu'")
    }

    /// Past |x| = 3.92·√2 the clamped erf is exactly ±1: gelu(x) = x on the right and 0 on the
    /// left; gelu'(x) = Φ(x) + x·φ(x) is 1 + x·φ(x) on the right (exactly 1 from 9 on) and x·φ(x) on the left.
    func testGELUTailsAreExact() {
        for avx512 in RowProductTests.paths {
            lk_set_isa_avx512(avx512 ? 1 : 0)
            let far: [Float] = [5.544, 5.6, 6, 9, 20, 1e4]
            let x = far + far.map { -$0 } + [.nan]
            var out = [Float](repeating: 1, count: x.count), out2 = out, d = x
            lk_gelu_erf_forward(x, &out, Int64(x.count))
            lk_gelu_erf_forward_derivative(&d, &out2, Int64(x.count))
            for (i, v) in far.enumerated() {
                XCTAssertEqual(out[i], v, "gelu(\(v))")
                XCTAssertEqual(out[far.count + i], 0, "gelu(-\(v))")
                let xphi = Double(v) * Foundation.exp(-0.5 * Double(v) * Double(v)) / (2 * Double.pi).squareRoot()
                XCTAssertEqual(Double(d[i]), 1 + xphi, accuracy: 1e-7, "gelu'(\(v))")
                XCTAssertEqual(Double(d[far.count + i]), -xphi, accuracy: 1e-7, "gelu'(-\(v))")
                if v >= 9 { XCTAssertEqual(d[i], 1, "gelu'(\(v))") }
            }
            XCTAssertTrue(out[x.count - 1].isNaN && d[x.count - 1].isNaN, "NaN in, NaN out")
        }
    }

    func checkGELU(label: String) {
        let x = randomValues(1003, seed: 5, std: 3)
        var out = [Float](repeating: 0, count: x.count), out2 = out, d = x
        lk_gelu_erf_forward(x, &out, Int64(x.count))
        lk_gelu_erf_forward_derivative(&d, &out2, Int64(x.count))
        XCTAssertEqual(out, out2, "\(label): both kernels compute the same GELU")
        // an element's result does not depend on where a split of the array puts it (tails
        // shorter than the vector width run through the vector code too)
        var split = [Float](repeating: 0, count: x.count), splitD = x
        x.withUnsafeBufferPointer { xs in
            split.withUnsafeMutableBufferPointer { o in
                lk_gelu_erf_forward(xs.baseAddress!, o.baseAddress!, 5)
                lk_gelu_erf_forward(xs.baseAddress! + 5, o.baseAddress! + 5, Int64(x.count - 5))
            }
        }
        splitD.withUnsafeMutableBufferPointer { dx in
            var g = [Float](repeating: 0, count: x.count)
            lk_gelu_erf_forward_derivative(dx.baseAddress! + 3, &g, Int64(x.count - 3))
            lk_gelu_erf_forward_derivative(dx.baseAddress!, &g, 3)
        }
        XCTAssertEqual(split, out, "\(label): GELU split at 5")
        XCTAssertEqual(splitD, d, "\(label): GELU derivative split at 3")
        for i in x.indices {
            let v = Double(x[i])
            let cdf = 0.5 * (1 + Foundation.erf(v / 2.0.squareRoot()))
            XCTAssertEqual(Double(out[i]), v * cdf, accuracy: 2e-6 * max(1, abs(v)))
            XCTAssertEqual(Double(d[i]), cdf + v * Foundation.exp(-0.5 * v * v) / (2 * Double.pi).squareRoot(), accuracy: 2e-6)
        }
    }
}

/// The attention kernels against a double-precision reference written from the definitions,
/// over head sizes that take the plain and the eight-lane paths and lengths with partial blocks.
final class AttentionKernelTests: XCTestCase {
    override func tearDown() {
        lk_set_isa_avx512(1) // back to the default: the best path the CPU has
        super.tearDown()
    }

    func testForwardAndBackwardMatchTheDefinition() {
        for avx512 in RowProductTests.paths {
            lk_set_isa_avx512(avx512 ? 1 : 0)
            for (T, hs) in [(1, 8), (5, 3), (16, 32), (37, 24), (128, 32)] {
                for causal in [true, false] { _ = check(T: T, hs: hs, causal: causal) }
            }
        }
    }

    /// The AVX-512 products give the AVX2 bits: y, lse and the three gradients.
    func testWidthsAgreeToTheBit() throws {
        try XCTSkipIf(RowProductTests.paths.count < 2, "this CPU has no AVX-512")
        for (T, hs) in [(5, 3), (37, 24), (40, 16), (128, 32)] {
            for causal in [true, false] {
                lk_set_isa_avx512(0)
                let narrow = check(T: T, hs: hs, causal: causal)
                lk_set_isa_avx512(1)
                let wide = check(T: T, hs: hs, causal: causal)
                for (i, (a, b)) in zip(narrow, wide).enumerated() {
                    XCTAssertEqual(a.map(\.bitPattern), b.map(\.bitPattern), "T \(T) hs \(hs) causal \(causal): output \(i)")
                }
            }
        }
    }

    /// Checks one head against the definition and returns what the kernels wrote: y, lse, dqkv.
    func check(T: Int, hs: Int, causal: Bool) -> [[Float]] {
        let ld = 3 * hs + 5   // q, k, v side by side in wider rows, as in the fused qkv buffer
        let qkv = randomValues(T * ld, seed: UInt64(T * 100 + hs), std: 1.5)
        let dy = randomValues(T * hs, seed: UInt64(T + hs), std: 1)
        let scale = 1 / Float(hs).squareRoot()
        var y = [Float](repeating: 0, count: T * hs)
        var dqkv = [Float](repeating: .nan, count: T * ld)
        var lse = [Float](repeating: .nan, count: T)
        var work = [Float](repeating: .nan, count: Int(lk_attention_work_size(Int64(T), Int64(hs))))
        qkv.withUnsafeBufferPointer { p in
            let q = p.baseAddress!
            lk_attention_forward(q, q + hs, q + 2 * hs, Int64(ld), &y, Int64(hs), Int64(T), Int64(hs), causal ? 1 : 0,
                                 scale, &lse, &work)
            work = [Float](repeating: .nan, count: work.count) // backward needs nothing left in the workspace
            dqkv.withUnsafeMutableBufferPointer { d in
                let dq = d.baseAddress!
                lk_attention_backward(q, q + hs, q + 2 * hs, Int64(ld), y, Int64(hs), lse, dy, Int64(hs),
                                      dq, dq + hs, dq + 2 * hs, Int64(ld), Int64(T), Int64(hs), causal ? 1 : 0, scale, &work)
            }
        }
        func at(_ t: Int, _ part: Int, _ d: Int) -> Double { Double(qkv[t * ld + part * hs + d]) }
        var refY = [Double](repeating: 0, count: T * hs), refLSE = [Double](repeating: 0, count: T)
        var refD = [[Double]](repeating: [Double](repeating: 0, count: T * hs), count: 3)
        for t in 0 ..< T {
            let keys = causal ? t + 1 : T
            var s = (0 ..< keys).map { j in (0 ..< hs).reduce(0.0) { $0 + at(t, 0, $1) * at(j, 1, $1) } * Double(scale) }
            let m = s.max()!
            s = s.map { Foundation.exp($0 - m) }
            let z = s.reduce(0, +)
            refLSE[t] = m + Foundation.log(z)
            let p = s.map { $0 / z }
            for d in 0 ..< hs { refY[t * hs + d] = (0 ..< keys).reduce(0.0) { $0 + p[$1] * at($1, 2, d) } }
            let dp = (0 ..< keys).map { j in (0 ..< hs).reduce(0.0) { $0 + Double(dy[t * hs + $1]) * at(j, 2, $1) } }
            let dot = zip(p, dp).reduce(0.0) { $0 + $1.0 * $1.1 }
            for j in 0 ..< keys {
                let ds = p[j] * (dp[j] - dot) * Double(scale)
                for d in 0 ..< hs {
                    refD[0][t * hs + d] += ds * at(j, 1, d)
                    refD[1][j * hs + d] += ds * at(t, 0, d)
                    refD[2][j * hs + d] += p[j] * Double(dy[t * hs + d])
                }
            }
        }
        let label = "T \(T) hs \(hs) causal \(causal)"
        assertClose(y, refY.map { Float($0) }, relative: 1e-5, "\(label): y")
        assertClose(lse, refLSE.map { Float($0) }, relative: 1e-5, "\(label): lse")
        for part in 0 ..< 3 {
            let got = (0 ..< T * hs).map { dqkv[($0 / hs) * ld + part * hs + $0 % hs] }
            assertClose(got, refD[part].map { Float($0) }, relative: 1e-5, "\(label): d\(["q", "k", "v"][part])")
        }
        // the kernels write only their own columns
        for t in 0 ..< T { XCTAssert(dqkv[t * ld + 3 * hs ..< t * ld + ld].allSatisfy(\.isNaN), "\(label): row \(t) padding") }
        return [y, lse, dqkv]
    }
}

final class ParallelTests: XCTestCase {
    /// Parts cover 0..<n once, in order, split at multiples of the grain, at most maxParts of them.
    func testPartsCoverTheRangeOnce() {
        let saved = Parallel.threads
        defer { Parallel.setThreads(saved) }
        for (threads, n, grain, maxParts) in [(1, 10, 1, Int.max), (3, 10, 4, Int.max), (2, 5, 8, Int.max),
                                              (4, 1000, 64, 2), (3, 0, 1, Int.max), (8, 7, 1, Int.max)] {
            Parallel.setThreads(threads)
            let lock = NSLock()
            var seen: [(Range<Int>, Int)] = []
            Parallel.forEachPart(n, grain: grain, maxParts: maxParts) { r, part in
                lock.lock(); seen.append((r, part)); lock.unlock()
            }
            seen.sort { $0.1 < $1.1 }
            let label = "threads \(threads) n \(n) grain \(grain) maxParts \(maxParts)"
            XCTAssertLessThanOrEqual(seen.count, min(threads, maxParts), label)
            XCTAssertEqual(seen.map(\.1), Array(0 ..< seen.count), label)
            XCTAssertEqual(seen.flatMap { Array($0.0) }, Array(0 ..< n), label)
            for (r, _) in seen.dropLast() { XCTAssertEqual(r.upperBound % grain, 0, label) }
        }
    }
}

/// The Linear layers' row-streaming product against a double-precision reference: partial tiles
/// in both directions, every way the output can start (bias, zero, itself) and end (stored or
/// multiplied), output rows wider than the product, and the same bits on one thread or two.
/// Both instruction-set paths (AVX2, and AVX-512 where the CPU has it) are checked, and must agree
/// to the bit.
final class RowProductTests: XCTestCase {
    /// The instruction-set paths this CPU can run: AVX2 always, AVX-512 when present.
    static var paths: [Bool] { RowProduct.avx512Available ? [false, true] : [false] }

    override func tearDown() {
        RowProduct.useAVX512(true) // back to the default: the best path the CPU has
        super.tearDown()
    }

    /// `body(label)` on every instruction-set path this CPU has, on one thread and on two.
    func onEveryPathAndThreadCount(_ body: (String) -> Void) {
        let saved = Parallel.threads
        defer { Parallel.setThreads(saved) }
        for avx512 in Self.paths {
            XCTAssertEqual(RowProduct.useAVX512(avx512), avx512)
            for threads in [1, 2] {
                Parallel.setThreads(threads)
                body("threads \(threads) avx512 \(avx512)")
            }
        }
    }

    func testProductsMatchTheDefinition() {
        onEveryPathAndThreadCount { setting in
            // the last shape takes the AVX-512 path's weight in more than one pass of panels
            for (N, K, O) in [(1, 1, 1), (7, 5, 17), (13, 128, 40), (101, 33, 16), (200, 64, 48), (9, 7, 97), (5, 1030, 100)] {
                check(N: N, K: K, O: O, label: "N \(N) K \(K) O \(O) \(setting)")
            }
        }
    }

    func testWeightGradientMatchesTheDefinition() {
        onEveryPathAndThreadCount { setting in
            // rows past one pass of the kernel (128), partial tiles of w in both directions (the
            // last rows of w, 1 to 5 of them, next to whole strips of b)
            for (N, O, K) in [(1, 1, 1), (3, 7, 5), (130, 13, 40), (257, 16, 97), (64, 50, 64), (7, 1, 70), (9, 21, 64),
                              (5, 35, 128)] {
                let label = "N \(N) O \(O) K \(K) \(setting)"
                // a and b inside wider rows: the strides are honoured
                let lda = O + 2, ldb = K + 1
                let a = randomValues(N * lda, seed: UInt64(N + O)), b = randomValues(N * ldb, seed: UInt64(K))
                let w0 = randomValues(O * K, seed: 9), s0 = randomValues(O, seed: 10)
                var w = w0, sums = s0
                RowProduct.accumulateTransposedTimes(a, lda: lda, b, ldb: ldb, rows: N, outputs: O, k: K, into: &w,
                                                     columnSums: &sums)
                let expected = (0 ..< O * K).map { i in
                    Float((0 ..< N).reduce(Double(w0[i])) { $0 + Double(a[$1 * lda + i / K]) * Double(b[$1 * ldb + i % K]) })
                }
                assertClose(w, expected, relative: 1e-5, label)
                // the column sums: the sequential float sum over the rows, exactly
                let sequential = (0 ..< O).map { o in (0 ..< N).reduce(s0[o]) { $0 + a[$1 * lda + o] } }
                XCTAssertEqual(sums, sequential, "\(label): column sums")
                var alone = w0
                RowProduct.accumulateTransposedTimes(a, lda: lda, b, ldb: ldb, rows: N, outputs: O, k: K, into: &alone)
                XCTAssertEqual(alone, w, "\(label): the same product without the sums")
            }
        }
    }

    /// The LayerNorm kernels over many rows equal, to the bit, the same rows one call at a time (as
    /// threads split them): outputs, statistics, dx (with a base, and in place over it) and the
    /// weight and bias gradients, which take the rows' terms in row order either way; widths with
    /// and without a scalar tail.
    func testLayerNormOverManyRowsEqualsRowsOneAtATime() {
        for (N, C) in [(7, 128), (9, 130), (4, 36), (13, 5)] {
            let label = "N \(N) C \(C)"
            let x = randomValues(N * C, seed: UInt64(N + C), std: 3), dout = randomValues(N * C, seed: 41)
            let base = randomValues(N * C, seed: 42), gamma = randomValues(C, seed: 43), beta = randomValues(C, seed: 44)
            let dw0 = randomValues(C, seed: 45), db0 = randomValues(C, seed: 46)
            var out = [Float](repeating: 0, count: N * C), mean = [Float](repeating: 0, count: N), rstd = mean
            lk_layernorm_forward(x, &out, &mean, &rstd, gamma, beta, Int64(N), Int64(C), 1e-5)
            var dw = dw0, db = db0, dx = [Float](repeating: 0, count: N * C)
            lk_layernorm_backward(dout, x, mean, rstd, gamma, &dw, &db, &dx, base, Int64(N), Int64(C))
            var inPlace = base, dwInPlace = dw0, dbInPlace = db0
            inPlace.withUnsafeMutableBufferPointer { p in
                lk_layernorm_backward(dout, x, mean, rstd, gamma, &dwInPlace, &dbInPlace, p.baseAddress!, p.baseAddress!,
                                      Int64(N), Int64(C))
            }
            var rowOut: [Float] = [], rowMean: [Float] = [], rowRstd: [Float] = [], rowDx: [Float] = []
            var rowDw = dw0, rowDb = db0
            for n in 0 ..< N {
                let row = n * C ..< (n + 1) * C
                var o = [Float](repeating: 0, count: C), d = o, m: Float = 0, r: Float = 0
                lk_layernorm_forward(Array(x[row]), &o, &m, &r, gamma, beta, 1, Int64(C), 1e-5)
                lk_layernorm_backward(Array(dout[row]), Array(x[row]), [m], [r], gamma, &rowDw, &rowDb, &d, Array(base[row]),
                                      1, Int64(C))
                rowOut += o
                rowDx += d
                rowMean.append(m)
                rowRstd.append(r)
            }
            XCTAssertEqual(out.map(\.bitPattern), rowOut.map(\.bitPattern), "\(label): outputs")
            XCTAssertEqual(mean.map(\.bitPattern), rowMean.map(\.bitPattern), "\(label): means")
            XCTAssertEqual(rstd.map(\.bitPattern), rowRstd.map(\.bitPattern), "\(label): reciprocal deviations")
            XCTAssertEqual(dx.map(\.bitPattern), rowDx.map(\.bitPattern), "\(label): dx")
            XCTAssertEqual(inPlace.map(\.bitPattern), rowDx.map(\.bitPattern), "\(label): dx in place over the base")
            XCTAssertEqual(dw.map(\.bitPattern), rowDw.map(\.bitPattern), "\(label): weight gradient")
            XCTAssertEqual(db.map(\.bitPattern), rowDb.map(\.bitPattern), "\(label): bias gradient")
            XCTAssertEqual(dwInPlace.map(\.bitPattern), rowDw.map(\.bitPattern), "\(label): weight gradient (in place)")
            XCTAssertEqual(dbInPlace.map(\.bitPattern), rowDb.map(\.bitPattern), "\(label): bias gradient (in place)")
            XCTAssertNotEqual(dw, dw0, "\(label): the gradient took something")
        }
    }

    /// The weight gradient that normalizes its input's rows as it reads them equals, to the bit,
    /// the plain one on the LayerNorm kernel's output (what backward recomputed before), on both
    /// paths and thread counts; widths that end in partial strips and a LayerNorm scalar tail.
    func testNormalizingWeightGradientEqualsTheProductOfTheLayerNormOutput() {
        onEveryPathAndThreadCount { setting in
            for (N, O, K) in [(3, 7, 5), (130, 13, 40), (257, 16, 97), (64, 50, 128)] {
                let label = "N \(N) O \(O) K \(K) \(setting)"
                let a = randomValues(N * O, seed: UInt64(N * O)), x = randomValues(N * K, seed: UInt64(K), std: 3)
                let gamma = randomValues(K, seed: 31), beta = randomValues(K, seed: 32)
                var normalized = [Float](repeating: 0, count: N * K), mean = [Float](repeating: 0, count: N), rstd = mean
                lk_layernorm_forward(x, &normalized, &mean, &rstd, gamma, beta, Int64(N), Int64(K), 1e-5)
                let w0 = randomValues(O * K, seed: 33), s0 = randomValues(O, seed: 34)
                var plain = w0, plainSums = s0, fused = w0, fusedSums = s0
                RowProduct.accumulateTransposedTimes(a, normalized, rows: N, outputs: O, k: K, into: &plain,
                                                     columnSums: &plainSums)
                mean.withUnsafeBufferPointer { m in
                    rstd.withUnsafeBufferPointer { r in
                        gamma.withUnsafeBufferPointer { g in
                            beta.withUnsafeBufferPointer { b in
                                let norm = RowProduct.Normalization(mean: m.baseAddress!, rstd: r.baseAddress!,
                                                                    gamma: g.baseAddress!, beta: b.baseAddress!)
                                RowProduct.accumulateTransposedTimes(a, x, rows: N, outputs: O, k: K, into: &fused,
                                                                     columnSums: &fusedSums, normalizing: norm)
                            }
                        }
                    }
                }
                XCTAssertEqual(fused.map(\.bitPattern), plain.map(\.bitPattern), label)
                XCTAssertEqual(fusedSums, plainSums, "\(label): column sums")
                XCTAssertNotEqual(fused, w0, "\(label): the product added something")
            }
        }
    }

    /// A weight packed once (both ways round in one buffer) against the definition, with strided
    /// rows of x and y as a recurrent layer's time steps have them.
    func testPackedWeightProducts() {
        let N = 11, K = 20, O = 36, ldx = K + 7, ldy = O + 5
        let x = randomValues(N * ldx, seed: 21), w = randomValues(O * K, seed: 22), y0 = randomValues(N * ldy, seed: 23)
        let packed = RowProduct.PackedWeight(k: K, outputs: O)
        for avx512 in Self.paths {
            RowProduct.useAVX512(avx512)
            for transposed in [true, false] {
                // transposed: w is O × K and y = x·wᵀ (O outputs); else w read as K' × O' = O × K: x·w with O inputs
                let (k, o) = transposed ? (K, O) : (O, K)
                let xs = transposed ? x : randomValues(N * (O + 7), seed: 24), ldxs = transposed ? ldx : O + 7
                packed.pack(w, ldw: K, transposed: transposed, k: k, outputs: o)
                for accumulate in [false, true] {
                    var y = y0
                    RowProduct.times(xs, ldx: ldxs, rows: N, packed, accumulate: accumulate, into: &y, ldy: ldy)
                    for n in 0 ..< N {
                        for j in 0 ..< ldy {
                            let label = "avx512 \(avx512) transposed \(transposed) accumulate \(accumulate) [\(n), \(j)]"
                            guard j < o else { XCTAssertEqual(y[n * ldy + j], y0[n * ldy + j], label); continue }
                            let dot = (0 ..< k).reduce(0.0) {
                                $0 + Double(xs[n * ldxs + $1]) * Double(transposed ? w[j * K + $1] : w[$1 * K + j])
                            }
                            let want = dot + (accumulate ? Double(y0[n * ldy + j]) : 0)
                            XCTAssertEqual(Double(y[n * ldy + j]), want, accuracy: 1e-5 * max(1, abs(want)), label)
                        }
                    }
                }
            }
        }
    }

    /// The AVX-512 paths give the AVX2 paths' bits (a job may mix CPUs and stay replicated).
    func testInstructionSetsAgreeToTheBit() throws {
        try XCTSkipIf(Self.paths.count < 2, "this CPU has no AVX-512")
        for (N, K, O) in [(1, 3, 1), (29, 64, 100), (200, 128, 384), (37, 512, 128), (17, 1030, 100), (9, 64, 23), (11, 128, 33),
                          (3, 64, 1)] {
            let x = randomValues(N * K, seed: 11), w = randomValues(O * K, seed: 12), bias = randomValues(O, seed: 13)
            let r = randomValues(N * O, seed: 14), m = randomValues(N * O, seed: 15), g = randomValues(O * K, seed: 16)
            func run() -> [[Float]] {
                var y = r, v = r, dx = [Float](repeating: .nan, count: N * K)
                RowProduct.timesTransposed(x, rows: N, k: K, w, outputs: O, bias: bias, adding: r, into: &y)
                RowProduct.times(y, rows: N, k: O, w, outputs: K, accumulate: false, into: &dx)
                RowProduct.times(x, rows: N, k: K, w, outputs: O, accumulate: true, multiplying: m, into: &v)
                var dw2 = g, sums = bias
                RowProduct.accumulateTransposedTimes(v, x, rows: N, outputs: O, k: K, into: &dw2, columnSums: &sums)
                return [y, dx, v, dw2, sums]
            }
            RowProduct.useAVX512(false)
            let narrow = run()
            RowProduct.useAVX512(true)
            let wide = run()
            for (i, (p, q)) in zip(narrow, wide).enumerated() {
                XCTAssertEqual(p.map(\.bitPattern), q.map(\.bitPattern), "N \(N) K \(K) O \(O): product \(i)")
            }
        }
    }

    func check(N: Int, K: Int, O: Int, label: String) {
        // float sums of K unit-variance products: the rounding grows with K
        let tol: Float = 1e-5 * Float(max(1, K / 100))
        let x = randomValues(N * K, seed: UInt64(N + K), std: 1), w = randomValues(O * K, seed: UInt64(O), std: 1)
        let bias = randomValues(O, seed: 3), m = randomValues(N * O, seed: 4), y0 = randomValues(N * O, seed: 5)
        func dot(_ n: Int, _ o: Int, transposed: Bool) -> Double {
            (0 ..< K).reduce(0.0) { $0 + Double(x[n * K + $1]) * Double(transposed ? w[o * K + $1] : w[$1 * O + o]) }
        }
        // x·wᵀ + bias into rows three floats wider than the output: the extra columns stay untouched
        let ldy = O + 3
        var y = [Float](repeating: .nan, count: N * ldy)
        RowProduct.timesTransposed(x, rows: N, k: K, w, outputs: O, bias: bias, into: &y, ldy: ldy)
        var expected = (0 ..< N * O).map { Float(dot($0 / O, $0 % O, transposed: true) + Double(bias[$0 % O])) }
        assertClose((0 ..< N * O).map { y[($0 / O) * ldy + $0 % O] }, expected, relative: tol, "\(label): x·wᵀ + b")
        XCTAssert((0 ..< N).allSatisfy { n in y[n * ldy + O ..< n * ldy + ldy].allSatisfy(\.isNaN) }, "\(label): padding")

        var z = [Float](repeating: .nan, count: N * O)
        RowProduct.timesTransposed(x, rows: N, k: K, w, outputs: O, bias: nil, into: &z)
        expected = (0 ..< N * O).map { Float(dot($0 / O, $0 % O, transposed: true)) }
        assertClose(z, expected, relative: tol, "\(label): x·wᵀ")

        // a residual stream joined as the output is written: from another matrix, and in place
        let withResidual = (0 ..< N * O).map { Float(dot($0 / O, $0 % O, transposed: true) + Double(bias[$0 % O]) + Double(y0[$0])) }
        z = [Float](repeating: .nan, count: N * O)
        RowProduct.timesTransposed(x, rows: N, k: K, w, outputs: O, bias: bias, adding: y0, into: &z)
        assertClose(z, withResidual, relative: tol, "\(label): r + x·wᵀ + b")
        var inPlace = [Float](repeating: .nan, count: N * ldy)
        for n in 0 ..< N { for o in 0 ..< O { inPlace[n * ldy + o] = y0[n * O + o] } }
        inPlace.withUnsafeMutableBufferPointer { p in
            let q = p.baseAddress!
            RowProduct.timesTransposed(x, rows: N, k: K, w, outputs: O, bias: bias, adding: UnsafePointer(q), into: q, ldy: ldy)
        }
        assertClose((0 ..< N * O).map { inPlace[($0 / O) * ldy + $0 % O] }, withResidual, relative: tol,
                    "\(label): y += x·wᵀ + b in place")

        // x·w (w read as K × O): overwrite, accumulate, and multiplied on the way out
        let plain = (0 ..< N * O).map { dot($0 / O, $0 % O, transposed: false) }
        var v = [Float](repeating: .nan, count: N * O)
        RowProduct.times(x, rows: N, k: K, w, outputs: O, accumulate: false, into: &v)
        assertClose(v, plain.map { Float($0) }, relative: tol, "\(label): x·w")
        v = y0
        RowProduct.times(x, rows: N, k: K, w, outputs: O, accumulate: true, into: &v)
        assertClose(v, (0 ..< N * O).map { Float(plain[$0] + Double(y0[$0])) }, relative: tol, "\(label): y + x·w")
        v = [Float](repeating: .nan, count: N * O)
        RowProduct.times(x, rows: N, k: K, w, outputs: O, accumulate: false, multiplying: m, into: &v)
        assertClose(v, (0 ..< N * O).map { Float(plain[$0] * Double(m[$0])) }, relative: tol, "\(label): (x·w) ⊙ m")
    }
}
