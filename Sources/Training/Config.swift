import Foundation
import Layers
import Models
import Optim
import Tensors

/// A run's configuration, read from JSON. Unknown keys, wrong types and impossible values are
/// refused with one line naming the field.
public struct Config: Codable, Sendable, Equatable {
    public var model = ModelConfig()
    public var data = DataConfig()
    public var batch = BatchConfig()
    public var optimizer = OptimizerConfig()
    public var schedule = ScheduleConfig()
    public var training = TrainingConfig()

    public init() {}

    enum CodingKeys: String, CodingKey, CaseIterable { case model, data, batch, optimizer, schedule, training }

    public init(from decoder: Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        model = try c.decodeIfPresent(ModelConfig.self, forKey: .model) ?? model
        data = try c.decodeIfPresent(DataConfig.self, forKey: .data) ?? data
        batch = try c.decodeIfPresent(BatchConfig.self, forKey: .batch) ?? batch
        optimizer = try c.decodeIfPresent(OptimizerConfig.self, forKey: .optimizer) ?? optimizer
        schedule = try c.decodeIfPresent(ScheduleConfig.self, forKey: .schedule) ?? schedule
        training = try c.decodeIfPresent(TrainingConfig.self, forKey: .training) ?? training
    }
}

/// The model: kind and shape. `gpt` is the causal transformer decoder; `mlm` the same blocks with
/// bidirectional attention, trained as a masked-LM encoder (its vocabulary adds a `[MASK]` token
/// after the data's `vocab_size`); `rnn`, `lstm` and `gru` are recurrent language models (embedding `n_embd` wide, `n_layer` recurrent layers of `hidden`
/// units, linear head), trained by backpropagation through time over windows of `block_size`.
public struct ModelConfig: Codable, Sendable, Equatable {
    public var kind = "gpt"
    /// Hidden units of the recurrent kinds (nil: `n_embd`).
    public var hidden: Int?
    /// Recurrent kinds: carry the hidden state from each window to the next window of the same
    /// stream (truncated BPTT). Sequence j of every global batch then reads stream j, the j-th of
    /// `global_batch` equal parts of the train split, window after window; needs `data.shuffle: false`.
    public var stateful = false
    public var vocabSize = 256
    public var blockSize = 128
    public var nLayer = 4
    public var nHead = 4
    public var nEmbd = 128
    public var dropout: Float = 0
    public var gelu = GELU.erf
    public var bias = true

    public init() {}

    enum CodingKeys: String, CodingKey, CaseIterable {
        case kind, vocabSize = "vocab_size", blockSize = "block_size", nLayer = "n_layer", nHead = "n_head"
        case nEmbd = "n_embd", dropout, gelu, bias, hidden, stateful
    }

    public static let kinds = ["gpt", "mlm", "rnn", "lstm", "gru"]

    /// Whether the objective is masked-LM (else next-token prediction).
    public var isMaskedLM: Bool { kind == "mlm" }

    /// The recurrent cell of the recurrent kinds.
    public var recurrentCell: RecurrentCell? { RecurrentCell(rawValue: kind) }

    public init(from decoder: Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        kind = try c.decodeIfPresent(String.self, forKey: .kind) ?? kind
        vocabSize = try c.decodeIfPresent(Int.self, forKey: .vocabSize) ?? vocabSize
        blockSize = try c.decodeIfPresent(Int.self, forKey: .blockSize) ?? blockSize
        nLayer = try c.decodeIfPresent(Int.self, forKey: .nLayer) ?? nLayer
        nHead = try c.decodeIfPresent(Int.self, forKey: .nHead) ?? nHead
        nEmbd = try c.decodeIfPresent(Int.self, forKey: .nEmbd) ?? nEmbd
        dropout = try c.decodeIfPresent(Float.self, forKey: .dropout) ?? dropout
        gelu = try c.decodeIfPresent(GELU.self, forKey: .gelu) ?? gelu
        bias = try c.decodeIfPresent(Bool.self, forKey: .bias) ?? bias
        hidden = try c.decodeIfPresent(Int.self, forKey: .hidden)
        stateful = try c.decodeIfPresent(Bool.self, forKey: .stateful) ?? stateful
    }

    public var recurrent: RecurrentConfig? {
        recurrentCell.map {
            RecurrentConfig(cell: $0, vocabSize: vocabSize, blockSize: blockSize, nLayer: nLayer, nEmbd: nEmbd,
                            hidden: hidden ?? nEmbd, dropout: dropout)
        }
    }

