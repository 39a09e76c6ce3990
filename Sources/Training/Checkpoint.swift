import Foundation
import Optim
import Tensors

/// What `state.json` of a checkpoint holds.
public struct CheckpointState: Codable, Equatable, Sendable {
    public var formatVersion = 1
    /// Optimizer updates applied; the resumed run starts with this step.
    public var step: Int
    public var config: Config
    public var configSHA256: String
    public var worldSize: Int
    /// The data cursor: the next global sample to draw (= step · global batch).
    public var nextSample: Int
    /// The metrics file's lines so far (so a resumed run continues it without gaps or repeats).
    public var metrics: [String]
    /// SHA-256 of each data file of the checkpoint.
    public var files: [String: String]
    /// SHA-256 of this state itself, computed with this field empty.
    public var stateSHA256 = ""

    enum CodingKeys: String, CodingKey {
        case formatVersion = "format_version", step, config, configSHA256 = "config_sha256", worldSize = "world_size"
        case nextSample = "next_sample", metrics, files, stateSHA256 = "state_sha256"
    }

    func encoded() -> Data {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .prettyPrinted]
        return try! e.encode(self)
    }

    /// The state with its self-checksum filled in.
    func sealed() -> CheckpointState {
        var s = self
        s.stateSHA256 = ""
        s.stateSHA256 = SHA256.hex(SHA256.hash(s.encoded()))
        return s
    }
}

/// A checkpoint that cannot be used, naming the file and the reason.
public struct CheckpointError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A verified checkpoint read by rank 0.
public struct LoadedCheckpoint {
    public let path: String
    public let state: CheckpointState
    public let model: [String: SafeTensor]
    public let optimizer: [String: SafeTensor]
    public let optimizerStep: Int
}

/// Checkpoint directories (DESIGN, Checkpoints): `model.safetensors`, `optimizer.safetensors` and
/// `state.json`, written by rank 0 into a temporary directory, fsynced, renamed into place; then the
/// `latest` pointer is moved the same way and only the newest K are kept.
public enum Checkpoint {
    public static let latestName = "latest"
    static let modelFile = "model.safetensors"
    static let optimizerFile = "optimizer.safetensors"
    static let stateFile = "state.json"
    static let streamStateName = "stream_state"

    public static func directoryName(step: Int) -> String { String(format: "step-%08d", step) }

    /// The step of a `step-NNNNNNNN` directory name.
    public static func step(ofDirectory name: String) -> Int? {
        guard name.hasPrefix("step-"), name.count == 13 else { return nil }
        return Int(name.dropFirst(5))
    }

    // MARK: - Writing

    /// Writes the checkpoint of `trainer` after `step` updates into `root` and returns its path.
    @discardableResult
    public static func write(_ trainer: Trainer, step: Int, metrics: [String], root: String) throws -> String {
        let arena = trainer.model.arena
        let config = trainer.config
        let name = directoryName(step: step)
        let fm = FileManager.default
        let final = "\(root)/\(name)"
        let tmp = "\(root)/.\(name).tmp-\(getpid())"
        do {
            try fm.createDirectory(atPath: root, withIntermediateDirectories: true)
            try? fm.removeItem(atPath: tmp)
            try fm.createDirectory(atPath: tmp, withIntermediateDirectories: false)
            // One file's bytes in memory at a time: encode, hash, write, release.
            let modelHash = try writeHashed(Weights.encode(arena, config: config, step: step), to: "\(tmp)/\(modelFile)")
            let optimizerHash = try writeHashed(encodeOptimizer(trainer.optimizer, layout: arena.layout,
                                                                streamState: trainer.stateful == nil ? nil : trainer.streamState,
                                                                streams: config.batch.globalBatch),
                                                to: "\(tmp)/\(optimizerFile)")
            let state = CheckpointState(step: step, config: config,
                                        configSHA256: SHA256.hex(SHA256.hash(Array(config.canonicalJSON().utf8))),
                                        worldSize: trainer.comm.size, nextSample: step * config.batch.globalBatch,
                                        metrics: metrics, files: [modelFile: modelHash, optimizerFile: optimizerHash]).sealed()
            try writeSynced(state.encoded(), to: "\(tmp)/\(stateFile)")
            try syncDirectory(tmp)
            if fm.fileExists(atPath: final) { try fm.removeItem(atPath: final) }
            guard rename(tmp, final) == 0 else { throw posixError("rename \(tmp) → \(final)") }
            try syncDirectory(root)
            try writeAtomically(Data((name + "\n").utf8), to: "\(root)/\(latestName)")
        } catch {
            try? fm.removeItem(atPath: tmp)
            let previous = (try? newest(in: root).map { ($0 as NSString).lastPathComponent }) ?? nil
            throw CheckpointError("checkpoint \(name) not written (\(error)); \(previous.map { "the previous checkpoint \($0) is intact" } ?? "no earlier checkpoint exists")")
        }
        prune(root, keep: config.training.keepCheckpoints, current: step)
        return final
    }

