import Foundation
import AccordCore
import AccordRuntime

/// The worker threads: read and chunk what changed, in any order; the
/// main thread writes the slots in tree order (`Backup.run`).
extension Backup {
    // MARK: Reading (worker threads)

    func workerLoop() {
        let batch = BlobSink.Batch()
        defer { do { try sink.flush(batch) } catch { fail(error) } }
        // By the whole profile: a command's `dump` and a tree's `.sql` files
        // share a name and bounds but not a level.
        var streams: [ChunkerProfile: ChunkStream] = [:]
        func stream(_ p: ChunkerProfile) -> ChunkStream {
            if let s = streams[p] { return s }
            let s = ChunkStream(profile: p, gear: repository.gear)
            streams[p] = s
            return s
        }
        while let job = jobs.pop() {
            switch job {
            case .file(let slot, let path, let st, let profile):
                do {
                    try readFile(slot, path, st, stream(profile), batch)
                } catch let e as SystemError where sink.failure.value == nil {
                    // A source that cannot be read; a failing repository write fails the backup below.
                    do { try skipUnreadable(path, e); slot.entry = nil } catch { fail(error) }
                } catch {
                    fail(error)
                }
                complete(slot)
            case .command(let slot, let c):
                do { try runCommand(slot, c, stream(c.profile), batch) } catch { fail(error) }
                complete(slot)
            case .inline(let slot, let f):
                do {
                    var source = MemorySource(bytes: f.bytes)
                    let ids = try chunk(&source, stream(.dump), slot: slot, batch: batch)
                    let now = Sys.now()
                    slot.entry = ManifestEntry(kind: .file, path: Array(f.path.utf8), mode: f.mode,
                                               uid: 0, gid: 0, mtimeSec: now.sec, mtimeNsec: now.nsec,
                                               ctimeSec: now.sec, ctimeNsec: now.nsec, size: UInt64(f.bytes.count), blobs: ids)
                } catch { fail(error) }
                complete(slot)
            }
        }
    }

    func complete(_ slot: Slot) {
        slotCondition.lock()
        slot.done = true
        // Only the slot the manifest writer waits for wakes it.
        if waitingFor === slot { slotCondition.signal() }
        slotCondition.unlock()
    }

    /// After this many bytes a dump stream's chunks are hashed and stored on
    /// a helper thread (`ChunkHandoff`) while this one cuts the rest.
    static let handoffAfter: UInt64 = 8 << 20

    /// Chunks a source and stores its new chunks; returns the blob ids.
    func chunk<S: ByteSource>(_ source: inout S, _ stream: ChunkStream, slot: Slot, batch: BlobSink.Batch) throws -> [BlobID] {
        var acceptor = ChunkAcceptor(sink: sink, batch: batch, slot: slot, progress: options.progress, level: stream.profile.level)
        var handoff: ChunkHandoff?
        // Only streams of small chunks (dumps): there hashing is a large share
        // of the work per byte, and batches stay near 1 MiB. A tree file's
        // chunks (up to 8 MiB) would make the batches, and memory, large.
        let mayHandOff = options.threads > 1 && stream.profile.max <= ChunkHandoff.maxChunk
        let readBefore = stream.bytesRead, chunkedBefore = slot.bytesRead
        do {
            try stream.forEachChunk(from: &source) { chunk in
                if let h = handoff { return try h.add(chunk) }
                try acceptor.accept(chunk)
                if mayHandOff && slot.bytesRead >= Self.handoffAfter { handoff = ChunkHandoff(continuing: acceptor) }
            }
            if let h = handoff { acceptor = try h.finish() }
        } catch {
            handoff?.abandon()
            throw error
        }
        // Every byte read must be in a chunk: a cheap guard on the hand-off.
        let read = stream.bytesRead - readBefore, chunked = slot.bytesRead - chunkedBefore
        guard read == chunked else { throw BackupError.chunkedBytesMismatch(slot.entry?.path.displayPath ?? "a command source", read: read, chunked: chunked) }
        return acceptor.ids
    }

