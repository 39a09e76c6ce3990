// swift-tools-version:6.0
import PackageDescription

/// The numeric targets are compiled for AVX2 + FMA (x86-64-v3), which every CPU this trainer
/// targets has; SIMD8<Float> code then runs in single 256-bit registers.
let vectorISA: [SwiftSetting] = [.unsafeFlags(["-Xcc", "-mavx2", "-Xcc", "-mfma", "-Xcc", "-mf16c"])]

let package = Package(
    name: "Lockstep",
    products: [
        .executable(name: "lockstep", targets: ["lockstep"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        .systemLibrary(
            name: "COpenBLAS",
            pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]
        ),
        .systemLibrary(
            name: "CMPI",
            pkgConfig: "ompi-c",
            providers: [.apt(["libopenmpi-dev"])]
        ),
        .target(name: "CMPIShim", dependencies: ["CMPI"]),
        .target(name: "CKernels", cSettings: [.unsafeFlags(["-O3", "-mavx2", "-mfma", "-ffp-contract=fast", "-fno-math-errno"])]),
        .target(name: "Tensors", dependencies: ["COpenBLAS", "CKernels"], swiftSettings: vectorISA),
        .target(name: "Layers", dependencies: ["Tensors", "CKernels"], swiftSettings: vectorISA),
        .target(name: "Models", dependencies: ["Tensors", "Layers"], swiftSettings: vectorISA),
        .target(name: "Optim", dependencies: ["Tensors", "CKernels"], swiftSettings: vectorISA),
        .target(
            name: "Training",
            dependencies: ["Tensors", "Layers", "Models", "Optim", "CKernels"],
            resources: [.copy("Resources/tinyshakespeare.txt")]
        ),
        .target(name: "Distributed", dependencies: ["CMPIShim", "Training"]),
        .executableTarget(
            name: "lockstep",
            dependencies: [
                "Training", "Models", "Tensors", "Distributed",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .target(name: "TestSupport", dependencies: ["Tensors"], path: "Tests/TestSupport"),
        .testTarget(name: "TensorsTests", dependencies: ["Tensors", "CKernels", "TestSupport"]),
        .testTarget(name: "LayersTests", dependencies: ["Layers", "TestSupport"]),
        .testTarget(name: "ModelsTests", dependencies: ["Models", "Layers", "Training", "Optim", "TestSupport"],
                    resources: [.copy("Fixtures")]),
        .testTarget(name: "OptimTests", dependencies: ["Optim", "TestSupport"], resources: [.copy("Fixtures")]),
        .testTarget(name: "TrainingTests", dependencies: ["Training", "TestSupport"]),
        .testTarget(name: "DistributedTests", dependencies: ["Training", "Models"]),
    ]
)
