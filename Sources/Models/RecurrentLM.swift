import Layers
import Tensors

/// Shape of a recurrent language model.
public struct RecurrentConfig: Sendable, Equatable {
    public var cell: RecurrentCell
    public var vocabSize: Int
    public var blockSize: Int
    public var nLayer: Int
    public var nEmbd: Int
    public var hidden: Int
    public var dropout: Float

    public init(cell: RecurrentCell, vocabSize: Int = 256, blockSize: Int = 128, nLayer: Int = 1, nEmbd: Int = 128,
                hidden: Int = 256, dropout: Float = 0) {
        self.cell = cell
        self.vocabSize = vocabSize
        self.blockSize = blockSize
        self.nLayer = nLayer
        self.nEmbd = nEmbd
        self.hidden = hidden
        self.dropout = dropout
    }
}

/// Embedding → L recurrent layers (RNN, LSTM or GRU) → linear head, trained by backpropagation
/// through time over windows of T tokens, each from a zero state. Names follow PyTorch's
/// word-language-model example: `encoder.weight`, `rnn.weight_ih_l0` …, `decoder.weight`, `decoder.bias`.
public final class RecurrentLM: StatefulModel {
    public let config: RecurrentConfig
    public let arena: ParameterArena
    public let maxBatch: Int
    public var vocabSize: Int { config.vocabSize }
    public var blockSize: Int { config.blockSize }

    let embedding: Embedding
    let layers: [RecurrentLayer]
    let head: Linear
    let drops: [Dropout]        // after the embedding and after each layer
    let acts: Activations

    public init(config: RecurrentConfig, maxBatch: Int) {
        self.config = config
        self.maxBatch = maxBatch
        var layout = ParameterLayout()
        embedding = Embedding(&layout, name: "encoder", num: config.vocabSize, dim: config.nEmbd)
        layers = (0 ..< config.nLayer).map { k in
            RecurrentLayer(&layout, prefix: "rnn", layer: k, cell: config.cell, input: k == 0 ? config.nEmbd : config.hidden,
                           hidden: config.hidden)
        }
        head = Linear(&layout, name: "decoder", in: config.hidden, out: config.vocabSize)
        drops = (0 ... config.nLayer).map { Dropout(p: config.dropout, site: 1 + UInt64($0)) }
        arena = ParameterArena(layout: layout)
        acts = Activations(config: config, batch: maxBatch)
    }

    final class Activations {
        let tokens, targets: UnsafeMutablePointer<Int32>
        let emb: FloatBuffer                      // (N, E) after dropout
        let masks: [FloatBuffer]                  // dropout masks
        let layers: [RecurrentLayer.Activations]
        let dropped: [FloatBuffer]                // each layer's output after dropout (N, H)
        let logits, probs: FloatBuffer
        let dh: FloatBuffer                       // (N, H)
        let dIn: [FloatBuffer]                    // (N, E) and (N, H) gradients w.r.t. layer inputs
        let h0: [FloatBuffer]                     // per layer (B, H) initial state
        let c0: [FloatBuffer]                     // per layer (B, H), LSTM
        var hasInitialState = false
        var B = 0, T = 0, training = false, hasTargets = false

        init(config: RecurrentConfig, batch: Int) {
            let N = batch * config.blockSize, E = config.nEmbd, H = config.hidden, V = config.vocabSize
            let dropout = config.dropout > 0
            tokens = .allocate(capacity: N); tokens.initialize(repeating: 0, count: N)
            targets = .allocate(capacity: N); targets.initialize(repeating: -1, count: N)
            emb = FloatBuffer(count: N * E)
            masks = (0 ... config.nLayer).map { FloatBuffer(count: dropout ? N * ($0 == 0 ? E : H) : 0) }
            layers = (0 ..< config.nLayer).map { _ in
                RecurrentLayer.Activations(batch: batch, time: config.blockSize, cell: config.cell, hidden: H)
            }
            dropped = (0 ..< config.nLayer).map { _ in FloatBuffer(count: N * H) }
            logits = FloatBuffer(count: N * V); probs = FloatBuffer(count: N * V)
            dh = FloatBuffer(count: N * H)
            dIn = [FloatBuffer(count: N * E), FloatBuffer(count: N * H)]
            h0 = (0 ..< config.nLayer).map { _ in FloatBuffer(count: batch * H) }
            c0 = (0 ..< config.nLayer).map { _ in FloatBuffer(count: config.cell == .lstm ? batch * H : 0) }
        }

        deinit { tokens.deallocate(); targets.deallocate() }
    }

    /// PyTorch's defaults: recurrent weights and biases U(−1/√H, 1/√H); the example's
    /// embedding and head U(−0.1, 0.1), head bias 0.
    public func initialize(seed: UInt64) {
        let k = 1 / Float(config.hidden).squareRoot()
        for (index, e) in arena.layout.entries.enumerated() {
            let p = arena.parameters.pointer + e.offset
            let rng = CounterRNG(seed: seed, purpose: .initialisation, UInt64(index))
            let bound: Float = e.name.hasPrefix("rnn.") ? k : 0.1
            if e.name == "decoder.bias" {
                p.update(repeating: 0, count: e.count)
            } else {
                for i in 0 ..< e.count { p[i] = bound * (2 * rng.uniform(UInt64(i)) - 1) }
            }
        }
    }

    public var logits: UnsafePointer<Float> { UnsafePointer(acts.logits.pointer) }

    /// Per sample and layer: h (H floats), then c for the LSTM.
    public var stateSize: Int { config.nLayer * config.hidden * (config.cell == .lstm ? 2 : 1) }

