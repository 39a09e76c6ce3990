import TestSupport
import XCTest
@testable import Layers
@testable import Tensors

final class LinearTests: XCTestCase {
    func testGradientsWithBias() { check(bias: true) }
    func testGradientsWithoutBias() { check(bias: false) }

    func check(bias: Bool) {
        var layout = ParameterLayout()
        let lin = Linear(&layout, name: "fc", in: 6, out: 4, bias: bias)
        XCTAssertEqual(layout.entries.map(\.name), bias ? ["fc.weight", "fc.bias"] : ["fc.weight"])
        XCTAssertEqual(layout.entries[0].shape, [4, 6], "PyTorch layout (out, in)")
        let arena = randomArena(layout, seed: 1)
        let x = FloatBuffer(randomValues(3 * 6, seed: 2))
        gradCheck("Linear(bias: \(bias))", arena: arena, input: x, outputCount: 3 * 4,
                  forward: { lin.forward(x.pointer, $0, rows: 3, arena) },
                  backward: { lin.backward($0, x.pointer, $1, rows: 3, arena) })
    }

    func testForwardMatchesDefinition() {
        var layout = ParameterLayout()
        let lin = Linear(&layout, name: "fc", in: 2, out: 3)
        let arena = ParameterArena(layout: layout)
        let w: [Float] = [1, 2, 3, 4, 5, 6], b: [Float] = [0.5, -1, 2]
        for i in 0 ..< 6 { arena.parameters[i] = w[i] }
        for i in 0 ..< 3 { arena.parameters[6 + i] = b[i] }
        let x = FloatBuffer([1, -1])
        let y = FloatBuffer(count: 3)
        lin.forward(x.pointer, y.pointer, rows: 1, arena)
        let expected: [Float] = [-0.5, -2, 1]   // W·x + b row by row
        XCTAssertEqual(y.array, expected)
    }

    func testBackwardAccumulates() {
        var layout = ParameterLayout()
        let lin = Linear(&layout, name: "fc", in: 3, out: 2)
        let arena = randomArena(layout, seed: 3)
        let x = FloatBuffer(randomValues(6, seed: 4)), dy = FloatBuffer(randomValues(4, seed: 5))
        lin.backward(dy.pointer, x.pointer, nil, rows: 2, arena)
        let once = arena.gradients.array
        lin.backward(dy.pointer, x.pointer, nil, rows: 2, arena)
        assertClose(arena.gradients.array, once.map { 2 * $0 }, relative: 1e-6, "second backward adds")
    }
}

final class EmbeddingTests: XCTestCase {
    func testTokenEmbeddingGradients() {
        var layout = ParameterLayout()
        let emb = Embedding(&layout, name: "wte", num: 5, dim: 3)
        let arena = randomArena(layout, seed: 1)
        let ids: [Int32] = [4, 0, 4, 2]
        let dummy = FloatBuffer(count: 1)
        ids.withUnsafeBufferPointer { idp in
            gradCheck("Embedding", arena: arena, input: dummy, outputCount: 12,
                      forward: { emb.forward(idp.baseAddress!, $0, count: 4, arena) },
                      backward: { dy, _ in emb.backward(idp.baseAddress!, dy, count: 4, arena) })
        }
    }

    func testPositionEmbeddingGradients() {
        var layout = ParameterLayout()
        let pos = PositionEmbedding(&layout, name: "wpe", blockSize: 4, dim: 3)
        let arena = randomArena(layout, seed: 1)
        let x = FloatBuffer(randomValues(2 * 3 * 3, seed: 2))
        gradCheck("PositionEmbedding", arena: arena, input: x, outputCount: 18,
                  forward: { y in y.update(from: x.pointer, count: 18); pos.forward(y, batch: 2, time: 3, arena) },
                  backward: { dy, dx in pos.backward(dy, batch: 2, time: 3, arena); Kernels.add(dy, into: dx, count: 18) })
    }
}

final class LayerNormTests: XCTestCase {
    func testGradients() {
        var layout = ParameterLayout()
        let ln = LayerNorm(&layout, name: "ln", dim: 7)
        let arena = randomArena(layout, seed: 1)
        let x = FloatBuffer(randomValues(3 * 7, seed: 2))
        let mean = FloatBuffer(count: 3), rstd = FloatBuffer(count: 3)
        gradCheck("LayerNorm", arena: arena, input: x, outputCount: 21, eps: 5e-3,
                  forward: { ln.forward(x.pointer, $0, mean: mean.pointer, rstd: rstd.pointer, rows: 3, arena) },
                  backward: { ln.backward($0, x.pointer, mean: mean.pointer, rstd: rstd.pointer, $1, base: nil, rows: 3, arena) })
    }

