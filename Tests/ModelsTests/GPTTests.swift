import TestSupport
import XCTest
@testable import Models
import Layers
@testable import Tensors

final class GPTTests: XCTestCase {
    func testDefaultModelHasNanoGPTNamesAndSize() {
        let gpt = GPT(config: GPTConfig(), maxBatch: 1)
        XCTAssertEqual(gpt.arena.count, 842_496, "the TTL protocol's parameter count")
        let names = gpt.arena.layout.entries.map(\.name)
        XCTAssertEqual(names.first, "transformer.wte.weight")
        XCTAssertEqual(names.last, "transformer.ln_f.bias")
        let block0 = ["ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias", "attn.c_proj.weight",
                      "attn.c_proj.bias", "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias",
                      "mlp.c_proj.weight", "mlp.c_proj.bias"].map { "transformer.h.0.\($0)" }
        XCTAssertEqual(Array(names[2 ..< 14]), block0)
        XCTAssertEqual(gpt.arena.layout.entry(named: "transformer.h.3.mlp.c_fc.weight")?.shape, [512, 128], "(out, in)")
        XCTAssertFalse(names.contains("lm_head.weight"), "the head is tied to wte")
    }

    func testGPT2Initialisation() {
        let gpt = GPT(config: GPTConfig(), maxBatch: 1)
        gpt.initialize(seed: 1337)
        func std(_ name: String) -> Double {
            let v = gpt.arena.values(of: name)!.map(Double.init)
            let m = v.reduce(0, +) / Double(v.count)
            return (v.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(v.count)).squareRoot()
        }
        XCTAssertEqual(std("transformer.wte.weight"), 0.02, accuracy: 0.0005)
        XCTAssertEqual(std("transformer.h.0.attn.c_attn.weight"), 0.02, accuracy: 0.0005)
        XCTAssertEqual(std("transformer.h.1.mlp.c_proj.weight"), 0.02 / 8.0.squareRoot(), accuracy: 0.0002)
        XCTAssertEqual(std("transformer.h.2.attn.c_proj.weight"), 0.02 / 8.0.squareRoot(), accuracy: 0.0002)
        XCTAssert(gpt.arena.values(of: "transformer.h.0.mlp.c_fc.bias")!.allSatisfy { $0 == 0 })
        XCTAssert(gpt.arena.values(of: "transformer.ln_f.weight")!.allSatisfy { $0 == 1 })
        let again = GPT(config: GPTConfig(), maxBatch: 1)
        again.initialize(seed: 1337)
        XCTAssertEqual(again.arena.parameters.array, gpt.arena.parameters.array, "initialisation is a pure function of the seed")
    }

    func testGradientsMatchFiniteDifferences() {
        for dropout: Float in [0, 0.1] {
            let cfg = GPTConfig(vocabSize: 11, blockSize: 5, nLayer: 2, nHead: 2, nEmbd: 8, dropout: dropout)
            let gpt = GPT(config: cfg, maxBatch: 2)
            gpt.initialize(seed: 3)
            fillRandom(gpt.arena.parameters.pointer, count: gpt.arena.count, seed: 4, std: 0.3)
            let tokens: [Int32] = [1, 5, 3, 10, 0, 2, 2, 7, 9, 4]
            let targets: [Int32] = [5, 3, 10, 0, 6, 2, 7, 9, 4, -1]
            let loss = { () -> Double in
                tokens.withUnsafeBufferPointer { t in
                    targets.withUnsafeBufferPointer { y in
                        gpt.forward(tokens: t.baseAddress!, targets: y.baseAddress!, batch: 2, time: 5, firstSample: 4,
                                    seed: 9, training: true).loss
                    }
                }
            }
            _ = loss()
            gpt.arena.gradients.zero()
            gpt.backward(lossScale: 1)
            let analytic = gpt.arena.gradients.array
            XCTAssertGreaterThan(analytic.map { abs($0) }.max()!, 0)
            assertGradientsMatch(gpt.arena.parameters.pointer, analytic: analytic, indices: Array(stride(from: 0, to: analytic.count, by: 3)),
                                 eps: 5e-3, tolerance: 1e-2, "GPT (dropout \(dropout))", loss: loss)
        }
    }

