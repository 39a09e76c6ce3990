import Foundation
import XCTest
@testable import Training

/// Two ranks where the faster runs the end of the slower rank's micro-batch: every bit as without.
final class HandOverRunTests: MPITestCase {
    /// A model wide enough that a micro-batch of 8 sequences of 128 goes in several blocks
    /// (a block is a quarter of L2 of the widest activation row: 2 or 4 sequences here).
    func wideConfig(global: Int, kind: String = "gpt", name: String) throws -> String {
        let json = """
            {"model": {"kind": "\(kind)", "n_layer": 2, "n_head": 2, "n_embd": 64, "block_size": 128, "dropout": 0.1},
             "data": {"path": "corpus.txt"},
             "batch": {"micro_batch": 8, "global_batch": \(global)},
             "optimizer": {"lr": 0.01},
             "schedule": {"warmup": 2, "decay_steps": 6, "min_lr": 0.001},
             "training": {"steps": 6, "eval_interval": 3, "eval_windows": 8, "log_interval": 1,
                          "checkpoint_interval": 0, "output_dir": "\(name)"}}
            """
        let path = scratch.appendingPathComponent("\(name).json").path
        try json.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func trainTwo(global: Int, kind: String = "gpt", handOver: String, name: String, succeeds: Bool = true) throws -> Result {
        setenv("LOCKSTEP_HAND_OVER", handOver, 1)
        defer { unsetenv("LOCKSTEP_HAND_OVER") }
        let r = try train(ranks: 2, try wideConfig(global: global, kind: kind, name: name))
        if succeeds { XCTAssertEqual(r.status, 0, r.stderr) }
        return r
    }

    func testAnOverrideItCannotReadStopsTheJobWithOneLine() throws {
        for bad in ["2:3", "1:0", "1:x", "sometimes"] {
            let r = try trainTwo(global: 16, handOver: bad, name: "bad", succeeds: false)
            XCTAssertNotEqual(r.status, 0, bad)
            let ours = r.stderr.split(separator: "\n").filter { $0.hasPrefix("error:") }
            XCTAssertEqual(ours.count, 1, r.stderr)
            XCTAssert(ours.first?.contains("LOCKSTEP_HAND_OVER=\(bad) is not understood") == true, r.stderr)
        }
    }

    func assertSameWeights(_ a: String, _ b: String, line: UInt = #line) throws {
        let x = try weights(a), y = try weights(b)
        XCTAssertEqual(x.count, y.count, line: line)
        let differ = zip(x, y).enumerated().first { $0.element.0.bitPattern != $0.element.1.bitPattern }
        XCTAssertNil(differ, "\(a) and \(b) differ first at value \(differ?.offset ?? -1)", line: line)
    }

    func testHandOversChangeNoBitWithAndWithoutAccumulation() throws {
        for global in [16, 32] { // accumulation 1 and 2: the hand-over comes in the last micro-batch
            let off = try trainTwo(global: global, handOver: "off", name: "off\(global)")
            XCTAssert(off.stdout.contains("hand-overs: 0 of 6 steps"), off.stdout)
            for mode in ["1:3", "0:5", "1:1", "0:7"] {
                let name = "on\(global)-\(mode.replacingOccurrences(of: ":", with: "-"))"
                let on = try trainTwo(global: global, handOver: mode, name: name)
                // every step but the first (which has no plan yet) hands over
                XCTAssert(on.stdout.contains("hand-overs: 5 of 6 steps"), on.stdout)
                try assertSameWeights(name, "off\(global)")
                XCTAssertEqual(try metrics(name), try metrics("off\(global)"), "metrics, hand-over \(mode), global \(global)")
                XCTAssertEqual(on.stderr.split(separator: "\n").filter { !$0.isEmpty }.count, 0, "ranks are silent: \(on.stderr)")
            }
        }
    }

    func testAMaskedLMEncoderHandsOverTheSameBits() throws {
        _ = try trainTwo(global: 16, kind: "mlm", handOver: "off", name: "mlmOff")
        let on = try trainTwo(global: 16, kind: "mlm", handOver: "1:3", name: "mlmOn")
        XCTAssert(on.stdout.contains("hand-overs: 5 of 6 steps"), on.stdout)
        try assertSameWeights("mlmOn", "mlmOff")
        XCTAssertEqual(try metrics("mlmOn"), try metrics("mlmOff"))
    }

    func testTheTimedPlanChangesNoBit() throws {
        _ = try trainTwo(global: 16, handOver: "off", name: "planOff")
        let auto = try trainTwo(global: 16, handOver: "auto", name: "planAuto")
        XCTAssert(auto.stdout.contains("hand-overs: "), auto.stdout)
        try assertSameWeights("planAuto", "planOff")
        XCTAssertEqual(try metrics("planAuto"), try metrics("planOff"))
    }
}
