import Foundation

/// Rank 0's voice: step lines, and a progress line redrawn in place when stdout is a terminal.
/// Other ranks print nothing.
public final class Console {
    public let enabled: Bool
    public let isTerminal: Bool
    private var progressShown = false

    /// Under `mpirun` stdout is forwarded (often through a pseudo-terminal even when the user's is
    /// a pipe), so the launcher says whether its own stdout is a terminal in `LOCKSTEP_PROGRESS`.
    public init(rank: Int) {
        enabled = rank == 0
        if let flag = ProcessInfo.processInfo.environment["LOCKSTEP_PROGRESS"] {
            isTerminal = flag == "1"
        } else if ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_SIZE"] != nil {
            isTerminal = false
        } else {
            isTerminal = isatty(STDOUT_FILENO) == 1
        }
    }

    /// Prints a line (above the progress line, if one is shown).
    public func line(_ s: String) {
        guard enabled else { return }
        clearProgress()
        writeAll(STDOUT_FILENO, s + "\n")
    }

    /// Redraws the progress line (terminal only).
    public func progress(step: Int, of total: Int, elapsed: Double, extra: String) {
        guard enabled, isTerminal, total > 0 else { return }
        let width = 30
        let done = min(width, width * step / total)
        let bar = String(repeating: "█", count: done) + String(repeating: "·", count: width - done)
        let eta = step > 0 ? elapsed / Double(step) * Double(total - step) : 0
        writeAll(STDOUT_FILENO, "\r\u{1B}[K[\(bar)] \(step)/\(total)  \(extra)  eta \(formatDuration(eta))")
        progressShown = true
    }

    public func clearProgress() {
        guard progressShown else { return }
        writeAll(STDOUT_FILENO, "\r\u{1B}[K")
        progressShown = false
    }
}

/// An integer with thousands separators ("842,496"), without the locale machinery (ICU data)
/// that `formatted()` loads into every rank.
public func grouped(_ n: Int) -> String {
    let digits = String(n.magnitude)
    var out = ""
    for (i, ch) in digits.enumerated() {
        if i > 0 && (digits.count - i) % 3 == 0 { out.append(",") }
        out.append(ch)
    }
    return n < 0 ? "-" + out : out
}

/// `1m05s`, `12.3s`.
public func formatDuration(_ s: Double) -> String {
    if s >= 60 { return "\(Int(s) / 60)m\(String(format: "%02d", Int(s) % 60))s" }
    return String(format: "%.1fs", s)
}

/// The metrics file: one JSON object per line, kept in memory too so that checkpoints carry
/// it and a resumed run continues it without repeated or missing steps (rank 0 only).
public final class MetricsWriter {
    private let handle: FileHandle?
    public private(set) var lines: [String]

    /// Starts the metrics file at `path` (nil: no file) with `restoring` as its first lines.
    public init(path: String?, restoring: [String] = []) throws {
        lines = restoring
        guard let path else { handle = nil; return }
        let body = restoring.map { $0 + "\n" }.joined()
        guard FileManager.default.createFile(atPath: path, contents: Data(body.utf8)), let h = FileHandle(forWritingAtPath: path) else {
            throw DataError("cannot write the metrics file '\(path)'; check training.output_dir")
        }
        h.seekToEndOfFile()
        handle = h
    }

    public func write(_ fields: [(String, Any)]) {
        let body = fields.map { key, value -> String in
            let v: String
            switch value {
            case let d as Double: v = d.isFinite ? "\(d)" : "null"
            case let f as Float: v = f.isFinite ? "\(f)" : "null"
            case let s as String: v = "\"\(s)\""
            default: v = "\(value)"
            }
            return "\"\(key)\":\(v)"
        }
        let line = "{" + body.joined(separator: ",") + "}"
        lines.append(line)
        handle?.write(Data((line + "\n").utf8))
    }

    deinit { try? handle?.close() }
}
