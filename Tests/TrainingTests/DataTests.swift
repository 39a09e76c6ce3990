import Foundation
import TestSupport
import XCTest
@testable import Training

final class DataTests: XCTestCase {
    func testEmbeddedCorpusAndTheProtocolSplit() throws {
        let ds = try Dataset.load(DataConfig(), vocabSize: 256, blockSize: 128)
        XCTAssertEqual(ds.tokens.count, 1_115_394)
        XCTAssertEqual(ds.trainCount, 1_003_854)
        XCTAssertEqual(ds.tokens.count - ds.trainCount, 111_540)
        XCTAssertEqual(ds.valWindowCount(blockSize: 128, limit: 512), 512)
        XCTAssertEqual(ByteTokenizer.decode(Array(ds.tokens[0 ..< 14])), "First Citizen:")
    }

    func testWindowStartsFollowTheProtocol() {
        let s = WindowSampler(trainCount: 1_003_854, blockSize: 128, seed: 1337, shuffle: true)
        XCTAssertEqual((0 ..< 4).map { s.start(ofSample: $0) }, [158_235, 277_285, 677_826, 882_570])
        XCTAssertEqual(s.start(ofSample: 31), 942_425)
        XCTAssertEqual(s.start(ofSample: 32), 205_748)
    }

    func testSequentialWindowsWithoutShuffle() {
        let s = WindowSampler(trainCount: 1000, blockSize: 10, seed: 1, shuffle: false)
        XCTAssertEqual((0 ..< 3).map { s.start(ofSample: $0) }, [0, 10, 20])
        XCTAssertEqual(s.start(ofSample: 99), 0, "wraps after (n_train − 1)/T windows")
    }

    func testFillShiftsTargetsByOne() {
        let ds = Dataset(tokens: (0 ..< 100).map { Int32($0) }, valFraction: 0.1, source: "test")
        XCTAssertEqual(ds.trainCount, 90)
        let s = WindowSampler(trainCount: ds.trainCount, blockSize: 4, seed: 1, shuffle: false)
        var inputs = [Int32](repeating: 0, count: 8), targets = [Int32](repeating: 0, count: 8)
        inputs.withUnsafeMutableBufferPointer { i in
            targets.withUnsafeMutableBufferPointer { t in s.fill(ds, first: 1, count: 2, inputs: i.baseAddress!, targets: t.baseAddress!) }
        }
        XCTAssertEqual(inputs, [4, 5, 6, 7, 8, 9, 10, 11])
        XCTAssertEqual(targets, [5, 6, 7, 8, 9, 10, 11, 12])
    }

    func testTokenFileRoundTripAndRefusals() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lockstep-tok-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("t.bin").path
        let tokens: [Int32] = [0, 1, 65535, 300, 7]
        try TokenFile.write(tokens, path: path)
        XCTAssertEqual(try TokenFile.read(path: path), tokens)
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        XCTAssertEqual(bytes.count, 1024 + 10)
        bytes[0] ^= 0xFF
        XCTAssertThrowsError(try TokenFile.decode(bytes, source: "bad.bin")) { XCTAssert("\($0)".contains("magic")) }
        bytes[0] ^= 0xFF
        XCTAssertThrowsError(try TokenFile.decode(bytes.dropLast(), source: "short.bin")) { XCTAssert("\($0)".contains("header says 5 tokens")) }
        XCTAssertThrowsError(try TokenFile.decode(Data([1, 2, 3]), source: "tiny.bin"))
        XCTAssertThrowsError(try TokenFile.read(path: dir.appendingPathComponent("none.bin").path))
    }

    func testOutOfRangeTokensAndMissingFilesAreRefused() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lockstep-data-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("t.bin").path
        try TokenFile.write((0 ..< 5000).map { Int32($0 % 300) }, path: path)
        var cfg = DataConfig()
        cfg.path = path
        XCTAssertThrowsError(try Dataset.load(cfg, vocabSize: 256, blockSize: 8)) { XCTAssert("\($0)".contains("out of range")) }
        XCTAssertNoThrow(try Dataset.load(cfg, vocabSize: 300, blockSize: 8))
        XCTAssertThrowsError(try Dataset.load(cfg, vocabSize: 300, blockSize: 600)) { XCTAssert("\($0)".contains("block_size")) }
        cfg.path = dir.appendingPathComponent("missing.txt").path
        XCTAssertThrowsError(try Dataset.load(cfg, vocabSize: 256, blockSize: 8)) { XCTAssert("\($0)".contains("missing.txt")) }
    }
}