    func readFile(_ slot: Slot, _ path: RawPath, _ st: FileStatus, _ stream: ChunkStream, _ batch: BlobSink.Batch) throws {
        let fd = try Sys.open(path, Sys.O_RDONLY | Sys.O_NOFOLLOW)
        defer { Sys.close(fd) }
        var source = FileDescriptorSource(fd: fd, path: path.displayPath)
        let ids = try chunk(&source, stream, slot: slot, batch: batch)
        slot.entry!.blobs = ids
        slot.entry!.size = slot.bytesRead
        options.progress?.addFile()
    }

    func runCommand(_ slot: Slot, _ c: CommandSource, _ stream: ChunkStream, _ batch: BlobSink.Batch) throws {
        let runner = CommandRunner(command: c.command, environment: c.environment)
        let out: Int32
        do { out = try runner.start() } catch CommandError.cannotStart(_, let reason) {
            throw BackupError.commandStartFailed(c.command, reason: reason)
        }
        var source = FileDescriptorSource(fd: out, path: "stdout of `\(c.command)`")
        let ids: [BlobID]
        do { ids = try chunk(&source, stream, slot: slot, batch: batch) } catch {
            runner.kill()
            _ = runner.wait()
            throw error
        }
        let status = runner.wait()
        guard status.succeeded else {
            throw BackupError.commandFailed(path: c.path, command: c.command, status: status.description, stderrTail: runner.stderrTail)
        }
        let now = Sys.now()
        slot.entry = ManifestEntry(kind: .stream, path: normalize(Array(c.path.utf8)), mode: 0o600,
                                   uid: 0, gid: 0, mtimeSec: now.sec, mtimeNsec: now.nsec,
                                   ctimeSec: now.sec, ctimeNsec: now.nsec, size: slot.bytesRead, blobs: ids)
        options.progress?.addFile()
    }
}

/// Reads bytes held in memory.
struct MemorySource: ByteSource {
    let bytes: [UInt8]
    var position = 0
    init(bytes: [UInt8]) { self.bytes = bytes }
    mutating func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        let n = min(buffer.count, bytes.count - position)
        if n > 0 { bytes.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress! + position, byteCount: n) } }
        position += n
        return n
    }
}

/// Streams the parent snapshot's manifest alongside the walk.
///
/// The parent is read with `.orderAndCounts` validation, not `.full`: an
/// entry is taken only where its path equals the live, canonical path being
/// visited, and only its content ids (and, for a chunk list, the list as a
/// delta base) are reused; an unchanged file's ids must all be in the index
/// (`BlobSink.areKnown`) or the file is read again. What the full rules add
/// (canonical paths, ancestor kinds, hard-link targets, modes) guards what a
/// restore creates, and cost a no-change backup ~5% of its CPU. Tree
/// order (the merge below relies on it) and blob-count bounds (memory) are
/// still checked: a record that breaks them ends the merge with a warning
/// naming the snapshot and record, and every later file is read.
struct ParentCursor {
    var reader: ManifestReader
    var current: ManifestEntry?
    /// The parent manifest's blob in which `current`'s record starts.
    var currentBlob: BlobID?
    var started = false
    var broken = false

    init(reader: ManifestReader) {
        self.reader = reader
        self.reader.validation = .orderAndCounts
    }

    /// The parent's entry for `path`, and the parent manifest's blob in
    /// which its record starts (the new record's piece may be a delta on it).
    mutating func find(_ path: RawPath, onError: (String) -> Void) -> (entry: ManifestEntry, blob: BlobID?)? {
        if broken { return nil }
        do {
            if !started { started = true; try advance() }
            while let c = current, ManifestEntry.compareTreeOrder(c.path, path) < 0 { try advance() }
        } catch {
            onError("parent snapshot's manifest is unreadable (\(error)); reading every file")
            broken = true
            return nil
        }
        guard let c = current, c.path == path else { return nil }
        return (c, currentBlob)
    }

    private mutating func advance() throws {
        current = try reader.next()
        currentBlob = reader.recordBlob
    }
}
