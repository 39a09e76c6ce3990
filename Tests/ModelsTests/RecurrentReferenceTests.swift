import Foundation
import TestSupport
import XCTest
@testable import Layers
@testable import Models
@testable import Tensors
@testable import Training

/// Matches `launch/pytorch/make_recurrent_reference.py`: nn.RNN / nn.LSTM / nn.GRU language models
/// (2 layers, with an ignored target): logits, loss and every gradient.
final class RecurrentReferenceTests: XCTestCase {
    func testRNNLSTMAndGRUMatchPyTorch() throws {
        let fixture = try ReferenceFixture("recurrent_reference")
        let c = try fixture.json("config")
        let V = c["vocab_size"] as! Int, T = c["block_size"] as! Int, B = c["batch"] as! Int
        let ignored = c["ignored_target"] as! [Int]
        var (inputs, targets) = splitRows(try XCTUnwrap(fixture.tensors["tokens"]).ints, batch: B, time: T)
        targets[ignored[0] * T + ignored[1]] = CrossEntropy.ignoreIndex
        for cell in [RecurrentCell.rnn, .lstm, .gru] {
            let cfg = RecurrentConfig(cell: cell, vocabSize: V, blockSize: T, nLayer: c["n_layer"] as! Int, nEmbd: c["n_embd"] as! Int,
                                      hidden: c["hidden"] as! Int)
            let lm = RecurrentLM(config: cfg, maxBatch: B)
            try fixture.assign(prefix: "\(cell).param.", into: lm.arena)
            let r = inputs.withUnsafeBufferPointer { i in
                targets.withUnsafeBufferPointer { t in
                    lm.forward(tokens: i.baseAddress!, targets: t.baseAddress!, batch: B, time: T, firstSample: 0, seed: 0, training: true)
                }
            }
            XCTAssertEqual(r.count, B * T - 1)
            let loss = r.loss / Double(r.count), ref = Double(try fixture.floats("\(cell).loss")[0])
            XCTAssertEqual(loss, ref, accuracy: 1e-5 * ref, "\(cell) loss")
            let logits = Array(UnsafeBufferPointer(start: lm.logits, count: B * T * V))
            XCTAssertLessThan(relativeError(logits, try fixture.floats("\(cell).logits")), 1e-5, "\(cell) logits")
            lm.arena.gradients.zero()
            lm.backward(lossScale: 1 / Float(r.count))
            try fixture.assertGradients(lm.arena, prefix: "\(cell).grad.", "\(cell)")
        }
    }
}
