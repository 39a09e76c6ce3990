/// The one door to the network: every collective the trainer needs. The core never imports
/// MPI; a multi-process build supplies an MPI-backed implementation.
public protocol Communicator: AnyObject {
    var rank: Int { get }
    var size: Int { get }
    /// In-place element-wise sum over all ranks.
    func allReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int)
    func allReduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int)
    func allReduceSum(_ buffer: UnsafeMutablePointer<Int64>, count: Int)
    /// Copies `count` bytes from `root` to every rank.
    func broadcast(_ bytes: UnsafeMutableRawPointer, count: Int, root: Int)
    /// Sends `count` bytes to `rank`, which receives them with `receive` (blocking, in order).
    func send(_ bytes: UnsafeRawPointer, count: Int, to rank: Int)
    func receive(_ bytes: UnsafeMutableRawPointer, count: Int, from rank: Int)
    func barrier()
    /// Stops the whole job with a message.
    func abort(_ message: String) -> Never
}

/// The communicator of a one-process run: every collective is the identity.
public final class SingleProcessCommunicator: Communicator {
    public init() {}
    public var rank: Int { 0 }
    public var size: Int { 1 }
    public func allReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) {}
    public func allReduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int) {}
    public func allReduceSum(_ buffer: UnsafeMutablePointer<Int64>, count: Int) {}
    public func broadcast(_ bytes: UnsafeMutableRawPointer, count: Int, root: Int) {}
    public func send(_ bytes: UnsafeRawPointer, count: Int, to rank: Int) {
        abort("send to rank \(rank) in a one-process run")
    }
    public func receive(_ bytes: UnsafeMutableRawPointer, count: Int, from rank: Int) {
        abort("receive from rank \(rank) in a one-process run")
    }
    public func barrier() {}
    public func abort(_ message: String) -> Never {
        FileHandleOutput.stderr("error: \(message)")
        exit(1)
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// Writes all of `s` to file descriptor `fd` (no buffering, so lines from failing ranks are not lost).
public func writeAll(_ fd: Int32, _ s: String) {
    var bytes = Array(s.utf8)
    var done = 0
    while done < bytes.count {
        let n = bytes.withUnsafeMutableBytes { write(fd, $0.baseAddress! + done, $0.count - done) }
        if n <= 0 { return }
        done += n
    }
}

/// Unbuffered writes to the standard streams.
public enum FileHandleOutput {
    public static func stderr(_ line: String) {
        writeAll(STDERR_FILENO, line.hasSuffix("\n") ? line : line + "\n")
    }
}
