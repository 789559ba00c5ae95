import Foundation
import AccordCore
import AccordRuntime

/// The parts of `check` for an encrypted repository (format version 3) that
/// need no key, and what the others leave out without it. Every stored file
/// is named by the SHA-256 of its bytes, so a DR node that never holds the key
/// still finds any flipped byte, truncation or missing file (FORMAT.md,
/// "Checks a reader can run").
extension Check {
    /// An encrypted repository opened without its key: stored bytes can be
    /// verified against their names, not opened.
    var keyless: Bool { repository.config.isEncrypted && repository.crypto == nil }

    /// Key files: each must hash to its name, be a key file this accord reads
    /// (`KeyFile.decode`: KDF parameters within bounds, salt and seal of their
    /// sizes) and belong to this repository; at least one must. Needs no key (a key file is opened only by a passphrase).
    func checkKeyFiles() throws {
        let names = try repository.backend.list(.key)
        var readable = 0
        for (id, file) in try repository.keyFiles(onError: { _, e in report.errors.append("\(e)") }) {
            if file.repository == repository.config.id { readable += 1; continue }
            report.errors.append("key file \(id.short) belongs to repository \(file.repository.prefix(8)), not this one (\(repository.config.id.prefix(8))): "
                                 + "it opens nothing here; remove it with `accord key remove \(id.short)`")
        }
        if readable == 0 {
            report.errors.append("no readable key file of this repository in \(repository.layout.keyDirectory) (\(names.count) file(s) there): "
                                 + "without one the repository cannot be opened; restore keys/ from a copy of the repository")
        }
    }

    /// Snapshots without the key: each file must hash to its name and be a
    /// sealed snapshot (`ACCSNAP3`, readable time, room for nonce and tag).
    /// Their manifests cannot be read, so which blobs they use is unknown (nil).
    func checkSealedSnapshots(_ snapshotIDs: [SnapshotID]) -> Set<BlobID>? {
        for sid in snapshotIDs {
            report.snapshots += 1
            let path = repository.layout.snapshotPath(sid)
            let bytes: [UInt8]
            do { bytes = try repository.backend.read(.snapshot, sid.hex) } catch {
                report.errors.append("snapshot \(sid): unreadable (\(error))")
                continue
            }
            if SnapshotID(hashing: bytes) != sid {
                report.errors.append("snapshot \(sid): \(path) does not match its name (the file was altered or truncated)")
            } else if RepositoryCrypto.sealedSnapshotTime(bytes) == nil {
                report.errors.append("snapshot \(sid): \(path) is not a sealed snapshot (no ACCSNAP3 header, or shorter than a nonce and a tag)")
            }
        }
        report.notChecked = [
            "the \(snapshotIDs.count) snapshots' contents and their manifests and chunk lists (which blobs each snapshot needs, and whether they are indexed)",
            options.readData ? "each blob's contents against its id (every pack was checked whole against its name)"
                : "the packs' contents (`--read-data` checks each pack whole against its name without the key)",
        ]
        return nil
    }
}