    /// The input gradient joins a base (another branch's gradient) in the same pass; the base
    /// may be the output itself. Vectors of 20 cover the eight-lane body and its tail.
    func testBackwardAddsTheBase() {
        var layout = ParameterLayout()
        let ln = LayerNorm(&layout, name: "ln", dim: 20)
        let arena = randomArena(layout, seed: 4)
        let x = FloatBuffer(randomValues(40, seed: 5)), dy = FloatBuffer(randomValues(40, seed: 6))
        let base = FloatBuffer(randomValues(40, seed: 7))
        let mean = FloatBuffer(count: 2), rstd = FloatBuffer(count: 2), y = FloatBuffer(count: 40)
        ln.forward(x.pointer, y.pointer, mean: mean.pointer, rstd: rstd.pointer, rows: 2, arena)
        let plain = FloatBuffer(count: 40), joined = FloatBuffer(count: 40), inPlace = FloatBuffer(base.array)
        ln.backward(dy.pointer, x.pointer, mean: mean.pointer, rstd: rstd.pointer, plain.pointer, base: nil, rows: 2, arena)
        ln.backward(dy.pointer, x.pointer, mean: mean.pointer, rstd: rstd.pointer, joined.pointer, base: base.pointer, rows: 2, arena)
        ln.backward(dy.pointer, x.pointer, mean: mean.pointer, rstd: rstd.pointer, inPlace.pointer, base: inPlace.pointer,
                    rows: 2, arena)
        // the sum may be fused into the last multiply (one rounding): equal up to rounding
        assertClose(joined.array, zip(base.array, plain.array).map { $0 + $1 }, relative: 1e-6, "base + gradient")
        XCTAssertEqual(inPlace.array, joined.array)
        XCTAssert(plain.array.contains { $0 != 0 })
    }

    /// Widths that leave the forward's four accumulators 0–3 groups of 8 past whole rounds of
    /// 32, with and without a tail, against a double-precision reference.
    func testForwardMatchesTheDefinitionAtEveryWidth() {
        for C in [3, 8, 16, 24, 32, 40, 59, 64, 88, 128, 131] {
            var layout = ParameterLayout()
            let ln = LayerNorm(&layout, name: "ln", dim: C)
            let arena = randomArena(layout, seed: UInt64(C))
            let rows = 3
            let x = FloatBuffer(randomValues(rows * C, seed: UInt64(100 + C)).map { $0 * 3 + 0.5 }), y = FloatBuffer(count: rows * C)
            let mean = FloatBuffer(count: rows), rstd = FloatBuffer(count: rows)
            ln.forward(x.pointer, y.pointer, mean: mean.pointer, rstd: rstd.pointer, rows: rows, arena)
            let w = (0 ..< C).map { Double(arena.parameters[$0]) }, b = (0 ..< C).map { Double(arena.parameters[C + $0]) }
            for r in 0 ..< rows {
                let xs = (0 ..< C).map { Double(x[r * C + $0]) }
                let m = xs.reduce(0, +) / Double(C)
                let v = xs.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(C)
                let sd = (v + 1e-5).squareRoot()
                XCTAssertEqual(Double(mean[r]), m, accuracy: 1e-6 * max(1, abs(m)), "mean, C = \(C)")
                XCTAssertEqual(Double(rstd[r]), 1 / sd, accuracy: 1e-5 / sd, "rstd, C = \(C)")
                for c in 0 ..< C {
                    XCTAssertEqual(Double(y[r * C + c]), (xs[c] - m) / sd * w[c] + b[c], accuracy: 1e-5 * (1 + abs(w[c]) * 3),
                                   "y[\(r), \(c)], C = \(C)")
                }
            }
        }
    }

    func testNormalisesWithBiasedVariance() {
        var layout = ParameterLayout()
        let ln = LayerNorm(&layout, name: "ln", dim: 4)
        let arena = ParameterArena(layout: layout)
        for i in 0 ..< 4 { arena.parameters[i] = 1 }
        let x = FloatBuffer([1, 2, 3, 4]), y = FloatBuffer(count: 4)
        let mean = FloatBuffer(count: 1), rstd = FloatBuffer(count: 1)
        ln.forward(x.pointer, y.pointer, mean: mean.pointer, rstd: rstd.pointer, rows: 1, arena)
        let sd = (1.25 + 1e-5 as Float).squareRoot()   // biased variance of 1..4 is 1.25
        assertClose(y.array, [-1.5 / sd, -0.5 / sd, 0.5 / sd, 1.5 / sd], relative: 1e-6, "LayerNorm values")
    }
}

