import Foundation
import Models
import Tensors

/// Autoregressive sampling with temperature and top-k, draws keyed by (seed, position).
public struct TextGenerator {
    public let model: LanguageModel
    public let temperature: Float
    public let topK: Int
    public let seed: UInt64

    public init(model: LanguageModel, temperature: Float, topK: Int, seed: UInt64) {
        self.model = model
        self.temperature = temperature
        self.topK = topK
        self.seed = seed
    }

    /// Generates `count` tokens after `prompt`, calling `emit` for each.
    public func generate(prompt: [Int32], count: Int, emit: (Int32) -> Void) {
        let T = model.blockSize, V = model.vocabSize
        var context = prompt.isEmpty ? [Int32(10)] : prompt
        let rng = CounterRNG(seed: seed, purpose: .sampling)
        var probs = [Float](repeating: 0, count: V)
        for i in 0 ..< count {
            let window = Array(context.suffix(T))
            let n = window.count
            _ = window.withUnsafeBufferPointer { w in
                model.forward(tokens: w.baseAddress!, targets: nil, batch: 1, time: n, firstSample: 0, seed: seed,
                              training: false)
            }
            let row = model.logits + (n - 1) * V
            let next = Self.pick(row: row, vocab: V, temperature: temperature, topK: topK, u: rng.uniformDouble(UInt64(i)),
                                 probs: &probs)
            context.append(next)
            emit(next)
        }
    }

    /// Chooses a token from logits: keep the top k, softmax at `temperature`, invert the CDF at `u`.
    static func pick(row: UnsafePointer<Float>, vocab V: Int, temperature: Float, topK: Int, u: Double,
                     probs: inout [Float]) -> Int32 {
        var threshold = -Float.infinity
        if topK > 0 && topK < V {
            let sorted = (0 ..< V).map { row[$0] }.sorted(by: >)
            threshold = sorted[topK - 1]
        }
        var mx = -Float.infinity
        for v in 0 ..< V where row[v] >= threshold { mx = max(mx, row[v]) }
        var total = 0.0
        for v in 0 ..< V {
            probs[v] = row[v] >= threshold ? exp((row[v] - mx) / temperature) : 0
            total += Double(probs[v])
        }
        var acc = 0.0
        let target = u * total
        for v in 0 ..< V {
            acc += Double(probs[v])
            if acc > target && probs[v] > 0 { return Int32(v) }
        }
        return Int32((0 ..< V).last { probs[$0] > 0 } ?? 0)
    }
}
