import Foundation
import Tensors

/// Byte-level tokenizer: token = byte value, vocab 256.
public enum ByteTokenizer {
    public static func encode(_ bytes: Data) -> [Int32] { bytes.map { Int32($0) } }
    public static func encode(_ text: String) -> [Int32] { Array(text.utf8).map { Int32($0) } }
    /// Decodes bytes as UTF-8, replacing invalid sequences.
    public static func decode(_ tokens: [Int32]) -> String {
        String(decoding: tokens.map { UInt8(clamping: $0) }, as: UTF8.self)
    }
}

/// The corpus that ships inside the package (tiny Shakespeare, 1,115,394 bytes).
public enum EmbeddedCorpus {
    public static let name = "tinyshakespeare.txt"

    /// Where the corpus resource lies: next to the executable (or the test bundle), in the
    /// resource bundle SwiftPM builds for this target.
    public static func url() throws -> URL {
        let bundleName = "Lockstep_Training.resources"
        var dirs: [URL] = []
        let exe = URL(fileURLWithPath: CommandLine.arguments.first ?? ".").resolvingSymlinksInPath()
        dirs.append(exe.deletingLastPathComponent())
        if let p = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            dirs.append(URL(fileURLWithPath: p).deletingLastPathComponent())
        }
        dirs.append(Bundle.main.bundleURL)
        dirs.append(contentsOf: Bundle.allBundles.map { $0.bundleURL.deletingLastPathComponent() })
        for dir in dirs {
            let candidate = dir.appendingPathComponent(bundleName).appendingPathComponent(name)
            if FileManager.default.fileExists(atPath: candidate.path) { return candidate }
        }
        throw DataError("embedded corpus \(bundleName)/\(name) not found next to the executable; rebuild with `swift build` or set data.path")
    }

    public static func load() throws -> Data {
        let u = try url()
        guard let data = FileManager.default.contents(atPath: u.path) else {
            throw DataError("embedded corpus '\(u.path)' is unreadable")
        }
        return data
    }
}

/// Tokens split into train and validation, with the window scheme of the TTL protocol.
public struct Dataset: Sendable {
    public let tokens: [Int32]
    public let trainCount: Int
    public let source: String

    public var train: ArraySlice<Int32> { tokens[0 ..< trainCount] }
    public var val: ArraySlice<Int32> { tokens[trainCount...] }

    /// Splits `tokens`: the last `valFraction` is validation (`trainCount = floor((1 − f)·n)`
    /// in integer arithmetic for f = 0.1, matching the TTL protocol).
    public init(tokens: [Int32], valFraction: Double, source: String) {
        self.tokens = tokens
        self.source = source
        let tenths = (valFraction * 10).rounded()
        if abs(valFraction * 10 - tenths) < 1e-12 {
            trainCount = tokens.count * Int(10 - tenths) / 10
        } else {
            trainCount = Int((Double(tokens.count) * (1 - valFraction)).rounded(.down))
        }
    }

    /// Loads the data a config names, checks every token against the vocabulary and that both
    /// splits hold at least one window of `blockSize + 1` tokens.
    public static func load(_ config: DataConfig, vocabSize: Int, blockSize: Int) throws -> Dataset {
        let tokens: [Int32]
        let source: String
        if let path = config.path {
            source = path
            let format = config.format ?? (path.hasSuffix(".bin") ? "tokens" : "text")
            if format == "tokens" {
                tokens = try TokenFile.read(path: path)
            } else {
                guard let data = FileManager.default.contents(atPath: path) else {
                    throw DataError("data file '\(path)' not found or unreadable; fix data.path in the config")
                }
                tokens = ByteTokenizer.encode(data)
            }
        } else {
            source = "embedded:\(EmbeddedCorpus.name)"
            tokens = ByteTokenizer.encode(try EmbeddedCorpus.load())
        }
        if let bad = tokens.firstIndex(where: { $0 < 0 || Int($0) >= vocabSize }) {
            throw DataError("\(source): token \(tokens[bad]) at position \(bad) is out of range for model.vocab_size \(vocabSize)")
        }
        let ds = Dataset(tokens: tokens, valFraction: config.valFraction, source: source)
        guard ds.trainCount > blockSize + 1 else {
            throw DataError("\(source): the train split has \(ds.trainCount) tokens, fewer than model.block_size + 2 = \(blockSize + 2); use more data or a smaller block_size")
        }
        guard ds.tokens.count - ds.trainCount > blockSize else {
            throw DataError("\(source): the validation split has \(ds.tokens.count - ds.trainCount) tokens, fewer than model.block_size + 1 = \(blockSize + 1); raise data.val_fraction or use a smaller block_size")
        }
        return ds
    }
}