final class GELUTests: XCTestCase {
    func testKnownValues() {
        let x = FloatBuffer([-2, -0.5, 0, 1, 3]), y = FloatBuffer(count: 5)
        GELU.erf.forward(x.pointer, y.pointer, count: 5)
        // 0.5·x·(1 + erf(x/√2)), computed in double precision
        assertClose(y.array, [-0.04550026, -0.15426877, 0, 0.84134475, 2.99595031], relative: 1e-6, "erf GELU")
        GELU.tanh.forward(x.pointer, y.pointer, count: 5)
        assertClose(y.array, [-0.04540231, -0.15428599, 0, 0.84119199, 2.99636269], relative: 1e-6, "tanh GELU")
    }

    func testGradients() {
        for kind in [GELU.erf, .tanh] {
            let arena = ParameterArena(layout: ParameterLayout())
            let x = FloatBuffer(randomValues(40, seed: 3, std: 2))
            gradCheck("GELU \(kind)", arena: arena, input: x, outputCount: 40, eps: 1e-3,
                      forward: { kind.forward(x.pointer, $0, count: 40) },
                      backward: { dy, dx in
                          // the derivative replaces its input: work on a copy
                          let h = FloatBuffer(x.array), g = FloatBuffer(count: 40), y = FloatBuffer(count: 40)
                          kind.forwardReplacingWithDerivative(h.pointer, g.pointer, count: 40)
                          kind.forward(x.pointer, y.pointer, count: 40)
                          XCTAssertEqual(g.array, y.array, "\(kind): the recomputed output is the forward's")
                          for i in 0 ..< 40 { dx[i] = dy[i] * h[i] }
                      })
        }
    }
}

final class DropoutTests: XCTestCase {
    func testScalesKeptElementsAndDropsAboutP() {
        let d = Dropout(p: 0.25, site: 3)
        let n = 4 * 5000
        let x = FloatBuffer([Float](repeating: 1, count: n)), y = FloatBuffer(count: n), mask = FloatBuffer(count: n)
        d.forward(x.pointer, y.pointer, mask: mask.pointer, samples: 4, perSample: 5000, firstSample: 0, seed: 1, training: true)
        let kept = y.array.filter { $0 != 0 }
        XCTAssert(kept.allSatisfy { abs($0 - 1 / 0.75) < 1e-6 }, "kept elements are scaled by 1/(1-p)")
        XCTAssertEqual(Double(n - kept.count) / Double(n), 0.25, accuracy: 0.015)
    }

    func testIdentityInEval() {
        let d = Dropout(p: 0.5, site: 1)
        let x = FloatBuffer(randomValues(10, seed: 1)), y = FloatBuffer(count: 10), mask = FloatBuffer(count: 10)
        d.forward(x.pointer, y.pointer, mask: mask.pointer, samples: 1, perSample: 10, firstSample: 0, seed: 1, training: false)
        XCTAssertEqual(y.array, x.array)
    }

    func testMaskIsKeyedByGlobalSampleNotBatchPosition() {
        let d = Dropout(p: 0.5, site: 2)
        let per = 64
        let x = FloatBuffer([Float](repeating: 1, count: 3 * per))
        let a = FloatBuffer(count: 3 * per), b = FloatBuffer(count: per), m = FloatBuffer(count: 3 * per)
        // samples 10, 11, 12 in one batch; sample 12 alone in another
        d.forward(x.pointer, a.pointer, mask: m.pointer, samples: 3, perSample: per, firstSample: 10, seed: 5, training: true)
        d.forward(x.pointer, b.pointer, mask: m.pointer, samples: 1, perSample: per, firstSample: 12, seed: 5, training: true)
        XCTAssertEqual(Array(a.array[(2 * per)...]), b.array)
        XCTAssertNotEqual(Array(a.array[0 ..< per]), b.array)
    }

