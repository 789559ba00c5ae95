// swift-tools-version: 6.1
// Micro-benchmarks of AccordCore's hot paths (chunking, hashing, compression,
// packs, the in-memory index), run with ordo-one/benchmark:
//
//     cd Benchmarks && swift package --disable-sandbox benchmark
//
// A package of its own so that the main package (and CI) never builds the
// benchmark tool and its dependencies. README.md says what each benchmark measures.
import PackageDescription

let package = Package(
    name: "AccordBenchmarks",
    platforms: [.macOS(.v13)],
    dependencies: [
        // Named, so the product reference holds whatever the checkout folder is called.
        .package(name: "accord", path: ".."),
        // The MallocInterposer trait alone: the default traits also pull in
        // swift-runtime-interposer, which this machine's package mirror lacks.
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "AccordMicro",
            dependencies: [
                .product(name: "AccordCore", package: "accord"),
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/AccordMicro",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        // A plain program (no benchmark plugin): S3 throughput with N parallel transfers, see its header.
        .executableTarget(
            name: "S3Throughput",
            dependencies: [.product(name: "AccordCore", package: "accord"), .product(name: "AccordS3", package: "accord")],
            path: "Benchmarks/S3Throughput"
        ),
    ],
    swiftLanguageModes: [.v5]
)
