import Foundation
import XCTest
@testable import Training

/// Multi-rank training through `launch/run` (mpirun) and the release build of `lockstep`,
/// on a tiny model, on this machine (ranks beyond the cores are oversubscribed).
final class MPIRunTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    var scratch: URL!

    override func setUpWithError() throws {
        let binary = Self.root.appendingPathComponent(".build/release/lockstep").path
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            XCTFail("\(binary) is missing: build it with `swift build -c release` (launch/test does)")
            throw XCTSkip("no release build")
        }
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("lockstep-mpi-\(getpid())-\(abs(name.hashValue))")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        let text = (0 ..< 400).map { "line \($0 % 37): the quick brown fox jumps over the lazy dog.\n" }.joined()
        try text.write(to: scratch.appendingPathComponent("corpus.txt"), atomically: true, encoding: .utf8)
    }

    override func tearDown() { if let scratch { try? FileManager.default.removeItem(at: scratch) } }

    struct Result { let status: Int32; let stdout: String; let stderr: String; let seconds: Double }

    /// Runs a process with a deadline (a hang fails the test instead of stalling the suite).
    func run(_ args: [String], timeout: Double = 120, whileRunning: ((Process, Pipe) throws -> Void)? = nil) throws -> Result {
        let p = Process()
        p.executableURL = Self.root.appendingPathComponent("launch/run")
        p.arguments = args
        p.currentDirectoryURL = scratch
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        let start = Date()
        try p.run()
        let outData = ReadAll(out.fileHandleForReading), errData = ReadAll(err.fileHandleForReading)
        try whileRunning?(p, out)
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning && Date() < deadline { usleep(20_000) }
        if p.isRunning {
            p.terminate()
            XCTFail("timed out after \(timeout) s: launch/run \(args.joined(separator: " "))")
        }
        p.waitUntilExit()
        return Result(status: p.terminationStatus, stdout: outData.text(), stderr: errData.text(),
                      seconds: Date().timeIntervalSince(start))
    }

    /// A tiny config; `global` sequences per step of `micro` per micro-batch.
    func config(micro: Int, global: Int, dropout: Double = 0, steps: Int = 8, name: String) throws -> String {
        let json = """
            {"model": {"n_layer": 2, "n_head": 2, "n_embd": 16, "block_size": 16, "dropout": \(dropout)},
             "data": {"path": "corpus.txt"},
             "batch": {"micro_batch": \(micro), "global_batch": \(global)},
             "optimizer": {"lr": 0.01},
             "schedule": {"warmup": 2, "decay_steps": \(steps), "min_lr": 0.001},
             "training": {"steps": \(steps), "eval_interval": 4, "eval_windows": 12, "log_interval": 1,
                          "output_dir": "\(name)", "allreduce_bucket_mb": 0.004}}
            """
        let path = scratch.appendingPathComponent("\(name).json").path
        try json.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func train(ranks: Int, _ cfg: String, extra: [String] = []) throws -> Result {
        try run(["-n", "\(ranks)", "--no-build"] + extra + ["--", "train", "--config", cfg])
    }

    func weights(_ dir: String) throws -> [Float] {
        let (tensors, _) = try SafeTensors.read(path: scratch.appendingPathComponent("\(dir)/model.safetensors").path)
        return tensors.keys.sorted().flatMap { tensors[$0]!.floats }
    }

    func losses(_ r: Result) -> [String] { r.stdout.split(separator: "\n").filter { $0.contains("| loss") }.map { String($0.prefix(24)) } }

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

    /// The PID of the process with OMPI_COMM_WORLD_RANK == rank among the launcher's descendants.
    func rankPID(rank: Int, under parent: Int32) -> Int32? {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return nil }
        for e in entries {
            guard let pid = Int32(e), let env = FileManager.default.contents(atPath: "/proc/\(pid)/environ") else { continue }
            let vars = env.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            guard vars.contains("OMPI_COMM_WORLD_RANK=\(rank)"),
                  let cmd = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline"),
                  String(decoding: cmd, as: UTF8.self).contains("lockstep"),
                  String(decoding: cmd, as: UTF8.self).contains(scratch.lastPathComponent) || isDescendant(pid, of: parent)
            else { continue }
            return pid
        }
        return nil
    }

    func isDescendant(_ pid: Int32, of ancestor: Int32) -> Bool {
        var p = pid
        for _ in 0 ..< 10 {
            guard let stat = try? String(contentsOfFile: "/proc/\(p)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { return false }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            guard fields.count > 1, let ppid = Int32(fields[1]) else { return false }
            if ppid == ancestor { return true }
            if ppid <= 1 { return false }
            p = ppid
        }
        return false
    }
}

/// Drains a pipe on a background thread (so a chatty child never blocks on a full pipe).
final class ReadAll: @unchecked Sendable {
    private var data = Data()
    private let lock = NSLock()
    private let done = DispatchSemaphore(value: 0)

    init(_ handle: FileHandle) {
        Thread.detachNewThread { [self] in
            while true {
                let chunk = handle.availableData
                if chunk.isEmpty { break }
                lock.lock(); data.append(chunk); lock.unlock()
            }
            done.signal()
        }
    }

    func text() -> String {
        _ = done.wait(timeout: .now() + 10)
        lock.lock(); defer { lock.unlock() }
        return String(decoding: data, as: UTF8.self)
    }
}
