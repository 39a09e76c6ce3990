import Foundation
import TestSupport
import XCTest
@testable import Tensors
@testable import Training

/// A committed PyTorch reference file (`Fixtures/NAME.safetensors`) and what the tests do with it.
struct ReferenceFixture {
    let tensors: [String: SafeTensor]
    let metadata: [String: String]

    init(_ name: String) throws {
        let url = try XCTUnwrap(Bundle.module.url(forResource: name, withExtension: "safetensors", subdirectory: "Fixtures"))
        (tensors, metadata) = try SafeTensors.read(path: url.path)
    }

    /// A JSON object stored in the metadata under `key`.
    func json(_ key: String) throws -> [String: Any] {
        try XCTUnwrap(JSONSerialization.jsonObject(with: Data(try XCTUnwrap(metadata[key]).utf8)) as? [String: Any])
    }

    func floats(_ name: String) throws -> [Float] { try XCTUnwrap(tensors[name], "fixture tensor \(name)").floats }

    /// Loads the tensors named `prefix<parameter>` into `arena` (every parameter must be there).
    func assign(prefix: String, into arena: ParameterArena) throws {
        var params: [String: SafeTensor] = [:]
        for (k, v) in tensors where k.hasPrefix(prefix) { params[String(k.dropFirst(prefix.count))] = v }
        try Weights.assign(params, source: "fixture", into: arena)
    }

    /// Every parameter's gradient in `arena` matches `prefix<parameter>` within `tolerance` relative to its norm.
    func assertGradients(_ arena: ParameterArena, prefix: String, tolerance: Double = 1e-4, _ what: String = "",
                         file: StaticString = #filePath, line: UInt = #line) throws {
        for e in arena.layout.entries {
            let mine = Array(UnsafeBufferPointer(start: arena.gradients.pointer + e.offset, count: e.count))
            XCTAssertLessThan(relativeError(mine, try floats("\(prefix)\(e.name)")), tolerance, "\(what) gradient of \(e.name)",
                              file: file, line: line)
        }
    }
}

/// Splits (B, T+1) token rows into inputs and targets shifted by one.
func splitRows(_ rows: [Int64], batch B: Int, time T: Int) -> (inputs: [Int32], targets: [Int32]) {
    var inputs: [Int32] = [], targets: [Int32] = []
    for b in 0 ..< B {
        let row = rows[(b * (T + 1)) ..< ((b + 1) * (T + 1))].map { Int32($0) }
        inputs += row.dropLast()
        targets += row.dropFirst()
    }
    return (inputs, targets)
}
