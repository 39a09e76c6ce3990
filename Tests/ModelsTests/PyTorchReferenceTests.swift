import Foundation
import TestSupport
import XCTest
import Layers
@testable import Models
@testable import Optim
@testable import Tensors
@testable import Training

/// Matches the tiny GPT of `launch/pytorch/make_reference.py` (logits, loss, every gradient,
/// and 10 AdamW steps with clipping and warmup + cosine) against the committed fixture.
final class PyTorchReferenceTests: XCTestCase {
    struct Fixture {
        let file: ReferenceFixture
        let config: GPTConfig
        let optimizer: [String: Any]
        var tensors: [String: SafeTensor] { file.tensors }
    }

    func loadFixture() throws -> Fixture {
        let file = try ReferenceFixture("gpt_reference")
        let c = try file.json("config")
        let config = GPTConfig(vocabSize: c["vocab_size"] as! Int, blockSize: c["block_size"] as! Int, nLayer: c["n_layer"] as! Int,
                               nHead: c["n_head"] as! Int, nEmbd: c["n_embd"] as! Int, dropout: 0,
                               gelu: GELU(rawValue: c["gelu"] as! String)!, bias: c["bias"] as! Bool)
        return Fixture(file: file, config: config, optimizer: try file.json("optimizer"))
    }

    func model(_ f: Fixture, batch: Int, prefix: String = "param.") throws -> GPT {
        let gpt = GPT(config: f.config, maxBatch: batch)
        try f.file.assign(prefix: prefix, into: gpt.arena)
        return gpt
    }

    func testLogitsLossAndGradients() throws {
        let f = try loadFixture()
        let T = f.config.blockSize, V = f.config.vocabSize
        let tokens = try XCTUnwrap(f.tensors["tokens"])
        let B = tokens.shape[0]
        let gpt = try model(f, batch: B)
        let (inputs, targets) = splitRows(tokens.ints, batch: B, time: T)
        let r = inputs.withUnsafeBufferPointer { i in
            targets.withUnsafeBufferPointer { t in
                gpt.forward(tokens: i.baseAddress!, targets: t.baseAddress!, batch: B, time: T, firstSample: 0, seed: 0, training: true)
            }
        }
        let loss = r.loss / Double(r.count)
        let refLoss = Double(try XCTUnwrap(f.tensors["loss"]).floats[0])
        XCTAssertEqual(loss, refLoss, accuracy: 1e-5 * refLoss, "loss")
        let logits = Array(UnsafeBufferPointer(start: gpt.logits, count: B * T * V))
        XCTAssertLessThan(relativeError(logits, try XCTUnwrap(f.tensors["logits"]).floats), 1e-5, "logits")

        gpt.arena.gradients.zero()
        gpt.backward(lossScale: 1 / Float(r.count))
        try f.file.assertGradients(gpt.arena, prefix: "grad.")
    }

    func testTenAdamWStepsWithClippingAndWarmupCosine() throws {
        let f = try loadFixture()
        let T = f.config.blockSize
        let batches = try XCTUnwrap(f.tensors["train_tokens"])
        let (steps, B) = (batches.shape[0], batches.shape[1])
        let micro = B / 2    // two accumulated micro-batches per step
        let gpt = try model(f, batch: micro)
        let o = f.optimizer
        let betas = o["betas"] as! [Double]
        let adamw = AdamW(layout: gpt.arena.layout, beta1: Float(betas[0]), beta2: Float(betas[1]), eps: Float(o["eps"] as! Double),
                          weightDecay: Float(o["weight_decay"] as! Double))
        let schedule = LRSchedule.warmupCosine(lr: o["lr"] as! Double, warmup: o["warmup"] as! Int,
                                               decaySteps: o["decay_steps"] as! Int, minLR: o["min_lr"] as! Double)
        let refLosses = try XCTUnwrap(f.tensors["losses"]).floats
        let refNorms = try XCTUnwrap(f.tensors["grad_norms"]).floats
        let refLRs = try XCTUnwrap(f.tensors["lrs"]).floats
        XCTAssert(refNorms.contains { $0 > 1 }, "the fixture exercises clipping")
        let stride = B * (T + 1)
        for s in 0 ..< steps {
            let (inputs, targets) = splitRows(Array(batches.ints[(s * stride) ..< ((s + 1) * stride)]), batch: B, time: T)
            gpt.arena.gradients.zero()
            var lossSum = 0.0, count = 0
            for m in 0 ..< 2 {
                let r = inputs.withUnsafeBufferPointer { i in
                    targets.withUnsafeBufferPointer { t in
                        gpt.forward(tokens: i.baseAddress! + m * micro * T, targets: t.baseAddress! + m * micro * T, batch: micro,
                                    time: T, firstSample: 0, seed: 0, training: true)
                    }
                }
                gpt.backward(lossScale: 1)
                lossSum += r.loss
                count += r.count
            }
            let lr = schedule.lr(at: s)
            XCTAssertEqual(Float(lr), refLRs[s], accuracy: 1e-9, "lr at step \(s)")
            XCTAssertEqual(lossSum / Double(count), Double(refLosses[s]), accuracy: 1e-5 * Double(refLosses[s]), "loss at step \(s)")
            let norm = adamw.step(gpt.arena, summedOver: Double(count), lr: lr, maxNorm: o["clip"] as? Double)
            XCTAssertEqual(norm, Double(refNorms[s]), accuracy: 1e-4 * Double(refNorms[s]), "grad norm at step \(s)")
        }
        let reference = try model(f, batch: 1, prefix: "final.")
        let C = f.config.nEmbd
        for e in gpt.arena.layout.entries {
            var mine = Array(UnsafeBufferPointer(start: gpt.arena.parameters.pointer + e.offset, count: e.count))
            var ref = Array(UnsafeBufferPointer(start: reference.arena.parameters.pointer + e.offset, count: e.count))
            if e.name.hasSuffix("attn.c_attn.bias") {
                // The key bias adds q·b_k to every score of a row, which softmax cancels: its true
                // gradient is zero and both sides hold only rounding noise, which Adam's m/√v
                // scales up to full-size steps. Compare that slice as "still near its start".
                let start = try XCTUnwrap(f.tensors["param.\(e.name)"]).floats
                let lr = o["lr"] as! Double
                for i in C ..< 2 * C { XCTAssertLessThan(abs(Double(mine[i] - start[i])), 1.2 * lr * Double(steps)) }
                mine.removeSubrange(C ..< 2 * C)
                ref.removeSubrange(C ..< 2 * C)
            }
            XCTAssertLessThan(relativeError(mine, ref), 1e-5, "parameters of \(e.name) after \(steps) steps")
        }
    }
}