final class SafeTensorsTests: XCTestCase {
    func testRoundTrip() throws {
        let data = SafeTensors.encode([("a", SafeTensor(shape: [2, 3], floats: [1, 2, 3, 4, 5, 6])),
                                       ("b.c", SafeTensor(shape: [1], floats: [-0.5])),
                                       ("ids", SafeTensor(shape: [2], ints: [7, -1]))],
                                      metadata: ["config": "{\"x\": \"y\"}"])
        let (t, meta) = try SafeTensors.decode(data, source: "mem")
        XCTAssertEqual(t["a"]?.floats, [1, 2, 3, 4, 5, 6])
        XCTAssertEqual(t["a"]?.shape, [2, 3])
        XCTAssertEqual(t["b.c"]?.floats, [-0.5])
        XCTAssertEqual(t["ids"]?.ints, [7, -1])
        XCTAssertEqual(meta["config"], "{\"x\": \"y\"}")
        let headerLength = data.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
        XCTAssertEqual((8 + Int(headerLength)) % 8, 0, "data section is 8-byte aligned")
    }

    /// Encoding from views into buffers gives the same file as encoding copied values.
    func testViewsEncodeLikeValues() {
        let values: [Float] = [1, 2, 3, 4, 5, 6, -0.5]
        let copied = SafeTensors.encode([("a", SafeTensor(shape: [2, 3], floats: Array(values[0 ..< 6]))),
                                         ("b", SafeTensor(shape: [1], floats: [-0.5]))], metadata: ["k": "v"])
        let viewed = values.withUnsafeBufferPointer { p in
            SafeTensors.encode(views: [("a", [2, 3], UnsafeBufferPointer(rebasing: p[0 ..< 6])),
                                       ("b", [1], UnsafeBufferPointer(rebasing: p[6 ..< 7]))], metadata: ["k": "v"])
        }
        XCTAssertEqual(viewed, copied)
    }

    func testRefusesBadFiles() {
        let good = SafeTensors.encode([("a", SafeTensor(shape: [4], floats: [1, 2, 3, 4]))])
        XCTAssertThrowsError(try SafeTensors.decode(good.dropLast(4), source: "truncated")) { XCTAssert("\($0)".contains("truncated")) }
        XCTAssertThrowsError(try SafeTensors.decode(Data([1, 2]), source: "tiny"))
        var badLength = good
        badLength[0] = 0xFF
        XCTAssertThrowsError(try SafeTensors.decode(badLength, source: "len"))
        let overlap = Data(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#.utf8)
        var file = Data()
        withUnsafeBytes(of: UInt64(overlap.count).littleEndian) { file.append(contentsOf: $0) }
        file.append(overlap)
        file.append(Data(count: 12))
        XCTAssertThrowsError(try SafeTensors.decode(file, source: "overlap")) { XCTAssert("\($0)".contains("overlap")) }
    }
}

final class StreamSamplerTests: XCTestCase {
    func testStreamsAreReadWindowAfterWindow() {
        // 4 streams of 25 tokens, T = 5: 4 windows each (the last token of a stream is only a target)
        let s = WindowSampler(trainCount: 100, blockSize: 5, seed: 1, shuffle: false, streams: 4)
        XCTAssertEqual(s.windowsPerStream, 4)
        XCTAssertEqual((0 ..< 4).map { s.start(ofSample: $0) }, [0, 25, 50, 75], "step 0: the first window of each stream")
        XCTAssertEqual((4 ..< 8).map { s.start(ofSample: $0) }, [5, 30, 55, 80], "step 1: the next window of the same streams")
        XCTAssertEqual(s.start(ofSample: 4 * 4 + 2), 50, "after 4 windows the stream starts over")
        XCTAssert(s.startsStream(sample: 2))
        XCTAssertFalse(s.startsStream(sample: 6))
        XCTAssert(s.startsStream(sample: 17))
    }
}
