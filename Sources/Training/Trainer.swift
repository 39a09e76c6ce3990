import Foundation
import Models
import Optim
import Tensors

/// What one optimizer step did.
public struct StepStats: Sendable {
    public let step: Int
    /// Mean loss per target token over the global batch.
    public let loss: Double
    public let lr: Double
    /// Global gradient norm before clipping.
    public let gradNorm: Double
    public let tokens: Int
    public let seconds: Double
    /// Where this rank's step time went.
    public let times: StepTimes
}

/// A step's time by phase on one rank (seconds). `allReduce` is the communication not hidden
/// behind computation: the time between the end of the last backward and the optimizer, less
/// `rankWait` when that is measured apart (the benchmark does).
public struct StepTimes: Sendable {
    public var forward = 0.0
    public var backward = 0.0
    /// Waiting at a barrier for the slowest rank to finish its backward (0 unless measured). In a
    /// `BenchmarkReport`, the mean over steps of the slowest rank's forward + backward beyond the
    /// ranks' mean, which is what that wait costs whichever rank is slow.
    public var rankWait = 0.0
    public var allReduce = 0.0
    public var optimizer = 0.0
    public init() {}
}

/// Validation loss over the fixed windows.
public struct EvalResult: Sendable {
    public let loss: Double
    public let tokens: Int
    public var perplexity: Double { exp(loss) }
}

/// Runs the step of DESIGN invariant 7 on this rank's slice of every global batch:
/// zero grads → micro-batches → all-reduce grads and token count → divide → global norm →
/// clip factor → optimizer step with lr(step).
public final class Trainer {
    public let config: Config
    public let comm: Communicator
    public let data: Dataset
    public let model: LanguageModel
    public let optimizer: Optimizer
    public let schedule: LRSchedule
    public let sampler: WindowSampler
    /// Micro-steps per optimizer step on each rank.
    public let accumulation: Int
    /// The masking of a masked-LM objective (nil: next-token prediction).
    public let masking: MaskedLM?
    /// Stateful training: the model, and each stream's carried state (G × stateSize). A rank
    /// keeps only the rows of its own sequences; the others stay zero, so a sum over ranks
    /// gathers the whole state exactly.
    let stateful: StatefulModel?
    let streamState: FloatBuffer
    public var blockSize: Int { config.model.blockSize }

    /// The first step this run trains (non-zero after a resume).
    public internal(set) var startStep = 0
    /// Metrics lines of the run so far, restored from a checkpoint (rank 0).
    public internal(set) var restoredMetrics: [String] = []
    /// The step whose evaluation the restored metrics already hold, if any.
    var restoredEvalStep: Int?

    let inputs: UnsafeMutablePointer<Int32>
    let targets: UnsafeMutablePointer<Int32>
    /// Two ranks: when and how much of the slower rank's last micro-batch the faster one runs.
    let handOver: HandOverState
    /// Whether this run can hand over (`Trainer+HandOver`).
    let handsOver: Bool
    private let reduceScratch: UnsafeMutablePointer<Double>
    private let stopFlags: UnsafeMutablePointer<Int64>
    /// The benchmark meets the other ranks at a barrier before the all-reduce, so the time spent
    /// waiting for the slowest rank is not counted as communication. Training never does.
    var separateRankWait = false

    /// Builds model, optimizer and sampler. `initFrom` loads weights (on rank 0) instead of the
    /// initialisation. Makes no collective call: a multi-rank job then calls `synchronizeReplicas`.
    public init(config: Config, data: Dataset, comm: Communicator = SingleProcessCommunicator(),
                initFrom: String? = nil) throws {
        let b = config.batch.microBatch, G = config.batch.globalBatch, W = comm.size
        guard G % (b * W) == 0 else {
            throw ConfigError("batch.global_batch \(G) is not divisible by batch.micro_batch \(b) × \(W) ranks; choose a rank count or micro_batch so that micro_batch × ranks divides \(G)")
        }
        self.config = config
        self.comm = comm
        self.data = data
        accumulation = G / (b * W)
        masking = config.model.isMaskedLM ? MaskedLM(dataVocab: config.model.vocabSize, seed: config.training.seed) : nil
        model = makeModel(config.model, maxBatch: b)
        model.initialize(seed: config.training.seed)
        // Rank 0 reads given weights; `synchronizeReplicas` copies them to the other ranks.
        if let initFrom, comm.rank == 0 { try Weights.load(path: initFrom, into: model.arena) }
        optimizer = config.optimizer.makeOptimizer(model.arena.layout)
        schedule = config.schedule.schedule(peak: config.optimizer.lr)
        stateful = config.model.stateful ? model as? StatefulModel : nil
        streamState = FloatBuffer(count: stateful.map { G * $0.stateSize } ?? 0)
        sampler = WindowSampler(trainCount: data.trainCount, blockSize: config.model.blockSize,
                                seed: config.training.seed, shuffle: config.data.shuffle, streams: stateful == nil ? nil : G)
        if stateful != nil && sampler.windowsPerStream < 1 {
            throw ConfigError("model.stateful: \(G) streams of \(data.trainCount / G) tokens hold no window of model.block_size + 1 tokens; use a smaller batch.global_batch or block_size")
        }
        let n = b * config.model.blockSize
        inputs = .allocate(capacity: n); inputs.initialize(repeating: 0, count: n)
        targets = .allocate(capacity: n); targets.initialize(repeating: 0, count: n)
        handOver = try HandOverState(rank: comm.rank, gradientCount: model.arena.count)
        handsOver = Self.handsOver(ranks: W, model: model, stateful: stateful, microBatch: b)
        reduceScratch = .allocate(capacity: 2 + HandOverState.shared)
        reduceScratch.initialize(repeating: 0, count: 2 + HandOverState.shared)
        stopFlags = .allocate(capacity: 2); stopFlags.initialize(repeating: 0, count: 2)
    }

