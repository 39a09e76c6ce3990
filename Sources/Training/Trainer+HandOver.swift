import Foundation
import Models
import Tensors

/// Two ranks do the same work, but a shared host often runs one core slower than the other, and
/// the faster rank then waits at the all-reduce. A rank's gradient is one sum over its rows in
/// their order: it cannot be split, but it can move. With a hand-over, the slower rank stops its
/// last micro-batch after `sequences` sequences and sends what it has reached (its gradients, the
/// embedding-gradient rows of those sequences, its loss so far) to the faster rank, which has
/// finished its own micro-batch by then; the faster rank runs the rest of the slower rank's
/// micro-batch into a second gradient buffer, continuing the same sums in the same order, adds
/// the two ranks' gradients (what the all-reduce computes, element by element) and sends the sum
/// back with the slower rank's loss. Every bit is the same as without the hand-over, whichever
/// rank ran which sequence; only the time changes. Two ranks only, on models whose training pass
/// goes in blocks (`SplitPassModel`).
///
/// The plan for a step comes from earlier steps' seconds per sequence on each rank (averaged,
/// and exchanged in the loss's all-reduce, so that both ranks make the same plan): the split
/// that the times predict to end the step soonest, if it saves at least 1.5% of it.
/// `LOCKSTEP_HAND_OVER` on rank 0 overrides it: `off`, or `R:S` (rank R always stops after S
/// sequences, for tests and comparisons).
struct HandOverPlan: Equatable {
    /// The rank that stops early, and the sequences of its last micro-batch that it runs.
    var from: Int
    var sequences: Int
}

final class HandOverState {
    /// Doubles each rank adds to the loss's all-reduce: seconds per sequence of ranks 0 and 1, the
    /// all-reduce's seconds on ranks 0 and 1 (0 when not measured), rank 0's request, and how many
    /// ranks cannot split their pass.
    static let shared = 6

    /// Seconds per sequence of ranks 0 and 1, averaged over steps (nil before the first step).
    var secondsPerSequence: (Double, Double)?
    /// Seconds of a gradient all-reduce, averaged: the lower of the two ranks' (the rank that
    /// came last to it did not wait for the other).
    var transferSeconds = 0.001
    var plan: HandOverPlan?
    /// What this rank's environment asks for (rank 0's counts).
    let requested: Double
    /// Steps with a hand-over so far.
    var count = 0

    /// Allocated by the first hand-over a rank finishes: the other rank's partial gradients.
    lazy var gradients = FloatBuffer(count: gradientCount)
    let gradientCount: Int
    /// A pass's loss and count as they travel between ranks.
    let message: UnsafeMutablePointer<Double>

    init(rank: Int, gradientCount: Int) throws {
        requested = rank == 0 ? try Self.code(ProcessInfo.processInfo.environment["LOCKSTEP_HAND_OVER"]) : 0
        self.gradientCount = gradientCount
        message = .allocate(capacity: 2); message.initialize(repeating: 0, count: 2)
    }

    deinit { message.deallocate() }

    /// 0: plan from the times; 1: never; 2 + 65 536·R + S: rank R after S sequences.
    static func code(_ value: String?) throws -> Double {
        guard let value, !value.isEmpty, value != "auto" else { return 0 }
        if value == "off" { return 1 }
        let parts = value.split(separator: ":", omittingEmptySubsequences: false).map { Int($0) }
        guard parts.count == 2, let r = parts[0], let s = parts[1], (0 ... 1).contains(r), (1 ..< 65_536).contains(s) else {
            throw ConfigError("LOCKSTEP_HAND_OVER=\(value) is not understood; use auto, off, or R:S (rank R, 0 or 1, always stops after S ≥ 1 sequences)")
        }
        return Double(2 + 65_536 * r + s)
    }

    /// This rank's share of the all-reduce (`shared` doubles at p): every slot but its own is 0.
    func share(into p: UnsafeMutablePointer<Double>, rank: Int, secondsPerSequence: Double, allReduce: Double?,
               canSplit: Bool) {
        p.update(repeating: 0, count: Self.shared)
        p[rank] = secondsPerSequence
        p[2 + rank] = allReduce ?? 0
        p[4] = rank == 0 ? requested : 0
        p[5] = canSplit ? 0 : 1
    }

