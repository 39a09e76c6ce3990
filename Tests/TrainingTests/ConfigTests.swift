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
