import Layers
import Tensors

/// Shape and options of a GPT-style decoder.
public struct GPTConfig: Sendable, Equatable {
    public var vocabSize: Int
    public var blockSize: Int
    public var nLayer: Int
    public var nHead: Int
    public var nEmbd: Int
    public var dropout: Float
    public var gelu: GELU
    public var bias: Bool
    /// Causal (decoder) attention, or bidirectional (masked-LM encoder).
    public var causal: Bool

    public init(vocabSize: Int = 256, blockSize: Int = 128, nLayer: Int = 4, nHead: Int = 4, nEmbd: Int = 128,
                dropout: Float = 0, gelu: GELU = .erf, bias: Bool = true, causal: Bool = true) {
        self.vocabSize = vocabSize
        self.blockSize = blockSize
        self.nLayer = nLayer
        self.nHead = nHead
        self.nEmbd = nEmbd
        self.dropout = dropout
        self.gelu = gelu
        self.bias = bias
        self.causal = causal
    }
}

/// GPT-2-style causal decoder: token + position embedding, pre-LN blocks, final LayerNorm,
/// LM head tied to the token embedding. Parameter names follow nanoGPT. With `causal: false` the
/// same stack is a BERT-style bidirectional encoder for masked-LM training.
public final class GPT: SplitPassModel {
    public let config: GPTConfig
    public let arena: ParameterArena
    public let maxBatch: Int
    public var vocabSize: Int { config.vocabSize }
    public var blockSize: Int { config.blockSize }

    let wte: Embedding
    let wpe: PositionEmbedding
    let embDrop: Dropout
    let blocks: [TransformerBlock]
    let lnF: LayerNorm
    let head: Linear
    let acts: Activations

    /// Dropout sites: the embedding's, then a range per block.
    static let embeddingSite: UInt64 = 1
    static func blockSite(_ l: Int) -> UInt64 { 16 + UInt64(l) * 8 }

    /// `rowsPerBlock` sets the size of the blocks the passes take (`RowBlocks`; by default
    /// chosen by the cache size), which changes no result.
    public init(config: GPTConfig, maxBatch: Int, rowsPerBlock: Int? = nil) {
        self.config = config
        self.maxBatch = maxBatch
        let C = config.nEmbd
        var layout = ParameterLayout()
        wte = Embedding(&layout, name: "transformer.wte", num: config.vocabSize, dim: C)
        wpe = PositionEmbedding(&layout, name: "transformer.wpe", blockSize: config.blockSize, dim: C)
        blocks = (0 ..< config.nLayer).map { l in
            TransformerBlock(&layout, name: "transformer.h.\(l)", dim: C, nHead: config.nHead, causal: config.causal,
                             gelu: config.gelu, dropout: config.dropout, site: GPT.blockSite(l), bias: config.bias)
        }
        lnF = LayerNorm(&layout, name: "transformer.ln_f", dim: C)
        head = Linear(tiedTo: wte.weight)
        embDrop = Dropout(p: config.dropout, site: GPT.embeddingSite)
        arena = ParameterArena(layout: layout)
        acts = Activations(config: config, batch: maxBatch, rowsPerBlock: rowsPerBlock)
    }

    final class Activations {
        let tokens, targets: UnsafeMutablePointer<Int32>
        let residual: [FloatBuffer]      // L+1 buffers (N, C)
        let embMask: FloatBuffer
        let blocks: [TransformerBlock.Activations]
        let scratch: TransformerBlock.Scratch
        let lnFOut, lnFMean, lnFRstd: FloatBuffer
        let logits: FloatBuffer
        let probs: FloatBuffer           // softmax, then (in place) ∂L/∂logits
        let dLnF: FloatBuffer
        let dResidual: [FloatBuffer]     // two (N, C), ping-pong
        var B = 0, T = 0, training = false, hasTargets = false

