import Foundation
import Tensors

extension Config {
    /// The config with the fields a resumed run may change blanked out: run length, logging,
    /// evaluation and checkpoint cadence, output directory, threads, micro-batch and bucket size.
    func resumeInvariant() -> Config {
        var c = self
        c.training.steps = 0
        c.training.evalInterval = 0
        c.training.logInterval = 1
        c.training.checkpointInterval = 0
        c.training.keepCheckpoints = 1
        c.training.outputDir = "-"
        c.training.blasThreads = nil
        c.training.allreduceBucketMB = 1
        c.training.wallBudgetS = nil
        c.batch.microBatch = c.batch.globalBatch
        return c
    }

    /// Dotted names of the fields where `a` and `b` differ.
    static func differingFields(_ a: Config, _ b: Config) -> [String] {
        func object(_ c: Config) -> [String: Any] {
            (try? JSONSerialization.jsonObject(with: Data(c.canonicalJSON().utf8))) as? [String: Any] ?? [:]
        }
        func walk(_ x: Any?, _ y: Any?, _ path: String, _ out: inout [String]) {
            if let dx = x as? [String: Any], let dy = y as? [String: Any] {
                for k in Set(dx.keys).union(dy.keys).sorted() { walk(dx[k], dy[k], path.isEmpty ? k : "\(path).\(k)", &out) }
            } else if "\(x ?? "null")" != "\(y ?? "null")" {
                out.append(path)
            }
        }
        var out: [String] = []
        walk(object(a), object(b), "", &out)
        return out
    }
}

extension Trainer {
    /// Where `--resume` points: `auto` (the newest valid checkpoint under the output directory),
    /// a checkpoint directory, or a directory of checkpoints. Returns the verified checkpoint (nil
    /// when there is none yet) and lines to tell the user (refusals, fallbacks). Rank 0 only.
    public func locateCheckpoint(_ resume: String) throws -> (LoadedCheckpoint?, [String]) {
        let layout = model.arena.layout
        let fm = FileManager.default
        if resume != "auto" && fm.fileExists(atPath: "\(resume)/state.json") {
            return (try Checkpoint.read(resume, layout: layout), [])
        }
        let root = resume == "auto" ? "\(config.training.outputDir)/checkpoints" : resume
        let candidates = Checkpoint.candidates(in: root)
        if candidates.isEmpty {
            if resume != "auto" { throw CheckpointError("\(resume): no checkpoint there (expected a step-NNNNNNNN directory or a directory of them)") }
            return (nil, ["no checkpoint in \(root) yet; starting from step 0"])
        }
        let (found, refused) = Checkpoint.newestValid(in: root, layout: layout)
        guard let found else {
            throw CheckpointError("no valid checkpoint in \(root): \(refused.joined(separator: "; "))")
        }
        var notes = refused.map { "refused checkpoint: \($0)" }
        if !refused.isEmpty { notes.append("falling back to \(found.path)") }
        return (found, notes)
    }

    /// Loads a verified checkpoint into this trainer (rank 0): parameters, moments, optimizer step,
    /// the step to continue from and the metrics so far. Refuses a checkpoint of another config.
    public func restore(_ ckpt: LoadedCheckpoint) throws {
        let differing = Config.differingFields(ckpt.state.config.resumeInvariant(), config.resumeInvariant())
        guard differing.isEmpty else {
            throw CheckpointError("\(ckpt.path): written with a different config (\(differing.joined(separator: ", ")) differ); resume with the run's config")
        }
        try Weights.assign(ckpt.model, source: "\(ckpt.path)/model.safetensors", into: model.arena)
        for e in model.arena.layout.entries {
            for (prefix, buffer) in optimizer.state {
                let values = ckpt.optimizer["\(prefix).\(e.name)"]!.floats
                values.withUnsafeBufferPointer { (buffer.pointer + e.offset).update(from: $0.baseAddress!, count: e.count) }
            }
        }
        optimizer.step = ckpt.optimizerStep
        if stateful != nil {
            guard let saved = ckpt.optimizer[Checkpoint.streamStateName], saved.floats.count == streamState.count else {
                throw CheckpointError("\(ckpt.path)/optimizer.safetensors: the stream state does not fit this run")
            }
            saved.floats.withUnsafeBufferPointer { streamState.pointer.update(from: $0.baseAddress!, count: streamState.count) }
        }
        startStep = ckpt.state.step
        restoredMetrics = ckpt.state.metrics
        restoredEvalStep = ckpt.state.metrics.contains { $0.contains("\"type\":\"eval\",\"step\":\(ckpt.state.step),") } ? ckpt.state.step : nil
    }

    /// Copies rank 0's training state (parameters, moments, steps) to every rank.
    func broadcastTrainingState() {
        let bytes = model.arena.count * MemoryLayout<Float>.stride
        comm.broadcast(model.arena.parameters.pointer, count: bytes, root: 0)
        for (_, buffer) in optimizer.state { comm.broadcast(buffer.pointer, count: bytes, root: 0) }
        if stateful != nil {
            comm.broadcast(streamState.pointer, count: streamState.count * MemoryLayout<Float>.stride, root: 0)
            keepOwnStreamRows()
        }
        var header: [Int64] = [Int64(startStep), Int64(optimizer.step), Int64(restoredEvalStep ?? -1)]
        header.withUnsafeMutableBytes { comm.broadcast($0.baseAddress!, count: $0.count, root: 0) }
        startStep = Int(header[0])
        optimizer.step = Int(header[1])
        restoredEvalStep = header[2] >= 0 ? Int(header[2]) : nil
    }
}