    deinit { inputs.deallocate(); targets.deallocate(); reduceScratch.deallocate(); stopFlags.deallocate() }

    /// One optimizer step on global batch `step`.
    @discardableResult
    public func step(_ step: Int) -> StepStats {
        let t0 = monotonicSeconds()
        let b = config.batch.microBatch, G = config.batch.globalBatch, T = blockSize, A = accumulation
        let arena = model.arena
        let lr = schedule.lr(at: step)
        arena.gradients.zero()
        var lossSum = 0.0, count = 0, computed = 0
        var times = StepTimes()
        let plan = handsOver ? handOver.plan : nil
        for m in 0 ..< A {
            let first = step * G + (comm.rank * A + m) * b
            sampler.fill(data, first: first, count: b, inputs: inputs, targets: targets)
            masking?.apply(inputs: inputs, targets: targets, count: b, time: T, first: first, validation: false)
            let rows = streamState.pointer + (first - step * G) * (stateful?.stateSize ?? 0)
            stateful?.setInitialState(sampler.startsStream(sample: first) ? nil : UnsafePointer(rows), batch: b)
            let seed = config.training.seed
            var sequences = b
            let pass = if let stateful { // the state after the forward is read before backward
                model.forwardThenBackward(tokens: inputs, targets: targets, batch: b, time: T, firstSample: first,
                                          seed: seed) { stateful.finalState(into: rows) }
            } else if let plan, m == A - 1 {
                handOverPass(plan, step: step, micro: m, first: first, sequences: &sequences)
            } else {
                model.trainingPass(tokens: inputs, targets: targets, batch: b, time: T, firstSample: first, seed: seed)
            }
            times.forward += pass.forwardSeconds
            times.backward += pass.backwardSeconds
            lossSum += pass.loss
            count += pass.count
            computed += sequences
        }
        if separateRankWait && comm.size > 1 {
            let w0 = monotonicSeconds()
            comm.barrier()
            times.rankWait = monotonicSeconds() - w0
        }
        let r0 = monotonicSeconds()
        if plan == nil { allReduceGradients() } else { handOver.count += 1 } // the hand-over summed them
        reduceScratch[0] = lossSum
        reduceScratch[1] = Double(count)
        let planning = comm.size == 2 // the next step's hand-over plan needs both ranks' times
        if planning {
            handOver.share(into: reduceScratch + 2, rank: comm.rank,
                           secondsPerSequence: (times.forward + times.backward) / Double(computed),
                           allReduce: plan == nil ? monotonicSeconds() - r0 : nil, canSplit: handsOver)
        }
        comm.allReduceSum(reduceScratch, count: planning ? 2 + HandOverState.shared : 2)
        if planning { handOver.update(from: reduceScratch + 2, batch: b, accumulation: A) }
        let o0 = monotonicSeconds()
        let globalCount = max(reduceScratch[1], 1)    // a masked-LM batch could, in principle, choose nothing
        let norm = optimizer.step(arena, summedOver: globalCount, lr: lr, maxNorm: config.optimizer.clip)
        let end = monotonicSeconds()
        times.allReduce = o0 - r0
        times.optimizer = end - o0
        return StepStats(step: step, loss: reduceScratch[0] / globalCount, lr: lr, gradNorm: norm,
                         tokens: Int(reduceScratch[1]), seconds: end - t0, times: times)
    }

