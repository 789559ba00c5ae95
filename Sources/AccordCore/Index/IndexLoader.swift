import AccordRuntime
/// The one reader of index files: it feeds a file's entries to a sink a
/// piece at a time, reading through the repository's backend.
///
/// A whole-file reader would hold the file's bytes and its decoded entries
/// (~100 bytes a blob) at once, beside the index they go into. Loading is the
/// largest allocation of a no-change backup or a restore, so this reader
/// holds one 1 MiB window instead: it hashes each piece as it reads it and
/// hands each blob record straight to the sink (`MasterIndex` for
/// `Repository.loadIndex`, an `IndexFile` for `Repository.readIndexFile`). A
/// file that turns out not to match its name throws after some of its entries
/// went in; every caller then gives up on the index (the command fails), so
/// nothing uses them.
struct IndexLoader {
    static let window = 1 << 20

    let backend: any Backend

    /// Reads index file `id`, which must hash to its name; gives its entries to `sink`.
    func load<S: IndexSink>(_ id: IndexID, into sink: inout S) throws {
        let name = id.hex
        let path = backend.describe(.index, name)
        let size = Int(try backend.size(.index, name))
        // Refused unread: a sparse or hostile file would otherwise be read (and
        // hashed, to name the damage) to its end, however large it claims to be.
        guard size <= IndexFile.maxFileSize else {
            throw RepositoryError.indexCorrupt(path, reason: "it is \(size) bytes, more than an index file may be (\(IndexFile.maxFileSize))")
        }
        var input = Input(backend: backend, name: name, path: path, size: size)
        do {
            try decode(&input, &sink)
        } catch let error as DecodeError {
            // A file cut short or altered mostly fails to decode before its
            // hash is known: name the cause that matters, the hash, when it differs.
            input.drain()
            if input.hasher.finalize() != id.digest {
                throw RepositoryError.indexCorrupt(path, reason: "content does not match its name (truncated or altered)")
            }
            throw RepositoryError.indexCorrupt(path, reason: "\(error)")
        }
        if input.hasher.finalize() != id.digest {
            throw RepositoryError.indexCorrupt(path, reason: "content does not match its name (truncated or altered)")
        }
    }

    private func decode<S: IndexSink>(_ r: inout Input, _ sink: inout S) throws {
        try r.need(12)
        guard r.bytes(8).elementsEqual(IndexFile.magic) else {
            throw DecodeError.invalid("not an Accord index file (bad magic)", offset: 0)
        }
        r.advance(8)
        let packCount = Int(r.u32())
        guard packCount <= r.remaining / 36 else { throw DecodeError.truncated(offset: r.offset) }
        for _ in 0..<packCount {
            try r.need(36)
            let pack = r.packID()
            let n = Int(r.u32())
            guard n <= r.remaining / IndexFile.blobRecordSize else { throw DecodeError.truncated(offset: r.offset) }
            let keep = sink.beginPack(pack, blobs: n)
            for _ in 0..<n {
                let entry = try r.record(IndexFile.blobRecordSize) { try IndexFile.decodeBlob(&$0) }
                if keep { sink.add(entry) }
            }
        }
        guard r.remaining == 0 else { throw DecodeError.invalid("trailing bytes after the last pack", offset: r.offset) }
    }

    /// A window over the file, refilled on demand; every byte read is hashed once.
    struct Input {
        let backend: any Backend
        let name: String
        let path: String
        let size: Int
        var buffer: [UInt8] = []
        var start = 0          // next unread byte in `buffer`
        var end = 0            // bytes valid in `buffer`
        var fileOffset = 0     // file offset of buffer[end]
        let hasher = SHA256Hasher()

        init(backend: any Backend, name: String, path: String, size: Int) {
            self.backend = backend; self.name = name; self.path = path; self.size = size
            buffer = [UInt8](repeating: 0, count: Swift.min(IndexLoader.window, Swift.max(size, 64)))
        }

        /// File offset of the next unread byte.
        var offset: Int { fileOffset - (end - start) }
        var remaining: Int { size - offset }