    /// The training pass (blocks of sequences taken depth first through the layers and back)
    /// gives forward and backward's loss and gradients to the bit: with dropout, causal or not,
    /// a batch whose last block is short, targets ignored, and gradients accumulated onto old ones;
    /// the evaluation loss taken the same way gives forward's without training.
    func testTrainingPassEqualsForwardThenBackward() {
        for (causal, dropout) in [(true, Float(0.1)), (false, Float(0)), (true, Float(0))] {
            let cfg = GPTConfig(vocabSize: 13, blockSize: 6, nLayer: 2, nHead: 2, nEmbd: 8, dropout: dropout, causal: causal)
            let B = 5, T = 6
            let tokens: [Int32] = (0 ..< B * T).map { i in Int32((i * 7 + 3) % 13) }
            var targets = [Int32](repeating: 0, count: B * T)
            for i in targets.indices { targets[i] = i % 9 == 4 ? CrossEntropy.ignoreIndex : Int32((i * 5 + 1) % 13) }
            var results: [(loss: Double, count: Int, gradients: [Float])] = []
            for depthFirst in [false, true] {
                let gpt = GPT(config: cfg, maxBatch: B, rowsPerBlock: 2 * T)
                gpt.initialize(seed: 3)
                fillRandom(gpt.arena.parameters.pointer, count: gpt.arena.count, seed: 4, std: 0.3)
                fillRandom(gpt.arena.gradients.pointer, count: gpt.arena.count, seed: 5, std: 0.1)
                let r = tokens.withUnsafeBufferPointer { t in
                    targets.withUnsafeBufferPointer { y -> (Double, Int) in
                        if depthFirst {
                            let p = gpt.trainingPass(tokens: t.baseAddress!, targets: y.baseAddress!, batch: B, time: T,
                                                     firstSample: 7, seed: 9)
                            XCTAssertGreaterThan(p.forwardSeconds, 0)
                            XCTAssertGreaterThan(p.backwardSeconds, 0)
                            return (p.loss, p.count)
                        }
                        let r = gpt.forward(tokens: t.baseAddress!, targets: y.baseAddress!, batch: B, time: T,
                                            firstSample: 7, seed: 9, training: true)
                        gpt.backward(lossScale: 1)
                        return r
                    }
                }
                results.append((r.0, r.1, gpt.arena.gradients.array))
            }
            let label = "causal \(causal), dropout \(dropout)"
            let gpt = GPT(config: cfg, maxBatch: B, rowsPerBlock: 2 * T)
            fillRandom(gpt.arena.parameters.pointer, count: gpt.arena.count, seed: 4, std: 0.3)
            let evaluations = tokens.withUnsafeBufferPointer { t in
                targets.withUnsafeBufferPointer { y in
                    [gpt.forward(tokens: t.baseAddress!, targets: y.baseAddress!, batch: B, time: T, firstSample: 7, seed: 9,
                                 training: false),
                     gpt.evaluationLoss(tokens: t.baseAddress!, targets: y.baseAddress!, batch: B, time: T, firstSample: 7,
                                        seed: 9)]
                }
            }
            XCTAssertEqual(evaluations[1].loss.bitPattern, evaluations[0].loss.bitPattern, "evaluation: \(label)")
            XCTAssertEqual(evaluations[1].count, evaluations[0].count, "evaluation: \(label)")
            XCTAssertEqual(results[0].count, targets.filter { $0 != CrossEntropy.ignoreIndex }.count, label)
            XCTAssertEqual(results[1].count, results[0].count, label)
            XCTAssertEqual(results[1].loss.bitPattern, results[0].loss.bitPattern, label)
            let differing = zip(results[0].gradients, results[1].gradients).filter { $0.bitPattern != $1.bitPattern }.count
            XCTAssertEqual(differing, 0, "gradients differing, of \(results[0].gradients.count): \(label)")
        }
    }

    /// A pass stopped after j sequences and finished by another replica (as the faster of two
    /// ranks finishes the slower one's: from its gradients, embedding-gradient rows and loss, into
    /// a second gradient buffer, with the weights as its own pass packed them) equals the whole
    /// pass to the bit, and leaves the finishing replica's own gradients as they were.
    func testAPassFinishedByAnotherReplicaEqualsTheWholePass() {
        let cfg = GPTConfig(vocabSize: 13, blockSize: 6, nLayer: 2, nHead: 2, nEmbd: 8, dropout: 0.1, causal: true)
        let B = 5, T = 6, C = 8
        let tokens: [Int32] = (0 ..< B * T).map { i in Int32((i * 7 + 3) % 13) }
        let targets: [Int32] = (0 ..< B * T).map { i in Int32((i * 5 + 1) % 13) }
        func replica() -> GPT {
            let gpt = GPT(config: cfg, maxBatch: B, rowsPerBlock: 2 * T)
            fillRandom(gpt.arena.parameters.pointer, count: gpt.arena.count, seed: 4, std: 0.3)
            return gpt
        }
        tokens.withUnsafeBufferPointer { t in
            targets.withUnsafeBufferPointer { y in
                let (tp, yp) = (t.baseAddress!, y.baseAddress!)
                let whole = replica()
                XCTAssertTrue(whole.splitsPass(batch: B))
                let all = whole.trainingPass(tokens: tp, targets: yp, batch: B, time: T, firstSample: 7, seed: 9)
                for j in 1 ..< B {
                    let slow = replica(), fast = replica()
                    _ = fast.trainingPass(tokens: tp, targets: yp, batch: B, time: T, firstSample: 7, seed: 9) // its own
                    let part = slow.trainingPass(tokens: tp, targets: yp, batch: B, time: T, firstSample: 7, seed: 9,
                                                 sequences: 0 ..< j, continuing: (0, 0), packing: true)
                    let spare = FloatBuffer(count: slow.arena.count)
                    spare.pointer.update(from: slow.arena.gradients.pointer, count: slow.arena.count)
                    fast.embeddingGradientRows.update(from: slow.embeddingGradientRows, count: j * T * C)
                    let rest = fast.arena.accumulatingGradients(in: spare) {
                        fast.trainingPass(tokens: tp, targets: yp, batch: B, time: T, firstSample: 7, seed: 9,
                                          sequences: j ..< B, continuing: (part.loss, part.count), packing: false)
                    }
                    XCTAssertEqual(rest.loss.bitPattern, all.loss.bitPattern, "split after \(j)")
                    XCTAssertEqual(rest.count, all.count, "split after \(j)")
                    let expected = whole.arena.gradients.array
                    XCTAssertEqual(zip(spare.array, expected).filter { $0.bitPattern != $1.bitPattern }.count, 0, "split after \(j)")
                    XCTAssertEqual(zip(fast.arena.gradients.array, expected).filter { $0.bitPattern != $1.bitPattern }.count, 0,
                                   "the finishing replica's own gradients, split after \(j)")
                }
            }
        }
    }
}
