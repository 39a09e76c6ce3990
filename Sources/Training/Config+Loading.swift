import Foundation

/// A configuration that cannot be used, as one line naming the field and the fix.
public struct ConfigError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

struct AnyKey: CodingKey {
    var stringValue: String
    var intValue: Int?
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { self.stringValue = "\(intValue)"; self.intValue = intValue }
}

extension Decoder {
    /// Throws when the object being decoded has a key that `Keys` does not name.
    func rejectUnknownKeys<Keys: CodingKey & CaseIterable>(_: Keys.Type) throws {
        let allowed = Set(Keys.allCases.map(\.stringValue))
        let c = try container(keyedBy: AnyKey.self)
        for key in c.allKeys where !allowed.contains(key.stringValue) {
            let path = (codingPath.map(\.stringValue) + [key.stringValue]).joined(separator: ".")
            throw ConfigError("unknown key '\(path)' (allowed here: \(allowed.sorted().joined(separator: ", ")))")
        }
    }
}

private func fieldPath(_ path: [CodingKey], _ extra: CodingKey? = nil) -> String {
    let keys = (path + (extra.map { [$0] } ?? [])).map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }
    return keys.joined(separator: ".").replacingOccurrences(of: ".[", with: "[")
}

extension Config {
    /// Decodes and validates a config from JSON bytes; `source` names it in errors.
    public static func decode(_ data: Data, source: String) throws -> Config {
        let config: Config
        do {
            config = try JSONDecoder().decode(Config.self, from: data)
        } catch let e as ConfigError {
            throw ConfigError("config \(source): \(e.description)")
        } catch let DecodingError.typeMismatch(type, ctx) {
            throw ConfigError("config \(source): field '\(fieldPath(ctx.codingPath))' has the wrong type (expected \(type))")
        } catch let DecodingError.dataCorrupted(ctx) {
            if ctx.codingPath.isEmpty {
                throw ConfigError("config \(source): not valid JSON (\(ctx.underlyingError.map { "\($0)" } ?? ctx.debugDescription))")
            }
            throw ConfigError("config \(source): field '\(fieldPath(ctx.codingPath))' has an invalid value (\(ctx.debugDescription))")
        } catch let DecodingError.valueNotFound(_, ctx) {
            throw ConfigError("config \(source): field '\(fieldPath(ctx.codingPath))' is null; give a value or leave it out")
        } catch let DecodingError.keyNotFound(key, ctx) {
            throw ConfigError("config \(source): field '\(fieldPath(ctx.codingPath, key))' is missing")
        } catch {
            throw ConfigError("config \(source): \(error)")
        }
        try config.validate(source: source)
        return config
    }