    /// Sums gradients over ranks in buckets of `training.allreduce_bucket_mb` (large single
    /// all-reduces fall off a cliff in MPI), one blocking call after another. With one core per
    /// rank there is nothing for non-blocking calls to overlap (MPI progresses only inside its
    /// calls), and four non-blocking 1 MiB reductions of the default model measured 1.4–1.6 ms
    /// against 0.7–0.9 ms for the same four blocking ones.
    func allReduceGradients() {
        guard comm.size > 1 else { return }
        let arena = model.arena
        let bucket = max(1024, Int(config.training.allreduceBucketMB * 1_048_576) / MemoryLayout<Float>.stride)
        var start = 0
        while start < arena.count {
            let n = min(bucket, arena.count - start)
            comm.allReduceSum(arena.gradients.pointer + start, count: n)
            start += n
        }
    }

    /// Validation loss over the fixed windows, split across ranks by micro-batch and reduced.
    public func evaluate() -> EvalResult {
        let b = config.batch.microBatch, T = blockSize
        let windows = data.valWindowCount(blockSize: T, limit: config.training.evalWindows)
        let batches = (windows + b - 1) / b
        var lossSum = 0.0, count = 0
        var batch = comm.rank
        while batch < batches {
            let first = batch * b, n = min(b, windows - first)
            data.fillValidation(blockSize: T, first: first, count: n, inputs: inputs, targets: targets)
            masking?.apply(inputs: inputs, targets: targets, count: n, time: T, first: first, validation: true)
            let r = model.evaluationLoss(tokens: inputs, targets: targets, batch: n, time: T, firstSample: first,
                                         seed: config.training.seed)
            lossSum += r.loss
            count += r.count
            batch += comm.size
        }
        reduceScratch[0] = lossSum
        reduceScratch[1] = Double(count)
        comm.allReduceSum(reduceScratch, count: 2)
        return EvalResult(loss: reduceScratch[0] / max(reduceScratch[1], 1), tokens: Int(reduceScratch[1]))
    }

