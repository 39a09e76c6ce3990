import Foundation
import TestSupport
import XCTest
@testable import Optim
@testable import Tensors

/// Matches `launch/pytorch/make_optim_reference.py`: SGD (momentum, Nesterov), Adam (L2) and AdamW,
/// each with a schedule, 10 steps of given gradients with global-norm clipping.
final class PyTorchOptimizerTests: XCTestCase {
    /// Reads the fixture's F32 tensors (a minimal reader: Optim does not depend on the checkpoint code).
    func loadFixture() throws -> (tensors: [String: [Float]], cases: [[String: Any]]) {
        let url = try XCTUnwrap(Bundle.module.url(forResource: "optim_reference", withExtension: "safetensors", subdirectory: "Fixtures"))
        let data = try Data(contentsOf: url)
        let n = Int(data.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) })
        let header = try XCTUnwrap(JSONSerialization.jsonObject(with: data.subdata(in: 8 ..< 8 + n)) as? [String: Any])
        var tensors: [String: [Float]] = [:]
        for (name, value) in header where name != "__metadata__" {
            let info = try XCTUnwrap(value as? [String: Any])
            XCTAssertEqual(info["dtype"] as? String, "F32")
            let offsets = try XCTUnwrap(info["data_offsets"] as? [Int])
            tensors[name] = data.withUnsafeBytes { raw in
                (0 ..< (offsets[1] - offsets[0]) / 4).map {
                    Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 8 + n + offsets[0] + 4 * $0, as: UInt32.self)))
                }
            }
        }
        let meta = try XCTUnwrap(header["__metadata__"] as? [String: String])
        let cases = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(try XCTUnwrap(meta["cases"]).utf8)) as? [[String: Any]])
        return (tensors, cases)
    }

    func schedule(_ c: [String: Any]) throws -> LRSchedule {
        let s = try XCTUnwrap(c["schedule"] as? [String: Any])
        let lr = c["lr"] as! Double
        switch s["kind"] as! String {
        case "constant": return .constant(lr: lr)
        case "linear": return .linear(lr: lr, warmup: s["warmup"] as! Int, decaySteps: s["decay_steps"] as! Int, minLR: s["min_lr"] as! Double)
        case "inverse-sqrt": return .inverseSqrt(lr: lr, warmup: s["warmup"] as! Int)
        case "warmup-cosine": return .warmupCosine(lr: lr, warmup: s["warmup"] as! Int, decaySteps: s["decay_steps"] as! Int, minLR: s["min_lr"] as! Double)
        default: throw XCTSkip("unknown schedule")
        }
    }

    func testEveryOptimizerAndScheduleMatchesPyTorch() throws {
        let (t, cases) = try loadFixture()
        XCTAssertEqual(cases.map { $0["name"] as? String }, ["sgd", "sgd_nesterov", "adam", "adamw"])
        var layout = ParameterLayout()
        layout.add("w", [4, 3])
        layout.add("b", [3])
        let gw = try XCTUnwrap(t["grads.w"]), gb = try XCTUnwrap(t["grads.b"])
        for c in cases {
            let name = c["name"] as! String
            let arena = ParameterArena(layout: layout)
            let initial = try XCTUnwrap(t["init.w"]) + XCTUnwrap(t["init.b"])
            for i in initial.indices { arena.parameters[i] = initial[i] }
            let wd = Float(c["weight_decay"] as! Double)
            let opt: Optimizer
            switch c["kind"] as! String {
            case "sgd": opt = SGD(layout: layout, momentum: Float(c["momentum"] as! Double), nesterov: c["nesterov"] as! Bool, weightDecay: wd)
            case "adam", "adamw":
                let betas = c["betas"] as! [Double], eps = Float(c["eps"] as! Double)
                opt = c["kind"] as! String == "adam"
                    ? Adam(layout: layout, beta1: Float(betas[0]), beta2: Float(betas[1]), eps: eps, weightDecay: wd)
                    : AdamW(layout: layout, beta1: Float(betas[0]), beta2: Float(betas[1]), eps: eps, weightDecay: wd)
            default: XCTFail("unknown kind"); continue
            }
            let sched = try schedule(c)
            let lrs = try XCTUnwrap(t["\(name).lrs"]), norms = try XCTUnwrap(t["\(name).norms"])
            for step in 0 ..< 10 {
                for i in 0 ..< 12 { arena.gradients[i] = gw[step * 12 + i] }
                for i in 0 ..< 3 { arena.gradients[12 + i] = gb[step * 3 + i] }
                let lr = sched.lr(at: step)
                XCTAssertEqual(lr, Double(lrs[step]), accuracy: 1e-7, "\(name) lr at \(step)")
                // summed over one "token": the gradients are used as given, then clipped
                let norm = opt.step(arena, summedOver: 1, lr: lr, maxNorm: c["clip"] as? Double)
                XCTAssertEqual(norm, Double(norms[step]), accuracy: 1e-5 * Double(norms[step]), "\(name) norm at \(step)")
            }
            let expected = try XCTUnwrap(t["\(name).final.w"]) + XCTUnwrap(t["\(name).final.b"])
            XCTAssertLessThan(relativeError(arena.parameters.array, expected), 1e-5, "\(name) final parameters")
            XCTAssertEqual(opt.step, 10)
        }
    }
}
