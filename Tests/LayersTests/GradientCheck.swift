import Tensors
import TestSupport
import XCTest

/// Checks a layer's backward against central finite differences of the probe loss Σ w·y,
/// for every parameter in `arena` and every input element.
func gradCheck(_ name: String, arena: ParameterArena, input: FloatBuffer, outputCount: Int,
               eps: Float = 1e-2, tolerance: Double = 1e-2,
               forward: (_ y: UnsafeMutablePointer<Float>) -> Void,
               backward: (_ dy: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>) -> Void,
               file: StaticString = #filePath, line: UInt = #line) {
    let y = FloatBuffer(count: outputCount)
    let w = randomValues(outputCount, seed: 77)
    arena.gradients.zero()
    forward(y.pointer)
    let dx = FloatBuffer(count: input.count)
    w.withUnsafeBufferPointer { backward($0.baseAddress!, dx.pointer) }
    let analyticParams = arena.gradients.array
    let analyticInput = dx.array
    let loss = { () -> Double in forward(y.pointer); return weightedSum(y.pointer, w) }
    if arena.count > 0 {
        assertGradientsMatch(arena.parameters.pointer, analytic: analyticParams, eps: eps, tolerance: tolerance,
                             "\(name) parameters", loss: loss, file: file, line: line)
    }
    assertGradientsMatch(input.pointer, analytic: analyticInput, eps: eps, tolerance: tolerance,
                         "\(name) input", loss: loss, file: file, line: line)
}

/// An arena with every parameter drawn N(0, std) (LayerNorm weights around 1).
func randomArena(_ layout: ParameterLayout, seed: UInt64, std: Float = 0.3) -> ParameterArena {
    let arena = ParameterArena(layout: layout)
    fillRandom(arena.parameters.pointer, count: arena.count, seed: seed, std: std)
    for e in layout.entries where e.name.contains("ln") && e.name.hasSuffix("weight") {
        for i in e.range { arena.parameters[i] += 1 }
    }
    return arena
}
