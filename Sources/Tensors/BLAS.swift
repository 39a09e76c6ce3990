import COpenBLAS

/// Whether an sgemm operand is used as stored or transposed.
public enum Transpose: Sendable {
    case none, transposed

    var cblas: CBLAS_TRANSPOSE { self == .none ? CblasNoTrans : CblasTrans }
}

/// Row-major single-precision GEMM: `C = alpha · op(A) · op(B) + beta · C`.
///
/// `op(A)` is M×K, `op(B)` is K×N, `C` is M×N. Leading dimensions are row strides of the
/// matrices as stored (so strided views into wider buffers work directly).
///
/// With `beta == 0`, C is cleared here and OpenBLAS is called with beta 1: its own beta pass
/// clears C with a scalar loop (≈ 6% of a training step on the default model), memset is
/// several times faster. C must not alias A or B (it never does here).
@inline(__always)
public func sgemm(_ transA: Transpose, _ transB: Transpose,
                  m: Int, n: Int, k: Int,
                  alpha: Float = 1,
                  a: UnsafePointer<Float>, lda: Int,
                  b: UnsafePointer<Float>, ldb: Int,
                  beta: Float = 0,
                  c: UnsafeMutablePointer<Float>, ldc: Int) {
    var beta = beta
    if beta == 0 {
        Kernels.clearRows(c, rows: m, cols: n, stride: ldc)
        beta = 1
    }
    cblas_sgemm(CblasRowMajor, transA.cblas, transB.cblas,
                Int32(m), Int32(n), Int32(k), alpha,
                a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

/// BLAS threading control.
public enum BLAS {
    /// Sets the number of threads OpenBLAS uses for each call (and the rank's other kernels, `Parallel`).
    public static func setThreads(_ n: Int) {
        openblas_set_num_threads(Int32(max(1, n)))
        Parallel.setThreads(n)
    }
    /// The number of threads OpenBLAS currently uses.
    public static var threads: Int { Int(openblas_get_num_threads()) }
    /// The core type OpenBLAS picked (for reports).
    public static var coreName: String {
        guard let p = openblas_get_corename() else { return "unknown" }
        return String(cString: p)
    }
}