        init(config: GPTConfig, batch: Int, rowsPerBlock: Int? = nil) {
            let N = batch * config.blockSize, C = config.nEmbd, V = config.vocabSize
            let dropout = config.dropout > 0
            tokens = .allocate(capacity: N); tokens.initialize(repeating: 0, count: N)
            targets = .allocate(capacity: N); targets.initialize(repeating: CrossEntropy.ignoreIndex, count: N)
            residual = (0 ... config.nLayer).map { _ in FloatBuffer(count: N * C) }
            embMask = FloatBuffer(count: dropout ? N * C : 0)
            blocks = (0 ..< config.nLayer).map { _ in
                TransformerBlock.Activations(batch: batch, time: config.blockSize, dim: C, nHead: config.nHead,
                                             dropout: dropout)
            }
            scratch = TransformerBlock.Scratch(batch: batch, time: config.blockSize, dim: C, nHead: config.nHead,
                                               dropout: dropout, rows: rowsPerBlock)
            lnFOut = FloatBuffer(count: N * C); lnFMean = FloatBuffer(count: N); lnFRstd = FloatBuffer(count: N)
            logits = FloatBuffer(count: N * V); probs = FloatBuffer(count: N * V)
            dLnF = FloatBuffer(count: N * C)
            dResidual = [FloatBuffer(count: N * C), FloatBuffer(count: N * C)]
        }

        deinit { tokens.deallocate(); targets.deallocate() }
    }

    /// What `trainingPass` and `evaluationLoss` work in: activations for one block of rows (`RowBlocks`), reused by
    /// every block, the gradient reaching the embeddings for the whole batch, and every weight
    /// packed once per pass, each block's for its forward and for its backward and the head's
    /// both ways.
    final class PassBuffers {
        let acts: Activations
        let bottom: FloatBuffer          // (N, C) ∂L/∂(embedding output), the whole batch's
        let forward, backward: [TransformerBlock.Packed]
        let headForward, headBackward: RowProduct.PackedWeight

        init(config: GPTConfig, batch: Int, sequencesPerBlock: Int) {
            let C = config.nEmbd, V = config.vocabSize
            acts = Activations(config: config, batch: sequencesPerBlock, rowsPerBlock: sequencesPerBlock * config.blockSize)
            bottom = FloatBuffer(count: batch * config.blockSize * C)
            forward = (0 ..< config.nLayer).map { _ in TransformerBlock.Packed(dim: C) }
            backward = (0 ..< config.nLayer).map { _ in TransformerBlock.Packed(dim: C) }
            headForward = RowProduct.PackedWeight(k: C, outputs: V)
            headBackward = RowProduct.PackedWeight(k: V, outputs: C)
        }
    }

    /// Sequences per block of `trainingPass`: the blocks' choice for a whole batch.
    var sequencesPerBlock: Int { max(1, acts.scratch.rows / config.blockSize) }

    lazy var passBuffers = PassBuffers(config: config, batch: maxBatch, sequencesPerBlock: sequencesPerBlock)

    /// GPT-2 initialisation: weights N(0, 0.02), residual projections N(0, 0.02/√(2·n_layer)),
    /// biases 0, LayerNorm weights 1. Each tensor's draws are keyed by its index in the layout.
    public func initialize(seed: UInt64) {
        let residualStd = 0.02 / Float(2 * config.nLayer).squareRoot()
        for (index, e) in arena.layout.entries.enumerated() {
            let p = arena.parameters.pointer + e.offset
            if e.name.hasSuffix(".bias") {
                p.update(repeating: 0, count: e.count)
            } else if e.name.contains(".ln_") {
                p.update(repeating: 1, count: e.count)
            } else {
                let std: Float = e.name.hasSuffix("c_proj.weight") ? residualStd : 0.02
                let rng = CounterRNG(seed: seed, purpose: .initialisation, UInt64(index))
                for i in 0 ..< e.count { p[i] = std * rng.normal(UInt64(i)) }
            }
        }
    }

