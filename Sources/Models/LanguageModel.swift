import Tensors

/// What the trainer needs of a model: a parameter arena, a loss-producing forward over a
/// (B, T) batch of token ids, and a backward that accumulates gradients into the arena.
public protocol LanguageModel: AnyObject {
    var arena: ParameterArena { get }
    var vocabSize: Int { get }
    var blockSize: Int { get }
    /// The largest batch the activation buffers were laid out for.
    var maxBatch: Int { get }

    /// Sets parameters to the model's initialisation, a pure function of `seed`.
    func initialize(seed: UInt64)

    /// Runs the model on `tokens` (B, T). When `targets` are given, returns the summed
    /// cross-entropy and the number of counted targets. Row b is global sample `firstSample + b`
    /// (dropout masks are keyed by it).
    @discardableResult
    func forward(tokens: UnsafePointer<Int32>, targets: UnsafePointer<Int32>?, batch B: Int, time T: Int,
                 firstSample: Int, seed: UInt64, training: Bool) -> (loss: Double, count: Int)

    /// Backward of `scale · summed loss` of the last forward; gradients accumulate (+=).
    func backward(lossScale: Float)

    /// A training forward with targets and the backward of its summed loss (`lossScale` 1):
    /// the loss and gradients of forward then backward, to the bit, in whatever order of work
    /// suits the model.
    func trainingPass(tokens: UnsafePointer<Int32>, targets: UnsafePointer<Int32>, batch B: Int, time T: Int,
                      firstSample: Int, seed: UInt64) -> TrainingPass

    /// forward(training: false)'s summed loss and number of counted targets, to the bit (the
    /// validation loss), in whatever order of work suits the model; the logits may not be kept.
    func evaluationLoss(tokens: UnsafePointer<Int32>, targets: UnsafePointer<Int32>, batch B: Int, time T: Int,
                        firstSample: Int, seed: UInt64) -> (loss: Double, count: Int)

    /// Logits (B, T, V) of the last forward.
    var logits: UnsafePointer<Float> { get }
}

/// What `trainingPass` returns: the summed loss and the number of counted targets, and the
/// seconds its forward and its backward work took.
public struct TrainingPass: Sendable {
    public var loss: Double
    public var count: Int
    public var forwardSeconds: Double
    public var backwardSeconds: Double

    public init(loss: Double, count: Int, forwardSeconds: Double, backwardSeconds: Double) {
        self.loss = loss
        self.count = count
        self.forwardSeconds = forwardSeconds
        self.backwardSeconds = backwardSeconds
    }
}

extension LanguageModel {
    /// forward(training: false).
    public func evaluationLoss(tokens: UnsafePointer<Int32>, targets: UnsafePointer<Int32>, batch B: Int, time T: Int,
                               firstSample: Int, seed: UInt64) -> (loss: Double, count: Int) {
        forward(tokens: tokens, targets: targets, batch: B, time: T, firstSample: firstSample, seed: seed, training: false)
    }

    /// forward, then backward(lossScale: 1).
    public func trainingPass(tokens: UnsafePointer<Int32>, targets: UnsafePointer<Int32>, batch B: Int, time T: Int,
                             firstSample: Int, seed: UInt64) -> TrainingPass {
        forwardThenBackward(tokens: tokens, targets: targets, batch: B, time: T, firstSample: firstSample, seed: seed)
    }

    /// A training forward, `afterForward`, then backward(lossScale: 1), timed.
    public func forwardThenBackward(tokens: UnsafePointer<Int32>, targets: UnsafePointer<Int32>, batch B: Int, time T: Int,
                                    firstSample: Int, seed: UInt64, afterForward: () -> Void = {}) -> TrainingPass {
        let f0 = monotonicSeconds()
        let r = forward(tokens: tokens, targets: targets, batch: B, time: T, firstSample: firstSample, seed: seed,
                        training: true)
        afterForward()
        let f1 = monotonicSeconds()
        backward(lossScale: 1)
        return TrainingPass(loss: r.loss, count: r.count, forwardSeconds: f1 - f0, backwardSeconds: monotonicSeconds() - f1)
    }
}

/// A model whose training pass over a batch can stop after some sequences and be finished by
/// another process — from the gradients, the loss and the embedding-gradient rows it had reached
/// — with the whole pass's results to the bit: every gradient is one sum over the rows in their
/// order, which may move from one rank to another between sequences but not split.
public protocol SplitPassModel: LanguageModel {
    /// True when a pass over B sequences goes in blocks and can stop between them.
    func splitsPass(batch B: Int) -> Bool

    /// `trainingPass` over the batch's sequences `range` only, its loss and count continuing
    /// `previous`. When the range ends the batch the embeddings' gradients are taken, from every
    /// row of `embeddingGradientRows`: the rows before `range` must hold what the pass that ran
    /// those sequences left there. Without `packing`, the weights as the last pass packed them
    /// (no step has changed them since).
    func trainingPass(tokens: UnsafePointer<Int32>, targets: UnsafePointer<Int32>, batch B: Int, time T: Int,
                      firstSample: Int, seed: UInt64, sequences range: Range<Int>,
                      continuing previous: (loss: Double, count: Int), packing: Bool) -> TrainingPass

    /// ∂L/∂(embedding output) of the pass so far: (B·T) × `embeddingWidth` floats.
    var embeddingGradientRows: UnsafeMutablePointer<Float> { get }
    var embeddingWidth: Int { get }
}

/// A model whose state can carry across consecutive windows of a stream (truncated
/// backpropagation through time: the state is an input, gradients do not flow into it).
public protocol StatefulModel: LanguageModel {
    /// Floats of carried state per sample.
    var stateSize: Int { get }
    /// Uses `state` (B × stateSize, one sample after another) as the initial state of the next
    /// forward; nil starts it from zeros.
    func setInitialState(_ state: UnsafePointer<Float>?, batch B: Int)
    /// Writes the state after the last forward (B × stateSize).
    func finalState(into state: UnsafeMutablePointer<Float>)
}