    func testGradients() {
        let d = Dropout(p: 0.3, site: 4)
        let arena = ParameterArena(layout: ParameterLayout())
        let x = FloatBuffer(randomValues(30, seed: 3)), mask = FloatBuffer(count: 30)
        gradCheck("Dropout", arena: arena, input: x, outputCount: 30,
                  forward: { d.forward(x.pointer, $0, mask: mask.pointer, samples: 2, perSample: 15, firstSample: 7, seed: 9, training: true) },
                  backward: { d.backward($0, mask: mask.pointer, $1, count: 30, training: true) })
    }
}

final class AttentionTests: XCTestCase {
    func testCausalGradients() { check(causal: true, T: 4) }
    func testBidirectionalGradients() { check(causal: false, T: 4) }
    /// Several blocks of query rows with a partial last one, head size 3 (the plain loops).
    func testCausalGradientsAcrossRowBlocks() { check(causal: true, T: 11) }
    /// Head size 8 and 24: the eight-lane paths, keys past one 16-wide step.
    func testGradientsWithVectorHeads() {
        check(causal: true, T: 19, C: 16)
        check(causal: false, T: 9, C: 16)
        check(causal: true, T: 7, C: 48, B: 1)
    }

    func check(causal: Bool, T: Int, C: Int = 6, B: Int = 2) {
        var layout = ParameterLayout()
        let attn = SelfAttention(&layout, name: "attn", dim: C, nHead: 2, causal: causal)
        XCTAssertEqual(layout.entries.map(\.name), ["attn.c_attn.weight", "attn.c_attn.bias", "attn.c_proj.weight", "attn.c_proj.bias"])
        let arena = randomArena(layout, seed: 1, std: 0.4)
        let acts = SelfAttention.Activations(batch: B, time: T, dim: C, nHead: 2)
        let scratch = SelfAttention.Scratch(batch: B, time: T, dim: C, nHead: 2)
        let x = FloatBuffer(randomValues(B * T * C, seed: 2))
        gradCheck("SelfAttention(causal: \(causal), T: \(T), C: \(C))", arena: arena, input: x, outputCount: B * T * C, eps: 5e-3,
                  forward: { attn.forward(x.pointer, $0, acts, scratch, batch: B, time: T, arena) },
                  backward: { attn.backward($0, x.pointer, $1, acts, scratch, batch: B, time: T, arena) })
    }

    func testCausalOutputIgnoresTheFuture() {
        let T = 5, C = 4
        var layout = ParameterLayout()
        let attn = SelfAttention(&layout, name: "attn", dim: C, nHead: 2, causal: true)
        let arena = randomArena(layout, seed: 3)
        let acts = SelfAttention.Activations(batch: 1, time: T, dim: C, nHead: 2)
        let scratch = SelfAttention.Scratch(batch: 1, time: T, dim: C, nHead: 2)
        let x = FloatBuffer(randomValues(T * C, seed: 4))
        let y1 = FloatBuffer(count: T * C), y2 = FloatBuffer(count: T * C)
        attn.forward(x.pointer, y1.pointer, acts, scratch, batch: 1, time: T, arena)
        for c in 0 ..< C { x[4 * C + c] += 1 }    // change only the last position
        attn.forward(x.pointer, y2.pointer, acts, scratch, batch: 1, time: T, arena)
        XCTAssertEqual(Array(y1.array[0 ..< 4 * C]), Array(y2.array[0 ..< 4 * C]))
        XCTAssertNotEqual(Array(y1.array[(4 * C)...]), Array(y2.array[(4 * C)...]))
    }
}

final class FeedForwardTests: XCTestCase {
    func testGradients() {
        for p: Float in [0, 0.2] {
            let B = 2, T = 3, C = 4
            var layout = ParameterLayout()
            let ff = FeedForward(&layout, name: "mlp", dim: C, dropout: p, site: 10)
            XCTAssertEqual(layout.entries.map(\.shape), [[16, 4], [16], [4, 16], [4]], "d_ff = 4·d_model")
            let arena = randomArena(layout, seed: 1)
            let acts = FeedForward.Activations(rows: B * T, dim: C, hidden: 16, dropout: p > 0)
            let scratch = FeedForward.Scratch(rows: B * T, dim: C, hidden: 16, dropout: p > 0)
            let x = FloatBuffer(randomValues(B * T * C, seed: 2))
            gradCheck("FeedForward(p: \(p))", arena: arena, input: x, outputCount: B * T * C, eps: 5e-3,
                      forward: { ff.forward(x.pointer, $0, acts, scratch, batch: B, time: T, firstSample: 3, seed: 1, training: true, arena) },
                      backward: { ff.backward($0, x.pointer, $1, acts, scratch, rows: B * T, training: true, arena) })
        }
    }
}