    /// The next step's plan from the summed shares at p (the same on both ranks), for
    /// `accumulation` micro-batches of `batch` sequences: the split that the averaged times
    /// predict to end the step soonest, if it saves at least 1.5% of it.
    func update(from p: UnsafePointer<Double>, batch b: Int, accumulation A: Int) {
        plan = nil
        guard p[5] == 0, p[4] != 1 else { return }
        if p[4] >= 2 {
            let c = Int(p[4]) - 2
            plan = HandOverPlan(from: c / 65_536, sequences: min(c % 65_536, b - 1))
            return
        }
        guard p[0] > 0, p[1] > 0 else { return }
        let mean = secondsPerSequence.map { (0.5 * $0.0 + 0.5 * p[0], 0.5 * $0.1 + 0.5 * p[1]) } ?? (p[0], p[1])
        secondsPerSequence = mean
        if p[2] > 0 || p[3] > 0 { // the lower of the measured ones
            let lower = p[2] > 0 && p[3] > 0 ? min(p[2], p[3]) : max(p[2], p[3])
            transferSeconds = 0.5 * transferSeconds + 0.5 * lower
        }
        let from = mean.0 > mean.1 ? 0 : 1, s = max(mean.0, mean.1), f = min(mean.0, mean.1), c = transferSeconds
        let whole = Double(A * b) * s + c // and the all-reduce that the hand-over's two transfers replace
        var best = (time: whole, sequences: b)
        for j in 1 ..< b { // rank `from` runs j sequences of its last micro-batch, the other the rest after its own
            let handed = Double((A - 1) * b + j) * s + c
            let t = max(Double(A * b) * f, handed) + Double(b - j) * f + c
            if t < best.time { best = (t, j) }
        }
        if best.sequences < b && best.time < 0.985 * whole { plan = HandOverPlan(from: from, sequences: best.sequences) }
    }
}

extension Trainer {
    /// Whether a run can hand over: two ranks, a model that splits its pass, no carried state.
    static func handsOver(ranks: Int, model: LanguageModel, stateful: StatefulModel?, microBatch: Int) -> Bool {
        ranks == 2 && stateful == nil && (model as? SplitPassModel)?.splitsPass(batch: microBatch) == true
    }

    /// The last micro-batch's pass under `plan`, on either rank: the rank that stops early gets
    /// the whole pass's loss back and the two ranks' summed gradients; the other rank runs the
    /// rest and also ends with the sum. Returns this rank's pass (its own micro-batch's loss and
    /// count, and the seconds it computed); `sequences` becomes the number it computed.
    func handOverPass(_ plan: HandOverPlan, step: Int, micro m: Int, first: Int, sequences: inout Int) -> TrainingPass {
        let split = model as! SplitPassModel
        let b = config.batch.microBatch, T = blockSize, A = accumulation, G = config.batch.globalBatch
        let seed = config.training.seed, arena = model.arena, other = 1 - comm.rank
        let rowFloats = T * split.embeddingWidth, floats = MemoryLayout<Float>.stride
        let h = handOver, message = h.message, pair = 2 * MemoryLayout<Double>.stride
        if comm.rank == plan.from {
            var pass = split.trainingPass(tokens: inputs, targets: targets, batch: b, time: T, firstSample: first, seed: seed,
                                          sequences: 0 ..< plan.sequences, continuing: (0, 0), packing: true)
            comm.send(arena.gradients.pointer, count: arena.count * floats, to: other)
            comm.send(split.embeddingGradientRows, count: plan.sequences * rowFloats * floats, to: other)
            (message[0], message[1]) = (pass.loss, Double(pass.count))
            comm.send(message, count: pair, to: other)
            comm.receive(arena.gradients.pointer, count: arena.count * floats, from: other)
            comm.receive(message, count: pair, from: other)
            pass.loss = message[0]
            pass.count = Int(message[1])
            sequences = plan.sequences
            return pass
        }
        let pass = split.trainingPass(tokens: inputs, targets: targets, batch: b, time: T, firstSample: first, seed: seed)
        let spare = h.gradients
        comm.receive(spare.pointer, count: arena.count * floats, from: other)
        comm.receive(split.embeddingGradientRows, count: plan.sequences * rowFloats * floats, from: other)
        comm.receive(message, count: pair, from: other)
        // its own pass is done with its batch: the buffers take the other rank's
        let theirs = step * G + (other * A + m) * b
        sampler.fill(data, first: theirs, count: b, inputs: inputs, targets: targets)
        masking?.apply(inputs: inputs, targets: targets, count: b, time: T, first: theirs, validation: false)
        let rest = arena.accumulatingGradients(in: spare) {
            split.trainingPass(tokens: inputs, targets: targets, batch: b, time: T, firstSample: theirs, seed: seed,
                               sequences: plan.sequences ..< b, continuing: (message[0], Int(message[1])), packing: false)
        }
        Kernels.add(spare.pointer, into: arena.gradients.pointer, count: arena.count)
        comm.send(arena.gradients.pointer, count: arena.count * floats, to: other)
        (message[0], message[1]) = (rest.loss, Double(rest.count))
        comm.send(message, count: pair, to: other)
        var mine = pass
        mine.forwardSeconds += rest.forwardSeconds
        mine.backwardSeconds += rest.backwardSeconds
        sequences = b + b - plan.sequences
        return mine
    }
}
