import Foundation
import Synchronization

private let stopFlag = Atomic<Int32>(0)

/// SIGTERM, SIGINT and SIGUSR1 ask a training job to stop cleanly: the handler only sets a flag,
/// which the step loop reads (and the ranks agree on) between steps. SIGUSR1 is the one `mpirun`
/// forwards to every rank on every host (`launch/run` turns SIGTERM/SIGINT into it). A second
/// SIGTERM or SIGINT ends the process at once.
public enum StopSignal {
    public static var requested: Bool { stopFlag.load(ordering: .relaxed) != 0 }

    /// Installs the handlers (idempotent).
    public static func install() {
        for sig in [SIGTERM, SIGINT, SIGUSR1] {
            signal(sig) { sig in
                if stopFlag.exchange(1, ordering: .relaxed) != 0 && sig != SIGUSR1 {
                    signal(sig, SIG_DFL)
                    raise(sig)
                }
            }
        }
    }

    /// Clears the flag (for tests).
    public static func reset() { stopFlag.store(0, ordering: .relaxed) }
}