        /// Makes `n` (≤ the window) bytes readable, or throws `truncated`.
        mutating func need(_ n: Int) throws {
            if end - start >= n { return }
            // Move what is left to the front, then read as much as fits.
            let left = end - start
            if left > 0 && start > 0 {
                buffer.withUnsafeMutableBytes { b in b.baseAddress!.copyMemory(from: b.baseAddress! + start, byteCount: left) }
            }
            start = 0
            end = left
            while end - start < n && fileOffset < size {
                let want = Swift.min(buffer.count - end, size - fileOffset)
                let got = try buffer.withUnsafeMutableBytes { b in
                    try backend.read(.index, name, at: Int64(fileOffset), into: UnsafeMutableRawBufferPointer(rebasing: b[end..<end + want]))
                }
                if got == 0 { break }   // the file shrank while being read
                buffer.withUnsafeBytes { b in hasher.update(data: UnsafeRawBufferPointer(rebasing: b[end..<end + got])) }
                end += got
                fileOffset += got
            }
            if end - start < n { throw DecodeError.truncated(offset: offset) }
        }

        /// Reads (and hashes) whatever of the file is left unread, as far as it can.
        mutating func drain() {
            start = 0
            end = 0
            while fileOffset < size {
                let want = Swift.min(buffer.count, size - fileOffset)
                let got = (try? buffer.withUnsafeMutableBytes { b in
                    try backend.read(.index, name, at: Int64(fileOffset), into: UnsafeMutableRawBufferPointer(rebasing: b[..<want]))
                }) ?? 0
                if got == 0 { return }
                buffer.withUnsafeBytes { b in hasher.update(data: UnsafeRawBufferPointer(rebasing: b[0..<got])) }
                fileOffset += got
            }
        }

        func bytes(_ n: Int) -> ArraySlice<UInt8> { buffer[start..<start + n] }

        /// Decodes the next `n` bytes with a `ByteReader` (errors name file offsets).
        mutating func record<T>(_ n: Int, _ decode: (inout ByteReader) throws -> T) throws -> T {
            try need(n)
            let base = offset - start   // file offset of buffer[0]
            let value = try buffer.withUnsafeBytes { b -> T in
                var r = ByteReader(UnsafeRawBufferPointer(rebasing: b[..<(start + n)]), offset: start)
                do { return try decode(&r) } catch let e as DecodeError { throw e.shifted(by: base) }
            }
            start += n
            return value
        }
        mutating func advance(_ n: Int) { start += n }
        mutating func u32() -> UInt32 {
            defer { start += 4 }
            return buffer.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: start, as: UInt32.self)) }
        }
        mutating func packID() -> PackID {
            defer { start += 32 }
            return buffer.withUnsafeBytes { PackID(bytes: $0.baseAddress! + start) }
        }
    }
}

/// Where `IndexLoader` puts a file's entries.
protocol IndexSink {
    /// A pack's record begins, with `blobs` entries; false: skip its entries.
    mutating func beginPack(_ id: PackID, blobs: Int) -> Bool
    mutating func add(_ entry: PackEntry)
}

/// Loads entries into the master index, leaving out packs not `present`.
struct MasterIndexSink: IndexSink {
    let index: MasterIndex
    let present: Set<PackID>?
    var number = -1
    mutating func beginPack(_ id: PackID, blobs: Int) -> Bool {
        guard present?.contains(id) ?? true else { return false }
        number = index.packNumber(id)
        return true
    }
    mutating func add(_ entry: PackEntry) { index.append(pack: number, entry) }
}

/// Collects a file's entries as an `IndexFile`.
struct IndexFileSink: IndexSink {
    var file = IndexFile(packs: [])
    mutating func beginPack(_ id: PackID, blobs: Int) -> Bool {
        file.packs.append(.init(id: id, blobs: []))
        file.packs[file.packs.count - 1].blobs.reserveCapacity(blobs)
        return true
    }
    mutating func add(_ entry: PackEntry) { file.packs[file.packs.count - 1].blobs.append(entry) }
}

private extension DecodeError {
    /// The same error with its offset moved by `delta` (window → file offsets).
    func shifted(by delta: Int) -> DecodeError {
        switch self {
        case .truncated(let o): return .truncated(offset: o + delta)
        case .invalid(let what, let o): return .invalid(what, offset: o + delta)
        }
    }
}