    public var gpt: GPTConfig {
        GPTConfig(vocabSize: isMaskedLM ? vocabSize + 1 : vocabSize, blockSize: blockSize, nLayer: nLayer, nHead: nHead,
                  nEmbd: nEmbd, dropout: dropout, gelu: gelu, bias: bias, causal: !isMaskedLM)
    }
}

/// Where tokens come from and how they are split and sampled.
public struct DataConfig: Codable, Sendable, Equatable {
    /// A text file (byte-level tokens) or an llm.c token file; nil means the embedded corpus.
    public var path: String?
    /// `text` or `tokens` (llm.c format); nil infers from the extension (`.bin` → tokens).
    public var format: String?
    /// The last fraction of the tokens is held out for validation.
    public var valFraction = 0.1
    /// Random windows (true) or sample i starting at token i·T (false).
    public var shuffle = true

    public init() {}

    enum CodingKeys: String, CodingKey, CaseIterable { case path, format, valFraction = "val_fraction", shuffle }

    public init(from decoder: Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        path = try c.decodeIfPresent(String.self, forKey: .path)
        format = try c.decodeIfPresent(String.self, forKey: .format)
        valFraction = try c.decodeIfPresent(Double.self, forKey: .valFraction) ?? valFraction
        shuffle = try c.decodeIfPresent(Bool.self, forKey: .shuffle) ?? shuffle
    }
}

/// Batch sizes in sequences: the global batch of one optimizer step and the micro-batch of one
/// forward/backward. Accumulation steps = global / (micro · ranks).
public struct BatchConfig: Codable, Sendable, Equatable {
    public var microBatch = 16
    public var globalBatch = 32

    public init() {}

    enum CodingKeys: String, CodingKey, CaseIterable { case microBatch = "micro_batch", globalBatch = "global_batch" }

    public init(from decoder: Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        microBatch = try c.decodeIfPresent(Int.self, forKey: .microBatch) ?? microBatch
        globalBatch = try c.decodeIfPresent(Int.self, forKey: .globalBatch) ?? globalBatch
    }
}

/// The optimizer and its hyper-parameters: `adamw` (decoupled weight decay), `adam` (weight decay
/// as L2 on the gradient), `sgd` (with `momentum`, optionally `nesterov`; L2 weight decay).
public struct OptimizerConfig: Codable, Sendable, Equatable {
    public var kind = "adamw"
    public var lr = 1e-3
    public var betas: [Double] = [0.9, 0.99]
    public var eps = 1e-8
    public var weightDecay = 0.1
    /// SGD only.
    public var momentum = 0.9
    /// SGD only: Nesterov momentum.
    public var nesterov = false
    /// Which tensors weight decay applies to: `matrices` (≥ 2-D, the default) or `all`.
    public var decay = WeightDecayPolicy.matrices
    /// Global gradient-norm clipping threshold; 0 disables it.
    public var clip = 1.0

    public init() {}

    enum CodingKeys: String, CodingKey, CaseIterable {
        case kind, lr, betas, eps, weightDecay = "weight_decay", decay, clip, momentum, nesterov
    }

    public static let kinds = ["sgd", "adam", "adamw"]

    public init(from decoder: Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        kind = try c.decodeIfPresent(String.self, forKey: .kind) ?? kind
        lr = try c.decodeIfPresent(Double.self, forKey: .lr) ?? lr
        betas = try c.decodeIfPresent([Double].self, forKey: .betas) ?? betas
        eps = try c.decodeIfPresent(Double.self, forKey: .eps) ?? eps
        weightDecay = try c.decodeIfPresent(Double.self, forKey: .weightDecay) ?? weightDecay
        decay = try c.decodeIfPresent(WeightDecayPolicy.self, forKey: .decay) ?? decay
        clip = try c.decodeIfPresent(Double.self, forKey: .clip) ?? clip
        momentum = try c.decodeIfPresent(Double.self, forKey: .momentum) ?? momentum
        nesterov = try c.decodeIfPresent(Bool.self, forKey: .nesterov) ?? nesterov
    }

    /// The optimizer this config names, over `layout`.
    public func makeOptimizer(_ layout: ParameterLayout) -> Optimizer {
        switch kind {
        case "sgd":
            return SGD(layout: layout, momentum: Float(momentum), nesterov: nesterov, weightDecay: Float(weightDecay), decayPolicy: decay)
        case "adam":
            return Adam(layout: layout, beta1: Float(betas[0]), beta2: Float(betas[1]), eps: Float(eps),
                        weightDecay: Float(weightDecay), decayPolicy: decay)
        default:
            return AdamW(layout: layout, beta1: Float(betas[0]), beta2: Float(betas[1]), eps: Float(eps),
                         weightDecay: Float(weightDecay), decayPolicy: decay)
        }
    }
}

