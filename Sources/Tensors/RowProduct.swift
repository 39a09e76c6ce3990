import CKernels
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A Linear layer's three products in the C kernels (`gemm.c`, with AVX-512 paths where the CPU
/// has them that give the same bits): forward `x·Wᵀ + b` and input gradient `dy·W` stream the
/// activation rows through (`lk_gemm_rows`), and the weight gradient `dW += dyᵀ·x` sums over them
/// (`lk_gemm_cols`); a recurrent layer's input projection and gradients have the same shapes.
/// For the first two the weight is packed into 16-column panels once per call (a few hundred KB at
/// most); the activation rows are read in place, and the output is written once, starting from the
/// bias plus a residual or its own values. The work is split over the rank's threads by output
/// rows; each element is the same sequential sum wherever its row falls, so the result does not
/// depend on the thread count or on the instruction set.
public enum RowProduct {
    /// True when the products run in AVX-512 (the CPU has it and `LOCKSTEP_KERNELS` is not `avx2`).
    public static var usesAVX512: Bool { lk_isa_avx512() != 0 }

    /// True when the CPU has the AVX-512 the kernels use (F).
    public static var avx512Available: Bool { lk_isa_avx512_available() != 0 }

    /// Chooses the AVX-512 paths (where the CPU has them) or the AVX2 ones; returns whether
    /// AVX-512 is now in use. For comparisons and tests: both give the same results.
    @discardableResult
    public static func useAVX512(_ enabled: Bool) -> Bool { lk_set_isa_avx512(enabled ? 1 : 0) != 0 }

    /// w (O × K) += aᵀ·b with a N × O (rows lda apart) and b N × K (rows ldb apart): a Linear
    /// layer's weight gradient dyᵀ·x; with `columnSums`, also columnSums[o] += Σ_n a[n, o] (its
    /// bias gradient, taken as the rows pass through the cache). Each element adds the sequential
    /// sum over the N rows.
    /// With `normalizing`, b is the input of a LayerNorm and the product takes its output: each
    /// row of b normalized with the statistics the LayerNorm's forward saved, as the row is read
    /// (to the bit what the forward produced; backward needs no pass to recompute it).
    public static func accumulateTransposedTimes(_ a: UnsafePointer<Float>, lda: Int? = nil, _ b: UnsafePointer<Float>,
                                                 ldb: Int? = nil, rows N: Int, outputs O: Int, k K: Int,
                                                 into w: UnsafeMutablePointer<Float>,
                                                 columnSums: UnsafeMutablePointer<Float>? = nil,
                                                 normalizing norm: Normalization? = nil) {
        guard N > 0, O > 0, K > 0 else { return }
        let lda = lda ?? O, ldb = ldb ?? K
        let t0 = ProductClock.start()
        defer {
            ProductClock.stop(t0, ProductClock.Shape(weightGradient: true, rows: N, k: K, outputs: O,
                                                      detail: norm != nil ? "LayerNorm output" : ""))
        }
        Parallel.forEachPart(O, grain: 6) { r, _ in
            let sums = columnSums.map { $0 + r.lowerBound }
            if let norm {
                lk_gemm_cols_normalized(a + r.lowerBound, Int64(lda), b, Int64(ldb), norm.mean, norm.rstd, norm.gamma,
                                        norm.beta, Int64(N), Int64(r.count), Int64(K), w + r.lowerBound * K, Int64(K), sums)
            } else {
                lk_gemm_cols(a + r.lowerBound, Int64(lda), b, Int64(ldb), Int64(N), Int64(r.count), Int64(K),
                             w + r.lowerBound * K, Int64(K), sums)
            }
        }
    }

    /// A LayerNorm's saved row statistics (mean, 1/std per row) and its weight and bias: the
    /// normalization `accumulateTransposedTimes` applies to the rows it reads.
    public struct Normalization {
        public let mean, rstd, gamma, beta: UnsafePointer<Float>

        public init(mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>, gamma: UnsafePointer<Float>,
                    beta: UnsafePointer<Float>) {
            self.mean = mean
            self.rstd = rstd
            self.gamma = gamma
            self.beta = beta
        }

        /// The same normalization for the rows from `first` on.
        public func rows(from first: Int) -> Normalization {
            Normalization(mean: mean + first, rstd: rstd + first, gamma: gamma, beta: beta)
        }
    }

    /// y (N × O, rows ldy apart) = x (N × K) · wᵀ + bias (+ residual, N × O), with w stored O × K
    /// (PyTorch's Linear). `residual` may be y itself.
    public static func timesTransposed(_ x: UnsafePointer<Float>, rows N: Int, k K: Int,
                                       _ w: UnsafePointer<Float>, outputs O: Int, bias: UnsafePointer<Float>?,
                                       adding residual: UnsafePointer<Float>? = nil,
                                       into y: UnsafeMutablePointer<Float>, ldy: Int? = nil) {
        let ldy = ldy ?? O
        run(x, rows: N, k: K, w, ldw: K, transposed: true, outputs: O, bias: bias, initial: residual,
            ldi: residual == UnsafePointer(y) ? ldy : O, multiplying: nil, into: y, ldy: ldy)
    }

