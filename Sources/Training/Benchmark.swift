import Foundation
import Tensors

/// Throughput and where the time goes, for `lockstep bench`.
public struct BenchmarkReport: Sendable {
    public var steps: Int
    public var medianTokensPerSecond: Double
    public var medianStepSeconds: Double
    /// The mean step (the slowest rank's duration of each step, averaged over the timed steps).
    public var meanStepSeconds: Double
    /// Where the mean step goes, as means over the timed steps; with `otherSeconds` they add up
    /// to `meanStepSeconds`. Forward and backward are the ranks' mean; `rankWait` is what the
    /// slowest rank's forward and backward took beyond that mean (the wait its partners spend at
    /// the barrier, whichever rank is slow); all-reduce and optimizer are rank 0's.
    public var times: StepTimes
    /// Each rank's median forward + backward over the timed steps, in rank order: the same work on
    /// every rank but for what a hand-over moves (`handOvers`), so their spread is the host's
    /// cores running at different speeds.
    public var rankComputeMedians: [Double]
    /// For each rank, in how many of the timed steps its forward + backward was the slowest (the
    /// one the others waited for; a tie counts for the lower rank).
    public var rankSlowestSteps: [Int]
    /// Timed steps in which the faster of two ranks ran the end of the slower rank's micro-batch
    /// (`Trainer+HandOver`): the forward + backward above then include that work; nil when the
    /// run cannot hand over.
    public var handOvers: Int?
    /// The rest of the mean step: zeroing the gradients, filling the batch, the slowest rank's
    /// other phases beyond rank 0's.
    public var otherSeconds: Double
    public var modelFLOPsPerToken: Double
    /// Single-thread sgemm peak measured on rank 0 (GFLOP/s), while every rank measured its own:
    /// the higher of OpenBLAS's and Lockstep's own product, best over the whole run (before the
    /// timed steps and after each window of them).
    public var sgemmPeakGFLOPS: Double { max(openBLASPeakGFLOPS, productPeakGFLOPS) }
    /// OpenBLAS's single-thread sgemm on `peakSize`³ (with the kernel it picked for this CPU).
    public var openBLASPeakGFLOPS: Double
    /// Lockstep's row product (`RowProduct`, in its AVX-512 or AVX2 path) on `peakSize`³, one thread.
    public var productPeakGFLOPS: Double
    /// The side of the square matrices the peaks are measured on.
    public var peakSize: Int
    /// Model FLOPs utilisation: the median over windows of steps of the window's model FLOP rate
    /// against the peak measured next to it (the mean of the measurements just before and just
    /// after the window). A shared machine's speed drifts by up to 2× within minutes; pairing each
    /// window with its own peak compares the two in the same moment.
    public var mfu: Double
    /// The same, per window, in order.
    public var windowMFU: [Double]
    /// The median throughput against the best peak of the whole run (below `mfu` when the
    /// machine drifted, close to it on a steady one).
    public var mfuAgainstBestPeak: Double
    public var peakRSSMegabytes: [Double]
    public var launchToFirstStepSeconds: Double?
    /// Rank 0's time in the Linear layers' products over the timed steps, and their FLOPs.
    public var products: ProductClock.Totals
    /// Rank 0's summed durations of the timed steps (the share the products take of them).
    public var stepSecondsRank0: Double
}

/// Model FLOPs per token (PaLM's accounting): 6 × matmul weights (the tied head included) plus,
/// for the transformer, 12 · layers · width · T for attention scores and values.
public func modelFLOPsPerToken(_ c: ModelConfig) -> Double {
    if let r = c.recurrent {
        let G = Double(r.cell.gates), H = Double(r.hidden), E = Double(r.nEmbd)
        let recurrent = G * H * (E + H) + Double(r.nLayer - 1) * G * H * (H + H)
        return 6 * (recurrent + Double(r.vocabSize) * H)
    }
    let C = Double(c.nEmbd), L = Double(c.nLayer), T = Double(c.blockSize), V = Double(c.gpt.vocabSize)
    let matmulWeights = L * 12 * C * C + V * C
    return 6 * matmulWeights + 12 * L * C * T
}

/// Single-thread sgemm throughput (GFLOP/s) on n×n matrices, best of a few repeats. C accumulates
/// (beta 1): the figure is OpenBLAS's kernel alone, with no pass that clears C.
public func measureSGEMMPeak(n: Int = 512, seconds: Double = 0.6) -> Double {
    bestSquareProductRate(n: n, seconds: seconds) { a, b, c in
        sgemm(.none, .none, m: n, n: n, k: n, a: a, lda: n, b: b, ldb: n, beta: 1, c: c, ldc: n)
    }
}