/// The learning-rate schedule; its peak is `optimizer.lr`.
public struct ScheduleConfig: Codable, Sendable, Equatable {
    /// `constant`, `warmup`, `warmup-cosine`, `inverse-sqrt` or `linear`.
    public var kind = "warmup-cosine"
    public var warmup = 100
    /// Step at which the cosine or the line reaches `min_lr`.
    public var decaySteps = 3000
    public var minLR = 1e-4

    public init() {}

    enum CodingKeys: String, CodingKey, CaseIterable {
        case kind, warmup, decaySteps = "decay_steps", minLR = "min_lr"
    }

    public init(from decoder: Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        kind = try c.decodeIfPresent(String.self, forKey: .kind) ?? kind
        warmup = try c.decodeIfPresent(Int.self, forKey: .warmup) ?? warmup
        decaySteps = try c.decodeIfPresent(Int.self, forKey: .decaySteps) ?? decaySteps
        minLR = try c.decodeIfPresent(Double.self, forKey: .minLR) ?? minLR
    }

    public static let kinds = ["constant", "warmup", "warmup-cosine", "inverse-sqrt", "linear"]

    /// The schedule with base rate `lr` (the peak, except for inverse-sqrt: see `LRSchedule`).
    public func schedule(peak lr: Double) -> LRSchedule {
        switch kind {
        case "constant": return .constant(lr: lr)
        case "warmup": return .warmup(lr: lr, warmup: warmup)
        case "inverse-sqrt": return .inverseSqrt(lr: lr, warmup: warmup)
        case "linear": return .linear(lr: lr, warmup: warmup, decaySteps: decaySteps, minLR: minLR)
        default: return .warmupCosine(lr: lr, warmup: warmup, decaySteps: decaySteps, minLR: minLR)
        }
    }
}

/// Length of the run, seed, evaluation, logging and output.
public struct TrainingConfig: Codable, Sendable, Equatable {
    public var steps = 3000
    public var seed: UInt64 = 1337
    public var evalInterval = 100
    /// Number of fixed validation windows (capped by the validation split).
    public var evalWindows = 512
    public var logInterval = 10
    /// Steps between checkpoints (0: only at the end).
    public var checkpointInterval = 500
    /// How many of the newest checkpoints to keep.
    public var keepCheckpoints = 3
    public var outputDir = "runs/default"
    /// BLAS threads per rank; nil picks cores / ranks.
    public var blasThreads: Int?
    /// Size of each gradient all-reduce bucket across ranks, in MiB.
    public var allreduceBucketMB = 1.0
    /// Wall-clock budget in seconds: once any rank passes it, the next step is the last (with
    /// its evaluation), as the time-to-loss protocol stops. nil: no budget.
    public var wallBudgetS: Double?

    public init() {}

    enum CodingKeys: String, CodingKey, CaseIterable {
        case steps, seed, evalInterval = "eval_interval", evalWindows = "eval_windows", logInterval = "log_interval"
        case checkpointInterval = "checkpoint_interval", keepCheckpoints = "keep_checkpoints"
        case outputDir = "output_dir", blasThreads = "blas_threads"
        case allreduceBucketMB = "allreduce_bucket_mb", wallBudgetS = "wall_budget_s"
    }

    public init(from decoder: Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        steps = try c.decodeIfPresent(Int.self, forKey: .steps) ?? steps
        seed = try c.decodeIfPresent(UInt64.self, forKey: .seed) ?? seed
        evalInterval = try c.decodeIfPresent(Int.self, forKey: .evalInterval) ?? evalInterval
        evalWindows = try c.decodeIfPresent(Int.self, forKey: .evalWindows) ?? evalWindows
        logInterval = try c.decodeIfPresent(Int.self, forKey: .logInterval) ?? logInterval
        checkpointInterval = try c.decodeIfPresent(Int.self, forKey: .checkpointInterval) ?? checkpointInterval
        keepCheckpoints = try c.decodeIfPresent(Int.self, forKey: .keepCheckpoints) ?? keepCheckpoints
        outputDir = try c.decodeIfPresent(String.self, forKey: .outputDir) ?? outputDir
        blasThreads = try c.decodeIfPresent(Int.self, forKey: .blasThreads)
        allreduceBucketMB = try c.decodeIfPresent(Double.self, forKey: .allreduceBucketMB) ?? allreduceBucketMB
        wallBudgetS = try c.decodeIfPresent(Double.self, forKey: .wallBudgetS)
    }
}