    /// The training loop from `startStep`: evaluate at step 0, every `eval_interval` steps and at
    /// the end; log each step on rank 0; checkpoint every `checkpoint_interval` steps, at the end,
    /// and when SIGTERM or SIGINT asks the job to stop (the ranks agree on the step, finish it, write
    /// the checkpoint and return normally).
    public func run(console: Console) throws {
        let t = config.training, G = config.batch.globalBatch, T = blockSize
        let isRoot = comm.rank == 0
        let outDir = t.outputDir
        if isRoot { try FileManager.default.createDirectory(atPath: outDir, withIntermediateDirectories: true) }
        let metrics = try MetricsWriter(path: isRoot ? "\(outDir)/metrics.jsonl" : nil, restoring: restoredMetrics)
        let checkpoints = "\(outDir)/checkpoints"
        StopSignal.install()

        let shape = config.model.recurrent.map { "\($0.nLayer)L, \($0.nEmbd) embedding, \($0.hidden) hidden" }
            ?? "\(config.model.nLayer)L×\(config.model.nHead)H×\(config.model.nEmbd)"
        console.line("lockstep: \(config.model.kind) \(shape)  \(grouped(model.arena.count)) parameters")
        console.line("data: \(data.source)  \(grouped(data.trainCount)) train / \(grouped(data.tokens.count - data.trainCount)) val tokens")
        console.line("ranks \(comm.size) × \(BLAS.threads) threads (\(RowProduct.usesAVX512 ? "AVX-512" : "AVX2") kernels)  global batch \(G) × \(T) = \(grouped(G * T)) tokens  micro-batch \(config.batch.microBatch)  accumulation \(accumulation)")
        if startStep >= t.steps && restoredEvalStep == startStep {
            console.line("already at step \(startStep) of \(t.steps); nothing to do (raise --steps to train on)")
            return
        }

        let start = monotonicSeconds()
        var steadyTime = 0.0, steadySteps = 0
        var lastStep = max(t.steps, startStep)   // moves earlier when the wall budget runs out
        var evals: [(step: Int, loss: Double, wall: Double)] = []
        var it = startStep
        while true {
            let last = it >= lastStep
            if ((t.evalInterval > 0 && it % t.evalInterval == 0) || last) && restoredEvalStep != it {
                let e = evaluate()
                let wall = monotonicSeconds() - start
                evals.append((it, e.loss, wall))
                console.line(String(format: "step %5d | val loss %.4f | val ppl %.2f | %@", it, e.loss, e.perplexity, formatDuration(wall)))
                metrics.write([("type", "eval"), ("step", it), ("val_loss", e.loss), ("val_ppl", e.perplexity), ("wall_s", wall)])
            }
            if last { break }
            let s = step(it)
            if it >= startStep + 10 { steadyTime += s.seconds; steadySteps += 1 }
            let tps = Double(s.tokens) / s.seconds
            let wall = monotonicSeconds() - start
            metrics.write([("type", "train"), ("step", it), ("train_loss", s.loss), ("lr", s.lr), ("grad_norm", s.gradNorm),
                           ("tokens_per_s", tps), ("wall_s", wall)])
            if it % t.logInterval == 0 || it == lastStep - 1 {
                console.line(String(format: "step %5d | loss %.4f | lr %.2e | norm %.3f | %.0f tok/s", it, s.loss, s.lr, s.gradNorm, tps))
            }
            console.progress(step: it + 1, of: t.steps, elapsed: wall, extra: String(format: "loss %.4f", s.loss))
            let (signal, overBudget) = stopRequestedByAnyRank(overBudget: t.wallBudgetS.map { wall >= $0 } ?? false)
            it += 1
            if overBudget && it < lastStep {
                lastStep = it
                console.line("wall budget of \(formatDuration(t.wallBudgetS!)) reached: step \(it) is the last")
            }
            if signal || (t.checkpointInterval > 0 && it % t.checkpointInterval == 0 && it < lastStep) {
                let path = try checkpoint(step: it, metrics: metrics.lines, root: checkpoints)
                if signal {
                    console.line("stopped by signal after step \(it): checkpoint \(path); continue with `train --resume`")
                    return
                }
            }
        }
        try checkpoint(step: lastStep, metrics: metrics.lines, root: checkpoints)
        let weightsPath = "\(outDir)/model.safetensors"
        if isRoot { try Weights.save(model.arena, config: config, step: lastStep, path: weightsPath) }
        if comm.size > 1 {
            let digest = verifyReplicas()
            console.line("replicas: \(comm.size) ranks hold identical parameters (sha256 \(SHA256.hex(digest)))")
        }
        comm.barrier()
        if handsOver {
            console.line("hand-overs: \(handOver.count) of \(lastStep - startStep) steps (the faster rank ran the end of the slower rank's micro-batch)")
        }
        let wall = monotonicSeconds() - start
        let reached = [2.0, 1.9, 1.8, 1.7, 1.6, 1.5].compactMap { level in
            evals.first { $0.loss <= level }.map { String(format: "≤%.1f: %@ (step %d)", level, formatDuration($0.wall), $0.step) }
        }
        if !reached.isEmpty { console.line("time to val loss " + reached.joined(separator: ", ")) }
        let rss = String(format: "peak RSS %.0f MB (rank 0)", peakRSSMegabytes())
        if steadySteps > 0 {
            console.line(String(format: "done: %d steps in %@, steady %.0f tok/s, %@; weights in %@", lastStep, formatDuration(wall),
                                Double(steadySteps * G * T) / steadyTime, rss, weightsPath))
        } else {
            console.line("done: \(lastStep) steps in \(formatDuration(wall)), \(rss); weights in \(weightsPath)")
        }
    }

    /// Rank 0 writes the checkpoint of `step`; every rank waits until it is complete.
    @discardableResult
    func checkpoint(step: Int, metrics: [String], root: String) throws -> String {
        var path = "\(root)/\(Checkpoint.directoryName(step: step))"
        gatherStreamState()
        if comm.rank == 0 { path = try Checkpoint.write(self, step: step, metrics: metrics, root: root) }
        keepOwnStreamRows()
        comm.barrier()
        return path
    }

    /// Sums the stream state over ranks: every rank then holds every row.
    func gatherStreamState() {
        if stateful != nil && comm.size > 1 { comm.allReduceSum(streamState.pointer, count: streamState.count) }
    }

    /// Zeroes the stream-state rows of other ranks' sequences.
    func keepOwnStreamRows() {
        guard let stateful, comm.size > 1 else { return }
        let perRank = accumulation * config.batch.microBatch * stateful.stateSize
        let mine = comm.rank * perRank
        if mine > 0 { streamState.pointer.update(repeating: 0, count: mine) }
        if mine + perRank < streamState.count {
            (streamState.pointer + mine + perRank).update(repeating: 0, count: streamState.count - mine - perRank)
        }
    }

    /// Whether SIGTERM/SIGINT reached any rank, and whether any rank is past the wall budget
    /// (agreed on by all, so they stop at the same step).
    func stopRequestedByAnyRank(overBudget: Bool) -> (signal: Bool, overBudget: Bool) {
        stopFlags[0] = StopSignal.requested ? 1 : 0
        stopFlags[1] = overBudget ? 1 : 0
        if comm.size > 1 { comm.allReduceSum(stopFlags, count: 2) }
        return (stopFlags[0] > 0, stopFlags[1] > 0)
    }
}
