import Foundation
import TestSupport
import XCTest
@testable import Layers
@testable import Models
@testable import Tensors
@testable import Training

/// Matches `launch/pytorch/make_mlm_reference.py`: a bidirectional encoder with a `[MASK]` token
/// and loss only at the chosen positions — logits, loss and every gradient.
final class MaskedLMReferenceTests: XCTestCase {
    func testEncoderMatchesPyTorch() throws {
        let fixture = try ReferenceFixture("mlm_reference")
        let c = try fixture.json("config")
        XCTAssertEqual(c["causal"] as? Bool, false)
        let cfg = GPTConfig(vocabSize: c["vocab_size"] as! Int, blockSize: c["block_size"] as! Int, nLayer: c["n_layer"] as! Int,
                            nHead: c["n_head"] as! Int, nEmbd: c["n_embd"] as! Int, causal: false)
        let inputs = try XCTUnwrap(fixture.tensors["inputs"]).ints.map { Int32($0) }
        let targets = try XCTUnwrap(fixture.tensors["targets"]).ints.map { Int32($0) }
        let B = inputs.count / cfg.blockSize, T = cfg.blockSize, V = cfg.vocabSize
        let model = GPT(config: cfg, maxBatch: B)
        try fixture.assign(prefix: "param.", into: model.arena)
        let r = inputs.withUnsafeBufferPointer { i in
            targets.withUnsafeBufferPointer { t in
                model.forward(tokens: i.baseAddress!, targets: t.baseAddress!, batch: B, time: T, firstSample: 0, seed: 0, training: true)
            }
        }
        XCTAssertEqual(r.count, targets.filter { $0 != -1 }.count)
        let ref = Double(try fixture.floats("loss")[0])
        XCTAssertEqual(r.loss / Double(r.count), ref, accuracy: 1e-5 * ref, "loss")
        XCTAssertLessThan(relativeError(Array(UnsafeBufferPointer(start: model.logits, count: B * T * V)),
                                        try fixture.floats("logits")), 1e-5, "logits")
        model.arena.gradients.zero()
        model.backward(lossScale: 1 / Float(r.count))
        try fixture.assertGradients(model.arena, prefix: "grad.")
    }
}
