import Foundation
import XCTest
@testable import Training

/// Data parallelism across ranks: replicas, equivalence with accumulation, refusals, faults, transports.
final class MPIRunTests: MPITestCase {
    func testReplicasStayBitIdenticalAtTwoThreeAndFourRanks() throws {
        for n in [2, 3, 4] {
            let cfg = try config(micro: 2, global: 24, name: "ident\(n)")
            let r = try train(ranks: n, cfg)
            XCTAssertEqual(r.status, 0, r.stderr)
            let line = try XCTUnwrap(r.stdout.split(separator: "\n").first { $0.hasPrefix("replicas:") }, r.stdout)
            XCTAssert(line.contains("\(n) ranks hold identical parameters"), String(line))
            // the digest printed is the SHA-256 of the parameters rank 0 saved
            let cfgObj = try Config.load(path: cfg)
            let arena = makeModel(cfgObj.model, maxBatch: 1).arena
            try Weights.load(path: scratch.appendingPathComponent("ident\(n)/model.safetensors").path, into: arena)
            let digest = SHA256.hex(SHA256.hash(UnsafeRawBufferPointer(start: arena.parameters.pointer, count: arena.count * 4)))
            XCTAssert(line.contains(digest), "\(line) vs \(digest)")
            XCTAssertEqual(r.stderr.split(separator: "\n").filter { !$0.isEmpty }.count, 0, "ranks are silent: \(r.stderr)")
        }
    }

    func testRanksEqualOneRankWithAccumulation() throws {
        for p in [0.0, 0.1] {
            let tag = p == 0 ? "plain" : "dropout"
            let two = try train(ranks: 2, try config(micro: 3, global: 6, dropout: p, name: "two-\(tag)"))
            let one = try train(ranks: 1, try config(micro: 3, global: 6, dropout: p, name: "one-\(tag)"))
            XCTAssertEqual(two.status, 0, two.stderr)
            XCTAssertEqual(one.status, 0, one.stderr)
            XCTAssert(two.stdout.contains("accumulation 1") && one.stdout.contains("accumulation 2"))
            let a = try weights("two-\(tag)"), b = try weights("one-\(tag)")
            var worst: Float = 0
            for i in 0 ..< a.count { worst = max(worst, abs(a[i] - b[i]) / max(1, abs(b[i]))) }
            XCTAssertLessThanOrEqual(worst, 1e-5, "dropout \(p)")
            XCTAssertEqual(losses(two), losses(one), "the same logged losses (4 decimals), dropout \(p)")
        }
    }

    func testAGlobalBatchTheRanksDoNotDivideIsRefused() throws {
        let r = try train(ranks: 3, try config(micro: 2, global: 8, name: "indivisible"))
        XCTAssertNotEqual(r.status, 0)
        let ours = r.stderr.split(separator: "\n").filter { $0.hasPrefix("error:") }
        XCTAssertEqual(ours.count, 1, r.stderr)
        XCTAssert(ours.first?.contains("not divisible") == true, r.stderr)
        XCTAssertLessThan(r.seconds, 30)
    }

