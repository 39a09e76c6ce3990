import Foundation
import TestSupport
import XCTest
@testable import Training

final class ConfigTests: XCTestCase {
    func decode(_ json: String) throws -> Config { try Config.decode(Data(json.utf8), source: "test.json") }

    func expectError(_ json: String, mentions: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try decode(json), file: file, line: line) { error in
            let text = "\(error)"
            XCTAssert(text.contains(mentions), "'\(text)' should mention '\(mentions)'", file: file, line: line)
            XCTAssertFalse(text.contains("\n"), "one line", file: file, line: line)
        }
    }

    func testDefaultsAreTheShakespeareRecipe() throws {
        let c = try decode("{}")
        XCTAssertEqual(c.model.nLayer, 4); XCTAssertEqual(c.model.nHead, 4); XCTAssertEqual(c.model.nEmbd, 128)
        XCTAssertEqual(c.model.blockSize, 128); XCTAssertEqual(c.batch.microBatch, 16); XCTAssertEqual(c.batch.globalBatch, 32)
        XCTAssertEqual(c.optimizer.lr, 1e-3); XCTAssertEqual(c.optimizer.betas, [0.9, 0.99]); XCTAssertEqual(c.optimizer.weightDecay, 0.1)
        XCTAssertEqual(c.schedule.warmup, 100); XCTAssertEqual(c.schedule.decaySteps, 3000); XCTAssertEqual(c.schedule.minLR, 1e-4)
        XCTAssertEqual(c.optimizer.clip, 1.0); XCTAssertEqual(c.model.dropout, 0)
    }

    func testShippedConfigsLoad() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let dir = root.appendingPathComponent("configs")
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".json") }
        XCTAssert(files.contains("shakespeare-gpt.json"))
        for f in files { _ = try Config.load(path: dir.appendingPathComponent(f).path) }
        var expected = try decode("{}")
        expected.training.outputDir = "runs/shakespeare-gpt"
        XCTAssertEqual(try Config.load(path: dir.appendingPathComponent("shakespeare-gpt.json").path), expected)
    }

    func testUnknownKeyIsRefusedByName() {
        expectError(#"{"model": {"n_layers": 4}}"#, mentions: "model.n_layers")
        expectError(#"{"trainig": {}}"#, mentions: "trainig")
    }

    func testWrongTypeIsRefusedByName() {
        expectError(#"{"model": {"n_embd": "128"}}"#, mentions: "model.n_embd")
        expectError(#"{"optimizer": {"betas": [0.9, "x"]}}"#, mentions: "optimizer.betas")
    }

    func testImpossibleValuesAreRefusedByName() {
        expectError(#"{"model": {"n_embd": 130, "n_head": 4}}"#, mentions: "model.n_embd")
        expectError(#"{"model": {"dropout": 1.5}}"#, mentions: "model.dropout")
        expectError(#"{"batch": {"micro_batch": 5, "global_batch": 32}}"#, mentions: "batch.global_batch")
        expectError(#"{"schedule": {"kind": "cosine-ish"}}"#, mentions: "schedule.kind")
        expectError(#"{"optimizer": {"lr": -1}}"#, mentions: "optimizer.lr")
        expectError(#"{"model": {"gelu": "relu"}}"#, mentions: "model.gelu")
    }

    func testMalformedJSONIsRefused() {
        expectError(#"{"model": "#, mentions: "not valid JSON")
    }

    func testMissingFileIsRefused() {
        XCTAssertThrowsError(try Config.load(path: "/nonexistent/cfg.json")) { XCTAssert("\($0)".contains("/nonexistent/cfg.json")) }
    }

    func testCanonicalJSONRoundTrips() throws {
        var c = Config()
        c.model.dropout = 0.1
        c.training.seed = 99
        XCTAssertEqual(try decode(c.canonicalJSON()), c)
    }
}

final class KindsTests: XCTestCase {
    func testUnknownKindsAreRefusedNamingTheAllowedOnes() {
        XCTAssertThrowsError(try Config.decode(Data(#"{"optimizer": {"kind": "lion"}}"#.utf8), source: "t")) {
            XCTAssert("\($0)".contains("optimizer.kind") && "\($0)".contains("sgd, adam, adamw"), "\($0)")
        }
        XCTAssertThrowsError(try Config.decode(Data(#"{"schedule": {"kind": "step"}}"#.utf8), source: "t")) {
            XCTAssert("\($0)".contains("schedule.kind") && "\($0)".contains("inverse-sqrt, linear"), "\($0)")
        }
        XCTAssertThrowsError(try Config.decode(Data(#"{"optimizer": {"kind": "sgd", "momentum": 0, "nesterov": true}}"#.utf8), source: "t")) {
            XCTAssert("\($0)".contains("optimizer.nesterov"), "\($0)")
        }
    }

    func testEveryOptimizerAndScheduleTrainsAndResumesExactly() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lockstep-kinds-\(getpid())")
        defer { try? FileManager.default.removeItem(at: dir) }
        for (opt, sched) in [("sgd", "linear"), ("adam", "inverse-sqrt"), ("adamw", "constant")] {
            var c = tinyConfig(dropout: 0.1, micro: 2, global: 4, steps: 6)
            c.optimizer.kind = opt
            c.optimizer.lr = opt == "sgd" ? 0.3 : 0.01
            c.schedule.kind = sched
            c.training.checkpointInterval = 3
            c.training.evalInterval = 3
            c.training.outputDir = dir.appendingPathComponent("full-\(opt)").path
            let full = try Trainer(config: c, data: tinyData())
            let before = full.evaluate().loss
            try full.run(console: Console(rank: 1))
            XCTAssertLessThan(full.evaluate().loss, before, "\(opt)/\(sched) learns")
            // resume the same run from its step-3 checkpoint
            let resumed = try Trainer(config: c, data: tinyData())
            let ckpt = try Checkpoint.read("\(c.training.outputDir)/checkpoints/step-00000003", layout: resumed.model.arena.layout)
            try resumed.restore(ckpt)
            try resumed.run(console: Console(rank: 1))
            XCTAssertEqual(resumed.model.arena.parameters.array, full.model.arena.parameters.array, "\(opt) resumes exactly")
            for ((name, a), (_, b)) in zip(resumed.optimizer.state, full.optimizer.state) {
                XCTAssertEqual(a.array, b.array, "\(opt) state \(name)")
            }
        }
    }
}
