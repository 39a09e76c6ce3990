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
    /// Inverse square root ("Noam"): `lr · min(step^−½, step · warmup^−³ᐟ²)`; it peaks at
    /// `lr / √warmup` at step `warmup` (step 0 gives 0).
    case inverseSqrt(lr: Double, warmup: Int)
    /// Linear warmup over `warmup` steps, then a straight line from `lr` to `minLR` at `decaySteps`.
    case linear(lr: Double, warmup: Int, decaySteps: Int, minLR: Double)

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
        case let .inverseSqrt(lr, warmup):
            guard step > 0 else { return 0 }
            let s = Double(step)
            return lr * min(1 / s.squareRoot(), s * pow(Double(max(warmup, 1)), -1.5))
        case let .linear(lr, warmup, decaySteps, minLR):
            if step < warmup { return lr * Double(step) / Double(warmup) }
            if step >= decaySteps { return minLR }
            return lr + (minLR - lr) * Double(step - warmup) / Double(max(decaySteps - warmup, 1))
        }
    }
}
