import Foundation
import Tensors
import XCTest
@testable import Training

/// Thousands of random and mutated files: the reader never crashes, refuses every file that is not
/// structurally valid, and whatever it accepts is self-consistent.
final class SafeTensorsFuzzTests: XCTestCase {
    struct Rng {
        var i: UInt64 = 0
        let seed: UInt64
        mutating func next(_ n: Int) -> Int { i += 1; return Int(SplitMix64.output(state: seed, index: i) % UInt64(max(n, 1))) }
    }

    let valid = SafeTensors.encode([("w", SafeTensor(shape: [2, 3], floats: [1, 2, 3, 4, 5, 6])),
                                    ("b", SafeTensor(shape: [3], floats: [0.5, -1, 2])),
                                    ("ids", SafeTensor(shape: [2], ints: [4, 9]))],
                                   metadata: ["config": "{}", "step": "3"])

    func assertConsistent(_ tensors: [String: SafeTensor], _ file: Data) {
        for (name, t) in tensors {
            let n = t.shape.reduce(1, *)
            XCTAssertEqual(t.dtype == .f32 ? t.floats.count : t.ints.count, n, "tensor \(name) count matches its shape")
        }
        let reencoded = SafeTensors.encode(tensors.keys.sorted().map { ($0, tensors[$0]!) })
        XCTAssertEqual(try? SafeTensors.decode(reencoded, source: "re").tensors, tensors)
    }

    func testRandomFilesAreRefused() {
        var rng = Rng(seed: 11)
        for round in 0 ..< 3000 {
            var bytes = (0 ..< rng.next(200)).map { _ in UInt8(rng.next(256)) }
            if round % 2 == 0 && bytes.count > 8 {
                // a plausible header length in front of random bytes
                let n = UInt64(rng.next(bytes.count - 8))
                for k in 0 ..< 8 { bytes[k] = UInt8(truncatingIfNeeded: n >> (8 * UInt64(k))) }
            }
            XCTAssertThrowsError(try SafeTensors.decode(Data(bytes), source: "random\(round)"))
        }
    }

    func testMutatedFilesNeverCrashAndAcceptedOnesAreConsistent() {
        var rng = Rng(seed: 7)
        var refused = 0, accepted = 0
        let headerLength = 8 + Int(valid.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        for round in 0 ..< 4000 {
            var d = valid
            for _ in 0 ... rng.next(3) {
                switch rng.next(6) {
                case 0: d[rng.next(d.count)] ^= UInt8(1 << rng.next(8))                          // flip a bit anywhere
                case 1: d[rng.next(min(headerLength, d.count))] = UInt8(rng.next(256))           // corrupt the header
                case 2: d = d.prefix(rng.next(d.count))                                          // truncate
                case 3: d.append(contentsOf: (0 ..< rng.next(16)).map { _ in UInt8(rng.next(256)) }) // trailing junk
                case 4:                                                                          // rewrite a digit of the header
                    let digits = (8 ..< max(8, min(headerLength, d.count))).filter { d[$0] >= 0x30 && d[$0] <= 0x39 }
                    if let i = digits.isEmpty ? nil : digits[rng.next(digits.count)] { d[i] = 0x30 + UInt8(rng.next(10)) }
                default:                                                                         // change the header length
                    if d.count >= 8 { d[rng.next(8)] = UInt8(rng.next(256)) }
                }
                if d.isEmpty { break }
            }
            do {
                let (tensors, _) = try SafeTensors.decode(d, source: "mutated\(round)")
                accepted += 1
                assertConsistent(tensors, d)
            } catch {
                refused += 1
                XCTAssert(error is SafeTensorsError, "\(error)")
                XCTAssert("\(error)".contains("mutated\(round)"), "the error names the file: \(error)")
            }
        }
        XCTAssertGreaterThan(refused, 2000, "most mutations break the structure")
        XCTAssertGreaterThan(accepted, 0, "flips inside tensor data leave a valid file")
    }
}
