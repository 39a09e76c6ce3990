import Tensors

/// Layer normalisation over the last dimension, biased variance, as PyTorch's nn.LayerNorm.
public struct LayerNorm: Sendable {
    public let dim: Int
    public let eps: Float
    public let weight: ParameterRef
    public let bias: ParameterRef

    public init(_ layout: inout ParameterLayout, name: String, dim: Int, eps: Float = 1e-5) {
        self.dim = dim
        self.eps = eps
        weight = layout.add("\(name).weight", [dim])
        bias = layout.add("\(name).bias", [dim])
    }

    /// x (N, C) → out (N, C); saves mean and 1/std per row for backward.
    public func forward(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>,
                        mean: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>,
                        rows N: Int, _ arena: ParameterArena) {
        let C = dim, w = arena.param(weight), b = arena.param(bias)
        let invC = 1 / Float(C)
        for n in 0 ..< N {
            let xr = x + n * C, o = out + n * C
            var s: Float = 0
            for c in 0 ..< C { s += xr[c] }
            let m = s * invC
            var v: Float = 0
            for c in 0 ..< C { let d = xr[c] - m; v += d * d }
            let r = 1 / (v * invC + eps).squareRoot()
            for c in 0 ..< C { o[c] = (xr[c] - m) * r * w[c] + b[c] }
            mean[n] = m
            rstd[n] = r
        }
    }

    /// dx += ∂L/∂x; dw, db accumulate.
    public func backward(_ dout: UnsafePointer<Float>, _ x: UnsafePointer<Float>,
                         mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>,
                         _ dx: UnsafeMutablePointer<Float>, rows N: Int, _ arena: ParameterArena) {
        let C = dim, w = arena.param(weight), dw = arena.grad(weight), db = arena.grad(bias)
        let invC = 1 / Float(C)
        for n in 0 ..< N {
            let xr = x + n * C, g = dout + n * C, d = dx + n * C
            let m = mean[n], r = rstd[n]
            var sumG: Float = 0, sumGX: Float = 0
            for c in 0 ..< C {
                let xhat = (xr[c] - m) * r
                let gw = g[c] * w[c]
                sumG += gw
                sumGX += gw * xhat
                db[c] += g[c]
                dw[c] += g[c] * xhat
            }
            let meanG = sumG * invC, meanGX = sumGX * invC
            for c in 0 ..< C {
                let xhat = (xr[c] - m) * r
                d[c] += (g[c] * w[c] - meanG - xhat * meanGX) * r
            }
        }
    }
}
