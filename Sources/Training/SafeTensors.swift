import Foundation

/// One tensor of a safetensors file.
public struct SafeTensor: Sendable, Equatable {
    public enum DType: String, Sendable { case f32 = "F32", i32 = "I32", i64 = "I64" }
    public var dtype: DType
    public var shape: [Int]
    /// Values converted to Float (the integer dtypes are read for fixtures and token tensors).
    public var floats: [Float]
    public var ints: [Int64]

    public init(shape: [Int], floats: [Float]) {
        dtype = .f32; self.shape = shape; self.floats = floats; ints = []
    }
    public init(shape: [Int], ints: [Int64], dtype: DType = .i64) {
        self.dtype = dtype; self.shape = shape; self.ints = ints; floats = []
    }
}

/// A file that is not a usable safetensors file, naming the file and the reason.
public struct SafeTensorsError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Minimal safetensors reader and writer: an 8-byte little-endian header length, a JSON header
/// mapping names to {dtype, shape, data_offsets} (plus optional "__metadata__" of strings), then the data.
public enum SafeTensors {
    /// Encodes named tensors in the given order with string metadata.
    public static func encode(_ tensors: [(name: String, tensor: SafeTensor)], metadata: [String: String] = [:]) -> Data {
        let sizes = tensors.map { ($0.tensor.dtype == .f32 ? $0.tensor.floats.count : $0.tensor.ints.count) * ($0.tensor.dtype == .i64 ? 8 : 4) }
        var data = header(tensors.indices.map { (tensors[$0].name, tensors[$0].tensor.dtype, tensors[$0].tensor.shape, sizes[$0]) },
                          metadata: metadata)
        for (_, t) in tensors {
            switch t.dtype {
            case .f32: t.floats.withUnsafeBytes { data.append(contentsOf: $0) }   // little-endian host
            case .i32: for v in t.ints { withUnsafeBytes(of: Int32(v).littleEndian) { data.append(contentsOf: $0) } }
            case .i64: for v in t.ints { withUnsafeBytes(of: v.littleEndian) { data.append(contentsOf: $0) } }
            }
        }
        return data
    }

    /// Encodes float tensors read in place (views into parameter or optimizer buffers): the file's
    /// bytes are the only copy made.
    public static func encode(views: [(name: String, shape: [Int], values: UnsafeBufferPointer<Float>)],
                              metadata: [String: String] = [:]) -> Data {
        var data = header(views.map { ($0.name, .f32, $0.shape, $0.values.count * 4) }, metadata: metadata)
        for v in views { data.append(UnsafeBufferPointer(start: UnsafeRawPointer(v.values.baseAddress!).assumingMemoryBound(to: UInt8.self),
                                                         count: v.values.count * 4)) }
        return data
    }

    /// The length prefix and JSON header (padded to 8 bytes), with capacity reserved for the data.
    private static func header(_ entries: [(name: String, dtype: SafeTensor.DType, shape: [Int], bytes: Int)],
                               metadata: [String: String]) -> Data {
        var parts: [String] = []
        if !metadata.isEmpty {
            let meta = metadata.keys.sorted().map { "\(jsonString($0)):\(jsonString(metadata[$0]!))" }
            parts.append("\"__metadata__\":{\(meta.joined(separator: ","))}")
        }
        var offset = 0
        for e in entries {
            parts.append("\(jsonString(e.name)):{\"dtype\":\"\(e.dtype.rawValue)\",\"shape\":[\(e.shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(offset),\(offset + e.bytes)]}")
            offset += e.bytes
        }
        var header = "{" + parts.joined(separator: ",") + "}"
        while (8 + header.utf8.count) % 8 != 0 { header += " " }
        var data = Data(capacity: 8 + header.utf8.count + offset)
        withUnsafeBytes(of: UInt64(header.utf8.count).littleEndian) { data.append(contentsOf: $0) }
        data.append(contentsOf: Array(header.utf8))
        return data
    }

