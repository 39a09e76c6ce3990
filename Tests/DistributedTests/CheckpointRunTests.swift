import Foundation
import XCTest
@testable import Training

/// Checkpoints and resume under mpirun: exactness at several world sizes, faults, signals, and
/// a different rank count on resume.
final class CheckpointRunTests: MPITestCase {
    /// Final parameters and optimizer moments of a run (its last checkpoint).
    func finalState(_ dir: String, step: Int) throws -> [Float] {
        let ckpt = "\(dir)/checkpoints/\(Checkpoint.directoryName(step: step))"
        return try tensors("\(ckpt)/model.safetensors") + tensors("\(ckpt)/optimizer.safetensors")
    }

    func trainSteps(_ dir: String) throws -> [Int] {
        try metrics(dir).filter { $0.contains("\"train\"") }.map { line in
            Int(line.split(separator: ",").first { $0.hasPrefix("\"step\"") }!.split(separator: ":")[1])!
        }
    }

    func testStoppedAndResumedRunsAreBitIdenticalAtOneTwoAndFourRanks() throws {
        for n in [1, 2, 4] {
            let full = try train(ranks: n, try config(micro: 2, global: 8, dropout: 0.1, steps: 12, checkpointEvery: 4, name: "full\(n)"))
            XCTAssertEqual(full.status, 0, full.stderr)
            let cfg = try config(micro: 2, global: 8, dropout: 0.1, steps: 12, checkpointEvery: 4, name: "part\(n)")
            let first = try train(ranks: n, cfg, options: ["--steps", "7"])
            XCTAssertEqual(first.status, 0, first.stderr)
            // As if it had died after step 7 with checkpoint 4 as the newest complete one.
            try FileManager.default.removeItem(at: scratch.appendingPathComponent("part\(n)/checkpoints/step-00000007"))
            let second = try train(ranks: n, cfg, options: ["--resume"])
            XCTAssertEqual(second.status, 0, second.stderr)
            XCTAssert(second.stdout.contains("resuming from part\(n)/checkpoints/step-00000004 at step 4"), second.stdout)
            XCTAssertEqual(try finalState("part\(n)", step: 12), try finalState("full\(n)", step: 12), "\(n) ranks: parameters and moments")
            XCTAssertEqual(try metrics("part\(n)").filter { !$0.hasPrefix("{\"type\":\"eval\",\"step\":7,") }, try metrics("full\(n)"),
                           "\(n) ranks: every logged loss (the part run's own end-of-run eval at 7 aside)")
            XCTAssertEqual(try trainSteps("part\(n)"), Array(0 ..< 12), "no duplicated or missing steps")
        }
    }

    func testAKilledRankLosesOnlyTheStepsSinceTheLastCheckpoint() throws {
        let steps = 2500
        let reference = try train(ranks: 2, try config(micro: 2, global: 4, dropout: 0.1, steps: steps, decay: 100,
                                                        checkpointEvery: 7, name: "reference"))
        XCTAssertEqual(reference.status, 0, reference.stderr)
        for victim in [0, 1] {
            let name = "victim\(victim)"
            let cfg = try config(micro: 2, global: 4, dropout: 0.1, steps: steps, decay: 100, checkpointEvery: 7, name: name)
            let killed = try run(["-n", "2", "--no-build", "--", "train", "--config", cfg], timeout: 60) { mpirun, _ in
                let deadline = Date().addingTimeInterval(30)
                var pid: Int32?
                while Date() < deadline {
                    usleep(100_000)
                    let ckpts = (try? FileManager.default.contentsOfDirectory(atPath: self.scratch.appendingPathComponent("\(name)/checkpoints").path)) ?? []
                    if ckpts.count > 2, let p = self.rankPID(rank: victim, under: mpirun.processIdentifier) { pid = p; break }
                }
                guard let pid else { XCTFail("the run never reached a checkpoint"); return }
                usleep(useconds_t(100_000 + 77_777 * victim))
                kill(pid, SIGKILL)
            }
            XCTAssertNotEqual(killed.status, 0, "the job dies with its rank")
            XCTAssertFalse(killed.stdout.contains("done:"), "killed before the end: \(killed.stdout.suffix(300))")
            let resumed = try train(ranks: 2, cfg, options: ["--resume"])
            XCTAssertEqual(resumed.status, 0, resumed.stderr)
            XCTAssert(resumed.stdout.contains("resuming from"), resumed.stdout)
            XCTAssertEqual(try finalState(name, step: steps), try finalState("reference", step: steps), "killed rank \(victim)")
            XCTAssertEqual(try trainSteps(name), Array(0 ..< steps))
        }
    }

