/// One named tensor in the flat parameter arena.
public struct ParameterEntry: Sendable, Equatable {
    public let name: String
    public let shape: [Int]
    public let offset: Int
    public var count: Int { shape.reduce(1, *) }
    public var range: Range<Int> { offset ..< offset + count }
}

/// A handle to one tensor's range of the arena, held by the layer that owns it.
public struct ParameterRef: Sendable, Equatable {
    public let offset: Int
    public let count: Int
    public let shape: [Int]
}

/// The named layout of the arena: (name, shape, offset), computed once from the config.
public struct ParameterLayout: Sendable, Equatable {
    public private(set) var entries: [ParameterEntry] = []
    public private(set) var count = 0

    public init() {}

    /// Appends a tensor and returns its handle. Names must be unique.
    @discardableResult
    public mutating func add(_ name: String, _ shape: [Int]) -> ParameterRef {
        precondition(!entries.contains { $0.name == name }, "duplicate parameter \(name)")
        let e = ParameterEntry(name: name, shape: shape, offset: count)
        entries.append(e)
        count += e.count
        return ParameterRef(offset: e.offset, count: e.count, shape: shape)
    }

    public func entry(named name: String) -> ParameterEntry? { entries.first { $0.name == name } }
}

/// Parameters and gradients: one contiguous buffer each, of equal length, over one layout.
/// Optimizer moments are allocated by the optimizer with the same length.
public final class ParameterArena {
    public let layout: ParameterLayout
    public let parameters: FloatBuffer
    public let gradients: FloatBuffer

    /// Where the layers' backward adds gradients: `gradients`, or another buffer of the same
    /// length while `accumulatingGradients(in:)` runs.
    private var gradientTarget: UnsafeMutablePointer<Float>

    public init(layout: ParameterLayout) {
        self.layout = layout
        parameters = FloatBuffer(count: layout.count)
        gradients = FloatBuffer(count: layout.count)
        gradientTarget = gradients.pointer
    }

    public var count: Int { layout.count }

    @inline(__always) public func param(_ r: ParameterRef) -> UnsafeMutablePointer<Float> { parameters.pointer + r.offset }
    @inline(__always) public func grad(_ r: ParameterRef) -> UnsafeMutablePointer<Float> { gradientTarget + r.offset }

    /// Runs `body` with the layers' gradients going to `buffer` (as long as the arena) instead
    /// of `gradients`: another rank's partial gradient, continued here.
    public func accumulatingGradients<T>(in buffer: FloatBuffer, _ body: () throws -> T) rethrows -> T {
        precondition(buffer.count == count, "a gradient buffer must be as long as the arena")
        gradientTarget = buffer.pointer
        defer { gradientTarget = gradients.pointer }
        return try body()
    }

    /// A copy of one named tensor's values.
    public func values(of name: String) -> [Float]? {
        guard let e = layout.entry(named: name) else { return nil }
        return Array(UnsafeBufferPointer(start: parameters.pointer + e.offset, count: e.count))
    }
}
