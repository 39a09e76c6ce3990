import CMPIShim
import Foundation
import Training

/// The communicator of an `mpirun` job: every collective goes through the C shim. A failed
/// call aborts the whole job with the rank, the call and MPI's error string.
public final class MPICommunicator: Communicator {
    public let rank: Int
    public let size: Int

    /// True when this process was started by Open MPI's launcher (so MPI must be initialised).
    public static var launchedByMPI: Bool {
        let env = ProcessInfo.processInfo.environment
        return env["OMPI_COMM_WORLD_SIZE"] != nil || env["PMIX_RANK"] != nil
    }

    /// This process's rank as the launcher announced it, before MPI is initialised.
    public static var launcherRank: Int? {
        ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_RANK"].flatMap { Int($0) }
    }

    public init() {
        var r: Int32 = 0, s: Int32 = 0
        Self.check(lsm_init(), rank: Self.launcherRank ?? -1, call: "MPI_Init")
        Self.check(lsm_rank(&r), rank: Self.launcherRank ?? -1, call: "MPI_Comm_rank")
        Self.check(lsm_size(&s), rank: Int(r), call: "MPI_Comm_size")
        rank = Int(r)
        size = Int(s)
    }

    /// Ends MPI cleanly; every rank must call it.
    public func finalize() { _ = lsm_finalize() }

    public func allReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) {
        check(lsm_allreduce_sum_float(buffer, Int64(count)), "MPI_Allreduce(float, \(count))")
    }

    public func allReduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int) {
        check(lsm_allreduce_sum_double(buffer, Int64(count)), "MPI_Allreduce(double, \(count))")
    }

    public func allReduceSum(_ buffer: UnsafeMutablePointer<Int64>, count: Int) {
        check(lsm_allreduce_sum_int64(buffer, Int64(count)), "MPI_Allreduce(int64, \(count))")
    }

    public func broadcast(_ bytes: UnsafeMutableRawPointer, count: Int, root: Int) {
        check(lsm_broadcast_bytes(bytes, Int64(count), Int32(root)), "MPI_Bcast(\(count) bytes)")
    }

    public func send(_ bytes: UnsafeRawPointer, count: Int, to rank: Int) {
        check(lsm_send_bytes(bytes, Int64(count), Int32(rank)), "MPI_Send(\(count) bytes to rank \(rank))")
    }

    public func receive(_ bytes: UnsafeMutableRawPointer, count: Int, from rank: Int) {
        check(lsm_receive_bytes(bytes, Int64(count), Int32(rank)), "MPI_Recv(\(count) bytes from rank \(rank))")
    }

    public func barrier() { check(lsm_barrier(), "MPI_Barrier") }

    public func abort(_ message: String) -> Never {
        _ = lsm_abort("error: rank \(rank): \(message)", 1)
        exit(1)
    }

    private func check(_ rc: Int32, _ call: String) { Self.check(rc, rank: rank, call: call) }

    private static func check(_ rc: Int32, rank: Int, call: String) {
        guard rc != LSM_OK else { return }
        var text = [CChar](repeating: 0, count: 512)
        lsm_error_string(rc, &text, Int32(text.count))
        let message = String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        _ = lsm_abort("error: rank \(rank): \(call) failed: \(message) (code \(rc))", 1)
        exit(1)
    }
}
