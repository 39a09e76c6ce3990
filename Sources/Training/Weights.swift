import Foundation
import Models
import Tensors

/// Builds the model a config names, with activation buffers for `maxBatch` sequences.
public func makeModel(_ config: ModelConfig, maxBatch: Int) -> LanguageModel {
    if let recurrent = config.recurrent { return RecurrentLM(config: recurrent, maxBatch: maxBatch) }
    return GPT(config: config.gpt, maxBatch: maxBatch)
}

/// Model weights as a safetensors file: parameters by name (PyTorch layout), and the run's
/// config in the metadata so `eval` and `sample` need nothing else.
public enum Weights {
    /// nanoGPT's state dict also names the tied head; it is accepted on load when equal to `wte`.
    static let tiedHeadName = "lm_head.weight"
    static let tiedSourceName = "transformer.wte.weight"

    public static func encode(_ arena: ParameterArena, config: Config, step: Int) -> Data {
        let views = arena.layout.entries.map { e in
            (name: e.name, shape: e.shape, values: UnsafeBufferPointer(start: arena.parameters.pointer + e.offset, count: e.count))
        }
        return SafeTensors.encode(views: views, metadata: ["format": "lockstep", "config": config.canonicalJSON(), "step": "\(step)"])
    }

    /// Writes atomically: a temporary file in the same directory, fsync, rename.
    public static func save(_ arena: ParameterArena, config: Config, step: Int, path: String) throws {
        try writeAtomically(encode(arena, config: config, step: step), to: path)
    }

    /// Loads parameters by name. Every tensor of the layout must be present with its shape, and
    /// the file may hold no other tensor (except nanoGPT's tied `lm_head.weight`).
    public static func load(path: String, into arena: ParameterArena) throws {
        let (tensors, _) = try SafeTensors.read(path: path)
        try assign(tensors, source: path, into: arena)
    }

    public static func assign(_ tensors: [String: SafeTensor], source: String, into arena: ParameterArena) throws {
        let names = Set(arena.layout.entries.map(\.name))
        for name in tensors.keys.sorted() where !names.contains(name) {
            if name == tiedHeadName, let head = tensors[name], let wte = tensors[tiedSourceName], head == wte { continue }
            throw SafeTensorsError("\(source): tensor '\(name)' is not a parameter of this model")
        }
        for e in arena.layout.entries {
            guard let t = tensors[e.name] else { throw SafeTensorsError("\(source): tensor '\(e.name)' is missing") }
            guard t.dtype == .f32 else { throw SafeTensorsError("\(source): tensor '\(e.name)' is \(t.dtype.rawValue), expected F32") }
            guard t.shape == e.shape else {
                throw SafeTensorsError("\(source): tensor '\(e.name)' has shape \(t.shape), the model needs \(e.shape)")
            }
            t.floats.withUnsafeBufferPointer { (arena.parameters.pointer + e.offset).update(from: $0.baseAddress!, count: e.count) }
        }
    }

    /// The config stored in a Lockstep weights file.
    public static func config(path: String) throws -> Config {
        let (_, meta) = try SafeTensors.read(path: path)
        guard let json = meta["config"] else {
            throw SafeTensorsError("\(path): no Lockstep config in the metadata; pass --config to say which model it is")
        }
        return try Config.decode(Data(json.utf8), source: "\(path) (metadata)")
    }
}

/// Writes `data` to `path` through a temporary file in the same directory, fsyncs it, renames it
/// into place and fsyncs the directory, so a reader sees the old file or the new one, never a torn one.
public func writeAtomically(_ data: Data, to path: String) throws {
    let url = URL(fileURLWithPath: path)
    let dir = url.deletingLastPathComponent().path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let tmp = "\(dir)/.\(url.lastPathComponent).tmp-\(getpid())"
    let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    guard fd >= 0 else { throw DataError("cannot write '\(tmp)': \(String(cString: strerror(errno)))") }
    var ok = data.withUnsafeBytes { raw -> Bool in
        var done = 0
        while done < raw.count {
            let n = write(fd, raw.baseAddress! + done, raw.count - done)
            if n <= 0 { return false }
            done += n
        }
        return true
    }
    let err = errno
    ok = ok && fsync(fd) == 0
    close(fd)
    guard ok else {
        unlink(tmp)
        throw DataError("cannot write '\(path)': \(String(cString: strerror(err == 0 ? errno : err))); the previous file is unchanged")
    }
    guard rename(tmp, path) == 0 else {
        unlink(tmp)
        throw DataError("cannot rename into '\(path)': \(String(cString: strerror(errno)))")
    }
    let dfd = open(dir, O_RDONLY)
    if dfd >= 0 { fsync(dfd); close(dfd) }
}
