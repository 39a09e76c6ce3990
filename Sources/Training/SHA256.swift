import CKernels
import Foundation

/// SHA-256 (FIPS 180-4), for config and data agreement between ranks and checkpoint checksums;
/// the compression runs in CKernels (`sha256.c`), with the CPU's SHA instructions where it has them.
public struct SHA256 {
    private var h: (UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32) =
        (0x6a09_e667, 0xbb67_ae85, 0x3c6e_f372, 0xa54f_f53a, 0x510e_527f, 0x9b05_688c, 0x1f83_d9ab, 0x5be0_cd19)
    private var pending: [UInt8] = []
    private var length: UInt64 = 0

    public init() {}

    /// Hash of `bytes` in one call.
    public static func hash<C: Collection>(_ bytes: C) -> [UInt8] where C.Element == UInt8 {
        var s = SHA256()
        s.update(Array(bytes))
        return s.finalize()
    }

    /// Hash of a Data's bytes, read in place.
    public static func hash(_ data: Data) -> [UInt8] {
        var s = SHA256()
        data.withUnsafeBytes { s.update($0) }
        return s.finalize()
    }

    /// Lower-case hex of a digest.
    public static func hex(_ digest: [UInt8]) -> String {
        digest.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
    }

    /// Whether the compression uses the CPU's SHA instructions (where it has them; the default)
    /// or the plain rounds; returns the choice in effect. The digests are the same.
    @discardableResult
    public static func useHardware(_ enabled: Bool) -> Bool { lk_sha256_set_hardware(enabled ? 1 : 0) != 0 }

    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        length &+= UInt64(bytes.count)
        var i = 0
        if !pending.isEmpty {
            i = min(64 - pending.count, bytes.count)
            pending.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[0 ..< i]))
            if pending.count == 64 {
                pending.withUnsafeBytes { compress($0.baseAddress!, blocks: 1) }
                pending.removeAll(keepingCapacity: true)
            }
        }
        let whole = (bytes.count - i) / 64
        if whole > 0 {
            compress(base + i, blocks: whole)
            i += 64 * whole
        }
        if i < bytes.count { pending.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[i...])) }
    }

    public mutating func update(_ bytes: [UInt8]) { bytes.withUnsafeBytes { update($0) } }

    public mutating func finalize() -> [UInt8] {
        let bitLength = length &* 8
        var tail: [UInt8] = [0x80]
        while (Int(length % 64) + tail.count) % 64 != 56 { tail.append(0) }
        for s in stride(from: 56, through: 0, by: -8) { tail.append(UInt8(truncatingIfNeeded: bitLength >> UInt64(s))) }
        let saved = length
        update(tail)
        length = saved
        var out: [UInt8] = []
        out.reserveCapacity(32)
        withUnsafeBytes(of: h) { words in
            for v in words.bindMemory(to: UInt32.self) {
                for s in stride(from: 24, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: v >> UInt32(s))) }
            }
        }
        return out
    }

    private mutating func compress(_ p: UnsafeRawPointer, blocks: Int) {
        withUnsafeMutableBytes(of: &h) { state in
            lk_sha256_blocks(state.baseAddress!.assumingMemoryBound(to: UInt32.self), p, Int64(blocks))
        }
    }
}