/// Maps a global sample number to the start of its training window, a pure function of the seed.
public struct WindowSampler: Sendable {
    public let trainCount: Int
    public let blockSize: Int
    public let seed: UInt64
    public let shuffle: Bool
    /// For stateful training: the number of streams (the global batch); nil otherwise.
    public let streams: Int?

    public init(trainCount: Int, blockSize: Int, seed: UInt64, shuffle: Bool, streams: Int? = nil) {
        self.trainCount = trainCount
        self.blockSize = blockSize
        self.seed = seed
        self.shuffle = shuffle
        self.streams = streams
    }

    /// Windows per stream of stateful training.
    public var windowsPerStream: Int { streams.map { (trainCount / $0 - 1) / blockSize } ?? 0 }

    /// Whether global sample `i` begins its stream afresh (its state starts from zero).
    public func startsStream(sample i: Int) -> Bool {
        guard let G = streams else { return true }
        return (i / G) % windowsPerStream == 0
    }

    /// Start of global sample `i`: `splitmix(seed, i) mod (n_train − T)` when shuffling,
    /// else `i·T` (wrapping around at the end of the train split); with streams, window
    /// `s mod windowsPerStream` of stream `j` for sample `s·G + j`.
    public func start(ofSample i: Int) -> Int {
        if let G = streams {
            let length = trainCount / G
            return (i % G) * length + ((i / G) % windowsPerStream) * blockSize
        }
        if shuffle {
            return Int(SplitMix64.output(state: seed, index: UInt64(i)) % UInt64(trainCount - blockSize))
        }
        let windows = (trainCount - 1) / blockSize
        return (i % windows) * blockSize
    }

    /// Fills inputs/targets (count·T each) for global samples first..<first+count.
    public func fill(_ data: Dataset, first: Int, count: Int, inputs: UnsafeMutablePointer<Int32>,
                     targets: UnsafeMutablePointer<Int32>) {
        let T = blockSize
        data.tokens.withUnsafeBufferPointer { tok in
            for j in 0 ..< count {
                let o = start(ofSample: first + j)
                (inputs + j * T).update(from: tok.baseAddress! + o, count: T)
                (targets + j * T).update(from: tok.baseAddress! + o + 1, count: T)
            }
        }
    }
}

extension Dataset {
    /// Number of fixed validation windows: window k is val tokens [k·T, k·T + T].
    public func valWindowCount(blockSize T: Int, limit: Int) -> Int {
        min(limit, (tokens.count - trainCount - 1) / T)
    }

    /// Fills inputs/targets for validation windows first..<first+count.
    public func fillValidation(blockSize T: Int, first: Int, count: Int, inputs: UnsafeMutablePointer<Int32>,
                               targets: UnsafeMutablePointer<Int32>) {
        tokens.withUnsafeBufferPointer { tok in
            for j in 0 ..< count {
                let o = trainCount + (first + j) * T
                (inputs + j * T).update(from: tok.baseAddress! + o, count: T)
                (targets + j * T).update(from: tok.baseAddress! + o + 1, count: T)
            }
        }
    }
}
