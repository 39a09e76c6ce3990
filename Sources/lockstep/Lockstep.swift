import ArgumentParser
import Foundation
import Tensors
import Training

@main
struct Lockstep: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lockstep",
        abstract: "Data-parallel training of small language models on CPUs.",
        subcommands: [Train.self, Eval.self, Sample.self, Prepare.self]
    )
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

    func run() throws {
        let job = Job()
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
            configureThreads(cfg, override: nil, ranksOnHost: localRanks)
            let data = try Dataset.load(cfg.data, vocabSize: cfg.model.vocabSize, blockSize: cfg.model.blockSize)
            return try Trainer(config: cfg, data: data, comm: job.comm, initFrom: initFrom)
        }
        if job.comm.size > 1, let problem = RankAgreement.checkConfigAndData(job.comm, config: trainer.config, data: trainer.data) {
            return try job.stop(job.isRoot ? problem : "")
        }
        try job.run {
            trainer.synchronizeReplicas()
            try trainer.run(console: Console(rank: job.comm.rank))
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
            configureThreads(cfg, override: threads, ranksOnHost: localRanks)
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
            configureThreads(cfg, override: 1, ranksOnHost: 1)
            let model = makeModel(cfg.model, maxBatch: 1)
            try Weights.load(path: weights, into: model.arena)
            let generator = TextGenerator(model: model, temperature: Float(temperature), topK: topK, seed: seed)
            let promptTokens = ByteTokenizer.encode(prompt)
            if let bad = promptTokens.first(where: { Int($0) >= cfg.model.vocabSize }) {
                throw ConfigError("prompt token \(bad) is outside the model's vocabulary of \(cfg.model.vocabSize)")
            }
            var emitted: [UInt8] = Array(prompt.utf8)
            FileHandle.standardOutput.write(Data(emitted))
            emitted.removeAll()
            generator.generate(prompt: promptTokens, count: tokens) { token in
                FileHandle.standardOutput.write(Data([UInt8(clamping: token)]))
            }
            print()
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