    /// Reads and validates a config file.
    public static func load(path: String) throws -> Config {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigError("config file '\(path)' not found or unreadable; pass an existing JSON file to --config")
        }
        return try decode(data, source: path)
    }

    /// Canonical JSON (sorted keys), used for hashing and for storing the config beside weights.
    public func canonicalJSON() -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: try! encoder.encode(self), as: UTF8.self)
    }

    /// Refuses impossible values with one line naming the field.
    public func validate(source: String = "config") throws {
        func fail(_ field: String, _ why: String) -> ConfigError { ConfigError("config \(source): field '\(field)' \(why)") }
        let m = model
        guard ModelConfig.kinds.contains(m.kind) else {
            throw fail("model.kind", "is '\(m.kind)'; allowed: \(ModelConfig.kinds.joined(separator: ", "))")
        }
        if let h = m.hidden, h <= 0 { throw fail("model.hidden", "must be positive") }
        if m.stateful {
            guard m.recurrentCell != nil else { throw fail("model.stateful", "needs a recurrent model.kind (rnn, lstm, gru)") }
            guard !data.shuffle else { throw fail("model.stateful", "needs data.shuffle false (streams are read window after window)") }
        }
        guard m.vocabSize > 0 else { throw fail("model.vocab_size", "must be positive") }
        guard m.blockSize > 0 else { throw fail("model.block_size", "must be positive") }
        guard m.nLayer > 0 else { throw fail("model.n_layer", "must be positive") }
        guard m.nHead > 0 else { throw fail("model.n_head", "must be positive") }
        guard m.nEmbd > 0 else { throw fail("model.n_embd", "must be positive") }
        guard m.recurrentCell != nil || m.nEmbd % m.nHead == 0 else {
            throw fail("model.n_embd", "(\(m.nEmbd)) must be divisible by model.n_head (\(m.nHead))")
        }
        guard m.dropout >= 0 && m.dropout < 1 else { throw fail("model.dropout", "must be in [0, 1)") }
        if let f = data.format, f != "text", f != "tokens" {
            throw fail("data.format", "is '\(f)'; allowed: text, tokens")
        }
        guard data.valFraction > 0 && data.valFraction < 1 else { throw fail("data.val_fraction", "must be in (0, 1)") }
        guard batch.microBatch > 0 else { throw fail("batch.micro_batch", "must be positive") }
        guard batch.globalBatch > 0 else { throw fail("batch.global_batch", "must be positive") }
        guard batch.globalBatch % batch.microBatch == 0 else {
            throw fail("batch.global_batch", "(\(batch.globalBatch)) must be a multiple of batch.micro_batch (\(batch.microBatch))")
        }
        let o = optimizer
        guard OptimizerConfig.kinds.contains(o.kind) else {
            throw fail("optimizer.kind", "is '\(o.kind)'; allowed: \(OptimizerConfig.kinds.joined(separator: ", "))")
        }
        guard o.momentum >= 0 && o.momentum < 1 else { throw fail("optimizer.momentum", "must be in [0, 1)") }
        if o.kind == "sgd" && o.nesterov && o.momentum == 0 { throw fail("optimizer.nesterov", "needs optimizer.momentum > 0") }
        guard o.lr > 0 && o.lr.isFinite else { throw fail("optimizer.lr", "must be a positive number") }
        guard o.betas.count == 2, o.betas.allSatisfy({ $0 >= 0 && $0 < 1 }) else {
            throw fail("optimizer.betas", "must be two numbers in [0, 1)")
        }
        guard o.eps > 0 else { throw fail("optimizer.eps", "must be positive") }
        guard o.weightDecay >= 0 else { throw fail("optimizer.weight_decay", "must be non-negative") }
        guard o.clip >= 0 else { throw fail("optimizer.clip", "must be non-negative (0 disables clipping)") }
        let s = schedule
        guard ScheduleConfig.kinds.contains(s.kind) else {
            throw fail("schedule.kind", "is '\(s.kind)'; allowed: \(ScheduleConfig.kinds.joined(separator: ", "))")
        }
        guard s.warmup >= 0 else { throw fail("schedule.warmup", "must be non-negative") }
        if s.kind == "warmup-cosine" || s.kind == "linear" {
            guard s.decaySteps >= s.warmup else { throw fail("schedule.decay_steps", "must be at least schedule.warmup") }
            guard s.minLR >= 0 && s.minLR <= o.lr else { throw fail("schedule.min_lr", "must be in [0, optimizer.lr]") }
        }
        let t = training
        guard t.steps >= 0 else { throw fail("training.steps", "must be non-negative") }
        guard t.evalInterval >= 0 else { throw fail("training.eval_interval", "must be non-negative (0: only at the end)") }
        guard t.evalWindows > 0 else { throw fail("training.eval_windows", "must be positive") }
        guard t.logInterval > 0 else { throw fail("training.log_interval", "must be positive") }
        guard t.checkpointInterval >= 0 else { throw fail("training.checkpoint_interval", "must be non-negative (0: only at the end)") }
        guard t.keepCheckpoints >= 1 else { throw fail("training.keep_checkpoints", "must be at least 1") }
        guard !t.outputDir.isEmpty else { throw fail("training.output_dir", "must not be empty") }
        if let n = t.blasThreads, n <= 0 { throw fail("training.blas_threads", "must be positive") }
        if let b = t.wallBudgetS, !(b > 0) { throw fail("training.wall_budget_s", "must be positive (leave it out for no budget)") }
        guard t.allreduceBucketMB > 0 && t.allreduceBucketMB <= 1024 else {
            throw fail("training.allreduce_bucket_mb", "must be in (0, 1024]")
        }
    }
}