    func testMismatchedConfigsStopWithOneMessage() throws {
        // Rank 1 sees a different seed through its environment-specific option file.
        let cfg = try config(micro: 2, global: 4, name: "mismatch")
        let script = scratch.appendingPathComponent("rank-seed.sh")
        try """
            #!/bin/sh
            exec "$@" --seed $((1 + ${OMPI_COMM_WORLD_RANK:-0}))
            """.write(to: script, atomically: true, encoding: .utf8)
        chmod(script.path, 0o755)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        let mpirunLine = try run(["-n", "2", "--no-build", "--dry-run", "--", "train", "--config", cfg]).stdout
            .split(separator: "\n").last.map(String.init) ?? ""
        var parts = mpirunLine.split(separator: " ").map(String.init)
        let binaryIndex = try XCTUnwrap(parts.firstIndex { $0.hasSuffix("/lockstep") })
        parts.insert(script.path, at: binaryIndex)
        p.arguments = ["-c", parts.joined(separator: " ")]
        p.currentDirectoryURL = scratch
        let err = Pipe()
        p.standardError = err
        p.standardOutput = Pipe()
        try p.run()
        let errData = ReadAll(err.fileHandleForReading)
        let deadline = Date().addingTimeInterval(60)
        while p.isRunning && Date() < deadline { usleep(20_000) }
        XCTAssertFalse(p.isRunning, "a mismatched job must not hang")
        if p.isRunning { p.terminate() }
        p.waitUntilExit()
        XCTAssertNotEqual(p.terminationStatus, 0)
        let ours = errData.text().split(separator: "\n").filter { $0.hasPrefix("error:") }
        XCTAssertEqual(ours.count, 1, errData.text())
        XCTAssert(ours.first?.contains("config on rank(s) 1 differs") == true, errData.text())
    }

    func testAKilledRankBringsTheJobDownNamingIt() throws {
        let cfg = try config(micro: 2, global: 4, steps: 100_000, name: "killed")
        let r = try run(["-n", "2", "--no-build", "--", "train", "--config", cfg], timeout: 60) { mpirun, _ in
            // wait until training runs, then kill -9 the rank-1 process
            let deadline = Date().addingTimeInterval(30)
            var victim: Int32?
            while victim == nil && Date() < deadline {
                usleep(200_000)
                victim = self.rankPID(rank: 1, under: mpirun.processIdentifier)
                if victim != nil && !FileManager.default.fileExists(atPath: self.scratch.appendingPathComponent("killed/metrics.jsonl").path) {
                    victim = nil
                }
            }
            guard let victim else { XCTFail("rank 1 never started"); return }
            usleep(500_000)
            kill(victim, SIGKILL)
        }
        XCTAssertNotEqual(r.status, 0)
        XCTAssert(r.stderr.contains("rank 1"), r.stderr)
        XCTAssertLessThan(r.seconds, 40)
    }

    func testTCPTransportMatchesSharedMemory() throws {
        let shm = try train(ranks: 2, try config(micro: 2, global: 4, dropout: 0.1, name: "shm"), extra: ["--transport", "shm"])
        let tcp = try train(ranks: 2, try config(micro: 2, global: 4, dropout: 0.1, name: "tcp"), extra: ["--transport", "tcp"])
        XCTAssertEqual(shm.status, 0, shm.stderr)
        XCTAssertEqual(tcp.status, 0, tcp.stderr)
        XCTAssert(tcp.stdout.contains("btl self,tcp"), tcp.stdout)
        XCTAssertEqual(try weights("shm"), try weights("tcp"))
    }

