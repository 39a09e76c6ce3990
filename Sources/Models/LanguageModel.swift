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

    /// Logits (B, T, V) of the last forward.
    var logits: UnsafePointer<Float> { get }
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
