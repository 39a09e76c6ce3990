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
        let url = try XCTUnwrap(Bundle.module.url(forResource: "mlm_reference", withExtension: "safetensors", subdirectory: "Fixtures"))
        let (tensors, meta) = try SafeTensors.read(path: url.path)
        let c = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(try XCTUnwrap(meta["config"]).utf8)) as? [String: Any])
        XCTAssertEqual(c["causal"] as? Bool, false)
        let cfg = GPTConfig(vocabSize: c["vocab_size"] as! Int, blockSize: c["block_size"] as! Int, nLayer: c["n_layer"] as! Int,
                            nHead: c["n_head"] as! Int, nEmbd: c["n_embd"] as! Int, causal: false)
        let inputs = try XCTUnwrap(tensors["inputs"]).ints.map { Int32($0) }
        let targets = try XCTUnwrap(tensors["targets"]).ints.map { Int32($0) }
        let B = inputs.count / cfg.blockSize, T = cfg.blockSize, V = cfg.vocabSize
        let model = GPT(config: cfg, maxBatch: B)
        var params: [String: SafeTensor] = [:]
        for (k, v) in tensors where k.hasPrefix("param.") { params[String(k.dropFirst(6))] = v }
        try Weights.assign(params, source: "fixture", into: model.arena)
        let r = inputs.withUnsafeBufferPointer { i in
            targets.withUnsafeBufferPointer { t in
                model.forward(tokens: i.baseAddress!, targets: t.baseAddress!, batch: B, time: T, firstSample: 0, seed: 0, training: true)
            }
        }
        XCTAssertEqual(r.count, targets.filter { $0 != -1 }.count)
        let ref = Double(try XCTUnwrap(tensors["loss"]).floats[0])
        XCTAssertEqual(r.loss / Double(r.count), ref, accuracy: 1e-5 * ref, "loss")
        XCTAssertLessThan(relativeError(Array(UnsafeBufferPointer(start: model.logits, count: B * T * V)),
                                        try XCTUnwrap(tensors["logits"]).floats), 1e-5, "logits")
        model.arena.gradients.zero()
        model.backward(lossScale: 1 / Float(r.count))
        for e in model.arena.layout.entries {
            let mine = Array(UnsafeBufferPointer(start: model.arena.gradients.pointer + e.offset, count: e.count))
            XCTAssertLessThan(relativeError(mine, try XCTUnwrap(tensors["grad.\(e.name)"]).floats), 1e-4, "gradient of \(e.name)")
        }
    }
}
