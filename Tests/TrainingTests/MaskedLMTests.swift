import Foundation
import TestSupport
import XCTest
@testable import Training

final class MaskedLMTests: XCTestCase {
    func testMaskingFollowsBERTsProportions() {
        let T = 128, n = 200
        let m = MaskedLM(dataVocab: 256, seed: 3)
        let original = (0 ..< n * T).map { Int32($0 % 200) }
        var inputs = original, targets = [Int32](repeating: 0, count: n * T)
        inputs.withUnsafeMutableBufferPointer { i in
            targets.withUnsafeMutableBufferPointer { t in m.apply(inputs: i.baseAddress!, targets: t.baseAddress!, count: n, time: T, first: 0, validation: false) }
        }
        let chosen = (0 ..< n * T).filter { targets[$0] != -1 }
        XCTAssertEqual(Double(chosen.count) / Double(n * T), 0.15, accuracy: 0.01)
        XCTAssert(chosen.allSatisfy { targets[$0] == original[$0] }, "targets are the original tokens")
        XCTAssert((0 ..< n * T).filter { targets[$0] == -1 }.allSatisfy { inputs[$0] == original[$0] }, "others untouched")
        let masked = chosen.filter { inputs[$0] == 256 }.count
        let kept = chosen.filter { inputs[$0] == original[$0] }.count
        XCTAssertEqual(Double(masked) / Double(chosen.count), 0.8, accuracy: 0.02)
        XCTAssertEqual(Double(kept) / Double(chosen.count), 0.1 + 0.1 / 256, accuracy: 0.02, "10% kept (and a random token may equal the original)")
        XCTAssert(inputs.allSatisfy { $0 >= 0 && $0 <= 256 })
    }

    func testMasksAreKeyedByGlobalSample() {
        let T = 32
        let m = MaskedLM(dataVocab: 256, seed: 9)
        let window = (0 ..< T).map { Int32($0) }
        func masked(batch: Int, first: Int, pick: Int, validation: Bool = false) -> ([Int32], [Int32]) {
            var inputs = Array((0 ..< batch).map { _ in window }.joined()), targets = [Int32](repeating: 0, count: batch * T)
            inputs.withUnsafeMutableBufferPointer { i in
                targets.withUnsafeMutableBufferPointer { t in m.apply(inputs: i.baseAddress!, targets: t.baseAddress!, count: batch, time: T, first: first, validation: validation) }
            }
            return (Array(inputs[(pick * T) ..< ((pick + 1) * T)]), Array(targets[(pick * T) ..< ((pick + 1) * T)]))
        }
        let inBatch = masked(batch: 4, first: 10, pick: 2), alone = masked(batch: 1, first: 12, pick: 0)
        XCTAssertEqual(inBatch.0, alone.0)
        XCTAssertEqual(inBatch.1, alone.1)
        XCTAssertNotEqual(masked(batch: 1, first: 12, pick: 0, validation: true).1, alone.1, "validation windows have their own masks")
    }

    func testMaskedLMTrainsAndAccumulationMatchesOneMicroBatch() throws {
        var c = tinyConfig(dropout: 0.1, micro: 4, global: 4, steps: 30)
        c.model.kind = "mlm"
        let big = try Trainer(config: c, data: tinyData())
        XCTAssertEqual(big.model.vocabSize, 257, "the [MASK] token is added to the vocabulary")
        c.batch.microBatch = 2
        let small = try Trainer(config: c, data: tinyData())
        let before = big.evaluate()
        XCTAssertLessThan(Double(before.tokens), 0.25 * 8 * 16, "loss only at the chosen positions")
        for s in 0 ..< 3 {
            let a = big.step(s), b = small.step(s)
            XCTAssertEqual(a.tokens, b.tokens)
            XCTAssertEqual(a.loss, b.loss, accuracy: 1e-5)
        }
        XCTAssertLessThan(relativeError(small.model.arena.parameters.array, big.model.arena.parameters.array), 1e-5)
        for s in 3 ..< 30 { big.step(s) }
        XCTAssertLessThan(big.evaluate().loss, before.loss - 1, "\(before.loss) → \(big.evaluate().loss)")
    }
}
