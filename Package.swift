// swift-tools-version: 6.2
import PackageDescription

import class Foundation.ProcessInfo

/// CI builds with every warning as an error; a developer's build stays forgiving.
let strict: [SwiftSetting] =
    ProcessInfo.processInfo.environment["CI"] == "true" ? [.treatAllWarnings(as: .error)] : []

let package = Package(
    name: "p2c",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "p2c", targets: ["p2c"])
    ],
    targets: [
        .systemLibrary(
            name: "CRdKafka",
            pkgConfig: "rdkafka",
            providers: [.apt(["librdkafka-dev"])]
        ),
        .target(name: "Kafka", dependencies: ["CRdKafka"], swiftSettings: strict),
        .target(name: "Topology", swiftSettings: strict),
        .target(name: "Runtime", swiftSettings: strict),
        .target(name: "Membership", dependencies: ["Kafka", "Runtime"], swiftSettings: strict),
        .target(name: "OData", dependencies: ["Runtime"], swiftSettings: strict),
        .target(
            name: "Connectors", dependencies: ["Runtime", "OData", "ProspectToCash", "Topology"], swiftSettings: strict),
        .target(
            name: "Dataverse", dependencies: ["Connectors", "OData", "ProspectToCash", "Runtime", "Topology"],
            swiftSettings: strict),
        .target(
            name: "FinanceOperations", dependencies: ["Connectors", "OData", "ProspectToCash", "Runtime", "Topology"],
            swiftSettings: strict),
        .target(
            name: "Simulators", dependencies: ["Runtime", "OData", "ProspectToCash", "Topology"], swiftSettings: strict),
        .target(name: "ProspectToCash", dependencies: ["Topology"], swiftSettings: strict),
        .target(
            name: "Worker",
            dependencies: ["Kafka", "Membership", "Topology", "Runtime", "ProspectToCash"],
            swiftSettings: strict
        ),
        .target(
            name: "Apply",
            dependencies: ["Kafka", "Membership", "Topology", "Runtime", "ProspectToCash", "Connectors"],
            swiftSettings: strict),
        .target(
            name: "Capture",
            dependencies: ["Kafka", "Membership", "Topology", "Runtime", "ProspectToCash", "Connectors", "OData"],
            swiftSettings: strict),
        .target(
            name: "Operations",
            dependencies: [
                "Kafka", "Membership", "Topology", "ProspectToCash", "Connectors", "Dataverse", "FinanceOperations",
                "Worker",
            ],
            swiftSettings: strict),
        .target(name: "Simulation", dependencies: ["Kafka", "Topology", "ProspectToCash"], swiftSettings: strict),
        .target(
            name: "Demos",
            dependencies: [
                "Kafka", "Topology", "Runtime", "ProspectToCash", "Worker", "Simulation", "Simulators", "Apply",
                "Capture", "Connectors", "Dataverse", "FinanceOperations", "Membership", "OData", "Operations",
            ],
            swiftSettings: strict),
        .executableTarget(
            name: "p2c",
            dependencies: [
                "Kafka", "Topology", "Runtime", "ProspectToCash", "Worker", "Simulation", "Simulators", "Apply",
                "Capture", "Connectors", "Dataverse", "Demos", "FinanceOperations", "Membership", "OData",
                "Operations",
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "MapBenchmark",
            dependencies: ["Kafka", "ProspectToCash", "Topology", "Simulation", "Worker"],
            swiftSettings: strict
        ),
        .target(
            name: "TestSupport", dependencies: ["Kafka", "Runtime", "Topology"], path: "Tests/TestSupport",
            swiftSettings: strict),
        .testTarget(name: "KafkaTests", dependencies: ["Kafka"], swiftSettings: strict),
        .testTarget(name: "TopologyTests", dependencies: ["Topology", "TestSupport"], swiftSettings: strict),
        .testTarget(name: "RuntimeTests", dependencies: ["Runtime"], swiftSettings: strict),
        .testTarget(name: "MembershipTests", dependencies: ["Membership", "Kafka", "Runtime"], swiftSettings: strict),
        .testTarget(name: "ODataTests", dependencies: ["OData", "Runtime"], swiftSettings: strict),
        .testTarget(
            name: "ConnectorsTests",
            dependencies: ["Connectors", "Dataverse", "FinanceOperations", "Simulators", "Runtime", "OData"],
            swiftSettings: strict),
        .testTarget(
            name: "ApplyTests",
            dependencies: [
                "Apply", "Connectors", "Dataverse", "FinanceOperations", "Simulators", "Kafka", "Membership",
                "Topology", "ProspectToCash", "Runtime", "TestSupport",
            ],
            swiftSettings: strict),
        .testTarget(
            name: "CaptureTests",
            dependencies: [
                "Capture", "Connectors", "Dataverse", "FinanceOperations", "Simulators", "Kafka", "Topology",
                "ProspectToCash", "Runtime", "TestSupport",
            ],
            swiftSettings: strict),
        .testTarget(name: "ProspectToCashTests", dependencies: ["ProspectToCash"], swiftSettings: strict),
        .testTarget(
            name: "WorkerTests", dependencies: ["Worker", "Kafka", "Topology", "ProspectToCash", "TestSupport"],
            swiftSettings: strict),
        .testTarget(
            name: "OperationsTests",
            dependencies: ["Operations", "Membership", "Simulation", "Kafka", "ProspectToCash", "Topology", "Worker"],
            swiftSettings: strict),
        .testTarget(
            name: "P2CTests",
            dependencies: [
                "Kafka", "Topology", "Runtime", "Connectors", "Dataverse", "FinanceOperations", "OData",
                "ProspectToCash", "TestSupport", "p2c",
            ],
            swiftSettings: strict),
    ]
)