/// Single-thread throughput (GFLOP/s) of Lockstep's own product (`RowProduct`, the Linear layers'
/// forward) on n×n matrices, best of a few repeats, weight packing included.
public func measureRowProductPeak(n: Int = 512, seconds: Double = 0.6) -> Double {
    bestSquareProductRate(n: n, seconds: seconds) { a, b, c in
        RowProduct.timesTransposed(a, rows: n, k: n, b, outputs: n, bias: nil, into: c)
    }
}

/// The best rate of `product(a, b, c)` (2n³ FLOPs on n×n matrices) on one thread over `seconds`,
/// after one call to warm up.
private func bestSquareProductRate(n: Int, seconds: Double,
                                   _ product: (UnsafePointer<Float>, UnsafePointer<Float>, UnsafeMutablePointer<Float>) -> Void)
    -> Double {
    let saved = BLAS.threads
    BLAS.setThreads(1)
    defer { BLAS.setThreads(saved) }
    let a = FloatBuffer(count: n * n), b = FloatBuffer(count: n * n), c = FloatBuffer(count: n * n)
    for i in 0 ..< n * n { a[i] = Float(i % 7) * 0.01; b[i] = Float(i % 5) * 0.01 }
    product(a.pointer, b.pointer, c.pointer)
    var best = 0.0
    let start = monotonicSeconds()
    while monotonicSeconds() - start < seconds {
        let t0 = monotonicSeconds()
        product(a.pointer, b.pointer, c.pointer)
        best = max(best, 2 * Double(n * n * n) / (monotonicSeconds() - t0) / 1e9)
    }
    return best
}

/// Peak resident set size of this process in MB.
public func peakRSSMegabytes() -> Double {
    var usage = rusage()
    getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
    return Double(usage.ru_maxrss) / 1024
}

/// Seconds since this job was launched: from `LOCKSTEP_LAUNCH_EPOCH` (set by `launch/run` before
/// mpirun starts), else since this process started.
public func secondsSinceLaunch() -> Double? {
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    let epoch = Double(now.tv_sec) + Double(now.tv_nsec) * 1e-9
    if let launch = ProcessInfo.processInfo.environment["LOCKSTEP_LAUNCH_EPOCH"].flatMap(Double.init) {
        return epoch - launch
    }
    guard let stat = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8),
          let close = stat.lastIndex(of: ")"),
          let uptimeText = try? String(contentsOfFile: "/proc/uptime", encoding: .utf8),
          let uptime = Double(uptimeText.split(separator: " ")[0]) else { return nil }
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    guard fields.count > 19, let ticks = Double(fields[19]) else { return nil }
    return uptime - ticks / Double(sysconf(Int32(_SC_CLK_TCK)))
}

