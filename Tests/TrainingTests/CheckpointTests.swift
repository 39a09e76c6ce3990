import Foundation
import TestSupport
import XCTest
@testable import Training

final class CheckpointTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("lockstep-ckpt-\(getpid())-\(abs(name.hashValue))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(at: dir) }

    func config(steps: Int, interval: Int = 2, dropout: Float = 0.1, output: String = "run", keep: Int = 2) -> Config {
        var c = tinyConfig(dropout: dropout, micro: 2, global: 4, steps: steps)
        c.training.checkpointInterval = interval
        c.training.evalInterval = 3
        c.training.keepCheckpoints = keep
        c.training.outputDir = dir.appendingPathComponent(output).path
        return c
    }

    func trainer(_ c: Config) throws -> Trainer { try Trainer(config: c, data: tinyData()) }
    var silent: Console { Console(rank: 1) }

    func trainLosses(_ output: String) throws -> [String] {
        let text = try String(contentsOfFile: dir.appendingPathComponent("\(output)/metrics.jsonl").path, encoding: .utf8)
        return text.split(separator: "\n").map { line in
            // drop the timing fields, keep type, step and the values
            line.split(separator: ",").filter { !$0.contains("tokens_per_s") && !$0.contains("wall_s") }.joined(separator: ",")
        }
    }

    func testResumedRunIsBitIdenticalToAnUninterruptedOne() throws {
        let full = try trainer(config(steps: 9, output: "full"))
        try full.run(console: silent)

        // the same run, as if it had died after step 5: keep only the checkpoints up to step 4
        let partCfg = config(steps: 9, output: "part", keep: 10)
        let first = try trainer(partCfg)
        try first.run(console: silent)
        let root = dir.appendingPathComponent("part/checkpoints").path
        for name in try FileManager.default.contentsOfDirectory(atPath: root) where Checkpoint.step(ofDirectory: name).map({ $0 > 4 }) ?? false {
            try FileManager.default.removeItem(atPath: "\(root)/\(name)")
        }
        let resumed = try trainer(partCfg)
        let (ckpt, notes) = try resumed.locateCheckpoint("auto")
        XCTAssertEqual(ckpt?.state.step, 4, "the pointer's target is gone: the newest remaining one is used")
        XCTAssert(notes.isEmpty || notes.allSatisfy { !$0.contains("refused") }, "\(notes)")
        try resumed.restore(try XCTUnwrap(ckpt))
        XCTAssertEqual(resumed.startStep, 4)
        try resumed.run(console: silent)

        XCTAssertEqual(resumed.model.arena.parameters.array, full.model.arena.parameters.array, "parameters")
        XCTAssertEqual(resumed.optimizer.state.map(\.name), ["exp_avg", "exp_avg_sq"])
        for ((name, a), (_, b)) in zip(resumed.optimizer.state, full.optimizer.state) {
            XCTAssertEqual(a.array, b.array, "optimizer state \(name)")
        }
        XCTAssertEqual(resumed.optimizer.step, 9)
        let a = try trainLosses("full"), b = try trainLosses("part")
        XCTAssertEqual(a, b, "every logged loss, once, in order")
        XCTAssertEqual(a.filter { $0.contains("\"train\"") }.count, 9)
    }

    func testTheWallBudgetEndsTheRunWithAnEvaluationAndACheckpoint() throws {
        var c = config(steps: 100_000, interval: 0)
        c.training.wallBudgetS = 0.3
        let t = try trainer(c)
        try t.run(console: silent)
        let lines = try trainLosses("run")
        let lastEval = try XCTUnwrap(lines.last)
        XCTAssert(lastEval.hasPrefix("{\"type\":\"eval\""), lastEval)
        let trained = lines.filter { $0.contains("\"train\"") }.count
        XCTAssertGreaterThan(trained, 0)
        XCTAssertLessThan(trained, 100_000)
        XCTAssert(lastEval.contains("\"step\":\(trained),"), "the final evaluation is after the last step: \(lastEval)")
        XCTAssertEqual(t.optimizer.step, trained)
        let root = dir.appendingPathComponent("run/checkpoints").path
        XCTAssertEqual(try String(contentsOfFile: "\(root)/latest", encoding: .utf8), Checkpoint.directoryName(step: trained) + "\n")
    }

    func testKeepsTheNewestKAndMovesTheLatestPointer() throws {
        let t = try trainer(config(steps: 7, interval: 2))
        try t.run(console: silent)
        let root = dir.appendingPathComponent("run/checkpoints").path
        let names = try FileManager.default.contentsOfDirectory(atPath: root).sorted()
        XCTAssertEqual(names, ["latest", "step-00000006", "step-00000007"])
        XCTAssertEqual(try String(contentsOfFile: "\(root)/latest", encoding: .utf8), "step-00000007\n")
        let loaded = try Checkpoint.read("\(root)/step-00000007", layout: t.model.arena.layout)
        XCTAssertEqual(loaded.state.step, 7)
        XCTAssertEqual(loaded.state.nextSample, 7 * 4)
        XCTAssertEqual(loaded.state.worldSize, 1)
        XCTAssertEqual(loaded.optimizerStep, 7)
        XCTAssertEqual(loaded.state.config, t.config)
    }

    /// Damages the newest checkpoint in several ways: each is refused naming the file and the
    /// reason, and `--resume` falls back to the previous one and says so.
    func testDamagedCheckpointsAreRefusedAndResumeFallsBack() throws {
        let damages: [(String, String, (String) throws -> Void)] = [
            ("model.safetensors", "checksum mismatch", { path in
                let h = try XCTUnwrap(FileHandle(forUpdatingAtPath: path)); try h.truncate(atOffset: 100); try h.close() }),
            ("optimizer.safetensors", "checksum mismatch", { path in
                var d = try Data(contentsOf: URL(fileURLWithPath: path)); d[d.count / 2] ^= 0x10; try d.write(to: URL(fileURLWithPath: path)) }),
            ("state.json", "checksum mismatch", { path in
                let s = try String(contentsOfFile: path, encoding: .utf8).replacingOccurrences(of: "\"step\" : 6", with: "\"step\" : 5")
                try s.write(toFile: path, atomically: false, encoding: .utf8) }),
            ("state.json", "not a valid checkpoint state", { path in try Data("{\"step\":".utf8).write(to: URL(fileURLWithPath: path)) }),
            ("model.safetensors", "missing", { path in try FileManager.default.removeItem(atPath: path) }),
        ]
        for (index, (file, reason, damage)) in damages.enumerated() {
            let out = "damaged\(index)"
            let t = try trainer(config(steps: 6, interval: 2, output: out))
            try t.run(console: silent)
            let root = dir.appendingPathComponent("\(out)/checkpoints").path
            try damage("\(root)/step-00000006/\(file)")
            XCTAssertThrowsError(try Checkpoint.read("\(root)/step-00000006", layout: t.model.arena.layout)) { error in
                XCTAssert("\(error)".contains("step-00000006/\(file)") && "\(error)".contains(reason), "\(error)")
            }
            let fresh = try trainer(config(steps: 6, interval: 2, output: out))
            let (ckpt, notes) = try fresh.locateCheckpoint("auto")
            XCTAssertEqual(ckpt?.state.step, 4, "falls back to the previous checkpoint")
            XCTAssert(notes.contains { $0.contains("refused") && $0.contains(file) }, "\(notes)")
            XCTAssert(notes.contains { $0.contains("falling back to") && $0.contains("step-00000004") }, "\(notes)")
            XCTAssertThrowsError(try fresh.locateCheckpoint("\(root)/step-00000006"), "an explicit damaged checkpoint is refused")
        }
    }

    func testACheckpointOfAnotherModelOrConfigIsRefused() throws {
        let t = try trainer(config(steps: 2, interval: 2))
        try t.run(console: silent)
        let path = dir.appendingPathComponent("run/checkpoints/step-00000002").path
        var wider = config(steps: 2)
        wider.model.nEmbd = 32
        XCTAssertThrowsError(try Checkpoint.read(path, layout: try trainer(wider).model.arena.layout)) { error in
            XCTAssert("\(error)".contains("model.safetensors") && "\(error)".contains("different model"), "\(error)")
        }
        var otherLR = config(steps: 10)
        otherLR.optimizer.lr = 0.5
        let other = try trainer(otherLR)
        XCTAssertThrowsError(try other.restore(try Checkpoint.read(path, layout: other.model.arena.layout))) { error in
            XCTAssert("\(error)".contains("optimizer.lr"), "\(error)")
        }
        var longer = config(steps: 50)
        longer.schedule.decaySteps = t.config.schedule.decaySteps
        longer.training.checkpointInterval = 7
        let ok = try trainer(longer)
        XCTAssertNoThrow(try ok.restore(try Checkpoint.read(path, layout: ok.model.arena.layout)), "length and cadence may change")
    }

    func testAFullDiskLeavesThePreviousCheckpointUsable() throws {
        let t = try trainer(config(steps: 2, interval: 2))
        try t.run(console: silent)
        let root = dir.appendingPathComponent("run/checkpoints").path
        let size = try FileManager.default.attributesOfItem(atPath: "\(root)/step-00000002/optimizer.safetensors")[.size] as! Int
        // The next checkpoint cannot grow a file past half the optimizer state, as on a full disk.
        signal(SIGXFSZ, SIG_IGN)
        var saved = rlimit()
        getrlimit(RLIMIT_FSIZE_VALUE, &saved)
        var limited = saved
        limited.rlim_cur = rlim_t(size / 2)
        setrlimit(RLIMIT_FSIZE_VALUE, &limited)
        XCTAssertThrowsError(try Checkpoint.write(t, step: 3, metrics: [], root: root)) { error in
            XCTAssert("\(error)".contains("step-00000003 not written") && "\(error)".contains("step-00000002 is intact"), "\(error)")
        }
        setrlimit(RLIMIT_FSIZE_VALUE, &saved)
        let left = try FileManager.default.contentsOfDirectory(atPath: root).sorted()
        XCTAssertEqual(left, ["latest", "step-00000002"], "no half-written directory is left behind")
        XCTAssertNoThrow(try Checkpoint.read("\(root)/step-00000002", layout: t.model.arena.layout))
        XCTAssertEqual(try String(contentsOfFile: "\(root)/latest", encoding: .utf8), "step-00000002\n")
    }
}

#if canImport(Glibc)
import Glibc
let RLIMIT_FSIZE_VALUE = __rlimit_resource_t(RLIMIT_FSIZE.rawValue)
#endif
