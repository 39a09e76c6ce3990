import TestSupport
import XCTest
@testable import Layers
@testable import Tensors

final class RecurrentLayerTests: XCTestCase {
    func testGradientsThroughTime() {
        for cell in [RecurrentCell.rnn, .lstm, .gru] {
            let B = 2, T = 5, I = 3, H = 4
            var layout = ParameterLayout()
            let layer = RecurrentLayer(&layout, prefix: "rnn", layer: 0, cell: cell, input: I, hidden: H)
            XCTAssertEqual(layout.entries.map(\.name), ["rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.bias_ih_l0", "rnn.bias_hh_l0"])
            XCTAssertEqual(layout.entries[1].shape, [cell.gates * H, H])
            let arena = randomArena(layout, seed: 1, std: 0.5)
            let acts = RecurrentLayer.Activations(batch: B, time: T, cell: cell, hidden: H)
            let x = FloatBuffer(randomValues(B * T * I, seed: 2))
            let dh = FloatBuffer(count: B * T * H)
            gradCheck("\(cell)", arena: arena, input: x, outputCount: B * T * H, eps: 5e-3,
                      forward: { y in layer.forward(x.pointer, acts, batch: B, time: T, arena); y.update(from: acts.h.pointer, count: B * T * H) },
                      backward: { dy, dx in
                          dh.pointer.update(from: dy, count: B * T * H)
                          layer.backward(dh.pointer, x.pointer, dx, acts, batch: B, time: T, arena)
                      })
        }
    }

    /// The first step sees only x₀ and a zero state; the formulas of PyTorch's cells.
    func testFirstStepFollowsTheEquations() {
        let H = 2, I = 1
        for cell in [RecurrentCell.rnn, .lstm, .gru] {
            var layout = ParameterLayout()
            let layer = RecurrentLayer(&layout, prefix: "rnn", layer: 0, cell: cell, input: I, hidden: H)
            let arena = randomArena(layout, seed: 3)
            let acts = RecurrentLayer.Activations(batch: 1, time: 1, cell: cell, hidden: H)
            let x = FloatBuffer([0.7])
            layer.forward(x.pointer, acts, batch: 1, time: 1, arena)
            let wih = arena.values(of: "rnn.weight_ih_l0")!, bih = arena.values(of: "rnn.bias_ih_l0")!
            let bhh = arena.values(of: "rnn.bias_hh_l0")!
            func pre(_ row: Int) -> Double { Double(wih[row] * 0.7 + bih[row] + bhh[row]) }
            func sig(_ v: Double) -> Double { 1 / (1 + exp(-v)) }
            for j in 0 ..< H {
                let expected: Double
                switch cell {
                case .rnn: expected = tanh(pre(j))
                case .lstm: expected = sig(pre(3 * H + j)) * tanh(sig(pre(j)) * tanh(pre(2 * H + j)))
                case .gru:
                    let r = sig(pre(j)), z = sig(pre(H + j))
                    let n = tanh(Double(wih[2 * H + j] * 0.7 + bih[2 * H + j]) + r * Double(bhh[2 * H + j]))
                    expected = (1 - z) * n
                }
                XCTAssertEqual(Double(acts.h[j]), expected, accuracy: 1e-6, "\(cell) unit \(j)")
            }
        }
    }
}
