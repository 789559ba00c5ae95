// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "accord",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "accord", targets: ["accord"]),
        .library(name: "AccordCore", targets: ["AccordCore"]),
        .library(name: "AccordEngine", targets: ["AccordEngine"]),
        .library(name: "AccordS3", targets: ["AccordS3"]),   // also for Benchmarks/ (S3Throughput)
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
    ],
    targets: [
        .systemLibrary(name: "CZlib", path: "Sources/CZlib", providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CLibdeflate", path: "Sources/CLibdeflate", providers: [.apt(["libdeflate-dev"])]),
        .systemLibrary(name: "CIsal", path: "Sources/CIsal", providers: [.apt(["libisal-dev"])]),
        .systemLibrary(name: "CLibcrypto", path: "Sources/CLibcrypto", providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CCurl", path: "Sources/CCurl", providers: [.apt(["libcurl4-openssl-dev"])]),
        .target(name: "CAccordSys"),
        .target(name: "AccordRuntime", dependencies: ["CAccordSys"], exclude: ["README.md"]),
        .target(name: "AccordCore", dependencies: ["CZlib", "CLibdeflate", "CIsal", "CLibcrypto", "AccordRuntime"], exclude: ["README.md", "Store/README.md"]),
        .target(name: "AccordEngine", dependencies: ["AccordCore", "AccordRuntime"], exclude: ["README.md"]),
        .target(name: "AccordSync", dependencies: ["AccordCore", "AccordRuntime"], exclude: ["README.md"]),
        // libcurl is loaded at run time (AccordS3's CurlLibrary); CCurl gives its header only.
        .target(name: "AccordS3", dependencies: ["AccordCore", "AccordRuntime", "CCurl"], exclude: ["README.md"]),
        .target(name: "AccordPlans", dependencies: ["AccordCore", "AccordEngine", "AccordRuntime", .product(name: "Yams", package: "Yams")], exclude: ["README.md"]),
        // Headers only: `accord mount` loads libfuse3 at run time (Sources/CFuse3/shim.h).
        .systemLibrary(name: "CFuse3", path: "Sources/CFuse3", providers: [.apt(["libfuse3-dev"])]),
        .executableTarget(
            name: "accord",
            dependencies: [
                "AccordRuntime", "AccordCore", "AccordEngine", "AccordSync", "AccordPlans", "AccordS3", "CFuse3",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            exclude: ["README.md"]
        ),
        .target(name: "AccordTestSupport", dependencies: ["AccordRuntime", "AccordCore"], path: "Tests/AccordTestSupport", exclude: ["README.md"]),
        .testTarget(name: "AccordCoreTests", dependencies: ["AccordCore", "AccordTestSupport"], resources: [.copy("Golden")]),
        .testTarget(name: "AccordEngineTests", dependencies: ["AccordTestSupport", "AccordCore", "AccordEngine"]),
        .testTarget(name: "AccordSyncTests", dependencies: ["AccordTestSupport", "AccordCore", "AccordEngine", "AccordSync"]),
        .testTarget(name: "AccordFaultTests", dependencies: ["AccordTestSupport", "AccordCore", "AccordEngine"], exclude: ["Crashers"]),   // read by #filePath
        .testTarget(name: "AccordS3Tests", dependencies: ["accord", "AccordTestSupport", "AccordCore", "AccordS3"]),   // runs the built `accord` too
        .testTarget(name: "AccordPlansTests", dependencies: ["AccordTestSupport", "AccordCore", "AccordEngine", "AccordPlans"]),
        // The command line as users run it: the tests run the built `accord` (the executable target is a dependency so it is built first).
        .testTarget(name: "accordCLITests", dependencies: ["accord", "AccordTestSupport", "AccordCore"]),
    ],
    swiftLanguageModes: [.v6]
)
