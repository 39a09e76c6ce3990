import TestSupport
import XCTest
@testable import Layers
@testable import Models
@testable import Tensors

final class RecurrentLMTests: XCTestCase {
    func testGradientsMatchFiniteDifferences() {
        for cell in [RecurrentCell.rnn, .lstm, .gru] {
            for dropout: Float in [0, 0.2] {
                let cfg = RecurrentConfig(cell: cell, vocabSize: 9, blockSize: 4, nLayer: 2, nEmbd: 5, hidden: 6, dropout: dropout)
                let lm = RecurrentLM(config: cfg, maxBatch: 2)
                lm.initialize(seed: 1)
                fillRandom(lm.arena.parameters.pointer, count: lm.arena.count, seed: 2, std: 0.4)
                let tokens: [Int32] = [1, 5, 3, 8, 0, 2, 7, 4]
                let targets: [Int32] = [5, 3, 8, 6, 2, 7, -1, 1]
                let loss = { () -> Double in
                    tokens.withUnsafeBufferPointer { t in
                        targets.withUnsafeBufferPointer { y in
                            lm.forward(tokens: t.baseAddress!, targets: y.baseAddress!, batch: 2, time: 4, firstSample: 3, seed: 5,
                                       training: true).loss
                        }
                    }
                }
                _ = loss()
                lm.arena.gradients.zero()
                lm.backward(lossScale: 1)
                let analytic = lm.arena.gradients.array
                assertGradientsMatch(lm.arena.parameters.pointer, analytic: analytic, eps: 5e-3, tolerance: 1e-2,
                                     "\(cell) LM (dropout \(dropout))", loss: loss)
            }
        }
    }

    func testNamesFollowPyTorchsWordLanguageModel() {
        let lm = RecurrentLM(config: RecurrentConfig(cell: .lstm, nLayer: 2, nEmbd: 8, hidden: 16), maxBatch: 1)
        XCTAssertEqual(lm.arena.layout.entries.map(\.name), [
            "encoder.weight",
            "rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.bias_ih_l0", "rnn.bias_hh_l0",
            "rnn.weight_ih_l1", "rnn.weight_hh_l1", "rnn.bias_ih_l1", "rnn.bias_hh_l1",
            "decoder.weight", "decoder.bias",
        ])
        XCTAssertEqual(lm.arena.layout.entry(named: "rnn.weight_ih_l1")?.shape, [64, 16])
    }

    /// The loss looks only at the last position of a long window; the gradient reaching the first
    /// input through a plain tanh RNN is orders of magnitude smaller than through an LSTM whose
    /// forget gates start open (bias +2 on f, the usual LSTM initialisation): the cell state's
    /// additive path carries it where the RNN's repeated tanh·W_hh products shrink it.
    func testPlainRNNGradientVanishesOverLongWindowsUnlikeLSTM() {
        let T = 64, E = 16, H = 32
        func earlyToLateRatio(_ cell: RecurrentCell) -> Double {
            let lm = RecurrentLM(config: RecurrentConfig(cell: cell, vocabSize: 16, blockSize: T, nLayer: 1, nEmbd: E, hidden: H),
                                 maxBatch: 1)
            lm.initialize(seed: 7)
            if cell == .lstm {
                for name in ["rnn.bias_ih_l0", "rnn.bias_hh_l0"] {
                    let e = lm.arena.layout.entry(named: name)!
                    for j in H ..< 2 * H { lm.arena.parameters[e.offset + j] = 1 }    // f gate: +2 in total
                }
            }
            let tokens = (0 ..< T).map { Int32(($0 * 7) % 16) }
            var targets = [Int32](repeating: -1, count: T)
            targets[T - 1] = 3
            tokens.withUnsafeBufferPointer { t in
                targets.withUnsafeBufferPointer { y in
                    _ = lm.forward(tokens: t.baseAddress!, targets: y.baseAddress!, batch: 1, time: T, firstSample: 0, seed: 0, training: true)
                }
            }
            lm.arena.gradients.zero()
            lm.backward(lossScale: 1)
            let g = lm.inputGradient
            func norm(_ t: Int) -> Double { (0 ..< E).reduce(0.0) { $0 + Double(g[t * E + $1] * g[t * E + $1]) }.squareRoot() }
            return norm(0) / norm(T - 1)
        }
        let rnn = earlyToLateRatio(.rnn), lstm = earlyToLateRatio(.lstm)
        print("‖∂L/∂x₀‖ / ‖∂L/∂x₆₃‖: RNN \(rnn), LSTM \(lstm)")
        XCTAssertLessThan(rnn, 1e-6, "the RNN's gradient vanishes over 63 steps")
        XCTAssertGreaterThan(lstm, 100 * rnn, "the LSTM's cell carries it much further")
    }
}