    /// Decodes a safetensors file. Checks the header JSON, dtypes, shapes and that every tensor's
    /// byte range lies inside the data section and matches its shape.
    public static func decode(_ input: Data, source: String) throws -> (tensors: [String: SafeTensor], metadata: [String: String]) {
        let data = input.startIndex == 0 ? input : Data(input)    // offsets below are from the start
        func bad(_ why: String) -> SafeTensorsError { SafeTensorsError("\(source): not a valid safetensors file: \(why)") }
        guard data.count >= 8 else { throw bad("shorter than the 8-byte header length") }
        let n = data.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
        guard n <= UInt64(data.count - 8), n <= 100_000_000 else { throw bad("header length \(n) exceeds the file") }
        let headerData = data.subdata(in: 8 ..< 8 + Int(n))
        guard let json = try? JSONSerialization.jsonObject(with: headerData), let header = json as? [String: Any] else {
            throw bad("header is not a JSON object")
        }
        let base = 8 + Int(n)
        let dataCount = data.count - base
        var metadata: [String: String] = [:]
        var tensors: [String: SafeTensor] = [:]
        var ranges: [(Int, Int, String)] = []
        for (name, value) in header {
            if name == "__metadata__" {
                guard let m = value as? [String: Any] else { throw bad("__metadata__ is not an object") }
                for (k, v) in m {
                    guard let s = v as? String else { throw bad("__metadata__ value for '\(k)' is not a string") }
                    metadata[k] = s
                }
                continue
            }
            guard let info = value as? [String: Any] else { throw bad("entry '\(name)' is not an object") }
            guard let dt = info["dtype"] as? String, let dtype = SafeTensor.DType(rawValue: dt) else {
                throw bad("tensor '\(name)' has unsupported dtype \(info["dtype"].map { "\($0)" } ?? "none") (F32, I32, I64 are read)")
            }
            guard let shapeAny = info["shape"] as? [Any], let shape = intArray(shapeAny), shape.allSatisfy({ $0 >= 0 }) else {
                throw bad("tensor '\(name)' has an invalid shape")
            }
            guard let offAny = info["data_offsets"] as? [Any], let offs = intArray(offAny), offs.count == 2 else {
                throw bad("tensor '\(name)' has invalid data_offsets")
            }
            let (start, end) = (offs[0], offs[1])
            guard start >= 0, end >= start, end <= dataCount else {
                throw bad("tensor '\(name)' data_offsets [\(start), \(end)] lie outside the \(dataCount)-byte data section")
            }
            var count = 1
            for d in shape {
                let (r, o) = count.multipliedReportingOverflow(by: d)
                guard !o, r <= 1 << 40 else { throw bad("tensor '\(name)' shape is too large") }
                count = r
            }
            let width = dtype == .i64 ? 8 : 4
            guard end - start == count * width else {
                throw bad("tensor '\(name)' holds \(end - start) bytes but shape \(shape) of \(dt) needs \(count * width)")
            }
            ranges.append((start, end, name))
            let t: SafeTensor = data.withUnsafeBytes { raw in
                let p = raw.baseAddress! + base + start
                switch dtype {
                case .f32:
                    return SafeTensor(shape: shape, floats: (0 ..< count).map {
                        Float(bitPattern: UInt32(littleEndian: (p + 4 * $0).loadUnaligned(as: UInt32.self))) })
                case .i32:
                    return SafeTensor(shape: shape, ints: (0 ..< count).map {
                        Int64(Int32(littleEndian: (p + 4 * $0).loadUnaligned(as: Int32.self))) }, dtype: .i32)
                case .i64:
                    return SafeTensor(shape: shape, ints: (0 ..< count).map {
                        Int64(littleEndian: (p + 8 * $0).loadUnaligned(as: Int64.self)) }, dtype: .i64)
                }
            }
            tensors[name] = t
        }
        ranges.sort { ($0.0, $0.1) < ($1.0, $1.1) }
        for (a, b) in zip(ranges, ranges.dropFirst()) where b.0 < a.1 {
            throw bad("tensors '\(a.2)' and '\(b.2)' overlap")
        }
        return (tensors, metadata)
    }

    public static func read(path: String) throws -> (tensors: [String: SafeTensor], metadata: [String: String]) {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw SafeTensorsError("\(path): file not found or unreadable")
        }
        return try decode(data, source: path)
    }

    private static func intArray(_ a: [Any]) -> [Int]? {
        var out: [Int] = []
        for v in a {
            guard let n = v as? NSNumber else { return nil }
            let d = n.doubleValue
            guard d == d.rounded(), d >= -1e15, d <= 1e15 else { return nil }
            out.append(Int(d))
        }
        return out
    }

    private static func jsonString(_ s: String) -> String {
        let d = try! JSONSerialization.data(withJSONObject: [s], options: [.fragmentsAllowed])
        let arr = String(decoding: d, as: UTF8.self)
        return String(arr.dropFirst().dropLast())
    }
}
