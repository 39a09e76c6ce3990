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

final class StatefulRecurrentTests: XCTestCase {
    /// Two windows of T with the state carried equal one window of 2T: the same logits for the
    /// second half, for every cell.
    func testCarriedStateContinuesTheSequence() {
        for cell in [RecurrentCell.rnn, .lstm, .gru] {
            let T = 5, V = 11
            let long = RecurrentLM(config: RecurrentConfig(cell: cell, vocabSize: V, blockSize: 2 * T, nLayer: 2, nEmbd: 4, hidden: 6), maxBatch: 2)
            let short = RecurrentLM(config: RecurrentConfig(cell: cell, vocabSize: V, blockSize: T, nLayer: 2, nEmbd: 4, hidden: 6), maxBatch: 2)
            long.initialize(seed: 4)
            short.arena.parameters.copy(from: long.arena.parameters)
            let tokens: [[Int32]] = [(0 ..< 2 * T).map { Int32($0 % V) }, (0 ..< 2 * T).map { Int32(($0 * 3 + 1) % V) }]
            let both = tokens[0] + tokens[1]
            _ = both.withUnsafeBufferPointer { long.forward(tokens: $0.baseAddress!, targets: nil, batch: 2, time: 2 * T, firstSample: 0, seed: 0, training: false) }
            var state = [Float](repeating: 0, count: 2 * short.stateSize)
            for half in 0 ..< 2 {
                let window = Array(tokens[0][(half * T) ..< ((half + 1) * T)]) + Array(tokens[1][(half * T) ..< ((half + 1) * T)])
                state.withUnsafeBufferPointer { short.setInitialState(half == 0 ? nil : $0.baseAddress!, batch: 2) }
                _ = window.withUnsafeBufferPointer { short.forward(tokens: $0.baseAddress!, targets: nil, batch: 2, time: T, firstSample: 0, seed: 0, training: false) }
                state.withUnsafeMutableBufferPointer { short.finalState(into: $0.baseAddress!) }
            }
            for b in 0 ..< 2 {
                let a = Array(UnsafeBufferPointer(start: long.logits + (b * 2 * T + T) * V, count: T * V))
                let c = Array(UnsafeBufferPointer(start: short.logits + b * T * V, count: T * V))
                XCTAssertLessThan(relativeError(c, a), 1e-5, "\(cell) row \(b)")
            }
        }
    }

    func testGradientsWithACarriedStateMatchFiniteDifferences() {
        for cell in [RecurrentCell.rnn, .lstm, .gru] {
            let lm = RecurrentLM(config: RecurrentConfig(cell: cell, vocabSize: 7, blockSize: 3, nLayer: 2, nEmbd: 4, hidden: 5), maxBatch: 2)
            lm.initialize(seed: 2)
            fillRandom(lm.arena.parameters.pointer, count: lm.arena.count, seed: 3, std: 0.4)
            let state = randomValues(2 * lm.stateSize, seed: 5, std: 0.5)
            let tokens: [Int32] = [1, 4, 6, 0, 2, 5], targets: [Int32] = [4, 6, 3, 2, 5, 1]
            let loss = { () -> Double in
                state.withUnsafeBufferPointer { lm.setInitialState($0.baseAddress!, batch: 2) }
                return tokens.withUnsafeBufferPointer { t in
                    targets.withUnsafeBufferPointer { y in
                        lm.forward(tokens: t.baseAddress!, targets: y.baseAddress!, batch: 2, time: 3, firstSample: 0, seed: 0, training: true).loss
                    }
                }
            }
            _ = loss()
            lm.arena.gradients.zero()
            lm.backward(lossScale: 1)
            assertGradientsMatch(lm.arena.parameters.pointer, analytic: lm.arena.gradients.array, eps: 5e-3, "\(cell) from a carried state", loss: loss)
        }
    }
}
