import Foundation

/// Pre-tokenized token files in llm.c's format: a header of 256 little-endian int32
/// (magic 20240520, version 1, token count, the rest zero), then `count` uint16 tokens.
public enum TokenFile {
    public static let magic: Int32 = 20_240_520
    public static let version: Int32 = 1
    public static let headerInts = 256

    /// Reads a token file; refuses a wrong magic, version or length with one line.
    public static func read(path: String) throws -> [Int32] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw DataError("token file '\(path)' not found or unreadable")
        }
        return try decode(data, source: path)
    }

    public static func decode(_ data: Data, source: String) throws -> [Int32] {
        let headerBytes = headerInts * 4
        guard data.count >= headerBytes else {
            throw DataError("token file '\(source)' is too short for the 1024-byte header (\(data.count) bytes)")
        }
        func int32(at i: Int) -> Int32 {
            data.withUnsafeBytes { Int32(littleEndian: $0.loadUnaligned(fromByteOffset: i * 4, as: Int32.self)) }
        }
        guard int32(at: 0) == magic else {
            throw DataError("token file '\(source)' has magic \(int32(at: 0)), expected \(magic): not an llm.c token file")
        }
        guard int32(at: 1) == version else {
            throw DataError("token file '\(source)' has version \(int32(at: 1)), expected \(version)")
        }
        let count = Int(int32(at: 2))
        guard count >= 0, data.count == headerBytes + 2 * count else {
            throw DataError("token file '\(source)' header says \(count) tokens but the file holds \((data.count - headerBytes) / 2)")
        }
        return data.withUnsafeBytes { raw in
            (0 ..< count).map { Int32(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: headerBytes + 2 * $0, as: UInt16.self))) }
        }
    }

    /// Encodes tokens (each in 0..<65536) in the llm.c format.
    public static func encode(_ tokens: [Int32]) throws -> Data {
        var header = [Int32](repeating: 0, count: headerInts)
        header[0] = magic
        header[1] = version
        header[2] = Int32(tokens.count)
        var data = Data(capacity: headerInts * 4 + 2 * tokens.count)
        for h in header { withUnsafeBytes(of: h.littleEndian) { data.append(contentsOf: $0) } }
        for t in tokens {
            guard t >= 0 && t <= 65535 else { throw DataError("token \(t) does not fit the uint16 token file format") }
            withUnsafeBytes(of: UInt16(t).littleEndian) { data.append(contentsOf: $0) }
        }
        return data
    }

    /// Writes tokens atomically to `path`.
    public static func write(_ tokens: [Int32], path: String) throws {
        try encode(tokens).write(to: URL(fileURLWithPath: path), options: .atomic)
    }
}
