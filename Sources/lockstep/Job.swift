import ArgumentParser
import Distributed
import Foundation
import Tensors
import Training

/// One process of a (possibly multi-rank) job: MPI under `mpirun`, the single-process
/// communicator otherwise, and the error discipline of DESIGN: rank 0 speaks, a failure on any
/// rank stops every rank with one clear line and a non-zero exit, never a hang.
struct Job {
    let comm: Communicator
    private let mpi: MPICommunicator?

    init() {
        if MPICommunicator.launchedByMPI {
            let m = MPICommunicator()
            mpi = m
            comm = m
        } else {
            mpi = nil
            comm = SingleProcessCommunicator()
        }
    }

    var isRoot: Bool { comm.rank == 0 }

    /// Runs `setup` (which must make no collective call) on every rank, then agrees on whether
    /// all succeeded. On any failure the right rank prints one line and every rank exits 1.
    func start<T>(_ setup: () throws -> T) throws -> T {
        var value: T?
        var failure: String?
        do { value = try setup() } catch { failure = describe(error) }
        if comm.size == 1 {
            if let failure { return try stop(failure) }
            return value!
        }
        if let line = RankAgreement.gate(comm, failure: failure) { return try stop(line) }
        return value!
    }

    /// Stops every rank (all must call it): the message (if any) on stderr, exit status 1.
    func stop<T>(_ message: String) throws -> T {
        if !message.isEmpty { FileHandleOutput.stderr("error: \(message)") }
        mpi?.finalize()
        throw ExitCode(1)
    }

    /// Runs the collective part of the job. A failure here on one rank aborts the whole job.
    func run(_ body: () throws -> Void) throws {
        do {
            try body()
        } catch let e as ExitCode {
            throw e
        } catch {
            if comm.size > 1 { comm.abort(describe(error)) }
            FileHandleOutput.stderr("error: \(describe(error))")
            throw ExitCode(1)
        }
        mpi?.finalize()
    }

    private func describe(_ error: Error) -> String { "\(error)" }
}

/// BLAS threads: the option, else `LOCKSTEP_BLAS_THREADS` (set by `launch/run --threads`), else the
/// config's value, else the cores shared among the ranks on this host. Also checks the kernels'
/// instruction set asked for in `LOCKSTEP_KERNELS` (`avx2`, `avx512`, or unset / `auto`: the best
/// the CPU has).
func configureCompute(_ config: Config, override: Int?, ranksOnHost: Int) throws {
    let environment = ProcessInfo.processInfo.environment
    switch environment["LOCKSTEP_KERNELS"] ?? "auto" {
    case "auto", "avx2":
        break
    case "avx512":
        guard RowProduct.usesAVX512 else {
            throw ConfigError("LOCKSTEP_KERNELS=avx512, but this CPU lacks AVX-512 (F): unset it or use avx2")
        }
    case let other:
        throw ConfigError("LOCKSTEP_KERNELS=\(other) is not a kernel choice: use avx2, avx512 or auto (or unset it)")
    }
    let cores = ProcessInfo.processInfo.activeProcessorCount
    let env = environment["LOCKSTEP_BLAS_THREADS"].flatMap { Int($0) }.flatMap { $0 > 0 ? $0 : nil }
    BLAS.setThreads(override ?? env ?? config.training.blasThreads ?? max(1, cores / max(ranksOnHost, 1)))
}

/// Ranks sharing this machine, as the launcher announces them.
var localRanks: Int {
    ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_LOCAL_SIZE"].flatMap { Int($0) } ?? 1
}
