/// SplitMix64 used as a counter-based generator: output `i` is a pure function of (state, i).
///
/// `output(state: s, index: i)` equals the i-th (0-based) output of the standard sequential
/// SplitMix64 started at state `s`, so runs can be compared with other implementations.
public enum SplitMix64 {
    public static let golden: UInt64 = 0x9E37_79B9_7F4A_7C15

    /// The SplitMix64 finaliser.
    @inline(__always) public static func mix(_ x: UInt64) -> UInt64 {
        var z = x
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Output number `index` (0-based) of SplitMix64 seeded with `state`.
    @inline(__always) public static func output(state: UInt64, index: UInt64) -> UInt64 {
        mix(state &+ (index &+ 1) &* golden)
    }
}

/// What a random draw is for; each purpose gets an independent stream.
public enum RandomPurpose: UInt64, Sendable {
    case initialisation = 1
    case dropout = 2
    case maskedLM = 3
    case sampling = 4
}

/// A keyed counter-based generator. Every draw is a pure function of
/// (seed, purpose, key words, counter): nothing advances, so draws do not depend on
/// the order in which they are made or on how many ranks share the work.
public struct CounterRNG: Sendable {
    public let key: UInt64

    public init(seed: UInt64, purpose: RandomPurpose, _ words: UInt64...) {
        var k = SplitMix64.mix(seed &+ SplitMix64.golden)
        k = SplitMix64.mix(k ^ SplitMix64.mix(purpose.rawValue &* SplitMix64.golden))
        for w in words { k = SplitMix64.mix(k ^ SplitMix64.mix(w &+ SplitMix64.golden)) }
        key = k
    }

    /// 64 random bits at `counter`.
    @inline(__always) public func bits(_ counter: UInt64) -> UInt64 {
        SplitMix64.output(state: key, index: counter)
    }

    /// Uniform in [0, 1) with 24 bits of precision.
    @inline(__always) public func uniform(_ counter: UInt64) -> Float {
        Float(bits(counter) >> 40) * (1.0 / 16_777_216.0)
    }

    /// Uniform in [0, 1) with 53 bits of precision.
    @inline(__always) public func uniformDouble(_ counter: UInt64) -> Double {
        Double(bits(counter) >> 11) * (1.0 / 9_007_199_254_740_992.0)
    }

    /// Standard normal at `counter` (Box–Muller over two independent uniforms).
    public func normal(_ counter: UInt64) -> Float {
        let u1 = 1.0 - uniformDouble(2 &* counter)      // (0, 1]
        let u2 = uniformDouble(2 &* counter &+ 1)
        let r = (-2.0 * _log(u1)).squareRoot()
        return Float(r * _cos(2.0 * Double.pi * u2))
    }
}

#if canImport(Glibc)
import Glibc
@inline(__always) private func _log(_ x: Double) -> Double { Glibc.log(x) }
@inline(__always) private func _cos(_ x: Double) -> Double { Glibc.cos(x) }
#else
import Foundation
@inline(__always) private func _log(_ x: Double) -> Double { Foundation.log(x) }
@inline(__always) private func _cos(_ x: Double) -> Double { Foundation.cos(x) }
#endif