    func testBenchReportsEveryFigureFromRankZeroOnly() throws {
        let cfg = try config(micro: 2, global: 4, name: "bench")
        let r = try run(["-n", "2", "--no-build", "--", "bench", "--config", cfg, "--steps", "12", "--warmup", "2", "--shapes"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stderr.split(separator: "\n").filter { !$0.isEmpty }.count, 0, "ranks are silent: \(r.stderr)")
        let lines = r.stdout.split(separator: "\n").map(String.init)
        func value(_ prefix: String, _ field: Int) throws -> Double {
            let line = try XCTUnwrap(lines.first { $0.hasPrefix(prefix) }, "no '\(prefix)' line in \(r.stdout)")
            let words = line.split(separator: " ").map { $0.trimmingCharacters(in: CharacterSet(charactersIn: "%,")) }
            return try XCTUnwrap(Double(words[field]), line)
        }
        XCTAssertEqual(lines.filter { $0.hasPrefix("bench:") }.count, 1, "rank 0 alone prints: \(r.stdout)")
        XCTAssert(lines.contains { $0.hasPrefix("bench:") && $0.contains("2 rank(s)") && $0.contains("12 steps after 2") }, r.stdout)
        XCTAssertGreaterThan(try value("tokens/s", 2), 0)
        var phases = 0.0
        for phase in ["forward", "backward", "rank wait", "all-reduce", "clip+optim", "other"] {
            let ms = try value("  " + phase, phase == "rank wait" ? 2 : 1)
            XCTAssertGreaterThanOrEqual(ms, 0, phase)
            phases += ms
        }
        XCTAssertEqual(phases, try value("tokens/s", 7), accuracy: 0.01 * phases + 0.3, "the phases add up to the mean step")
        // each rank's forward + backward, and how often each was the one waited for
        let byRank = try XCTUnwrap(lines.first { $0.hasPrefix("    by rank") }, r.stdout)
        let medians = try XCTUnwrap(byRank.components(separatedBy: "median ").last?.components(separatedBy: " ms").first, byRank)
            .components(separatedBy: ", ").compactMap(Double.init)
        XCTAssertEqual(medians.count, 2, byRank)
        XCTAssert(medians.allSatisfy { $0 > 0 }, byRank)
        let slowest = try XCTUnwrap(byRank.components(separatedBy: "slowest in ").last?.components(separatedBy: " of").first, byRank)
            .components(separatedBy: ", ").compactMap(Int.init)
        XCTAssertEqual(slowest.count, 2, byRank)
        XCTAssertEqual(slowest.reduce(0, +), 12, "every timed step has one slowest rank: \(byRank)")
        let peak = try value("sgemm peak", 2)
        XCTAssertGreaterThan(peak, 1)
        let mfu = try XCTUnwrap(lines.first { $0.hasPrefix("MFU") }, r.stdout)
        XCTAssert(mfu.contains("median of 6 windows"), mfu)   // 12 steps in windows of 2
        XCTAssertGreaterThan(try value("MFU", 1), 0)
        XCTAssertLessThan(try value("MFU", 1), 100)
        // the Linear layers' products, timed inside the model: a share of the step and two rates
        let share = try value("products in model", 3)
        XCTAssertGreaterThan(share, 0)
        XCTAssertLessThan(share, 100)
        let products = try XCTUnwrap(lines.first { $0.hasPrefix("products in model") }, r.stdout)
        let rates = products.components(separatedBy: " GFLOP/s").dropLast().compactMap { Double($0.split(separator: " ").last ?? "") }
        XCTAssertEqual(rates.count, 2, products)
        XCTAssert(rates.allSatisfy { $0 > 0 }, products)
        // --shapes: one line per product shape; the 2-layer GPT takes four weight gradients per
        // block and the tied head's, 9 per step (each rank's micro-batch is one per step)
        let table = lines.filter { $0.hasPrefix("  dyᵀ·x") || $0.hasPrefix("  x·W") }
        let gradients = table.filter { $0.hasPrefix("  dyᵀ·x") }
        XCTAssertEqual(gradients.count, 5, r.stdout)
        func numbers(_ line: String) -> [Double] { line.split(separator: " ").suffix(3).compactMap { Double($0) } }
        XCTAssertEqual(gradients.map { numbers($0).last ?? 0 }.reduce(0, +), 9, accuracy: 1e-9, r.stdout)
        XCTAssertGreaterThan(table.count, gradients.count, "the rows products are listed too: \(r.stdout)")
        XCTAssert(table.allSatisfy { numbers($0).count == 3 && numbers($0)[0] >= 0 && numbers($0)[1] > 0 && numbers($0)[2] > 0 },
                  r.stdout) // ms/step, GFLOP/s, calls/step
        let rss = try XCTUnwrap(lines.first { $0.hasPrefix("peak RSS per rank") }, r.stdout)
        XCTAssertEqual(rss.components(separatedBy: " MB").count - 1, 2, "one figure per rank: \(rss)")
        let launch = try value("launch → first step", 4)
        XCTAssertGreaterThan(launch, 0)
        XCTAssertLessThan(launch, r.seconds)
    }

}
