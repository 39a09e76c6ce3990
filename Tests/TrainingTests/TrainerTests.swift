import Foundation
import TestSupport
import XCTest
@testable import Training

/// A small, learnable corpus and a tiny model: fast in a debug build.
func tinyConfig(dropout: Float = 0, micro: Int = 4, global: Int = 8, steps: Int = 30) -> Config {
    var c = Config()
    c.model.nLayer = 1; c.model.nHead = 2; c.model.nEmbd = 16; c.model.blockSize = 16; c.model.dropout = dropout
    c.batch.microBatch = micro; c.batch.globalBatch = global
    c.optimizer.lr = 1e-2
    c.schedule.kind = "warmup-cosine"; c.schedule.warmup = 5; c.schedule.decaySteps = steps; c.schedule.minLR = 1e-3
    c.training.steps = steps; c.training.evalWindows = 8; c.training.evalInterval = 10
    return c
}

func tinyData() -> Dataset {
    let text = String(repeating: "the quick brown fox jumps over the lazy dog. ", count: 60)
    return Dataset(tokens: ByteTokenizer.encode(text), valFraction: 0.1, source: "test")
}

final class TrainerTests: XCTestCase {
    func testTrainingLowersTheValidationLoss() throws {
        let trainer = try Trainer(config: tinyConfig(), data: tinyData())
        let before = trainer.evaluate()
        XCTAssertEqual(before.loss, log(256), accuracy: 0.3, "an initialised model is near uniform")
        var last = 0.0
        for s in 0 ..< 30 { last = trainer.step(s).loss }
        let after = trainer.evaluate()
        XCTAssertLessThan(after.loss, before.loss - 2, "val loss \(before.loss) → \(after.loss)")
        XCTAssertLessThan(last, 3.5)
        XCTAssertEqual(after.tokens, 8 * 16)
        XCTAssertEqual(after.perplexity, exp(after.loss), accuracy: 1e-9)
    }

    /// One micro-batch of 4 equals two accumulated micro-batches of 2 (same global samples),
    /// with and without dropout, because masks are keyed by global sample.
    func testAccumulationMatchesOneLargeMicroBatch() throws {
        for p: Float in [0, 0.1] {
            let big = try Trainer(config: tinyConfig(dropout: p, micro: 4, global: 4), data: tinyData())
            let small = try Trainer(config: tinyConfig(dropout: p, micro: 2, global: 4), data: tinyData())
            XCTAssertEqual(small.accumulation, 2)
            for s in 0 ..< 3 {
                let a = big.step(s), b = small.step(s)
                XCTAssertEqual(a.loss, b.loss, accuracy: 1e-5)
                XCTAssertEqual(a.gradNorm, b.gradNorm, accuracy: 1e-4 * a.gradNorm)
            }
            let d = relativeError(small.model.arena.parameters.array, big.model.arena.parameters.array)
            XCTAssertLessThan(d, 1e-5, "dropout \(p)")
        }
    }

    func testDropoutChangesTrainingButNotEval() throws {
        let plain = try Trainer(config: tinyConfig(dropout: 0), data: tinyData())
        let dropped = try Trainer(config: tinyConfig(dropout: 0.2), data: tinyData())
        XCTAssertEqual(plain.evaluate().loss, dropped.evaluate().loss, "same init, eval has no dropout")
        XCTAssertNotEqual(plain.step(0).loss, dropped.step(0).loss)
    }

    func testRefusesAGlobalBatchTheRanksDoNotDivide() {
        XCTAssertThrowsError(try Trainer(config: tinyConfig(micro: 4, global: 12), data: tinyData(), comm: FakeRanks(size: 2))) {
            XCTAssert("\($0)".contains("not divisible"))
        }
    }

    func testWeightsRoundTripGivesTheSameLoss() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lockstep-w-\(getpid())")
        defer { try? FileManager.default.removeItem(at: dir) }
        let cfg = tinyConfig()
        let trainer = try Trainer(config: cfg, data: tinyData())
        for s in 0 ..< 3 { trainer.step(s) }
        let path = dir.appendingPathComponent("model.safetensors").path
        try Weights.save(trainer.model.arena, config: cfg, step: 3, path: path)
        XCTAssertEqual(try Weights.config(path: path), cfg)
        let loaded = try Trainer(config: cfg, data: tinyData(), initFrom: path)
        XCTAssertEqual(loaded.model.arena.parameters.array, trainer.model.arena.parameters.array)
        XCTAssertEqual(loaded.evaluate().loss, trainer.evaluate().loss)
        var other = cfg
        other.model.nEmbd = 32
        XCTAssertThrowsError(try Trainer(config: other, data: tinyData(), initFrom: path)) { XCTAssert("\($0)".contains("shape")) }
    }
}

/// Reports a rank count without communicating (for checks made before any collective).
final class FakeRanks: Communicator {
    let size: Int
    init(size: Int) { self.size = size }
    var rank: Int { 0 }
    func allReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) {}
    func allReduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int) {}
    func allReduceSum(_ buffer: UnsafeMutablePointer<Int64>, count: Int) {}
    func broadcast(_ bytes: UnsafeMutableRawPointer, count: Int, root: Int) {}
    func send(_ bytes: UnsafeRawPointer, count: Int, to rank: Int) {}
    func receive(_ bytes: UnsafeMutableRawPointer, count: Int, from rank: Int) {}
    func barrier() {}
    func abort(_ message: String) -> Never { fatalError(message) }
}
