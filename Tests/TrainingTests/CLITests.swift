import Foundation
import Tensors
import XCTest
@testable import Training

/// Runs the built `lockstep` executable the way a user does.
final class CLITests: XCTestCase {
    /// The executable SwiftPM builds next to the test bundle.
    var executable: URL? {
        let dirs = [URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent(),
                    Bundle.main.bundleURL, Bundle(for: CLITests.self).bundleURL.deletingLastPathComponent()]
        return dirs.map { $0.appendingPathComponent("lockstep") }.first { FileManager.default.isExecutableFile(atPath: $0.path) }
    }
    var scratch: URL!

    override func setUpWithError() throws {
        guard executable != nil else { XCTFail("lockstep executable not built next to the tests"); return }
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("lockstep-cli-\(getpid())-\(name.hashValue)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    override func tearDown() { if let scratch { try? FileManager.default.removeItem(at: scratch) } }

    func run(_ args: [String], environment extra: [String: String] = [:]) throws -> (status: Int32, stdout: String, stderr: String) {
        let p = Process()
        p.executableURL = try XCTUnwrap(executable)
        p.arguments = args
        if !extra.isEmpty { p.environment = ProcessInfo.processInfo.environment.merging(extra) { $1 } }
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
    }

    func write(_ text: String, _ name: String) throws -> String {
        let path = scratch.appendingPathComponent(name).path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func assertRefused(_ args: [String], environment: [String: String] = [:], mentions: String,
                       file: StaticString = #filePath, line: UInt = #line) throws {
        let r = try run(args, environment: environment)
        XCTAssertEqual(r.status, 1, file: file, line: line)
        let lines = r.stderr.split(separator: "\n")
        XCTAssertEqual(lines.count, 1, "one line: \(r.stderr)", file: file, line: line)
        XCTAssert(r.stderr.hasPrefix("error: ") && r.stderr.contains(mentions), "\(r.stderr)", file: file, line: line)
    }

    func testBadConfigIsRefusedWithOneLine() throws {
        try assertRefused(["train", "--config", try write(#"{"model": {"n_embd": 100, "n_head": 3}}"#, "bad.json")], mentions: "model.n_embd")
        try assertRefused(["train", "--config", try write(#"{"model": {"depth": 3}}"#, "unknown.json")], mentions: "model.depth")
        try assertRefused(["train", "--config", scratch.appendingPathComponent("none.json").path], mentions: "none.json")
    }

    func testMissingDataFileIsRefused() throws {
        let cfg = try write(#"{"data": {"path": "/no/such/corpus.txt"}}"#, "missing.json")
        try assertRefused(["train", "--config", cfg], mentions: "/no/such/corpus.txt")
    }

    func testTokenFileWithWrongMagicIsRefused() throws {
        let bin = scratch.appendingPathComponent("wrong.bin").path
        var data = Data(count: 1024 + 20)
        data[0] = 0x12
        try data.write(to: URL(fileURLWithPath: bin))
        let cfg = try write(#"{"data": {"path": "\#(bin)"}}"#, "tokens.json")
        try assertRefused(["train", "--config", cfg], mentions: "magic")
    }

    func testKernelChoiceIsCheckedWithOneLine() throws {
        try assertRefused(["train"], environment: ["LOCKSTEP_KERNELS": "avx3"], mentions: "LOCKSTEP_KERNELS=avx3")
        if !RowProduct.avx512Available {
            try assertRefused(["train"], environment: ["LOCKSTEP_KERNELS": "avx512"], mentions: "lacks AVX-512")
        }
    }

    /// A whole run on the eight-lane kernels and on the sixteen-lane ones ends with the same
    /// parameters to the bit: ranks on CPUs with and without AVX-512 stay replicas.
    func testBothKernelWidthsTrainToTheSameBits() throws {
        try XCTSkipIf(!RowProduct.avx512Available, "this CPU has no AVX-512")
        let corpus = try write(String(repeating: "to be or not to be, that is the question. ", count: 80), "corpus.txt")
        var runs: [[Float]] = []
        for kernels in ["avx2", "avx512"] {
            let out = scratch.appendingPathComponent(kernels).path
            let cfg = try write("""
                {"model": {"n_layer": 2, "n_head": 2, "n_embd": 40, "block_size": 24},
                 "data": {"path": "\(corpus)"},
                 "batch": {"micro_batch": 3, "global_batch": 6},
                 "optimizer": {"lr": 0.01},
                 "schedule": {"warmup": 2, "decay_steps": 8, "min_lr": 0.001},
                 "training": {"steps": 8, "eval_interval": 0, "log_interval": 4, "output_dir": "\(out)"}}
                """, "\(kernels).json")
            let t = try run(["train", "--config", cfg], environment: ["LOCKSTEP_KERNELS": kernels])
            XCTAssertEqual(t.status, 0, t.stderr)
            XCTAssert(t.stdout.contains(kernels == "avx2" ? "(AVX2 kernels)" : "(AVX-512 kernels)"), t.stdout)
            let (tensors, _) = try SafeTensors.read(path: out + "/model.safetensors")
            runs.append(tensors.keys.sorted().flatMap { tensors[$0]!.floats })
        }
        XCTAssertFalse(runs[0].isEmpty)
        XCTAssertEqual(runs[0].map(\.bitPattern), runs[1].map(\.bitPattern))
    }

    func testTrainEvalAndSampleEndToEnd() throws {
        let corpus = try write(String(repeating: "to be or not to be, that is the question. ", count: 80), "corpus.txt")
        let cfg = try write("""
            {"model": {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 16},
             "data": {"path": "\(corpus)"},
             "batch": {"micro_batch": 4, "global_batch": 8},
             "optimizer": {"lr": 0.01},
             "schedule": {"warmup": 2, "decay_steps": 12, "min_lr": 0.001},
             "training": {"steps": 12, "eval_interval": 6, "eval_windows": 8, "log_interval": 4, "output_dir": "\(scratch.appendingPathComponent("run").path)"}}
            """, "tiny.json")
        let t = try run(["train", "--config", cfg])
        XCTAssertEqual(t.status, 0, t.stderr)
        XCTAssert(t.stdout.contains("step    11 | loss"), t.stdout)
        XCTAssert(t.stdout.contains("val loss"))
        let metrics = try String(contentsOfFile: scratch.appendingPathComponent("run/metrics.jsonl").path, encoding: .utf8)
        XCTAssertEqual(metrics.split(separator: "\n").filter { $0.contains("\"train\"") }.count, 12)
        XCTAssertEqual(metrics.split(separator: "\n").filter { $0.contains("\"eval\"") }.count, 3, "steps 0, 6, 12")
        let weights = scratch.appendingPathComponent("run/model.safetensors").path
        let e = try run(["eval", weights])
        XCTAssertEqual(e.status, 0, e.stderr)
        XCTAssert(e.stdout.hasPrefix("val loss "), e.stdout)
        let s = try run(["sample", weights, "--prompt", "to be", "--tokens", "40"])
        XCTAssertEqual(s.status, 0, s.stderr)
        XCTAssert(s.stdout.hasPrefix("to be"))
        XCTAssertGreaterThanOrEqual(s.stdout.utf8.count, 45)
        try assertRefused(["eval", scratch.appendingPathComponent("nothing.safetensors").path], mentions: "nothing.safetensors")
        try assertRefused(["train", "--config", cfg, "--init-from", corpus], mentions: "safetensors")
    }
}

final class ConsoleFormatTests: XCTestCase {
    func testGroupedThousands() {
        XCTAssertEqual([0, 7, 999, 1000, 65536, 842_496, 1_003_854, -1_234_567].map(grouped),
                       ["0", "7", "999", "1,000", "65,536", "842,496", "1,003,854", "-1,234,567"])
    }
}
