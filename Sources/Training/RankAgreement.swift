import Foundation

/// Collective checks at start-up, so a job whose ranks disagree stops with one clear message
/// from rank 0 instead of hanging or training diverged replicas.
public enum RankAgreement {
    /// Every rank reports whether its set-up failed. Returns nil when all succeeded; otherwise
    /// the line rank 0 should print (its own error, else the first failed rank's number — that
    /// rank prints its own message).
    public static func gate(_ comm: Communicator, failure: String?) -> String? {
        let W = comm.size
        var flags = [Int64](repeating: 0, count: W)
        if failure != nil { flags[comm.rank] = 1 }
        flags.withUnsafeMutableBufferPointer { comm.allReduceSum($0.baseAddress!, count: W) }
        let failed = (0 ..< W).filter { flags[$0] != 0 }
        guard let first = failed.first else { return nil }
        if comm.rank == 0 {
            return failure ?? "rank \(first) failed to start (its message follows)\(failed.count > 1 ? "; ranks \(failed) failed" : "")"
        }
        // A failing rank other than 0 speaks only when rank 0 did not fail.
        return flags[0] == 0 && failure != nil ? "rank \(comm.rank): \(failure!)" : ""
    }

    /// Compares `digest` (e.g. of the config) with rank 0's. Returns the ranks that differ
    /// (the same list on every rank).
    public static func ranksDiffering(_ comm: Communicator, digest: [UInt8]) -> [Int] {
        var mine = digest
        var root = digest
        root.withUnsafeMutableBytes { comm.broadcast($0.baseAddress!, count: $0.count, root: 0) }
        var flags = [Int64](repeating: 0, count: comm.size)
        if mine != root { flags[comm.rank] = 1 }
        mine.removeAll()
        flags.withUnsafeMutableBufferPointer { comm.allReduceSum($0.baseAddress!, count: comm.size) }
        return (0 ..< comm.size).filter { flags[$0] != 0 }
    }

    /// Checks that every rank has the same config and the same data. Returns the message to stop
    /// with (identical on all ranks), or nil.
    public static func checkConfigAndData(_ comm: Communicator, config: Config, data: Dataset) -> String? {
        let configRanks = ranksDiffering(comm, digest: SHA256.hash(Array(config.canonicalJSON().utf8)))
        let dataRanks = ranksDiffering(comm, digest: data.digest())
        var problems: [String] = []
        if !configRanks.isEmpty { problems.append("the config on rank(s) \(configRanks.map(String.init).joined(separator: ", ")) differs from rank 0's") }
        if !dataRanks.isEmpty { problems.append("the data on rank(s) \(dataRanks.map(String.init).joined(separator: ", ")) differs from rank 0's") }
        guard !problems.isEmpty else { return nil }
        return problems.joined(separator: " and ") + "; start every rank with the same config, options and data"
    }
}

extension Dataset {
    /// SHA-256 over the token ids and the split point.
    public func digest() -> [UInt8] {
        var s = SHA256()
        tokens.withUnsafeBytes { s.update($0) }
        withUnsafeBytes(of: Int64(trainCount).littleEndian) { s.update($0) }
        return s.finalize()
    }
}

extension Trainer {
    /// SHA-256 of this replica's parameters.
    public func parameterDigest() -> [UInt8] {
        let arena = model.arena
        return SHA256.hash(UnsafeRawBufferPointer(start: arena.parameters.pointer, count: arena.count * MemoryLayout<Float>.stride))
    }

    /// SHA-256 of this replica's parameters, optimizer state and step.
    func stateDigest() -> [UInt8] {
        let bytes = model.arena.count * MemoryLayout<Float>.stride
        var s = SHA256()
        s.update(UnsafeRawBufferPointer(start: model.arena.parameters.pointer, count: bytes))
        for (_, buffer) in optimizer.state { s.update(UnsafeRawBufferPointer(start: buffer.pointer, count: bytes)) }
        withUnsafeBytes(of: Int64(optimizer.step)) { s.update($0) }
        return s.finalize()
    }

    /// Confirms that all replicas hold bit-identical parameters; returns rank 0's digest.
    /// A divergence stops the job naming the ranks.
    @discardableResult
    public func verifyReplicas() -> [UInt8] {
        let digest = parameterDigest()
        let differing = RankAgreement.ranksDiffering(comm, digest: digest)
        if !differing.isEmpty {
            comm.abort("replicas diverged: parameters on rank(s) \(differing) differ from rank 0's")
        }
        return digest
    }

    /// Makes every replica start from rank 0's state (parameters, moments, step — initialised,
    /// given or restored) and confirms it with a checksum.
    public func synchronizeReplicas() {
        guard comm.size > 1 else { return }
        broadcastTrainingState()
        let differing = RankAgreement.ranksDiffering(comm, digest: stateDigest())
        if !differing.isEmpty {
            comm.abort("training state differs from rank 0's on rank(s) \(differing) after the broadcast")
        }
    }
}