    public var logits: UnsafePointer<Float> { UnsafePointer(acts.logits.pointer) }

    @discardableResult
    public func forward(tokens: UnsafePointer<Int32>, targets: UnsafePointer<Int32>?, batch B: Int, time T: Int,
                        firstSample: Int, seed: UInt64, training: Bool) -> (loss: Double, count: Int) {
        requireFits(batch: B, time: T)
        let N = B * T
        acts.B = B; acts.T = T; acts.training = training; acts.hasTargets = targets != nil
        acts.tokens.update(from: tokens, count: N)
        if let targets { acts.targets.update(from: targets, count: N) }

        embed(tokens, into: acts, sequences: B, time: T, firstSample: firstSample, seed: seed, training: training)
        for (l, block) in blocks.enumerated() {
            block.forward(acts.residual[l].pointer, acts.residual[l + 1].pointer, acts.blocks[l], acts.scratch, batch: B, time: T,
                          firstSample: firstSample, seed: seed, training: training, arena)
        }
        return top(acts, rows: N, targets: targets, packed: nil, continuing: (0, 0))
    }

    private func requireFits(batch B: Int, time T: Int) {
        precondition(B <= maxBatch && T <= config.blockSize, "batch (\(B), \(T)) exceeds the model's buffers")
    }

    /// The embeddings of B sequences of T tokens into `a`'s first rows (`residual[0]`), with the
    /// embedding dropout of samples `firstSample` on.
    private func embed(_ tokens: UnsafePointer<Int32>, into a: Activations, sequences B: Int, time T: Int, firstSample: Int,
                       seed: UInt64, training: Bool) {
        let x0 = a.residual[0].pointer
        wte.forward(tokens, x0, count: B * T, arena)
        wpe.forward(x0, batch: B, time: T, arena)
        embDrop.forward(x0, x0, mask: a.embMask.pointer, samples: B, perSample: T * config.nEmbd, firstSample: firstSample,
                        seed: seed, training: training)
    }

    /// The final LayerNorm, the head (its weight `packed` for x·Wᵀ, or packed by the call) and,
    /// with targets, the cross-entropy of `a`'s first n rows, its sums continuing `previous`.
    private func top(_ a: Activations, rows n: Int, targets: UnsafePointer<Int32>?, packed: RowProduct.PackedWeight?,
                     continuing previous: (loss: Double, count: Int)) -> (loss: Double, count: Int) {
        lnF.forward(a.residual[config.nLayer].pointer, a.lnFOut.pointer, mean: a.lnFMean.pointer, rstd: a.lnFRstd.pointer,
                    rows: n, arena)
        head.forward(a.lnFOut.pointer, a.logits.pointer, rows: n, arena, packed: packed)
        guard let targets else { return previous }
        return CrossEntropy.forward(logits: a.logits.pointer, targets: targets, probs: a.probs.pointer, rows: n,
                                    vocab: config.vocabSize, continuing: previous)
    }

    /// `top`'s backward for `a`'s first n rows: ∂(scale · summed loss)/∂(input of the final
    /// LayerNorm) into d, the head's weight gradient added (its weight `packed` for dy·W, or
    /// packed by the call). The probabilities become ∂/∂logits in place.
    private func topBackward(_ a: Activations, rows n: Int, targets: UnsafePointer<Int32>, scale: Float,
                             packed: RowProduct.PackedWeight?, into d: UnsafeMutablePointer<Float>) {
        let dlogits = a.probs.pointer
        CrossEntropy.backward(probs: dlogits, targets: targets, dlogits: dlogits, rows: n, vocab: config.vocabSize, scale: scale)
        head.backward(dlogits, a.lnFOut.pointer, a.dLnF.pointer, rows: n, arena, accumulateInput: false, packed: packed)
        lnF.backward(a.dLnF.pointer, a.residual[config.nLayer].pointer, mean: a.lnFMean.pointer, rstd: a.lnFRstd.pointer,
                     d, base: nil, rows: n, arena)
    }

