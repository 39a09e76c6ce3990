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
        let url = try XCTUnwrap(Bundle.module.url(forResource: "recurrent_reference", withExtension: "safetensors", subdirectory: "Fixtures"))
        let (tensors, meta) = try SafeTensors.read(path: url.path)
        let c = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(try XCTUnwrap(meta["config"]).utf8)) as? [String: Any])
        let V = c["vocab_size"] as! Int, T = c["block_size"] as! Int, B = c["batch"] as! Int
        let ignored = c["ignored_target"] as! [Int]
        let rows = try XCTUnwrap(tensors["tokens"]).ints
        var inputs: [Int32] = [], targets: [Int32] = []
        for b in 0 ..< B {
            let row = rows[(b * (T + 1)) ..< ((b + 1) * (T + 1))].map { Int32($0) }
            inputs += row.dropLast()
            targets += row.dropFirst()
        }
        targets[ignored[0] * T + ignored[1]] = CrossEntropy.ignoreIndex
        for cell in [RecurrentCell.rnn, .lstm, .gru] {
            let cfg = RecurrentConfig(cell: cell, vocabSize: V, blockSize: T, nLayer: c["n_layer"] as! Int, nEmbd: c["n_embd"] as! Int,
                                      hidden: c["hidden"] as! Int)
            let lm = RecurrentLM(config: cfg, maxBatch: B)
            var params: [String: SafeTensor] = [:]
            for (k, v) in tensors where k.hasPrefix("\(cell).param.") { params[String(k.dropFirst("\(cell).param.".count))] = v }
            try Weights.assign(params, source: "fixture", into: lm.arena)
            let r = inputs.withUnsafeBufferPointer { i in
                targets.withUnsafeBufferPointer { t in
                    lm.forward(tokens: i.baseAddress!, targets: t.baseAddress!, batch: B, time: T, firstSample: 0, seed: 0, training: true)
                }
            }
            XCTAssertEqual(r.count, B * T - 1)
            let loss = r.loss / Double(r.count), ref = Double(try XCTUnwrap(tensors["\(cell).loss"]).floats[0])
            XCTAssertEqual(loss, ref, accuracy: 1e-5 * ref, "\(cell) loss")
            let logits = Array(UnsafeBufferPointer(start: lm.logits, count: B * T * V))
            XCTAssertLessThan(relativeError(logits, try XCTUnwrap(tensors["\(cell).logits"]).floats), 1e-5, "\(cell) logits")
            lm.arena.gradients.zero()
            lm.backward(lossScale: 1 / Float(r.count))
            for e in lm.arena.layout.entries {
                let mine = Array(UnsafeBufferPointer(start: lm.arena.gradients.pointer + e.offset, count: e.count))
                XCTAssertLessThan(relativeError(mine, try XCTUnwrap(tensors["\(cell).grad.\(e.name)"]).floats), 1e-4, "\(cell) gradient of \(e.name)")
            }
        }
    }
}
