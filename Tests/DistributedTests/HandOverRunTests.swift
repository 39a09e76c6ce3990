import Foundation
import Layers
import XCTest
@testable import Training

/// Two ranks where the faster runs the end of the slower rank's micro-batch: every bit as without.
final class HandOverRunTests: MPITestCase {
    /// Sequences per micro-batch: 8, or twice a block's where this CPU's L2 holds blocks of 8 or
    /// more (a block is a quarter of L2 of the widest activation row, 4 × 64 floats here: 2 or 4
    /// sequences of 128 where L2 is 1 or 2 MB), so that the pass goes in several blocks.
    let micro = max(8, 2 * RowBlocks.rows(batch: 1 << 16, time: 128, width: 4 * 64, threads: 1) / 128)

    /// A model wide enough that its micro-batch goes in several blocks; a global batch of
    /// `microBatches` micro-batches.
    func wideConfig(microBatches: Int, kind: String = "gpt", name: String) throws -> String {
        let json = """
            {"model": {"kind": "\(kind)", "n_layer": 2, "n_head": 2, "n_embd": 64, "block_size": 128, "dropout": 0.1},
             "data": {"path": "corpus.txt"},
             "batch": {"micro_batch": \(micro), "global_batch": \(microBatches * micro)},
             "optimizer": {"lr": 0.01},
             "schedule": {"warmup": 2, "decay_steps": 6, "min_lr": 0.001},
             "training": {"steps": 6, "eval_interval": 3, "eval_windows": 8, "log_interval": 1,
                          "checkpoint_interval": 0, "output_dir": "\(name)"}}
            """
        let path = scratch.appendingPathComponent("\(name).json").path
        try json.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func trainTwo(microBatches: Int, kind: String = "gpt", handOver: String, name: String, succeeds: Bool = true) throws -> Result {
        setenv("LOCKSTEP_HAND_OVER", handOver, 1)
        defer { unsetenv("LOCKSTEP_HAND_OVER") }
        let r = try train(ranks: 2, try wideConfig(microBatches: microBatches, kind: kind, name: name))
        if succeeds { XCTAssertEqual(r.status, 0, r.stderr) }
        return r
    }

    func testAnOverrideItCannotReadStopsTheJobWithOneLine() throws {
        for bad in ["2:3", "1:0", "1:x", "sometimes"] {
            let r = try trainTwo(microBatches: 2, handOver: bad, name: "bad", succeeds: false)
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
        for batches in [2, 4] { // accumulation 1 and 2 on two ranks: the hand-over comes in the last micro-batch
            let off = try trainTwo(microBatches: batches, handOver: "off", name: "off\(batches)")
            XCTAssert(off.stdout.contains("hand-overs: 0 of 6 steps"), off.stdout)
            for mode in ["1:3", "0:5", "1:1", "0:7"] {
                let name = "on\(batches)-\(mode.replacingOccurrences(of: ":", with: "-"))"
                let on = try trainTwo(microBatches: batches, handOver: mode, name: name)
                // every step but the first (which has no plan yet) hands over
                XCTAssert(on.stdout.contains("hand-overs: 5 of 6 steps"), on.stdout)
                try assertSameWeights(name, "off\(batches)")
                XCTAssertEqual(try metrics(name), try metrics("off\(batches)"), "metrics, hand-over \(mode), \(batches) micro-batches")
                XCTAssertEqual(on.stderr.split(separator: "\n").filter { !$0.isEmpty }.count, 0, "ranks are silent: \(on.stderr)")
            }
        }
    }

    func testAMaskedLMEncoderHandsOverTheSameBits() throws {
        _ = try trainTwo(microBatches: 2, kind: "mlm", handOver: "off", name: "mlmOff")
        let on = try trainTwo(microBatches: 2, kind: "mlm", handOver: "1:3", name: "mlmOn")
        XCTAssert(on.stdout.contains("hand-overs: 5 of 6 steps"), on.stdout)
        try assertSameWeights("mlmOn", "mlmOff")
        XCTAssertEqual(try metrics("mlmOn"), try metrics("mlmOff"))
    }

    func testTheTimedPlanChangesNoBit() throws {
        _ = try trainTwo(microBatches: 2, handOver: "off", name: "planOff")
        let auto = try trainTwo(microBatches: 2, handOver: "auto", name: "planAuto")
        XCTAssert(auto.stdout.contains("hand-overs: "), auto.stdout)
        try assertSameWeights("planAuto", "planOff")
        XCTAssertEqual(try metrics("planAuto"), try metrics("planOff"))
    }
}