    /// forward and then backward(lossScale: 1) with the same results to the bit, taken depth
    /// first: each block of a few sequences (`RowBlocks`) goes up through every layer and the
    /// loss and back down before the next, in activation buffers of one block's size that every
    /// block reuses, so that they stay in the caches instead of a whole micro-batch's streaming
    /// through memory twice. Every parameter gradient still sums over the rows in their order
    /// (the blocks go in order), and the embeddings' gradients, whose token table the head's
    /// shares, are taken after the last block, as backward takes them. (A batch in one block,
    /// as with several threads, takes forward and backward as they are.) The last forward's
    /// logits are not kept.
    public func trainingPass(tokens: UnsafePointer<Int32>, targets: UnsafePointer<Int32>, batch B: Int, time T: Int,
                             firstSample: Int, seed: UInt64) -> TrainingPass {
        guard splitsPass(batch: B) else {
            requireFits(batch: B, time: T)
            return forwardThenBackward(tokens: tokens, targets: targets, batch: B, time: T, firstSample: firstSample,
                                       seed: seed)
        }
        return trainingPass(tokens: tokens, targets: targets, batch: B, time: T, firstSample: firstSample, seed: seed,
                            sequences: 0 ..< B, continuing: (0, 0), packing: true)
    }

    public func splitsPass(batch B: Int) -> Bool { B > sequencesPerBlock }

    public var embeddingGradientRows: UnsafeMutablePointer<Float> { passBuffers.bottom.pointer }
    public var embeddingWidth: Int { config.nEmbd }

    public func trainingPass(tokens: UnsafePointer<Int32>, targets: UnsafePointer<Int32>, batch B: Int, time T: Int,
                             firstSample: Int, seed: UInt64, sequences range: Range<Int>,
                             continuing previous: (loss: Double, count: Int), packing: Bool) -> TrainingPass {
        requireFits(batch: B, time: T)
        precondition(splitsPass(batch: B) && range.lowerBound >= 0 && range.upperBound <= B, "a split pass needs blocks")
        let t0 = monotonicSeconds()
        acts.hasTargets = false // `backward` follows a forward, not this pass
        let N = B * T, C = config.nEmbd, L = config.nLayer
        let p = passBuffers, a = p.acts
        if packing {
            for (l, block) in blocks.enumerated() {
                block.pack(backward: false, into: p.forward[l], arena)
                block.pack(backward: true, into: p.backward[l], arena)
            }
            head.pack(backward: false, into: p.headForward, arena)
            head.pack(backward: true, into: p.headBackward, arena)
        }
        var result = TrainingPass(loss: previous.loss, count: previous.count, forwardSeconds: monotonicSeconds() - t0,
                                  backwardSeconds: 0)
        for block in RowBlocks(batch: range.count, time: T, rows: sequencesPerBlock * T) {
            let f0 = monotonicSeconds()
            let s = block.lowerBound + range.lowerBound ..< block.upperBound + range.lowerBound
            let n = s.count * T, first = s.lowerBound * T, local = 0 ..< s.count
            passForward(tokens: tokens, targets: targets, sequences: s, time: T, firstSample: firstSample, seed: seed,
                        training: true, loss: &result.loss, count: &result.count)
            let b0 = monotonicSeconds()
            var d = a.dResidual[0].pointer, dPrev = a.dResidual[1].pointer
            topBackward(a, rows: n, targets: targets + first, scale: 1, packed: p.headBackward, into: d)
            for l in stride(from: L - 1, through: 0, by: -1) {
                if l == 0 { dPrev = p.bottom.pointer + first * C }
                blocks[l].backward(d, a.residual[l].pointer, dPrev, a.blocks[l], a.scratch, sequences: local, time: T,
                                   training: true, arena, packed: p.backward[l])
                swap(&d, &dPrev)
            }
            embDrop.backwardInPlace(d, mask: a.embMask.pointer, count: n * C, training: true)
            result.forwardSeconds += b0 - f0
            result.backwardSeconds += monotonicSeconds() - b0
        }
        if range.upperBound == B {
            let e0 = monotonicSeconds()
            wte.backward(tokens, p.bottom.pointer, count: N, arena)
            wpe.backward(p.bottom.pointer, batch: B, time: T, arena)
            result.backwardSeconds += monotonicSeconds() - e0
        }
        return result
    }

