import Tensors

/// BERT's masking for masked-LM training: 15% of positions are chosen; of those 80% become
/// `[MASK]`, 10% a random token, 10% stay; the loss is taken only at chosen positions (the
/// others get the ignore index). Every draw is keyed by (seed, split, sample, position), so the
/// masks do not depend on how samples are spread over ranks or micro-batches.
public struct MaskedLM: Sendable {
    public static let chosenFraction = 0.15
    /// The `[MASK]` token: the first id past the data's vocabulary.
    public let maskToken: Int32
    /// Ordinary tokens are 0..<dataVocab.
    public let dataVocab: Int
    public let seed: UInt64

    public init(dataVocab: Int, seed: UInt64) {
        self.dataVocab = dataVocab
        maskToken = Int32(dataVocab)
        self.seed = seed
    }

    /// Turns `count` windows of `T` tokens in `inputs` (global samples `first`…) into masked
    /// inputs, and writes the targets (original token at chosen positions, ignore elsewhere).
    /// `validation` keys the fixed validation windows apart from the training samples.
    public func apply(inputs: UnsafeMutablePointer<Int32>, targets: UnsafeMutablePointer<Int32>, count: Int, time T: Int,
                      first: Int, validation: Bool) {
        for j in 0 ..< count {
            let rng = CounterRNG(seed: seed, purpose: .maskedLM, validation ? 1 : 0, UInt64(first + j))
            for p in 0 ..< T {
                let i = j * T + p, c = UInt64(3 * p)
                guard rng.uniformDouble(c) < Self.chosenFraction else { targets[i] = -1; continue }
                targets[i] = inputs[i]
                let u = rng.uniformDouble(c + 1)
                if u < 0.8 {
                    inputs[i] = maskToken
                } else if u < 0.9 {
                    inputs[i] = Int32(rng.bits(c + 2) % UInt64(dataVocab))
                }
            }
        }
    }
}
