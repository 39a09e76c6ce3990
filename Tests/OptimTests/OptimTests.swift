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

final class MoreSchedulesTests: XCTestCase {
    func testInverseSquareRoot() {
        let s = LRSchedule.inverseSqrt(lr: 1.0, warmup: 4)
        XCTAssertEqual(s.lr(at: 0), 0)
        XCTAssertEqual(s.lr(at: 2), 2 * pow(4, -1.5), accuracy: 1e-12, "warming up linearly")
        XCTAssertEqual(s.lr(at: 4), 0.5, accuracy: 1e-12, "peak lr/√warmup at step warmup")
        XCTAssertEqual(s.lr(at: 16), 0.25, accuracy: 1e-12, "then step^−½")
    }

    func testLinearDecay() {
        let s = LRSchedule.linear(lr: 0.1, warmup: 2, decaySteps: 8, minLR: 0.01)
        XCTAssertEqual(s.lr(at: 1), 0.05, accuracy: 1e-12)
        XCTAssertEqual(s.lr(at: 2), 0.1, accuracy: 1e-12)
        XCTAssertEqual(s.lr(at: 5), 0.055, accuracy: 1e-12)
        XCTAssertEqual(s.lr(at: 8), 0.01, accuracy: 1e-12)
        XCTAssertEqual(s.lr(at: 100), 0.01)
    }
}

final class SGDAndAdamTests: XCTestCase {
    func arena(_ values: [Float]) -> ParameterArena {
        var layout = ParameterLayout()
        layout.add("w", [2, 2])
        layout.add("b", [values.count - 4])
        let a = ParameterArena(layout: layout)
        for i in values.indices { a.parameters[i] = values[i] }
        return a
    }

    func testSGDWithMomentumAndNesterovMatchTheReference() {
        for nesterov in [false, true] {
            let p0: [Float] = [0.5, -1, 2, 0.25, 1, -0.5]
            let a = arena(p0)
            let opt = SGD(layout: a.layout, momentum: 0.9, nesterov: nesterov, weightDecay: 0.01)
            let grads = (0 ..< 4).map { randomValues(6, seed: UInt64(20 + $0)) }
            var p = p0.map(Double.init), buf = [Double](repeating: 0, count: 6)
            for (k, g) in grads.enumerated() {
                for i in 0 ..< 6 { a.gradients[i] = g[i] }
                let lr = 0.1 / Double(k + 1)
                opt.update(a, lr: lr, gradScale: 1)
                for i in 0 ..< 6 {
                    let d = Double(g[i]) + (i < 4 ? 0.01 : 0) * p[i]
                    buf[i] = 0.9 * buf[i] + d
                    p[i] -= lr * (nesterov ? d + 0.9 * buf[i] : buf[i])
                }
            }
            for i in 0 ..< 6 { XCTAssertEqual(Double(a.parameters[i]), p[i], accuracy: 1e-5, "nesterov \(nesterov), element \(i)") }
            XCTAssertEqual(opt.state.map(\.name), ["momentum_buffer"])
        }
    }

    func testPlainSGDHasNoState() {
        let a = arena([1, 2, 3, 4, 5])
        let opt = SGD(layout: a.layout)
        for i in 0 ..< 5 { a.gradients[i] = 1 }
        opt.update(a, lr: 0.5, gradScale: 2)
        XCTAssertEqual(a.parameters.array, [0, 1, 2, 3, 4])
        XCTAssert(opt.state.isEmpty)
    }

    /// Adam with L2 and AdamW decouple weight decay differently, so with the same gradients they
    /// move the parameters apart; without weight decay they coincide.
    func testAdamWithL2DiffersFromAdamW() {
        let p0: [Float] = [2, -3, 1.5, 4, 0.5, -1]
        let grads = (0 ..< 5).map { randomValues(6, seed: UInt64(40 + $0), std: 0.1) }
        func run(_ make: (ParameterLayout) -> Optimizer) -> [Float] {
            let a = arena(p0)
            let opt = make(a.layout)
            for g in grads {
                for i in 0 ..< 6 { a.gradients[i] = g[i] }
                opt.update(a, lr: 0.01, gradScale: 1)
            }
            return a.parameters.array
        }
        let adam = run { Adam(layout: $0, weightDecay: 0.1) }
        let adamw = run { AdamW(layout: $0, weightDecay: 0.1) }
        XCTAssertGreaterThan(zip(adam, adamw).map { abs($0 - $1) }.max()!, 1e-3, "different updates with weight decay")
        XCTAssertEqual(Array(adam[4...]), Array(adamw[4...]), "the undecayed bias sees the same update")
        XCTAssertEqual(run { Adam(layout: $0, weightDecay: 0) }, run { AdamW(layout: $0, weightDecay: 0) })
    }
}
