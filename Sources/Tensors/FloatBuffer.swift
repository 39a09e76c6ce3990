/// A fixed-length, 64-byte aligned, zero-initialised buffer of `Float`.
///
/// The only owner of raw memory in the core: parameters, gradients, optimizer moments and
/// activations are all `FloatBuffer`s, allocated once and reused for the life of a run.
public final class FloatBuffer {
    public let count: Int
    public let pointer: UnsafeMutablePointer<Float>

    public init(count: Int) {
        precondition(count >= 0, "FloatBuffer count must be non-negative")
        self.count = count
        let raw = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1) * MemoryLayout<Float>.stride,
                                                   alignment: 64)
        pointer = raw.bindMemory(to: Float.self, capacity: max(count, 1))
        pointer.initialize(repeating: 0, count: max(count, 1))
    }

    public convenience init(_ values: [Float]) {
        self.init(count: values.count)
        values.withUnsafeBufferPointer { src in
            if let base = src.baseAddress { pointer.update(from: base, count: values.count) }
        }
    }

    deinit { UnsafeMutableRawPointer(pointer).deallocate() }

    /// Sets every element to zero.
    public func zero() { pointer.update(repeating: 0, count: count) }

    /// Copies the contents out as an array (for tests, checkpoints and I/O, never the step loop).
    public var array: [Float] { Array(UnsafeBufferPointer(start: pointer, count: count)) }

    /// Copies `other` into this buffer; lengths must match.
    public func copy(from other: FloatBuffer) {
        precondition(other.count == count, "FloatBuffer.copy: length mismatch")
        pointer.update(from: other.pointer, count: count)
    }

    public subscript(i: Int) -> Float {
        get { pointer[i] }
        set { pointer[i] = newValue }
    }

    /// A pointer `offset` elements into the buffer.
    @inline(__always) public func at(_ offset: Int) -> UnsafeMutablePointer<Float> { pointer + offset }
}
