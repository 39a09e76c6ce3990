import Foundation
import XCTest
@testable import Training

/// Base of the multi-rank tests: runs `launch/run` (mpirun) with the release build of `lockstep`
/// on a tiny model, on this machine (ranks beyond the cores are oversubscribed).
class MPITestCase: XCTestCase {
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
    func config(micro: Int, global: Int, dropout: Double = 0, steps: Int = 8, decay: Int? = nil, checkpointEvery: Int = 0,
                name: String) throws -> String {
        let json = """
            {"model": {"n_layer": 2, "n_head": 2, "n_embd": 16, "block_size": 16, "dropout": \(dropout)},
             "data": {"path": "corpus.txt"},
             "batch": {"micro_batch": \(micro), "global_batch": \(global)},
             "optimizer": {"lr": 0.01},
             "schedule": {"warmup": 2, "decay_steps": \(decay ?? steps), "min_lr": 0.001},
             "training": {"steps": \(steps), "eval_interval": 4, "eval_windows": 12, "log_interval": 1,
                          "checkpoint_interval": \(checkpointEvery), "keep_checkpoints": 3,
                          "output_dir": "\(name)", "allreduce_bucket_mb": 0.004}}
            """
        let path = scratch.appendingPathComponent("\(name).json").path
        try json.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func train(ranks: Int, _ cfg: String, extra: [String] = [], options: [String] = []) throws -> Result {
        try run(["-n", "\(ranks)", "--no-build"] + extra + ["--", "train", "--config", cfg] + options)
    }

    /// All tensor values of a safetensors file under the scratch directory, by sorted name.
    func tensors(_ file: String) throws -> [Float] {
        let (tensors, _) = try SafeTensors.read(path: scratch.appendingPathComponent(file).path)
        return tensors.keys.sorted().flatMap { tensors[$0]!.floats }
    }

    func weights(_ dir: String) throws -> [Float] { try tensors("\(dir)/model.safetensors") }

    /// The metrics lines without timing fields.
    func metrics(_ dir: String) throws -> [String] {
        let text = try String(contentsOfFile: scratch.appendingPathComponent("\(dir)/metrics.jsonl").path, encoding: .utf8)
        return text.split(separator: "\n").map { line in
            line.split(separator: ",").filter { !$0.contains("tokens_per_s") && !$0.contains("wall_s") }.joined(separator: ",")
        }
    }

    func losses(_ r: Result) -> [String] { r.stdout.split(separator: "\n").filter { $0.contains("| loss") }.map { String($0.prefix(24)) } }

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
