import ArgumentParser
import Foundation
import Tensors
import Training

@main
struct Lockstep: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lockstep",
        abstract: "Data-parallel training of small language models on CPUs.",
        subcommands: [Train.self, Eval.self, Sample.self, Inspect.self, Prepare.self, Bench.self]
    )

    static func main() {
        // A full disk or file-size limit must fail a write with an error, not kill the process.
        signal(SIGXFSZ, SIG_IGN)
        // `--resume` without a value means the newest valid checkpoint of the run.
        var args = Array(CommandLine.arguments.dropFirst())
        for i in args.indices where args[i] == "--resume" && (i + 1 == args.count || args[i + 1].hasPrefix("-")) {
            args[i] = "--resume=auto"
        }
        main(args)
    }
}

/// Runs `body`, turning a user-facing error into one line on stderr and exit status 1.
func reportingErrors(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let e as ExitCode {
        throw e
    } catch let e as CustomStringConvertible & Error {
        FileHandleOutput.stderr("error: \(e.description)")
        throw ExitCode(1)
    }
}

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Train a model from a config.")

    @Option(help: "JSON config file (default: the built-in default, as configs/shakespeare-gpt.json).")
    var config: String?
    @Option(help: "Override training.steps.") var steps: Int?
    @Option(help: "Override optimizer.lr (peak learning rate).") var lr: Double?
    @Option(help: "Override batch.global_batch (sequences per optimizer step).") var batch: Int?
    @Option(name: .customLong("micro-batch"), help: "Override batch.micro_batch.") var microBatch: Int?
    @Option(help: "Override training.seed.") var seed: UInt64?
    @Option(help: "Override training.output_dir.") var output: String?
    @Option(name: .customLong("eval-interval"), help: "Override training.eval_interval.") var evalInterval: Int?
    @Option(help: "Override training.blas_threads.") var threads: Int?
    @Option(name: .customLong("init-from"), help: "Start from the weights in this safetensors file.")
    var initFrom: String?
    @Option(help: ArgumentHelp("Continue from a checkpoint: alone, the newest valid one under the output directory; or a checkpoint directory.",
                               valueName: "checkpoint"))
    var resume: String?

    func run() throws {
        let job = Job()
        var resumeNotes: [String] = []
        let trainer = try job.start { () throws -> Trainer in
            var cfg = try config.map { try Config.load(path: $0) } ?? Config()
            if let steps { cfg.training.steps = steps }
            if let lr { cfg.optimizer.lr = lr }
            if let batch { cfg.batch.globalBatch = batch }
            if let microBatch { cfg.batch.microBatch = microBatch }
            if let seed { cfg.training.seed = seed }
            if let output { cfg.training.outputDir = output }
            if let evalInterval { cfg.training.evalInterval = evalInterval }
            if let threads { cfg.training.blasThreads = threads }
            try cfg.validate(source: config ?? "(defaults + options)")
            try configureCompute(cfg, override: nil, ranksOnHost: localRanks)
            if resume != nil && initFrom != nil { throw ConfigError("--resume and --init-from exclude each other") }
            let data = try Dataset.load(cfg.data, vocabSize: cfg.model.vocabSize, blockSize: cfg.model.blockSize)
            let trainer = try Trainer(config: cfg, data: data, comm: job.comm, initFrom: initFrom)
            if let resume, job.isRoot {
                let (checkpoint, notes) = try trainer.locateCheckpoint(resume)
                resumeNotes = notes
                if let checkpoint {
                    try trainer.restore(checkpoint)
                    let saved = checkpoint.state.worldSize
                    resumeNotes.append("resuming from \(checkpoint.path) at step \(checkpoint.state.step)"
                        + (saved != job.comm.size ? " (saved with \(saved) ranks, continuing on \(job.comm.size))" : ""))
                }
            }
            return trainer
        }
        if job.comm.size > 1, let problem = RankAgreement.checkConfigAndData(job.comm, config: trainer.config, data: trainer.data) {
            return try job.stop(job.isRoot ? problem : "")
        }
        try job.run {
            let console = Console(rank: job.comm.rank)
            for note in resumeNotes { console.line(note) }
            trainer.synchronizeReplicas()
            try trainer.run(console: console)
        }
    }
}

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Validation loss and perplexity of saved weights.")

    @Argument(help: "A weights file written by `lockstep train` (model.safetensors).") var weights: String
    @Option(help: "Config to use instead of the one stored in the weights (data, windows, model shape).")
    var config: String?
    @Option(help: "BLAS threads.") var threads: Int?

    func run() throws {
        let job = Job()
        let trainer = try job.start { () throws -> Trainer in
            var cfg = try config.map { try Config.load(path: $0) } ?? Weights.config(path: weights)
            cfg.batch.globalBatch = cfg.batch.microBatch * job.comm.size    // evaluation needs no accumulation
            try configureCompute(cfg, override: threads, ranksOnHost: localRanks)
            let data = try Dataset.load(cfg.data, vocabSize: cfg.model.vocabSize, blockSize: cfg.model.blockSize)
            return try Trainer(config: cfg, data: data, comm: job.comm, initFrom: weights)
        }
        try job.run {
            trainer.synchronizeReplicas()
            let e = trainer.evaluate()
            if job.isRoot {
                print(String(format: "val loss %.6f | val ppl %.4f | %d tokens | %@", e.loss, e.perplexity, e.tokens, trainer.data.source))
            }
        }
    }
}

