import AccordTestSupport

/// The backend contract (`BackendConformanceTests`, in AccordTestSupport so
/// other backends share it) on `LocalBackend`, its default `makeBackend()`.
final class LocalBackendConformanceTests: BackendConformanceTests {}