    /// y (N × O) = x (N × K) · w with w stored K × O; `accumulate` adds to y instead of
    /// overwriting it; with `multiplying` m (N × O) the product is multiplied by m elementwise
    /// before it is stored (y = (x·w) ⊙ m, or (y + x·w) ⊙ m).
    public static func times(_ x: UnsafePointer<Float>, rows N: Int, k K: Int,
                             _ w: UnsafePointer<Float>, outputs O: Int, accumulate: Bool,
                             multiplying m: UnsafePointer<Float>? = nil, into y: UnsafeMutablePointer<Float>) {
        run(x, rows: N, k: K, w, ldw: O, transposed: false, outputs: O, bias: nil,
            initial: accumulate ? UnsafePointer(y) : nil, ldi: O, multiplying: m, into: y, ldy: O)
    }

    private static func run(_ x: UnsafePointer<Float>, rows N: Int, k K: Int, _ w: UnsafePointer<Float>, ldw: Int,
                            transposed: Bool, outputs O: Int, bias: UnsafePointer<Float>?,
                            initial: UnsafePointer<Float>?, ldi: Int, multiplying m: UnsafePointer<Float>?,
                            into y: UnsafeMutablePointer<Float>, ldy: Int) {
        guard N > 0, O > 0 else { return }
        let t0 = ProductClock.start()
        defer {
            ProductClock.stop(t0, ProductClock.Shape(weightGradient: false, rows: N, k: K, outputs: O,
                                                      detail: initial != nil ? "+ init" : m != nil ? "⊙ mul" : ""))
        }
        let packed = PackBuffers.take(count: Int(lk_gemm_pack_size(Int64(K), Int64(O))))
        defer { PackBuffers.give(packed) }
        lk_gemm_pack(w, Int64(ldw), transposed ? 1 : 0, Int64(K), Int64(O), packed.pointer)
        rows(x, ldx: K, rows: N, k: K, UnsafePointer(packed.pointer), outputs: O, bias: bias, initial: initial, ldi: ldi,
             multiplying: m, into: y, ldy: ldy)
    }

    private static func rows(_ x: UnsafePointer<Float>, ldx: Int, rows N: Int, k K: Int, _ p: UnsafePointer<Float>,
                             outputs O: Int, bias: UnsafePointer<Float>?, initial: UnsafePointer<Float>?, ldi: Int,
                             multiplying m: UnsafePointer<Float>?, into y: UnsafeMutablePointer<Float>, ldy: Int) {
        // parts of whole tiles (8 rows in AVX-512, 6 in AVX2) on every thread but the last
        Parallel.forEachPart(N, grain: lk_isa_avx512() != 0 ? 8 : 6) { r, _ in
            lk_gemm_rows(x + r.lowerBound * ldx, Int64(ldx), Int64(r.count), Int64(K), p, Int64(O), bias,
                         initial.map { $0 + r.lowerBound * ldi }, Int64(ldi), m.map { $0 + r.lowerBound * O }, Int64(O),
                         y + r.lowerBound * ldy, Int64(ldy))
        }
    }

    /// A weight packed once for many products with it (a recurrent layer's W_hh, used at every
    /// time step): allocated with the activations, filled by `pack` once per pass.
    public final class PackedWeight {
        let buffer: FloatBuffer
        public private(set) var k = 0, outputs = 0

        /// Room for a K × O weight packed either way round (for x·w with K inputs and O outputs,
        /// or with O inputs and K outputs).
        public init(k K: Int, outputs O: Int) {
            buffer = FloatBuffer(count: Int(max(lk_gemm_pack_size(Int64(K), Int64(O)), lk_gemm_pack_size(Int64(O), Int64(K)))))
        }

        /// Packs w for products x·wᵀ (`transposed`: w stored O × K, rows ldw apart) or x·w (w
        /// stored K × O).
        public func pack(_ w: UnsafePointer<Float>, ldw: Int, transposed: Bool, k K: Int, outputs O: Int) {
            precondition(Int(lk_gemm_pack_size(Int64(K), Int64(O))) <= buffer.count, "packed weight larger than its buffer")
            let t0 = ProductClock.start()
            defer { ProductClock.stop(t0, ProductClock.Shape(weightGradient: false, rows: 0, k: K, outputs: O, detail: "packing")) }
            lk_gemm_pack(w, Int64(ldw), transposed ? 1 : 0, Int64(K), Int64(O), buffer.pointer)
            k = K
            outputs = O
        }
    }