    /// The optimizer's state by name, and (stateful training) the streams' carried state.
    static func encodeOptimizer(_ opt: Optimizer, layout: ParameterLayout, streamState: FloatBuffer?, streams: Int) -> Data {
        var views: [(name: String, shape: [Int], values: UnsafeBufferPointer<Float>)] = []
        if let streamState {
            views.append((streamStateName, [streams, streamState.count / streams],
                          UnsafeBufferPointer(start: streamState.pointer, count: streamState.count)))
        }
        for (prefix, buffer) in opt.state {
            for e in layout.entries {
                views.append(("\(prefix).\(e.name)", e.shape, UnsafeBufferPointer(start: buffer.pointer + e.offset, count: e.count)))
            }
        }
        return SafeTensors.encode(views: views, metadata: ["format": "lockstep-optimizer", "kind": opt.kind,
                                                      "state": opt.state.map(\.name).joined(separator: ","), "step": "\(opt.step)"])
    }

    /// Removes all but the newest `keep` checkpoints (never the one just written).
    static func prune(_ root: String, keep: Int, current: Int) {
        let steps = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).compactMap(step(ofDirectory:)).sorted(by: >)
        for s in steps.dropFirst(keep) where s != current {
            try? FileManager.default.removeItem(atPath: "\(root)/\(directoryName(step: s))")
        }
    }

    // MARK: - Reading

    /// Reads and verifies a checkpoint directory: state self-checksum, file checksums, safetensors
    /// structure, and that it fits `layout` (the same model) and its own optimizer's state.
    public static func read(_ path: String, layout: ParameterLayout) throws -> LoadedCheckpoint {
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue else {
            throw CheckpointError("\(path): not a checkpoint directory")
        }
        let statePath = "\(path)/\(stateFile)"
        guard let stateData = fm.contents(atPath: statePath) else { throw CheckpointError("\(statePath): missing or unreadable") }
        let state: CheckpointState
        do { state = try JSONDecoder().decode(CheckpointState.self, from: stateData) } catch {
            throw CheckpointError("\(statePath): not a valid checkpoint state (\(error))")
        }
        guard state.sealed().stateSHA256 == state.stateSHA256 else {
            throw CheckpointError("\(statePath): checksum mismatch (the file was modified or corrupted)")
        }
        guard state.formatVersion == 1 else { throw CheckpointError("\(statePath): unsupported format_version \(state.formatVersion)") }
        var contents: [String: Data] = [:]
        for file in [modelFile, optimizerFile] {
            let p = "\(path)/\(file)"
            guard let data = fm.contents(atPath: p) else { throw CheckpointError("\(p): missing or unreadable") }
            guard let expected = state.files[file] else { throw CheckpointError("\(statePath): no checksum for \(file)") }
            guard SHA256.hex(SHA256.hash(data)) == expected else {
                throw CheckpointError("\(p): checksum mismatch (truncated or corrupted)")
            }
            contents[file] = data
        }
        let model: [String: SafeTensor], optimizer: [String: SafeTensor], optMeta: [String: String]
        do {
            model = try SafeTensors.decode(contents[modelFile]!, source: "\(path)/\(modelFile)").tensors
            (optimizer, optMeta) = try SafeTensors.decode(contents[optimizerFile]!, source: "\(path)/\(optimizerFile)")
        } catch { throw CheckpointError("\(error)") }
        for e in layout.entries {
            guard let t = model[e.name] else { throw CheckpointError("\(path)/\(modelFile): tensor '\(e.name)' is missing (a different model?)") }
            guard t.shape == e.shape else {
                throw CheckpointError("\(path)/\(modelFile): tensor '\(e.name)' has shape \(t.shape), this model needs \(e.shape) (a different model)")
            }
        }
        let stateNames = state.config.optimizer.makeOptimizer(ParameterLayout()).state.map(\.name)
        guard optMeta["kind"] == state.config.optimizer.kind else {
            throw CheckpointError("\(path)/\(optimizerFile): holds \(optMeta["kind"] ?? "no") optimizer state, the config says \(state.config.optimizer.kind)")
        }
        for e in layout.entries {
            for prefix in stateNames where optimizer["\(prefix).\(e.name)"]?.shape != e.shape {
                throw CheckpointError("\(path)/\(optimizerFile): state '\(prefix).\(e.name)' is missing or misshapen")
            }
        }
        let streamTensors = optimizer[streamStateName] == nil ? 0 : 1
        guard streamTensors == (state.config.model.stateful ? 1 : 0) else {
            throw CheckpointError("\(path)/\(optimizerFile): the stream state is \(streamTensors == 1 ? "present" : "missing") but the config says stateful \(state.config.model.stateful)")
        }
        guard optimizer.count == stateNames.count * layout.entries.count + streamTensors else {
            throw CheckpointError("\(path)/\(optimizerFile): holds \(optimizer.count) tensors, expected \(stateNames.count * layout.entries.count)")
        }
        guard model.count == layout.entries.count else {
            throw CheckpointError("\(path)/\(modelFile): holds \(model.count) tensors, this model has \(layout.entries.count) (a different model)")
        }
        guard let optStep = optMeta["step"].flatMap(Int.init), optStep >= 0 else {
            throw CheckpointError("\(path)/\(optimizerFile): no optimizer step in the metadata")
        }
        return LoadedCheckpoint(path: path, state: state, model: model, optimizer: optimizer, optimizerStep: optStep)
    }

    /// Checkpoint directories under `root`, newest first: the `latest` pointer's target, then
    /// every `step-*` directory by step.
    public static func candidates(in root: String) -> [String] {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? [])
            .filter { step(ofDirectory: $0) != nil }.sorted { step(ofDirectory: $0)! > step(ofDirectory: $1)! }
        var ordered: [String] = []
        if let pointer = FileManager.default.contents(atPath: "\(root)/\(latestName)"),
           let name = String(data: pointer, encoding: .utf8)?.trimmingCharacters(in: .whitespacesAndNewlines),
           step(ofDirectory: name) != nil, names.contains(name) {
            ordered.append(name)
        }
        ordered += names.filter { !ordered.contains($0) }
        return ordered.map { "\(root)/\($0)" }
    }

    /// The newest checkpoint path under `root`, valid or not.
    static func newest(in root: String) throws -> String? { candidates(in: root).first }

    /// The newest checkpoint under `root` that verifies, with the refusals met on the way.
    public static func newestValid(in root: String, layout: ParameterLayout) -> (checkpoint: LoadedCheckpoint?, refused: [String]) {
        var refused: [String] = []
        for path in candidates(in: root) {
            do { return (try read(path, layout: layout), refused) } catch { refused.append("\(error)") }
        }
        return (nil, refused)
    }

    // MARK: - Files

    static func posixError(_ what: String) -> CheckpointError {
        CheckpointError("\(what): \(String(cString: strerror(errno)))")
    }

    /// Writes a new file, fsyncs it and returns the SHA-256 (hex) of its bytes.
    static func writeHashed(_ data: Data, to path: String) throws -> String {
        try writeSynced(data, to: path)
        return SHA256.hex(SHA256.hash(data))
    }

    /// Writes a new file and fsyncs it.
    static func writeSynced(_ data: Data, to path: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw posixError("cannot create \(path)") }
        defer { close(fd) }
        try data.withUnsafeBytes { raw in
            var done = 0
            while done < raw.count {
                let n = Glibc.write(fd, raw.baseAddress! + done, raw.count - done)
                if n < 0 { throw posixError("cannot write \(path)") }
                if n == 0 { throw CheckpointError("cannot write \(path): no progress") }
                done += n
            }
        }
        guard fsync(fd) == 0 else { throw posixError("cannot fsync \(path)") }
    }

    static func syncDirectory(_ path: String) throws {
        let fd = open(path, O_RDONLY | O_DIRECTORY)
        guard fd >= 0 else { throw posixError("cannot open directory \(path)") }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw posixError("cannot fsync directory \(path)") }
    }
}
