import Foundation
import XCTest
@testable import Training

/// Every model kind, each with a different optimizer and schedule, trains on 2 ranks and resumes
/// from a checkpoint bit for bit.
final class ModelKindsRunTests: MPITestCase {
    func testEveryKindTrainsUnderMPIAndResumesExactly() throws {
        let combos: [(kind: String, optimizer: String, schedule: String)] = [
            ("gpt", "sgd", "linear"), ("mlm", "adamw", "warmup-cosine"), ("rnn", "sgd", "constant"),
            ("lstm", "adam", "inverse-sqrt"), ("gru", "adamw", "linear"),
        ]
        for c in combos {
            func cfg(_ name: String) throws -> String {
                let json = """
                    {"model": {"kind": "\(c.kind)", "n_layer": 2, "n_head": 2, "n_embd": 16, "hidden": 24, "block_size": 16, "dropout": 0.1},
                     "data": {"path": "corpus.txt"},
                     "batch": {"micro_batch": 2, "global_batch": 8},
                     "optimizer": {"kind": "\(c.optimizer)", "lr": \(c.optimizer == "sgd" ? 0.2 : 0.01), "momentum": 0.9, "nesterov": true},
                     "schedule": {"kind": "\(c.schedule)", "warmup": 2, "decay_steps": 8, "min_lr": 0.001},
                     "training": {"steps": 8, "eval_interval": 4, "eval_windows": 8, "log_interval": 1, "checkpoint_interval": 4,
                                  "output_dir": "\(name)"}}
                    """
                let path = scratch.appendingPathComponent("\(name).json").path
                try json.write(toFile: path, atomically: true, encoding: .utf8)
                return path
            }
            let full = try train(ranks: 2, try cfg("\(c.kind)-full"))
            XCTAssertEqual(full.status, 0, "\(c.kind): \(full.stderr)")
            let losses = full.stdout.split(separator: "\n").filter { $0.contains("val loss") }
            XCTAssertEqual(losses.count, 3, "\(c.kind): \(full.stdout)")
            let part = try cfg("\(c.kind)-part")
            XCTAssertEqual(try train(ranks: 2, part, options: ["--steps", "4"]).status, 0)
            let resumed = try train(ranks: 2, part, options: ["--resume"])
            XCTAssertEqual(resumed.status, 0, "\(c.kind): \(resumed.stderr)")
            XCTAssert(resumed.stdout.contains("at step 4"), resumed.stdout)
            XCTAssertEqual(try weights("\(c.kind)-part"), try weights("\(c.kind)-full"), "\(c.kind) with \(c.optimizer)/\(c.schedule)")
        }
    }
}