struct Sample: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Generate text from saved weights.")

    @Argument(help: "A weights file written by `lockstep train`.") var weights: String
    @Option(help: "Text to continue.") var prompt: String = "\n"
    @Option(help: "Number of tokens to generate.") var tokens: Int = 500
    @Option(help: "Softmax temperature (> 0).") var temperature: Double = 0.8
    @Option(name: .customLong("top-k"), help: "Sample among the k most likely tokens (0: all).") var topK: Int = 40
    @Option(help: "Seed of the sampling draws.") var seed: UInt64 = 1

    func run() throws {
        try reportingErrors {
            guard temperature > 0 else { throw ConfigError("--temperature must be positive") }
            guard tokens >= 0 else { throw ConfigError("--tokens must be non-negative") }
            let cfg = try Weights.config(path: weights)
            guard !cfg.model.isMaskedLM else {
                throw ConfigError("\(weights) is a masked-LM encoder; `sample` generates with causal models (gpt, rnn, lstm, gru)")
            }
            try configureCompute(cfg, override: 1, ranksOnHost: 1)
            let model = makeModel(cfg.model, maxBatch: 1)
            try Weights.load(path: weights, into: model.arena)
            let generator = TextGenerator(model: model, temperature: Float(temperature), topK: topK, seed: seed)
            let promptTokens = ByteTokenizer.encode(prompt)
            if let bad = promptTokens.first(where: { Int($0) >= cfg.model.vocabSize }) {
                throw ConfigError("prompt token \(bad) is outside the model's vocabulary of \(cfg.model.vocabSize)")
            }
            FileHandle.standardOutput.write(Data(prompt.utf8))
            generator.generate(prompt: promptTokens, count: tokens) { token in
                FileHandle.standardOutput.write(Data([UInt8(clamping: token)]))
            }
            print()
        }
    }
}

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Verify a checkpoint and show what it holds.")

    @Argument(help: "A checkpoint directory (OUTPUT/checkpoints/step-NNNNNNNN).") var checkpoint: String

    func run() throws {
        try reportingErrors {
            let stateData = try FileManager.default.contents(atPath: "\(checkpoint)/state.json")
                ?? { throw CheckpointError("\(checkpoint)/state.json: missing or unreadable") }()
            guard let state = try? JSONDecoder().decode(CheckpointState.self, from: stateData) else {
                throw CheckpointError("\(checkpoint)/state.json: not a valid checkpoint state")
            }
            let model = makeModel(state.config.model, maxBatch: 1)
            let loaded = try Checkpoint.read(checkpoint, layout: model.arena.layout)
            print("checkpoint  \(checkpoint)")
            print("step        \(state.step) (next sample \(state.nextSample), optimizer step \(loaded.optimizerStep))")
            print("world size  \(state.worldSize) ranks at save")
            print("config      sha256 \(state.configSHA256)")
            print("            \(state.config.canonicalJSON())")
            print("metrics     \(state.metrics.count) lines")
            print("checksums   verified: state.json, " + state.files.keys.sorted().map { "\($0) \(state.files[$0]!.prefix(16))…" }.joined(separator: ", "))
            print("")
            let rows = model.arena.layout.entries.map { e -> [String] in
                let v = loaded.model[e.name]!.floats
                let rms = (v.reduce(0.0) { $0 + Double($1) * Double($1) } / Double(max(v.count, 1))).squareRoot()
                return [e.name, e.shape.map(String.init).joined(separator: "×"), "F32", "\(e.count)", String(format: "%.4g", rms)]
            }
            let header = ["tensor", "shape", "dtype", "count", "rms"]
            let widths = (0 ..< header.count).map { c in ([header] + rows).map { $0[c].count }.max()! }
            for row in [header] + rows {
                print(zip(row, widths).enumerated().map { i, p in i == 0 ? p.0.padding(toLength: p.1, withPad: " ", startingAt: 0)
                    : String(repeating: " ", count: p.1 - p.0.count) + p.0 }.joined(separator: "  "))
            }
            let stateNames = state.config.optimizer.makeOptimizer(model.arena.layout).state.map(\.name)
            print("total \(grouped(model.arena.count)) parameters; \(state.config.optimizer.kind) state "
                  + (stateNames.isEmpty ? "none" : stateNames.joined(separator: " and ") + " for each"))
        }
    }
}

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure training throughput, the step by phase, MFU, memory and start-up time.",
        discussion: "Run it under launch/run for several ranks, e.g. `launch/run -n 2 -- bench`.")

    @Option(help: "Config to measure (default: the built-in default, as configs/shakespeare-gpt.json).")
    var config: String?
    @Option(help: "Measured steps.") var steps: Int = 30
    @Option(help: "Steps before measuring.") var warmup: Int = 5
    @Option(help: "BLAS threads per rank.") var threads: Int?
    @Flag(help: "Also list the Linear layers' products by shape: time per step and GFLOP/s inside the model.")
    var shapes = false

    func run() throws {
        let job = Job()
        let trainer = try job.start { () throws -> Trainer in
            guard steps > 0, warmup >= 0 else { throw ConfigError("--steps must be positive and --warmup non-negative") }
            var cfg = try config.map { try Config.load(path: $0) } ?? Config()
            cfg.training.steps = warmup + steps
            try configureCompute(cfg, override: threads, ranksOnHost: localRanks)
            let data = try Dataset.load(cfg.data, vocabSize: cfg.model.vocabSize, blockSize: cfg.model.blockSize)
            return try Trainer(config: cfg, data: data, comm: job.comm)
        }
        try job.run {
            trainer.synchronizeReplicas()
            let r = trainer.benchmark(steps: steps, warmup: warmup)
            guard job.isRoot else { return }
            let c = trainer.config
            let step = r.meanStepSeconds, t = r.times
            func row(_ name: String, _ s: Double, _ note: String = "") -> String {
                "  " + name.padding(toLength: 12, withPad: " ", startingAt: 0) + String(format: "%8.1f ms  %5.1f%%", s * 1000, 100 * s / step) + note
            }
            print("bench: \(c.model.kind) \(grouped(trainer.model.arena.count)) parameters, \(job.comm.size) rank(s) × \(BLAS.threads) BLAS thread(s) (\(BLAS.coreName)), global batch \(c.batch.globalBatch) × \(c.model.blockSize) tokens, micro-batch \(c.batch.microBatch), \(steps) steps after \(warmup)")
            print(String(format: "tokens/s (median)   %.0f    step %.1f ms median, %.1f ms mean (the slowest rank's)",
                         r.medianTokensPerSecond, r.medianStepSeconds * 1000, step * 1000))
            print(row("forward", t.forward, job.comm.size > 1 ? " (the ranks' mean)" : ""))
            print(row("backward", t.backward, job.comm.size > 1 ? " (the ranks' mean)" : ""))
            if job.comm.size > 1 {
                print(row("rank wait", t.rankWait, " (the slowest rank's forward + backward beyond the mean)"))
                let medians = r.rankComputeMedians.map { String(format: "%.1f", $0 * 1000) }.joined(separator: ", ")
                let slowest = r.rankSlowestSteps.map(String.init).joined(separator: ", ")
                print("    by rank   forward + backward median \(medians) ms; the slowest in \(slowest) of \(r.steps) steps")
                if let h = r.handOvers {
                    print("    hand-overs \(h) of \(r.steps) steps (the faster rank ran the end of the slower one's micro-batch, counted in its forward + backward)")
                }
            }
            print(row("all-reduce", t.allReduce, " (not hidden behind backward)"))
            print(row("clip+optim", t.optimizer))
            print(row("other", max(0, r.otherSeconds), " (zeroing gradients, data; the phases are means over the steps and add up to the mean step)"))
            print(String(format: "sgemm peak          %.1f GFLOP/s (1 thread, %d³, best of the run: OpenBLAS %.1f, Lockstep's %@ product %.1f)",
                         r.sgemmPeakGFLOPS, r.peakSize, r.openBLASPeakGFLOPS, RowProduct.usesAVX512 ? "AVX-512" : "AVX2",
                         r.productPeakGFLOPS))
            let spread = r.windowMFU.isEmpty ? "" : String(format: "%.0f–%.0f%%", 100 * r.windowMFU.min()!, 100 * r.windowMFU.max()!)
            let windows = r.windowMFU.count == 1 ? "1 window" : "\(r.windowMFU.count) windows"
            print(String(format: "MFU                 %.1f%%  (%.2f MFLOP/token on %d core(s); median of %@, each against the peak measured beside it: %@)",
                         100 * r.mfu, r.modelFLOPsPerToken / 1e6, job.comm.size * BLAS.threads, windows, spread))
            print(String(format: "                    %.1f%%  against the run's best peak", 100 * r.mfuAgainstBestPeak))
            let p = r.products
            let rowSeconds = p.seconds(weightGradient: false), gradientSeconds = p.seconds(weightGradient: true)
            if rowSeconds + gradientSeconds > 0 {
                print(String(format: "products in model   %.1f%% of rank 0's step time: x·Wᵀ and dy·W %.1f GFLOP/s, weight gradients dyᵀ·x %.1f GFLOP/s (%d thread(s))",
                             100 * (rowSeconds + gradientSeconds) / r.stepSecondsRank0,
                             p.flops(weightGradient: false) / max(rowSeconds, 1e-12) / 1e9,
                             p.flops(weightGradient: true) / max(gradientSeconds, 1e-12) / 1e9, BLAS.threads))
            }
            if shapes {
                print("  product".padding(toLength: 48, withPad: " ", startingAt: 0) + " ms/step  GFLOP/s  calls/step")
                for (shape, time) in p.byShape.sorted(by: { $0.value.seconds > $1.value.seconds }) {
                    if shape.rows == 0 { // packing a weight: time, no FLOPs
                        print(String(format: "  %@ %7.2f        —  %10.1f",
                                     "pack  \(shape.k)×\(shape.outputs) weight".padding(toLength: 46, withPad: " ", startingAt: 0),
                                     time.seconds / Double(steps) * 1000, Double(time.calls) / Double(steps)))
                        continue
                    }
                    let name = shape.weightGradient
                        ? "dyᵀ·x (\(shape.rows)×\(shape.outputs))ᵀ · \(shape.rows)×\(shape.k)"
                        : "x·W   \(shape.rows)×\(shape.k) · \(shape.k)×\(shape.outputs)"
                    let label = (name + (shape.detail.isEmpty ? "" : " " + shape.detail)).padding(toLength: 46, withPad: " ", startingAt: 0)
                    print(String(format: "  %@ %7.2f  %7.1f  %10.1f", label, time.seconds / Double(steps) * 1000,
                                 shape.flops * Double(time.calls) / time.seconds / 1e9, Double(time.calls) / Double(steps)))
                }
            }
            print("peak RSS per rank   " + r.peakRSSMegabytes.map { String(format: "%.0f MB", $0) }.joined(separator: ", "))
            if let l = r.launchToFirstStepSeconds { print(String(format: "launch → first step %.2f s", l)) }
        }
    }
}

struct Prepare: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Tokenize a text file (bytes) into an llm.c token file.")

    @Argument(help: "Input text file.") var input: String
    @Argument(help: "Output token file (.bin).") var output: String

    func run() throws {
        try reportingErrors {
            guard let data = FileManager.default.contents(atPath: input) else {
                throw DataError("input file '\(input)' not found or unreadable")
            }
            let tokens = ByteTokenizer.encode(data)
            try TokenFile.write(tokens, path: output)
            print("wrote \(tokens.count) tokens to \(output)")
        }
    }
}