    public func setInitialState(_ state: UnsafePointer<Float>?, batch B: Int) {
        guard let state else { acts.hasInitialState = false; return }
        let H = config.hidden, lstm = config.cell == .lstm
        for b in 0 ..< B {
            var p = state + b * stateSize
            for k in 0 ..< config.nLayer {
                (acts.h0[k].pointer + b * H).update(from: p, count: H); p += H
                if lstm { (acts.c0[k].pointer + b * H).update(from: p, count: H); p += H }
            }
        }
        acts.hasInitialState = true
    }

    public func finalState(into state: UnsafeMutablePointer<Float>) {
        let B = acts.B, T = acts.T, H = config.hidden, lstm = config.cell == .lstm
        for (k, layer) in layers.enumerated() {
            // through the layers' (B, H) scratch: h0/c0 are free once the forward is done
            layer.finalState(acts.layers[k], batch: B, time: T, h: acts.h0[k].pointer, c: lstm ? acts.c0[k].pointer : nil)
        }
        for b in 0 ..< B {
            var p = state + b * stateSize
            for k in 0 ..< config.nLayer {
                p.update(from: acts.h0[k].pointer + b * H, count: H); p += H
                if lstm { p.update(from: acts.c0[k].pointer + b * H, count: H); p += H }
            }
        }
        acts.hasInitialState = false
    }

    /// ∂L/∂(embedding output) of the last backward, (B, T, E): how much each position's input
    /// moved the loss (for studying vanishing gradients through time).
    public var inputGradient: UnsafePointer<Float> { UnsafePointer(acts.dIn[0].pointer) }

    @discardableResult
    public func forward(tokens: UnsafePointer<Int32>, targets: UnsafePointer<Int32>?, batch B: Int, time T: Int,
                        firstSample: Int, seed: UInt64, training: Bool) -> (loss: Double, count: Int) {
        precondition(B <= maxBatch && T <= config.blockSize, "batch (\(B), \(T)) exceeds the model's buffers")
        let N = B * T, E = config.nEmbd, H = config.hidden, V = config.vocabSize
        acts.B = B; acts.T = T; acts.training = training; acts.hasTargets = targets != nil
        acts.tokens.update(from: tokens, count: N)
        if let targets { acts.targets.update(from: targets, count: N) }
        embedding.forward(tokens, acts.emb.pointer, count: N, arena)
        drops[0].forward(acts.emb.pointer, acts.emb.pointer, mask: acts.masks[0].pointer, samples: B, perSample: T * E,
                         firstSample: firstSample, seed: seed, training: training)
        var input = UnsafePointer(acts.emb.pointer)
        for (k, layer) in layers.enumerated() {
            let h0 = acts.hasInitialState ? UnsafePointer(acts.h0[k].pointer) : nil
            let c0 = acts.hasInitialState && config.cell == .lstm ? UnsafePointer(acts.c0[k].pointer) : nil
            layer.forward(input, acts.layers[k], batch: B, time: T, arena, h0: h0, c0: c0)
            drops[k + 1].forward(acts.layers[k].h.pointer, acts.dropped[k].pointer, mask: acts.masks[k + 1].pointer, samples: B,
                                 perSample: T * H, firstSample: firstSample, seed: seed, training: training)
            input = UnsafePointer(acts.dropped[k].pointer)
        }
        head.forward(input, acts.logits.pointer, rows: N, arena)
        guard let targets else { return (0, 0) }
        return CrossEntropy.forward(logits: acts.logits.pointer, targets: targets, probs: acts.probs.pointer, rows: N, vocab: V)
    }

    public func backward(lossScale: Float) {
        precondition(acts.hasTargets, "backward needs a forward with targets")
        let B = acts.B, T = acts.T, N = B * T, E = config.nEmbd, H = config.hidden, V = config.vocabSize, L = config.nLayer
        let dlogits = acts.probs.pointer
        CrossEntropy.backward(probs: dlogits, targets: acts.targets, dlogits: dlogits, rows: N, vocab: V, scale: lossScale)
        head.backward(dlogits, acts.dropped[L - 1].pointer, acts.dh.pointer, rows: N, arena, accumulateInput: false)
        for k in stride(from: L - 1, through: 0, by: -1) {
            drops[k + 1].backwardInPlace(acts.dh.pointer, mask: acts.masks[k + 1].pointer, count: N * H, training: acts.training)
            let input = k == 0 ? UnsafePointer(acts.emb.pointer) : UnsafePointer(acts.dropped[k - 1].pointer)
            let dInput = acts.dIn[k == 0 ? 0 : 1].pointer
            layers[k].backward(acts.dh.pointer, input, dInput, acts.layers[k], batch: B, time: T, arena)
            if k > 0 { acts.dh.pointer.update(from: dInput, count: N * H) }
        }
        // dIn[0] keeps ∂L/∂(layer-0 input); the embedding's gradient goes through the mask.
        let dEmb = acts.dIn[0].pointer
        if acts.training && drops[0].isActive {
            // through the mask, into a copy so `inputGradient` still shows ∂L/∂(layer-0 input)
            let scratch = acts.emb.pointer    // the embedding activations are no longer needed
            for i in 0 ..< N * E { scratch[i] = dEmb[i] * acts.masks[0][i] }
            embedding.backward(acts.tokens, scratch, count: N, arena)
        } else {
            embedding.backward(acts.tokens, dEmb, count: N, arena)
        }
    }
}
