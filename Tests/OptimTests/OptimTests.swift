import TestSupport
import XCTest
@testable import Optim
@testable import Tensors

final class ScheduleTests: XCTestCase {
    func testWarmupCosineFollowsTheProtocol() {
        let s = LRSchedule.warmupCosine(lr: 1e-3, warmup: 100, decaySteps: 3000, minLR: 1e-4)
        XCTAssertEqual(s.lr(at: 0), 0)
        XCTAssertEqual(s.lr(at: 50), 5e-4, accuracy: 1e-12)
        XCTAssertEqual(s.lr(at: 100), 1e-3, accuracy: 1e-12)
        XCTAssertEqual(s.lr(at: 1550), 5.5e-4, accuracy: 1e-12, "half-way down the cosine")
        XCTAssertEqual(s.lr(at: 3000), 1e-4, accuracy: 1e-12)
        XCTAssertEqual(s.lr(at: 5000), 1e-4)
        for step in 100 ..< 3000 { XCTAssertGreaterThanOrEqual(s.lr(at: step), s.lr(at: step + 1)) }
    }

    func testConstantAndWarmup() {
        XCTAssertEqual(LRSchedule.constant(lr: 0.1).lr(at: 7), 0.1)
        let w = LRSchedule.warmup(lr: 0.2, warmup: 4)
        XCTAssertEqual([0, 1, 2, 4, 9].map { w.lr(at: $0) }, [0, 0.05, 0.1, 0.2, 0.2])
    }
}

final class ClippingTests: XCTestCase {
    func testClipScaleIsPyTorchs() {
        let big = clipScale(norm: 4, maxNorm: 1)
        XCTAssertEqual(big.norm, 4)
        XCTAssertEqual(big.scale, 1 / Float(4 + 1e-6), accuracy: 1e-9)
        XCTAssertEqual(clipScale(norm: 0.5, maxNorm: 1).scale, 1, "no clipping below the threshold")
        XCTAssertEqual(clipScale(norm: 10, maxNorm: nil).scale, 1)
        XCTAssertEqual(clipScale(norm: 10, maxNorm: 0).scale, 1, "0 disables clipping")
    }

    func testGlobalNormIsTheL2NormOfEverything() {
        let g = FloatBuffer([3, 0, 4, 12])
        XCTAssertEqual(globalNorm(g.pointer, count: 4), 13, accuracy: 1e-9)
    }
}

final class AdamWTests: XCTestCase {
    /// Scalar reference of PyTorch's AdamW in Double.
    func reference(p0: Double, grads: [Double], lrs: [Double], wd: Double, b1: Double = 0.9, b2: Double = 0.99,
                   eps: Double = 1e-8) -> Double {
        var p = p0, m = 0.0, v = 0.0
        for (t, (g, lr)) in zip(grads, lrs).enumerated() {
            p *= 1 - lr * wd
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            let bc1 = 1 - pow(b1, Double(t + 1)), bc2 = 1 - pow(b2, Double(t + 1))
            p -= lr / bc1 * m / (v.squareRoot() / bc2.squareRoot() + eps)
        }
        return p
    }

    func testMatchesTheReferenceAndDecaysOnlyMatrices() {
        var layout = ParameterLayout()
        layout.add("w", [2, 2])
        layout.add("b", [2])
        let arena = ParameterArena(layout: layout)
        let p0: [Float] = [0.5, -1, 2, 0.25, 1, -0.5]
        for i in 0 ..< 6 { arena.parameters[i] = p0[i] }
        let opt = AdamW(layout: layout, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.1)
        let grads: [[Float]] = (0 ..< 5).map { randomValues(6, seed: UInt64(10 + $0)) }
        let lrs = [0.0, 0.01, 0.02, 0.015, 0.01]
        for (g, lr) in zip(grads, lrs) {
            for i in 0 ..< 6 { arena.gradients[i] = 2 * g[i] }
            opt.update(arena, lr: lr, gradScale: 0.5)    // the scale is applied to the gradient
        }
        XCTAssertEqual(opt.step, 5)
        for i in 0 ..< 6 {
            let expected = reference(p0: Double(p0[i]), grads: grads.map { Double($0[i]) }, lrs: lrs, wd: i < 4 ? 0.1 : 0)
            XCTAssertEqual(Double(arena.parameters[i]), expected, accuracy: 1e-6, "element \(i)")
        }
    }

    func testDecayPolicyAllDecaysBiases() {
        var layout = ParameterLayout()
        layout.add("b", [1])
        let arena = ParameterArena(layout: layout)
        arena.parameters[0] = 1
        let opt = AdamW(layout: layout, weightDecay: 0.5, decayPolicy: .all)
        opt.update(arena, lr: 0.1)    // zero gradient: only decay moves it
        XCTAssertEqual(arena.parameters[0], 0.95, accuracy: 1e-7)
    }
}