    /// forward(training: false)'s loss and count to the bit, a block of sequences at a time
    /// through every layer (as `trainingPass` goes up), so that the activations stay in the
    /// caches. The logits are not kept.
    public func evaluationLoss(tokens: UnsafePointer<Int32>, targets: UnsafePointer<Int32>, batch B: Int, time T: Int,
                               firstSample: Int, seed: UInt64) -> (loss: Double, count: Int) {
        requireFits(batch: B, time: T)
        guard B > sequencesPerBlock else {
            return forward(tokens: tokens, targets: targets, batch: B, time: T, firstSample: firstSample, seed: seed,
                           training: false)
        }
        acts.hasTargets = false
        for (l, block) in blocks.enumerated() { block.pack(backward: false, into: passBuffers.forward[l], arena) }
        head.pack(backward: false, into: passBuffers.headForward, arena)
        var loss = 0.0, count = 0
        for s in RowBlocks(batch: B, time: T, rows: sequencesPerBlock * T) {
            passForward(tokens: tokens, targets: targets, sequences: s, time: T, firstSample: firstSample, seed: seed,
                        training: false, loss: &loss, count: &count)
        }
        return (loss, count)
    }

    /// The forward of the batch's sequences `s`, through the loss (added to `loss` and `count`),
    /// in the pass buffers from their first row, with the weights packed in them for forward.
    /// Dropout is keyed by the global sample, as the whole batch's forward keys it.
    private func passForward(tokens: UnsafePointer<Int32>, targets: UnsafePointer<Int32>, sequences s: Range<Int>,
                             time T: Int, firstSample: Int, seed: UInt64, training: Bool, loss: inout Double,
                             count: inout Int) {
        let p = passBuffers, a = p.acts
        let first = s.lowerBound * T, sample = firstSample + s.lowerBound
        embed(tokens + first, into: a, sequences: s.count, time: T, firstSample: sample, seed: seed, training: training)
        for (l, block) in blocks.enumerated() {
            block.forward(a.residual[l].pointer, a.residual[l + 1].pointer, a.blocks[l], a.scratch, sequences: 0 ..< s.count,
                          time: T, firstSample: sample, seed: seed, training: training, arena, packed: p.forward[l])
        }
        (loss, count) = top(a, rows: s.count * T, targets: targets + first, packed: p.headForward, continuing: (loss, count))
    }

    public func backward(lossScale: Float) {
        precondition(acts.hasTargets, "backward needs a forward with targets")
        let B = acts.B, T = acts.T, N = B * T, C = config.nEmbd, L = config.nLayer
        var d = acts.dResidual[0], dPrev = acts.dResidual[1]
        topBackward(acts, rows: N, targets: acts.targets, scale: lossScale, packed: nil, into: d.pointer)
        for l in stride(from: L - 1, through: 0, by: -1) {
            blocks[l].backward(d.pointer, acts.residual[l].pointer, dPrev.pointer, acts.blocks[l], acts.scratch,
                               batch: B, time: T, training: acts.training, arena)
            swap(&d, &dPrev)
        }
        embDrop.backwardInPlace(d.pointer, mask: acts.embMask.pointer, count: N * C, training: acts.training)
        wte.backward(acts.tokens, d.pointer, count: N, arena)
        wpe.backward(d.pointer, batch: B, time: T, arena)
    }
}
