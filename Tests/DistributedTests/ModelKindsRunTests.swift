import Foundation
import XCTest
@testable import Training

/// Every model kind, each with a different optimizer and schedule, trains on 2 ranks and resumes
/// from a checkpoint bit for bit.
final class ModelKindsRunTests: MPITestCase {
    func testEveryKindTrainsUnderMPIAndResumesExactly() throws {
        let combos: [(kind: String, optimizer: String, schedule: String, stateful: Bool)] = [
            ("gpt", "sgd", "linear", false), ("mlm", "adamw", "warmup-cosine", false), ("rnn", "sgd", "constant", false),
            ("lstm", "adam", "inverse-sqrt", false), ("gru", "adamw", "linear", false),
            ("lstm", "adamw", "warmup-cosine", true), ("gru", "sgd", "constant", true),
        ]
        for c in combos {
            func cfg(_ name: String) throws -> String {
                let json = """
                    {"model": {"kind": "\(c.kind)", "n_layer": 2, "n_head": 2, "n_embd": 16, "hidden": 24, "block_size": 16, "dropout": 0.1,
                               "stateful": \(c.stateful)},
                     "data": {"path": "corpus.txt", "shuffle": \(!c.stateful)},
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
            let tag = "\(c.kind)\(c.stateful ? "-stateful" : "")"
            let full = try train(ranks: 2, try cfg("\(tag)-full"))
            XCTAssertEqual(full.status, 0, "\(c.kind): \(full.stderr)")
            let losses = full.stdout.split(separator: "\n").filter { $0.contains("val loss") }
            XCTAssertEqual(losses.count, 3, "\(c.kind): \(full.stdout)")
            let part = try cfg("\(tag)-part")
            XCTAssertEqual(try train(ranks: 2, part, options: ["--steps", "4"]).status, 0)
            let resumed = try train(ranks: 2, part, options: ["--resume"])
            XCTAssertEqual(resumed.status, 0, "\(c.kind): \(resumed.stderr)")
            XCTAssert(resumed.stdout.contains("at step 4"), resumed.stdout)
            XCTAssertEqual(try weights("\(tag)-part"), try weights("\(tag)-full"), "\(tag) with \(c.optimizer)/\(c.schedule)")
        }
    }
}