final class TransformerBlockTests: XCTestCase {
    func testGradients() {
        for p: Float in [0, 0.1] {
            let B = 2, T = 3, C = 8
            var layout = ParameterLayout()
            let block = TransformerBlock(&layout, name: "h.0", dim: C, nHead: 2, causal: true, gelu: .erf, dropout: p, site: 20)
            let arena = randomArena(layout, seed: 1)
            let acts = TransformerBlock.Activations(batch: B, time: T, dim: C, nHead: 2, dropout: p > 0)
            let scratch = TransformerBlock.Scratch(batch: B, time: T, dim: C, nHead: 2, dropout: p > 0)
            let x = FloatBuffer(randomValues(B * T * C, seed: 2))
            gradCheck("TransformerBlock(p: \(p))", arena: arena, input: x, outputCount: B * T * C, eps: 5e-3,
                      forward: { block.forward(x.pointer, $0, acts, scratch, batch: B, time: T, firstSample: 0, seed: 3, training: true, arena) },
                      backward: { block.backward($0, x.pointer, $1, acts, scratch, batch: B, time: T, training: true, arena) })
        }
    }
}

/// The rank's threads split attention heads, the Linear products' rows, GELU and LayerNorm rows
/// without changing a bit (OpenBLAS itself stays on one thread here: its results may depend on
/// its thread count).
final class ThreadSplitTests: XCTestCase {
    func testTwoThreadsGiveTheSameBlockAsOne() {
        let B = 3, T = 37, C = 32
        var layout = ParameterLayout()
        let block = TransformerBlock(&layout, name: "h.0", dim: C, nHead: 4, causal: true, gelu: .erf, dropout: 0, site: 20)
        let arena = randomArena(layout, seed: 5)
        let x = FloatBuffer(randomValues(B * T * C, seed: 6)), dout = FloatBuffer(randomValues(B * T * C, seed: 7))
        func run(threads: Int) -> BlockStep {
            let saved = BLAS.threads
            BLAS.setThreads(1)
            Parallel.setThreads(threads)
            defer { BLAS.setThreads(saved) }
            return BlockStep(block, arena, x: x, dout: dout, batch: B, time: T, nHead: 4, dropout: false)
        }
        let one = run(threads: 1), two = run(threads: 2)
        XCTAssertEqual(one.y, two.y)
        XCTAssertEqual(one.dx, two.dx)
        XCTAssertEqual(one.grads, two.grads)
    }
}

/// One forward and backward of a transformer block from zeroed gradients, for comparisons to the
/// bit: its output, input gradient and parameter gradients.
struct BlockStep {
    let y, dx, grads: [Float]

    init(_ block: TransformerBlock, _ arena: ParameterArena, x: FloatBuffer, dout: FloatBuffer, batch B: Int, time T: Int,
         nHead: Int, dropout: Bool, rows: Int? = nil, firstSample: Int = 0) {
        let C = block.dim
        let acts = TransformerBlock.Activations(batch: B, time: T, dim: C, nHead: nHead, dropout: dropout)
        let scratch = TransformerBlock.Scratch(batch: B, time: T, dim: C, nHead: nHead, dropout: dropout, rows: rows)
        let out = FloatBuffer(count: B * T * C), din = FloatBuffer(count: B * T * C)
        arena.gradients.zero()
        block.forward(x.pointer, out.pointer, acts, scratch, batch: B, time: T, firstSample: firstSample, seed: 1,
                      training: true, arena)
        block.backward(dout.pointer, x.pointer, din.pointer, acts, scratch, batch: B, time: T, training: true, arena)
        y = out.array
        dx = din.array
        grads = arena.gradients.array
    }
}

