#if canImport(Glibc)
import Glibc
#endif

/// Learning rate as a pure function of the optimizer step (0-based).
public enum LRSchedule: Sendable, Equatable {
    /// `lr` at every step.
    case constant(lr: Double)
    /// Linear warmup from 0 over `warmup` steps, then constant.
    case warmup(lr: Double, warmup: Int)
    /// Linear warmup over `warmup` steps, cosine from `lr` to `minLR` at `decaySteps`, then `minLR`.
    case warmupCosine(lr: Double, warmup: Int, decaySteps: Int, minLR: Double)

    public func lr(at step: Int) -> Double {
        switch self {
        case let .constant(lr):
            return lr
        case let .warmup(lr, warmup):
            return step < warmup ? lr * Double(step) / Double(warmup) : lr
        case let .warmupCosine(lr, warmup, decaySteps, minLR):
            if step < warmup { return lr * Double(step) / Double(warmup) }
            if step > decaySteps { return minLR }
            let span = Double(max(decaySteps - warmup, 1))
            let ratio = Double(step - warmup) / span
            return minLR + 0.5 * (1 + cos(Double.pi * ratio)) * (lr - minLR)
        }
    }
}