    /// y (N × O, rows ldy apart) = x (N × K, rows ldx apart) · the packed weight, added to y
    /// when `accumulate` (y += x·w) and overwriting it otherwise.
    public static func times(_ x: UnsafePointer<Float>, ldx: Int, rows N: Int, _ w: PackedWeight, accumulate: Bool,
                             into y: UnsafeMutablePointer<Float>, ldy: Int) {
        times(x, ldx: ldx, rows: N, w, initial: accumulate ? UnsafePointer(y) : nil, ldi: ldy, into: y, ldy: ldy)
    }

    /// y (N × O, rows ldy apart) = (bias + initial + x · the packed weight) ⊙ m, each term where
    /// given (`initial` N × O rows ldi apart, may be y; m N × O): `timesTransposed` and `times`
    /// for a weight packed once and used for several blocks of rows.
    public static func times(_ x: UnsafePointer<Float>, ldx: Int, rows N: Int, _ w: PackedWeight,
                             bias: UnsafePointer<Float>? = nil, initial: UnsafePointer<Float>?, ldi: Int,
                             multiplying m: UnsafePointer<Float>? = nil, into y: UnsafeMutablePointer<Float>, ldy: Int) {
        guard N > 0, w.outputs > 0 else { return }
        let t0 = ProductClock.start()
        defer {
            ProductClock.stop(t0, ProductClock.Shape(weightGradient: false, rows: N, k: w.k, outputs: w.outputs,
                                                      detail: initial != nil ? "+ init" : m != nil ? "⊙ mul" : ""))
        }
        rows(x, ldx: ldx, rows: N, k: w.k, UnsafePointer(w.buffer.pointer), outputs: w.outputs, bias: bias,
             initial: initial, ldi: ldi, multiplying: m, into: y, ldy: ldy)
    }
}

/// Time spent in `RowProduct`'s products, summed by shape while `running` (the benchmark's
/// timed steps, on the calling thread): how fast the Linear layers' products run
/// inside the model, against the peak they reach on square matrices alone. Off, a product pays
/// one atomic load.
public enum ProductClock {
    /// A product's kind and size: `rows` × `k` times `k` × `outputs` (the weight gradient: the
    /// transposed `rows` × `outputs` times `rows` × `k`), and what its epilogue or prologue adds;
    /// `rows` 0: packing a `k` × `outputs` weight for the products that follow (no FLOPs).
    public struct Shape: Hashable, Sendable {
        public var weightGradient: Bool
        public var rows, k, outputs: Int
        public var detail: String

        public var flops: Double { 2 * Double(rows) * Double(k) * Double(outputs) }
    }

    public struct Time: Sendable {
        public var seconds = 0.0, calls = 0
    }

    public struct Totals: Sendable {
        public var byShape: [Shape: Time] = [:]

        public init() {}

        /// x·Wᵀ and dy·W (packing included) when `weightGradient` is false, dyᵀ·x when true.
        public func seconds(weightGradient: Bool) -> Double {
            byShape.filter { $0.key.weightGradient == weightGradient }.values.reduce(0) { $0 + $1.seconds }
        }

        public func flops(weightGradient: Bool) -> Double {
            byShape.filter { $0.key.weightGradient == weightGradient }.reduce(0) { $0 + $1.key.flops * Double($1.value.calls) }
        }
    }

    private static let on = Atomic<Bool>(false)
    private static let totals = Mutex(Totals())

    public static var running: Bool {
        get { on.load(ordering: .relaxed) }
        set { on.store(newValue, ordering: .relaxed) }
    }

    /// The sums so far, which start again from zero.
    public static func take() -> Totals { totals.withLock { t in defer { t = Totals() }; return t } }

    static func start() -> Double? { running ? monotonicSeconds() : nil }

    static func stop(_ start: Double?, _ shape: @autoclosure () -> Shape) {
        guard let start else { return }
        let seconds = monotonicSeconds() - start, shape = shape()
        totals.withLock { t in
            t.byShape[shape, default: Time()].seconds += seconds
            t.byShape[shape, default: Time()].calls += 1
        }
    }
}

/// Seconds on a monotonic clock.
public func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

/// Reusable buffers for packed weights: taken and given back around each product, so nothing is
/// allocated in the step loop once the largest size has been seen.
private enum PackBuffers {
    struct Block: @unchecked Sendable { // owned by whoever took it from the pool
        let pointer: UnsafeMutablePointer<Float>
        let count: Int
    }

    private static let free = Mutex<[Block]>([])

    static func take(count: Int) -> Block {
        let found: Block? = free.withLock { list in
            guard let i = list.firstIndex(where: { $0.count >= count }) else { return nil }
            return list.remove(at: i)
        }
        if let found { return found }
        let raw = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1) * MemoryLayout<Float>.stride, alignment: 64)
        return Block(pointer: raw.bindMemory(to: Float.self, capacity: max(count, 1)), count: count)
    }

    static func give(_ block: Block) {
        let dropped: Block? = free.withLock { list in
            list.append(block)
            return list.count > 4 ? list.removeFirst() : nil // keep the pool small: drop the oldest
        }
        if let dropped { UnsafeMutableRawPointer(dropped.pointer).deallocate() }
    }
}