/// The block-wise passes (`RowBlocks`): a batch taken one sequence at a time gives the same bits
/// as in one piece, dropout masks included (they go by global sample).
final class RowBlocksTests: XCTestCase {
    func testBlocksOfOneSequenceGiveTheSameBitsAsOneBlock() {
        for p: Float in [0, 0.1] {
            let B = 3, T = 5, C = 16
            var layout = ParameterLayout()
            let block = TransformerBlock(&layout, name: "h.0", dim: C, nHead: 2, causal: true, gelu: .erf, dropout: p, site: 20)
            let arena = randomArena(layout, seed: 8)
            let x = FloatBuffer(randomValues(B * T * C, seed: 9)), dout = FloatBuffer(randomValues(B * T * C, seed: 10))
            func run(rows: Int) -> BlockStep {
                BlockStep(block, arena, x: x, dout: dout, batch: B, time: T, nHead: 2, dropout: p > 0, rows: rows, firstSample: 4)
            }
            let whole = run(rows: B * T), single = run(rows: T), two = run(rows: 2 * T + 1)
            XCTAssertEqual(whole.y, single.y, "p = \(p)")
            XCTAssertEqual(whole.dx, single.dx, "p = \(p)")
            XCTAssertEqual(whole.grads, single.grads, "p = \(p)")
            XCTAssertEqual(whole.y, two.y, "p = \(p)")
            XCTAssertEqual(whole.dx, two.dx, "p = \(p)")
            XCTAssertEqual(whole.grads, two.grads, "p = \(p)")
            XCTAssertNotEqual(whole.grads.filter { $0 != 0 }.count, 0)
        }
    }

    func testBlocksCoverTheBatchInOrder() {
        XCTAssertEqual(Array(RowBlocks(batch: 5, time: 4, rows: 8)), [0 ..< 2, 2 ..< 4, 4 ..< 5])
        XCTAssertEqual(Array(RowBlocks(batch: 3, time: 4, rows: 3)), [0 ..< 1, 1 ..< 2, 2 ..< 3], "at least one sequence")
        XCTAssertEqual(Array(RowBlocks(batch: 0, time: 4, rows: 8)), [])
        XCTAssertEqual(RowBlocks.rows(batch: 16, time: 128, width: 512) % 128, 0, "whole sequences")
        XCTAssertLessThanOrEqual(RowBlocks.rows(batch: 1, time: 128, width: 512), 128, "no more than the batch")
        func rows(_ B: Int, _ T: Int, _ width: Int, l2: Int, threads: Int = 1) -> Int {
            RowBlocks.rows(batch: B, time: T, width: width, l2Bytes: l2, threads: threads)
        }
        XCTAssertEqual(rows(16, 128, 512, l2: 2 << 20), 256, "a quarter of a 2 MB L2")
        XCTAssertEqual(rows(16, 128, 512, l2: 1 << 20), 128, "a quarter of a 1 MB L2")
        XCTAssertEqual(rows(16, 128, 512, l2: 0), 128, "at least 256 KB of L2 assumed")
        XCTAssertEqual(rows(16, 32, 128, l2: 2 << 20), 16 * 32, "small rows: the whole batch")
        XCTAssertEqual(rows(16, 128, 512, l2: 2 << 20, threads: 2), 16 * 128, "several threads: the whole batch")
    }
}

final class CrossEntropyTests: XCTestCase {
    func testLossAndGradientWithIgnoreIndex() {
        let N = 4, V = 5
        let logits = FloatBuffer(randomValues(N * V, seed: 1, std: 2))
        let targets: [Int32] = [3, CrossEntropy.ignoreIndex, 0, 4]
        let probs = FloatBuffer(count: N * V), dlogits = FloatBuffer(count: N * V)
        let loss = { () -> Double in
            targets.withUnsafeBufferPointer {
                CrossEntropy.forward(logits: logits.pointer, targets: $0.baseAddress!, probs: probs.pointer, rows: N, vocab: V).loss
            }
        }
        let (sum, count) = targets.withUnsafeBufferPointer {
            CrossEntropy.forward(logits: logits.pointer, targets: $0.baseAddress!, probs: probs.pointer, rows: N, vocab: V)
        }
        XCTAssertEqual(count, 3)
        // direct log-softmax in Double
        var expected = 0.0
        for n in [0, 2, 3] {
            let row = (0 ..< V).map { Double(logits[n * V + $0]) }
            let lse = log(row.map { exp($0) }.reduce(0, +))
            expected += lse - row[Int(targets[n])]
        }
        XCTAssertEqual(sum, expected, accuracy: 1e-5)
        targets.withUnsafeBufferPointer {
            CrossEntropy.backward(probs: probs.pointer, targets: $0.baseAddress!, dlogits: dlogits.pointer, rows: N, vocab: V, scale: 1)
        }
        XCTAssert(dlogits.array[V ..< 2 * V].allSatisfy { $0 == 0 }, "ignored row has no gradient")
        assertGradientsMatch(logits.pointer, analytic: dlogits.array, eps: 1e-3, "cross-entropy logits", loss: loss)
    }
}
