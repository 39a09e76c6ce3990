import XCTest
@testable import Training

final class SHA256Tests: XCTestCase {
    override func tearDown() { SHA256.useHardware(true) }

    func testKnownVectors() {
        for hardware in [true, false] {
            SHA256.useHardware(hardware)
            knownVectors()
        }
    }

    /// The CPU's SHA instructions (where it has them) and the plain rounds agree on every length
    /// around the block boundaries and on a long input fed in uneven pieces.
    func testHardwareAndPlainRoundsAgree() {
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        let data = (0 ..< 70_000).map { _ -> UInt8 in
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return UInt8(truncatingIfNeeded: state >> 56)
        }
        let lengths = Array(0 ... 130) + [191, 192, 193, 4095, 4096, 70_000]
        for n in lengths {
            SHA256.useHardware(false)
            let plain = SHA256.hash(data[0 ..< n])
            SHA256.useHardware(true)
            XCTAssertEqual(SHA256.hash(data[0 ..< n]), plain, "length \(n)")
        }
        var s = SHA256()
        var i = 0, step = 1
        while i < data.count { let j = min(i + step, data.count); s.update(Array(data[i ..< j])); i = j; step = step * 3 % 997 + 1 }
        SHA256.useHardware(false)
        XCTAssertEqual(s.finalize(), SHA256.hash(data))
    }

    private func knownVectors() {
        XCTAssertEqual(SHA256.hex(SHA256.hash([UInt8]())), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(SHA256.hex(SHA256.hash(Array("abc".utf8))), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(SHA256.hex(SHA256.hash(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8))),
                       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        XCTAssertEqual(SHA256.hex(SHA256.hash([UInt8](repeating: 0x61, count: 1_000_000))),
                       "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    func testIncrementalEqualsOneShot() {
        let data = (0 ..< 1000).map { UInt8(truncatingIfNeeded: $0 * 7) }
        var s = SHA256()
        for chunk in stride(from: 0, to: 1000, by: 37) { s.update(Array(data[chunk ..< min(chunk + 37, 1000)])) }
        XCTAssertEqual(s.finalize(), SHA256.hash(data))
    }
}