    func testSIGTERMFinishesTheStepCheckpointsAndExitsZero() throws {
        let steps = 3000
        let cfg = try config(micro: 2, global: 4, steps: steps, decay: 100, checkpointEvery: 1000, name: "term")
        let stopped = try run(["-n", "2", "--no-build", "--", "train", "--config", cfg], timeout: 60) { launcher, _ in
            let deadline = Date().addingTimeInterval(30)
            while Date() < deadline && !FileManager.default.fileExists(atPath: self.scratch.appendingPathComponent("term/metrics.jsonl").path) {
                usleep(50_000)
            }
            usleep(300_000)
            kill(launcher.processIdentifier, SIGTERM)
        }
        XCTAssertEqual(stopped.status, 0, stopped.stderr)
        let line = try XCTUnwrap(stopped.stdout.split(separator: "\n").first { $0.hasPrefix("stopped by signal after step") }, stopped.stdout)
        let k = try XCTUnwrap(Int(line.split(separator: " ")[5].dropLast()), String(line))
        XCTAssertLessThan(k, steps)
        XCTAssert(FileManager.default.fileExists(atPath: scratch.appendingPathComponent("term/checkpoints/\(Checkpoint.directoryName(step: k))/state.json").path))
        let resumed = try train(ranks: 2, cfg, options: ["--resume"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        let reference = try train(ranks: 2, try config(micro: 2, global: 4, steps: steps, decay: 100, checkpointEvery: 1000, name: "termref"))
        XCTAssertEqual(reference.status, 0)
        XCTAssertEqual(try finalState("term", step: steps), try finalState("termref", step: steps))
        XCTAssertEqual(try trainSteps("term"), Array(0 ..< steps))
    }

    func testResumingOnAnotherRankCountContinuesTheSameData() throws {
        let full = try train(ranks: 2, try config(micro: 2, global: 8, dropout: 0.1, steps: 12, checkpointEvery: 4, name: "two"))
        XCTAssertEqual(full.status, 0, full.stderr)
        for n in [1, 4] {
            let cfg = try config(micro: 2, global: 8, dropout: 0.1, steps: 12, checkpointEvery: 4, name: "to\(n)")
            XCTAssertEqual(try train(ranks: 2, cfg, options: ["--steps", "8"]).status, 0)
            let resumed = try train(ranks: n, cfg, options: ["--resume"])
            XCTAssertEqual(resumed.status, 0, resumed.stderr)
            XCTAssert(resumed.stdout.contains("saved with 2 ranks, continuing on \(n)"), resumed.stdout)
            let a = try weights("to\(n)"), b = try weights("two")
            var worst: Float = 0
            for i in 0 ..< a.count { worst = max(worst, abs(a[i] - b[i]) / max(1, abs(b[i]))) }
            XCTAssertLessThanOrEqual(worst, 1e-5, "same samples, same masks: only summation order differs (\(n) ranks)")
            XCTAssertEqual(try trainSteps("to\(n)"), Array(0 ..< 12))
        }
        let cfg3 = try config(micro: 2, global: 8, dropout: 0.1, steps: 12, checkpointEvery: 4, name: "to3")
        XCTAssertEqual(try train(ranks: 2, cfg3, options: ["--steps", "8"]).status, 0)
        let refused = try train(ranks: 3, cfg3, options: ["--resume"])
        XCTAssertNotEqual(refused.status, 0)
        let ours = refused.stderr.split(separator: "\n").filter { $0.hasPrefix("error:") }
        XCTAssertEqual(ours.count, 1, refused.stderr)
        XCTAssert(ours.first?.contains("not divisible") == true, refused.stderr)
    }
}