extension Trainer {
    /// Trains `warmup + steps` steps (without evaluation, metrics or checkpoints) and reports the
    /// median throughput and phase times of the last `steps`. The timed steps run in windows;
    /// before the first and after each, every rank measures the single-thread peak again (for
    /// MFU, see `BenchmarkReport.mfu`). Collective: every rank calls it.
    public func benchmark(steps: Int, warmup: Int, windows: Int = 6, peakSize n: Int = 512) -> BenchmarkReport {
        var firstStep: Double?
        var stats: [StepStats] = []
        separateRankWait = true
        defer { separateRankWait = false }
        // Both peaks after the warm-up, then only the higher one's kernel after each window (a
        // short burst).
        var openBLASPeak = 0.0, productPeak = 0.0, openBLASLeads = false
        var peaks: [Double] = []          // before the first window and after each
        var windowEnds: [Int] = []        // index into the timed steps where each window ends
        let windows = max(1, min(windows, steps)), perWindow = max(1, steps / windows)
        var handOversBefore = handOver.count
        for i in 0 ..< warmup + steps {
            if i == warmup {
                handOversBefore = handOver.count
                openBLASPeak = measureSGEMMPeak(n: n, seconds: 0.3)
                productPeak = measureRowProductPeak(n: n, seconds: 0.3)
                openBLASLeads = openBLASPeak > productPeak
                peaks.append(max(openBLASPeak, productPeak))
            }
            ProductClock.running = i >= warmup
            let s = step(i)
            ProductClock.running = false
            if firstStep == nil { firstStep = secondsSinceLaunch() }
            guard i >= warmup else { continue }
            stats.append(s)
            let timed = i - warmup + 1
            if timed == steps || (timed % perWindow == 0 && steps - timed >= perWindow / 2) {
                peaks.append(openBLASLeads ? measureSGEMMPeak(n: n, seconds: 0.12) : measureRowProductPeak(n: n, seconds: 0.12))
                windowEnds.append(timed)
            }
        }
        // Every rank's figures of every step, on every rank: step time is the slowest rank's.
        func everyRank(_ mine: [Double]) -> [[Double]] {
            (0 ..< comm.size).map { r in
                var row = r == comm.rank ? mine : [Double](repeating: 0, count: mine.count)
                row.withUnsafeMutableBufferPointer { comm.allReduceSum($0.baseAddress!, count: $0.count) }
                return row
            }
        }
        let durations = everyRank(stats.map(\.seconds)).reduce(into: [Double](repeating: 0, count: stats.count)) { m, row in
            for i in m.indices { m[i] = max(m[i], row[i]) }
        }
        let forwards = everyRank(stats.map(\.times.forward)), backwards = everyRank(stats.map(\.times.backward))
        // the bursts measured the leading kernel: they count towards its best
        if openBLASLeads { openBLASPeak = max(openBLASPeak, peaks.max() ?? 0) } else { productPeak = max(productPeak, peaks.max() ?? 0) }
        let bestPeak = max(openBLASPeak, productPeak)
        var rss = [Double](repeating: 0, count: comm.size)
        rss[comm.rank] = peakRSSMegabytes()
        rss.withUnsafeMutableBufferPointer { comm.allReduceSum($0.baseAddress!, count: $0.count) }
        let tokens = Double(config.batch.globalBatch * blockSize)
        let stepMedian = median(durations)
        let products = ProductClock.take()
        // Means add up where medians do not. Each step's duration (the slowest rank's) splits into
        // the ranks' mean forward and backward, the wait for the slowest of them (its forward and
        // backward beyond that mean), rank 0's all-reduce and optimizer step, and the rest.
        let W = Double(comm.size)
        var times = StepTimes()
        times.forward = mean(stats.indices.map { i in forwards.reduce(0) { $0 + $1[i] } / W })
        times.backward = mean(stats.indices.map { i in backwards.reduce(0) { $0 + $1[i] } / W })
        // each rank's forward + backward of every step; the slowest rank of each step (the lower on a tie)
        let computes = zip(forwards, backwards).map { f, b in zip(f, b).map { $0 + $1 } }
        let slowestRank = stats.indices.map { i in computes.indices.max { computes[$0][i] < computes[$1][i] }! }
        times.rankWait = mean(stats.indices.map { i in
            computes[slowestRank[i]][i] - computes.reduce(0) { $0 + $1[i] } / W
        })
        var slowest = [Int](repeating: 0, count: comm.size)
        for r in slowestRank { slowest[r] += 1 }
        times.allReduce = mean(stats.map(\.times.allReduce))
        times.optimizer = mean(stats.map(\.times.optimizer))
        let meanStep = mean(durations)
        let other = meanStep - times.forward - times.backward - times.rankWait - times.allReduce - times.optimizer
        let flops = modelFLOPsPerToken(config.model), cores = Double(comm.size * BLAS.threads)
        let tps = tokens / stepMedian
        var windowMFU: [Double] = []
        var start = 0
        for (w, end) in windowEnds.enumerated() {
            let seconds = durations[start ..< end].reduce(0, +)
            let peak = (peaks[w] + peaks[w + 1]) / 2
            windowMFU.append(tokens * Double(end - start) / seconds * flops / (cores * peak * 1e9))
            start = end
        }
        return BenchmarkReport(steps: steps, medianTokensPerSecond: tps, medianStepSeconds: stepMedian,
                               meanStepSeconds: meanStep, times: times, rankComputeMedians: computes.map(median),
                               rankSlowestSteps: slowest, handOvers: handsOver ? handOver.count - handOversBefore : nil,
                               otherSeconds: other,
                               modelFLOPsPerToken: flops, openBLASPeakGFLOPS: openBLASPeak,
                               productPeakGFLOPS: productPeak, peakSize: n, mfu: median(windowMFU),
                               windowMFU: windowMFU, mfuAgainstBestPeak: tps * flops / (cores * bestPeak * 1e9),
                               peakRSSMegabytes: rss, launchToFirstStepSeconds: firstStep, products: products,
                               stepSecondsRank0: stats.map(\.seconds).reduce(0, +))
    }
}

/// The median (the mean of the middle two for an even count; 0 for none).
func median(_ xs: [Double]) -> Double {
    let s = xs.sorted()
    return s.isEmpty ? 0 : (s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2)
}

/// The mean (0 for none).
func mean(_ xs: [Double]) -> Double { xs.isEmpty ? 0 : xs.reduce(0, +) / Double(xs.count) }
